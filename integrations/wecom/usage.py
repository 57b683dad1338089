"""Counting WeCom API calls for the admin console, a batch at a time.

WeCom has no monthly call quota like DingTalk's (its limits are per minute and per hour, fact sheet §8),
so the counts are for visibility only. Writing one row update per call cost as much CPU as the call
itself during a full sync; here calls are summed in memory and added to `api_usage` at most once a
second (or every 200 calls). A crash loses at most that last second of counts, which only affects the
statistics.
"""

from __future__ import annotations

import threading
import time
import zoneinfo
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime

from integrations.dingtalk.sqlutil import upsert_insert
from models.db import Database
from models.platform import ApiUsage, QuotaFamily


class BatchedUsageCounter:
    def __init__(self, database: Database, corp_pk: int, timezone: str = "Asia/Shanghai", *,
                 every_seconds: float = 1.0, every_calls: int = 200,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.db = database
        self.corp_pk = corp_pk
        self.tz = zoneinfo.ZoneInfo(timezone)
        self.every_seconds = every_seconds
        self.every_calls = every_calls
        self._clock = clock
        self._pending: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._last = clock()

    def __call__(self, path: str, family: QuotaFamily) -> None:
        with self._lock:
            self._pending[str(family)] += 1
            due = sum(self._pending.values()) >= self.every_calls or self._clock() - self._last >= self.every_seconds
        if due:
            self.flush()

    def flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, Counter()
            self._last = self._clock()
        if not pending:
            return
        t = ApiUsage.__table__
        now = datetime.now(UTC)
        month = now.astimezone(self.tz).strftime("%Y-%m")
        with self.db.session() as s:
            for family, n in pending.items():
                stmt = upsert_insert(s, t).values(corp_id=self.corp_pk, month=month, family=family, count=n,
                                                  updated_at=now)
                s.execute(stmt.on_conflict_do_update(
                    index_elements=["corp_id", "month", "family"],
                    set_={"count": t.c.count + n, "updated_at": stmt.excluded.updated_at},
                ))
