"""A rate limiter shared by every thread and process that calls the platform for one corp.

DingTalk allows 20 calls per second per app per API (fact sheet §2.3) and answers 90018 beyond it.
Workers, the scheduler, web processes and syncs may run on several hosts, and Redis is not part of the
stack, so the shared state lives in the database, in `rate_windows` rows keyed (corp, api, slot).

Time is cut into slots of 1/rate seconds and each slot admits one call: a caller claims the first
free slot at or after "now" with `INSERT … ON CONFLICT DO NOTHING` (atomic on SQLite and PostgreSQL,
so two processes can never both win a slot) and sleeps until the slot begins. Calls therefore leave
evenly spaced instead of in bursts at the start of each second: a fixed one-second window let a burst
sent just before a second boundary land, 50 ms later, in the same DingTalk second as the next burst.
With even spacing any one-second interval holds at most `rate` slot starts, and the default of 17/s
leaves three slots of headroom below DingTalk's 20 for jitter (a call's arrival moves with thread
scheduling and network time; at 18/s a heavily loaded host still met a 90018 about once per thousand
calls). The wall-time cost is 20/17 ≈ 1.18× the theoretical bound.

Each process remembers the last slot it claimed per API, so its own threads do not probe slots it
already holds; another process's claims cost one extra probe each.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import sqlalchemy as sa

from integrations.dingtalk.sqlutil import upsert_insert
from models.db import Database
from models.platform import RateWindow

DEFAULT_PER_SECOND = 17


class RateLimitTimeout(Exception):
    """No slot became free within the caller's wait budget."""


class DbRateLimiter:
    def __init__(
        self,
        database: Database,
        corp_pk: int,
        per_second: int = DEFAULT_PER_SECOND,
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
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._last_slot: dict[str, int] = {}
        self.claims = 0  # statements issued, for tests and benchmarks
        self.waited = 0.0  # seconds spent sleeping for slots

    def rate(self, api: str) -> int:
        return int(self.limits.get(api, self.per_second))

    def _lock(self, api: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(api, threading.Lock())

    def _claim(self, api: str, slot: int) -> bool:
        t = RateWindow.__table__
        with self.db.session() as s:
            # RETURNING rather than rowcount: psycopg reports -1 for ON CONFLICT DO NOTHING here.
            won = s.execute(
                upsert_insert(s, t)
                .values(corp_id=self.corp_pk, api=api, window=slot, count=1)
                .on_conflict_do_nothing(index_elements=["corp_id", "api", "window"])
                .returning(t.c.window)
            ).first()
            return won is not None

    def reserve(self, api: str) -> float:
        """Claim the next free slot for `api`; return the time it starts (may be in the past)."""
        rate = self.rate(api)
        with self._lock(api):
            now = self._clock()
            slot = max(int(now * rate), self._last_slot.get(api, -1) + 1)
            while True:
                start = slot / rate
                if start - now > self.max_wait:
                    raise RateLimitTimeout(f"no rate-limit slot for {api} within {self.max_wait}s")
                self.claims += 1
                if self._claim(api, slot):
                    break
                slot += 1
            self._last_slot[api] = slot
        self._maybe_cleanup(now)
        return start

    def acquire(self, api: str) -> None:
        """Block until this caller's slot for `api` begins (or raise `RateLimitTimeout`)."""
        start = self.reserve(api)
        wait = start - self._clock()
        if wait > 0:
            self.waited += wait
            self._sleep(wait)

    def _maybe_cleanup(self, now: float) -> None:
        # Past slots are useless; prune at most once a minute per process.
        if now - self._last_cleanup < 60 or not self._cleanup_lock.acquire(blocking=False):
            return
        try:
            self._last_cleanup = now
            t = RateWindow.__table__
            with self.db.session() as s:
                for api in list(self._last_slot):
                    s.execute(sa.delete(t).where(t.c.corp_id == self.corp_pk, t.c.api == api,
                                                 t.c.window < int((now - 60) * self.rate(api))))
        finally:
            self._cleanup_lock.release()


class NoRateLimit:
    def acquire(self, api: str) -> None:
        return None
