"""WeCom's per-API rate limit, shared by every thread and process calling for one corp.

WeCom counts each API per corp over a minute: 10 000 calls/min and 150 000/hour (fact sheet §8). Unlike
DingTalk it does not count the arrival second, so calls need no even spacing, only a cap on how many
leave in any minute. Time is cut into one-second windows, each admitting `per_second` calls; a process
takes them from the shared `rate_windows` row in blocks (one upsert per block, not one per call, which
kept a full sync's listing threads queueing on the database behind the applier's writes), then hands
them to its threads.

Every call leaves inside the window its token belongs to or less than one second after it ends (older
tokens are thrown away), so any 60-second interval sees calls from at most 62 windows: 62 × 160 = 9 920
stays under 10 000. A block that does not fit in a window's remainder skips to the next window; what
that leaves unused is at most one block per process per window.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import sqlalchemy as sa

from integrations.dingtalk.ratelimit import RateLimitTimeout
from integrations.dingtalk.sqlutil import upsert_insert
from models.db import Database
from models.platform import RateWindow

DEFAULT_PER_SECOND = 160
DEFAULT_BLOCK = 16


class DbWindowLimiter:
    def __init__(
        self,
        database: Database,
        corp_pk: int,
        per_second: int = DEFAULT_PER_SECOND,
        *,
        block: int = DEFAULT_BLOCK,
        max_wait: float = 30.0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.db = database
        self.corp_pk = corp_pk
        self.per_second = per_second
        self.block = max(1, min(block, per_second))
        self.max_wait = max_wait
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens: dict[str, tuple[int, int]] = {}  # api → (window, calls left in it for this process)
        self._next: dict[str, int] = {}  # api → first window this process has not found full
        self._last_cleanup = 0.0
        self.claims = 0  # statements issued, for tests and benchmarks

    def _claim(self, api: str, window: int, size: int) -> bool:
        t = RateWindow.__table__
        with self.db.engine.begin() as conn:
            stmt = upsert_insert(conn, t).values(corp_id=self.corp_pk, api=api, window=window, count=size)
            stmt = stmt.on_conflict_do_update(
                index_elements=["corp_id", "api", "window"], set_={"count": t.c.count + size},
                where=t.c.count + size <= self.per_second,
            ).returning(t.c.window)
            return conn.execute(stmt).first() is not None

    def reserve(self, api: str) -> int:
        """Take one call from a window that has not ended; returns the window (its start in Unix seconds)."""
        with self._lock:
            now = self._clock()
            window, left = self._tokens.get(api, (0, 0))
            if left > 0 and window + 1 > now - 1:
                self._tokens[api] = (window, left - 1)
                return window
            window = max(int(now), self._next.get(api, 0))
            while True:
                if window - now > self.max_wait:
                    raise RateLimitTimeout(f"no rate-limit window for {api} within {self.max_wait}s")
                self.claims += 1
                if self._claim(api, window, self.block):
                    break
                window += 1
            self._next[api] = window
            self._tokens[api] = (window, self.block - 1)
        self._maybe_cleanup(now)
        return window

    def acquire(self, api: str) -> None:
        """Block until a call to `api` may leave (or raise `RateLimitTimeout`)."""
        window = self.reserve(api)
        wait = window - self._clock()
        if wait > 0:
            self._sleep(wait)

    def _maybe_cleanup(self, now: float) -> None:
        # Windows more than a minute old count for nothing any more; prune at most once a minute.
        if now - self._last_cleanup < 60:
            return
        self._last_cleanup = now
        t = RateWindow.__table__
        with self.db.engine.begin() as conn:
            conn.execute(sa.delete(t).where(t.c.corp_id == self.corp_pk, t.c.window < int(now) - 120))
