"""Counting calls per monthly quota family (fact sheet §2.3).

Standard-edition orgs get 5,000 counted calls a month shared by all their internal apps; work
notifications, to-dos and approvals count, token/sign-in/contacts calls do not. We count everything we
call (the exempt ones under `other`) so admins see both the quota burn and the total traffic.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa

from integrations.dingtalk.sqlutil import upsert_insert
from models.db import Database
from models.platform import ApiUsage, QuotaFamily
from models.types import utcnow

# Longest prefix wins; paths are the part after the oapi/api base.
_FAMILIES: tuple[tuple[str, QuotaFamily], ...] = (
    ("/topapi/message/corpconversation/", QuotaFamily.WORK_NOTIFICATION),
    ("/v1.0/todo/", QuotaFamily.TODO),
    ("/v1.0/workflow/", QuotaFamily.APPROVAL),
    ("/topapi/processinstance/", QuotaFamily.APPROVAL),
)

# Families DingTalk counts against the monthly quota.
COUNTED_FAMILIES = frozenset({QuotaFamily.WORK_NOTIFICATION, QuotaFamily.TODO, QuotaFamily.APPROVAL})
# Standard edition, orgs created after 2025-11-19 (10,000 before); shared by all the org's internal apps.
STANDARD_MONTHLY_QUOTA = 5000


@dataclass(frozen=True)
class QuotaUsage:
    """This month's counted calls against the org's monthly quota."""

    month: str
    used: int
    quota: int
    by_family: dict[str, int]  # every family, counted or not

    @property
    def remaining(self) -> int:
        return max(0, self.quota - self.used)

    @property
    def share(self) -> float:
        return self.used / self.quota if self.quota else 1.0


def quota_family(path: str) -> QuotaFamily:
    for prefix, family in _FAMILIES:
        if path.startswith(prefix):
            return family
    return QuotaFamily.OTHER


UsageHook = Callable[[str, QuotaFamily], None]  # (api path, family), called once per call answered


class DbUsageCounter:
    """A usage hook that adds one to `api_usage` (corp, month, family) with an atomic upsert."""

    def __init__(self, database: Database, corp_pk: int, timezone: str = "Asia/Shanghai",
                 now: Callable[[], datetime] = utcnow) -> None:
        self.db = database
        self.corp_pk = corp_pk
        self.tz = zoneinfo.ZoneInfo(timezone)
        self._now = now

    def month(self) -> str:
        return self._now().astimezone(self.tz).strftime("%Y-%m")

    def __call__(self, path: str, family: QuotaFamily) -> None:
        t = ApiUsage.__table__
        with self.db.session() as s:
            stmt = upsert_insert(s, t).values(
                corp_id=self.corp_pk, month=self.month(), family=str(family), count=1,
                updated_at=datetime.now(UTC),
            )
            s.execute(stmt.on_conflict_do_update(
                index_elements=["corp_id", "month", "family"],
                set_={"count": t.c.count + 1, "updated_at": stmt.excluded.updated_at},
            ))

    def totals(self, month: str | None = None) -> dict[str, int]:
        t = ApiUsage.__table__
        with self.db.session() as s:
            rows = s.execute(
                sa.select(t.c.family, t.c.count).where(t.c.corp_id == self.corp_pk,
                                                       t.c.month == (month or self.month()))
            ).all()
        return {r.family: r.count for r in rows}

    def quota_usage(self, quota: int = STANDARD_MONTHLY_QUOTA, month: str | None = None) -> QuotaUsage:
        """Used this month / quota, for the delivery layer to plan sends: only counted families add up."""
        month = month or self.month()
        totals = self.totals(month)
        used = sum(n for family, n in totals.items() if family in COUNTED_FAMILIES)
        return QuotaUsage(month=month, used=used, quota=quota, by_family=totals)
