"""Batched WeCom usage counting on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlalchemy as sa

from integrations.wecom.usage import BatchedUsageCounter
from models.platform import ApiUsage, QuotaFamily


def _total(database) -> int:
    with database.session() as s:
        return s.execute(sa.select(sa.func.coalesce(sa.func.sum(ApiUsage.count), 0))
                         .where(ApiUsage.corp_id == database.corp_pk)).scalar()


def test_counts_are_written_in_batches(database):
    now = [0.0]
    counter = BatchedUsageCounter(database, database.corp_pk, every_seconds=1.0, every_calls=5,
                                  clock=lambda: now[0])
    for _ in range(4):
        counter("user/list", QuotaFamily.OTHER)
    assert _total(database) == 0  # below both thresholds: nothing written yet
    counter("user/list", QuotaFamily.OTHER)
    assert _total(database) == 5
    counter("department/list", QuotaFamily.OTHER)
    now[0] += 1.5
    counter("user/get", QuotaFamily.OTHER)
    assert _total(database) == 7
    counter("user/get", QuotaFamily.OTHER)
    counter.flush()
    assert _total(database) == 8
