"""A rate limiter shared by every thread and process that calls the platform for one corp.

DingTalk allows 20 calls per second per app per API (fact sheet §2.3) and answers 90018 beyond it.
Workers, the scheduler and web processes may run on several hosts, and Redis is not part of the stack,
so the shared counter lives in the database: one `rate_windows` row per (corp, api, unix second).
Taking a slot is a single conditional UPDATE `count = count + 1 WHERE count < limit`, which both
SQLite and PostgreSQL execute atomically; a full window makes the caller sleep to the next second.

This is a fixed window on the caller's clock while DingTalk counts arrivals on its own: a slot taken at
the very end of one second may land in the next, so the default limit (15) keeps headroom below
DingTalk's 20, and the client absorbs a rare 90018 with one sleep-and-retry. Each slot costs one short
write transaction, which is cheap next to a platform round trip.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

import sqlalchemy as sa

from integrations.dingtalk.sqlutil import upsert_insert
from models.db import Database
from models.platform import RateWindow


class RateLimitTimeout(Exception):
    """No slot became free within the caller's wait budget."""


class DbRateLimiter:
    def __init__(
        self,
        database: Database,
        corp_pk: int,
        per_second: int = 15,
        *,
        max_wait: float = 30.0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        limits: dict[str, int] | None = None,
    ) -> None:
        self.db = database
        self.corp_pk = corp_pk
        self.per_second = per_second
        self.limits = dict(limits or {})
        self.max_wait = max_wait
        self._clock = clock
        self._sleep = sleep
        self._last_cleanup = 0.0
        self._cleanup_lock = threading.Lock()

    def _try(self, api: str, window: int, limit: int) -> bool:
        t = RateWindow.__table__
        with self.db.session() as s:
            s.execute(
                upsert_insert(s, t)
                .values(corp_id=self.corp_pk, api=api, window=window, count=0)
                .on_conflict_do_nothing(index_elements=["corp_id", "api", "window"])
            )
            result = s.execute(
                t.update()
                .where(t.c.corp_id == self.corp_pk, t.c.api == api, t.c.window == window,
                       t.c.count < limit)
                .values(count=t.c.count + 1)
            )
            return result.rowcount == 1

    def acquire(self, api: str) -> None:
        """Block until a slot for `api` is free in the current second (or raise `RateLimitTimeout`)."""
        limit = self.limits.get(api, self.per_second)
        deadline = self._clock() + self.max_wait
        while True:
            now = self._clock()
            window = int(now)
            if self._try(api, window, limit):
                self._maybe_cleanup(now)
                return
            if now >= deadline:
                raise RateLimitTimeout(f"no rate-limit slot for {api} within {self.max_wait}s")
            self._sleep(max(0.001, math.floor(now) + 1 - now))

    def _maybe_cleanup(self, now: float) -> None:
        # Old windows are useless; prune at most once a minute per process.
        if now - self._last_cleanup < 60 or not self._cleanup_lock.acquire(blocking=False):
            return
        try:
            self._last_cleanup = now
            t = RateWindow.__table__
            with self.db.session() as s:
                s.execute(sa.delete(t).where(t.c.corp_id == self.corp_pk, t.c.window < int(now) - 60))
        finally:
            self._cleanup_lock.release()


class NoRateLimit:
    def acquire(self, api: str) -> None:
        return None
