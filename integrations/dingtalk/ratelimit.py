"""A rate limiter shared by every thread and process that calls the platform for one corp.

DingTalk allows 20 calls per second per app per API (fact sheet §2.3) and answers 90018 beyond it; it
counts a call in the second it arrives. Workers, the scheduler, web processes and syncs may run on several
hosts, and Redis is not part of the stack, so the shared state lives in the database, in `rate_windows`
rows keyed (corp, api, slot).

Time is cut into slots of 1/rate seconds and each slot admits one call: a caller claims the first free
slot that has not begun yet with `INSERT … ON CONFLICT DO NOTHING` (atomic on SQLite and PostgreSQL, so
two processes can never both win a slot) and sleeps until the slot begins. Calls therefore leave evenly
spaced instead of in bursts at the start of each second: a fixed one-second window let a burst sent just
before a second boundary land, 50 ms later, in the same DingTalk second as the next burst.

Even spacing alone does not bound what the platform counts: a call that leaves late (the claim took long, the
thread woke late under load, the GIL was busy) lands in the next second beside that second's own calls. So a
caller that wakes more than `late_tolerance` after its slot began does not send: it gives the slot up (nobody
else may use it; it simply stays empty) and claims a fresh one. Every call thus leaves within `late_tolerance`
of its own slot start, and any one-second interval at the platform holds at most `ceil(rate × (1 + spread))`
calls, where the spread is the tolerance plus the variation of the time from leaving to being counted. At the
default 18/s that stays ≤ 20 while the spread is below 2/18 s ≈ 111 ms, i.e. up to ~90 ms of variation beyond
the 20 ms tolerance. 19/s would leave only 1/19 s − 20 ms ≈ 32 ms: a full-size burst with two CPU hogs beside
it met two 90018 there (99th percentile of arrival after slot start: 39 ms). 20/s cannot be made safe this way
at all: every second would hold exactly 20 slot starts, so any lateness pushes a 21st call into some second.
The wall-time cost of 18/s is 20/18 ≈ 1.11× the documented bound (the previous 17/s, with no give-up, cost
1.18×); a rare 90018 beyond all this is answered with the client's one retry after 1 s.

Each process remembers the last slot it claimed per API, so its own threads do not probe slots it
already holds; another process's claims cost one extra probe each.
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

DEFAULT_PER_SECOND = 18
# A caller waking later than this after its slot began gives the slot up instead of sending late.
LATE_TOLERANCE = 0.020


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
        late_tolerance: float = LATE_TOLERANCE,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        limits: dict[str, int] | None = None,
    ) -> None:
        self.db = database
        self.corp_pk = corp_pk
        self.per_second = per_second
        self.limits = dict(limits or {})
        self.max_wait = max_wait
        self.late_tolerance = late_tolerance
        self._clock = clock
        self._sleep = sleep
        self._last_cleanup = 0.0
        self._cleanup_lock = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._last_slot: dict[str, int] = {}
        self._claim_seconds = 0.0  # a claim's recent round trip to the database (moving average)
        self.claims = 0  # statements issued, for tests and benchmarks
        self.waited = 0.0  # seconds spent sleeping for slots
        self.given_up = 0  # slots left empty because their caller woke too late for them

    def rate(self, api: str) -> int:
        return int(self.limits.get(api, self.per_second))

    def _lock(self, api: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(api, threading.Lock())

    def _claim(self, api: str, slot: int) -> bool:
        t = RateWindow.__table__
        # A bare connection, not an ORM session: this runs before every platform call, so its cost (and
        # the lateness it adds under load) is kept to the one statement.
        with self.db.engine.begin() as conn:
            # RETURNING rather than rowcount: psycopg reports -1 for ON CONFLICT DO NOTHING here.
            won = conn.execute(
                upsert_insert(conn, t)
                .values(corp_id=self.corp_pk, api=api, window=slot, count=1)
                .on_conflict_do_nothing(index_elements=["corp_id", "api", "window"])
                .returning(t.c.window)
            ).first()
            return won is not None

    def reserve(self, api: str) -> float:
        """Claim the first free slot for `api` that has not begun yet; return the time it starts."""
        rate = self.rate(api)
        with self._lock(api):
            now = self._clock()
            # A slot already under way is never handed out, nor one that begins before a claim is likely
            # to be committed (twice the recent average: claims slow down together under load): sending
            # in either would already be late, and its caller would only give it up.
            lead = 2 * self._claim_seconds
            slot = max(math.ceil((now + lead) * rate - 1e-6), self._last_slot.get(api, -1) + 1)
            while True:
                start = slot / rate
                if start - now > self.max_wait:
                    raise RateLimitTimeout(f"no rate-limit slot for {api} within {self.max_wait}s")
                self.claims += 1
                began = self._clock()
                won = self._claim(api, slot)
                self._claim_seconds = 0.8 * self._claim_seconds + 0.2 * max(0.0, self._clock() - began)
                if won:
                    break
                slot += 1
            self._last_slot[api] = slot
        self._maybe_cleanup(now)
        return start

    def acquire(self, api: str) -> None:
        """Block until this caller's slot for `api` begins (or raise `RateLimitTimeout`); the caller sends
        right after. A caller that got there more than `late_tolerance` late takes a fresh slot instead."""
        deadline = self._clock() + self.max_wait
        while True:
            start = self.reserve(api)
            wait = start - self._clock()
            if wait > 0:
                self.waited += wait
                self._sleep(wait)
            now = self._clock()
            if now - start <= self.late_tolerance:
                return
            self.given_up += 1
            if now > deadline:
                raise RateLimitTimeout(f"no rate-limit slot for {api} reached in time within {self.max_wait}s")

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
