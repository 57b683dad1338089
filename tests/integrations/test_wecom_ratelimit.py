"""WeCom's per-minute limiter on the real database: windows of one second, claimed in blocks."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
import sqlalchemy as sa

from integrations.dingtalk.ratelimit import RateLimitTimeout
from integrations.wecom.ratelimit import DbWindowLimiter
from models.platform import RateWindow


class Clock:
    def __init__(self, t: float = 1_700_000_000.25):
        self.t = t

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s


def _counts(database) -> dict[int, int]:
    with database.session() as s:
        rows = s.execute(sa.select(RateWindow.window, RateWindow.count).where(RateWindow.api == "user/list"))
        return dict(rows.all())


def test_one_statement_per_block_and_calls_leave_at_once(database):
    clock = Clock()
    limiter = DbWindowLimiter(database, database.corp_pk, per_second=10, block=4, clock=clock, sleep=clock.sleep)
    for _ in range(8):
        limiter.acquire("user/list")
    # No spacing inside a window (WeCom counts per minute), and two claims of 4 for 8 calls.
    assert clock.t == 1_700_000_000.25
    assert limiter.claims == 2
    assert _counts(database) == {1_700_000_000: 8}


def test_full_window_moves_callers_to_the_next_second(database):
    clock = Clock()
    a = DbWindowLimiter(database, database.corp_pk, per_second=4, block=2, clock=clock, sleep=clock.sleep)
    b = DbWindowLimiter(database, database.corp_pk, per_second=4, block=2, clock=clock, sleep=clock.sleep)
    a.acquire("user/list")
    b.acquire("user/list")
    a.acquire("user/list")  # from a's own block
    b.acquire("user/list")
    assert clock.t == 1_700_000_000.25
    a.acquire("user/list")  # the window is full: a waits for the next one
    assert clock.t == 1_700_000_001.0
    assert _counts(database) == {1_700_000_000: 4, 1_700_000_001: 2}


def test_tokens_of_a_window_long_gone_are_not_used(database):
    clock = Clock()
    limiter = DbWindowLimiter(database, database.corp_pk, per_second=10, block=4, clock=clock, sleep=clock.sleep)
    limiter.acquire("user/list")
    clock.t += 0.9  # still inside the second after its window: the block's tokens are good
    limiter.acquire("user/list")
    assert limiter.claims == 1
    clock.t += 1.0  # two seconds on: a call now would stretch a minute past 60 windows
    limiter.acquire("user/list")
    assert limiter.claims == 2
    assert _counts(database) == {1_700_000_000: 4, 1_700_000_002: 4}


def test_no_window_within_max_wait_raises(database):
    clock = Clock()
    limiter = DbWindowLimiter(database, database.corp_pk, per_second=2, block=2, max_wait=1.0, clock=clock,
                              sleep=lambda s: None)
    for _ in range(4):
        limiter.acquire("user/list")
    with pytest.raises(RateLimitTimeout):
        limiter.acquire("user/list")


def test_threads_of_two_processes_never_overfill_a_window(database):
    limiters = [DbWindowLimiter(database, database.corp_pk, per_second=20, block=3) for _ in range(2)]
    windows: list[int] = []
    lock = threading.Lock()

    def work(limiter):
        for _ in range(10):
            w = limiter.reserve("user/list")
            with lock:
                windows.append(w)

    threads = [threading.Thread(target=work, args=(limiters[i % 2],)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(windows) == 60
    assert max(Counter(windows).values()) <= 20
    assert all(n <= 20 for n in _counts(database).values())
