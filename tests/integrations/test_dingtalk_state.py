"""DB-backed platform state on a real SQLite file: shared tokens, usage counts, rate limiter, event claims."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from integrations.dingtalk.events import claim_event, event_id_of, parse_event
from integrations.dingtalk.ratelimit import DbRateLimiter, RateLimitTimeout
from integrations.dingtalk.tokens import CachedToken, DbTokenStore, MemoryTokenStore, TokenCache
from integrations.dingtalk.usage import DbUsageCounter, quota_family
from models.platform import ApiUsage, PlatformToken, ProcessedEvent, RateWindow


class Clock:
    def __init__(self, t: float = 1_700_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s


# ---------------------------------------------------------------- tokens


def test_db_store_encrypts_value_at_rest(database, master_key):
    store = DbTokenStore(database, database.corp_pk, master_key)
    lease = store.try_lease("access_token", 10)
    store.save("access_token", CachedToken("very-secret-token", time.time() + 7200), lease)
    with database.session() as s:
        row = s.scalars(sa.select(PlatformToken)).one()
    assert "very-secret-token" not in (row.value_ciphertext or "")
    assert "very-secret-token" not in repr(row)
    assert row.refreshing_until is None and row.lease_owner is None
    loaded = store.load("access_token")
    assert loaded.value == "very-secret-token"
    assert abs(loaded.expires_at - (time.time() + 7200)) < 5


def test_db_store_wrong_master_key_means_refetch_not_crash(database, master_key):
    from cryptography.fernet import Fernet

    store = DbTokenStore(database, database.corp_pk, master_key)
    store.save("access_token", CachedToken("v", time.time() + 7200), store.try_lease("access_token", 10))
    other = DbTokenStore(database, database.corp_pk, Fernet.generate_key().decode())
    assert other.load("access_token") is None


def test_db_lease_is_exclusive_until_it_expires(database, master_key):
    clock = Clock(time.time())
    a = DbTokenStore(database, database.corp_pk, master_key, clock=clock)
    b = DbTokenStore(database, database.corp_pk, master_key, clock=clock)
    lease = a.try_lease("access_token", 15)
    assert lease is not None
    assert b.try_lease("access_token", 15) is None
    clock.t += 16
    assert b.try_lease("access_token", 15) is not None
    # The old holder can no longer clear someone else's lease.
    a.release("access_token", lease)
    assert a.try_lease("access_token", 15) is None


def test_two_processes_share_one_token_fetch(database, master_key):
    fetches = []

    def fetch():
        fetches.append(1)
        time.sleep(0.2)  # a slow token endpoint: the others must wait, not fetch too
        return f"token-{len(fetches)}", 7200

    caches = [TokenCache(DbTokenStore(database, database.corp_pk, master_key), poll_seconds=0.02)
              for _ in range(6)]
    results = []
    threads = [threading.Thread(target=lambda c=c: results.append(c.get("access_token", fetch))) for c in caches]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(fetches) == 1
    assert results == ["token-1"] * 6


def test_refresh_ahead_of_expiry_keeps_serving_old_token_while_someone_refreshes():
    clock = Clock()
    store = MemoryTokenStore(clock=clock)
    cache = TokenCache(store, clock=clock, sleep=clock.sleep, refresh_margin=600)
    assert cache.get("access_token", lambda: ("old", 7200)) == "old"
    clock.t += 7200 - 300  # inside the refresh margin, still valid for 5 minutes
    other = store.try_lease("access_token", 30)  # another process is refreshing right now
    assert other is not None
    fresh_cache = TokenCache(store, clock=clock, sleep=clock.sleep)
    assert fresh_cache.get("access_token", lambda: pytest.fail("must not fetch")) == "old"
    store.save("access_token", CachedToken("new", clock.t + 7200), other)
    assert cache.get("access_token", lambda: pytest.fail("must not fetch")) == "new"


def test_rejected_token_is_never_handed_out_again():
    clock = Clock()
    cache = TokenCache(MemoryTokenStore(clock=clock), clock=clock, sleep=clock.sleep)
    values = iter(["t1", "t2"])
    assert cache.get("access_token", lambda: (next(values), 7200)) == "t1"
    assert cache.get("access_token", lambda: (next(values), 7200), rejected="t1") == "t2"


def test_failed_fetch_releases_lease():
    clock = Clock()
    store = MemoryTokenStore(clock=clock)
    cache = TokenCache(store, clock=clock, sleep=clock.sleep)

    def boom():
        raise RuntimeError("token endpoint down")

    with pytest.raises(RuntimeError):
        cache.get("access_token", boom)
    assert store.try_lease("access_token", 10) is not None


def test_stuck_lease_holder_does_not_block_forever():
    clock = Clock()
    store = MemoryTokenStore(clock=clock)
    store.try_lease("access_token", 3600)  # holder died mid-refresh
    cache = TokenCache(store, clock=clock, sleep=clock.sleep, wait_seconds=5)
    assert cache.get("access_token", lambda: ("mine", 7200)) == "mine"
    assert clock.t >= 1_700_000_005


# ---------------------------------------------------------------- usage


def test_quota_families():
    assert quota_family("/topapi/message/corpconversation/asyncsend_v2") == "work_notification"
    assert quota_family("/v1.0/todo/users/u/tasks") == "todo"
    assert quota_family("/v1.0/workflow/processInstances") == "approval"
    assert quota_family("/topapi/v2/user/list") == "other"


def test_usage_counter_upserts_per_month_and_family(database):
    now = [datetime(2026, 3, 31, 16, 30, tzinfo=UTC)]  # 00:30 on 1 April in Shanghai
    counter = DbUsageCounter(database, database.corp_pk, "Asia/Shanghai", now=lambda: now[0])
    for _ in range(3):
        counter("/topapi/message/corpconversation/asyncsend_v2", quota_family("/topapi/message/corpconversation/"))
    counter("/topapi/v2/user/get", quota_family("/topapi/v2/user/get"))
    assert counter.totals("2026-04") == {"work_notification": 3, "other": 1}
    now[0] = datetime(2026, 4, 30, 17, 0, tzinfo=UTC)  # May in Shanghai
    counter("/v1.0/todo/users/u/tasks", quota_family("/v1.0/todo/"))
    assert counter.totals("2026-05") == {"todo": 1}
    with database.session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(ApiUsage)) == 3


def test_quota_usage_counts_only_the_counted_families(database):
    """Work notifications, to-dos and approvals use up the monthly quota; token, sign-in and contacts
    calls are tallied (under `other`) but do not."""
    now = [datetime(2026, 5, 31, 15, 59, tzinfo=UTC)]  # 23:59 on 31 May in Shanghai
    counter = DbUsageCounter(database, database.corp_pk, "Asia/Shanghai", now=lambda: now[0])
    calls = ["/v1.0/oauth2/accessToken", "/topapi/v2/user/getuserinfo", "/topapi/v2/user/list",
             "/topapi/v2/department/listsub", "/topapi/message/corpconversation/asyncsend_v2",
             "/topapi/message/corpconversation/getsendresult", "/v1.0/todo/users/u1/tasks",
             "/v1.0/workflow/processInstances"]
    for path in calls:
        counter(path, quota_family(path))
    may = counter.quota_usage(quota=5000)
    assert (may.month, may.used, may.quota, may.remaining) == ("2026-05", 4, 5000, 4996)
    assert may.by_family == {"other": 4, "work_notification": 2, "todo": 1, "approval": 1}
    now[0] = datetime(2026, 5, 31, 16, 0, tzinfo=UTC)  # midnight in Shanghai: a new month, a fresh quota
    counter("/v1.0/todo/users/u1/tasks", quota_family("/v1.0/todo/"))
    june = counter.quota_usage(quota=3)
    assert (june.month, june.used, june.remaining, round(june.share, 2)) == ("2026-06", 1, 2, 0.33)
    assert counter.quota_usage(quota=5000, month="2026-05").used == 4


def test_usage_counter_is_safe_under_threads(database):
    counter = DbUsageCounter(database, database.corp_pk)
    threads = [threading.Thread(target=lambda: [counter("/v1.0/todo/x", quota_family("/v1.0/todo/"))
                                                 for _ in range(10)]) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert counter.totals() == {"todo": 50}


# ---------------------------------------------------------------- rate limiter


def test_rate_limiter_spaces_calls_evenly(database):
    clock = Clock(1_700_000_000.25)
    limiter = DbRateLimiter(database, database.corp_pk, per_second=4, clock=clock, sleep=clock.sleep)
    starts = []
    for _ in range(5):
        limiter.acquire("/topapi/v2/user/list")
        starts.append(clock.t)
    # The current slot (it began at .25) is free, then one call every 1/4 s: never a burst.
    assert starts == pytest.approx([1_700_000_000.25, 1_700_000_000.5, 1_700_000_000.75, 1_700_000_001.0,
                                    1_700_000_001.25])
    # Another API has its own slots.
    limiter.acquire("/topapi/v2/user/get")
    assert clock.t == pytest.approx(1_700_000_001.25)


def test_rate_limiter_shared_between_limiter_instances(database):
    """Two instances (think: two processes) never get the same slot."""
    clock = Clock(1_700_000_000.0)
    a = DbRateLimiter(database, database.corp_pk, per_second=2, clock=clock, sleep=clock.sleep)
    b = DbRateLimiter(database, database.corp_pk, per_second=2, clock=clock, sleep=clock.sleep)
    assert a.reserve("api") == pytest.approx(1_700_000_000.0)
    assert b.reserve("api") == pytest.approx(1_700_000_000.5)
    assert a.reserve("api") == pytest.approx(1_700_000_001.0)
    assert b.reserve("api") == pytest.approx(1_700_000_001.5)


def test_rate_limiter_never_hands_out_a_slot_already_under_way(database):
    clock = Clock(1_700_000_000.30)
    limiter = DbRateLimiter(database, database.corp_pk, per_second=4, clock=clock, sleep=clock.sleep)
    limiter.acquire("api")
    # The slot that began at .25 is 50 ms old: sending in it would land as late as a slow wake-up.
    assert clock.t == pytest.approx(1_700_000_000.5)


class LateClock(Clock):
    """Each sleep overshoots by the next of `lateness` seconds: a thread woken late under load."""

    def __init__(self, t: float, lateness: list[float]):
        super().__init__(t)
        self.lateness = list(lateness)

    def sleep(self, s: float) -> None:
        self.t += s + (self.lateness.pop(0) if self.lateness else 0.0)


def test_rate_limiter_caller_waking_late_gives_its_slot_up(database):
    clock = LateClock(1_700_000_000.0, [0.03, 0.005])
    limiter = DbRateLimiter(database, database.corp_pk, per_second=4, clock=clock, sleep=clock.sleep,
                            late_tolerance=0.02)
    limiter.acquire("api")  # the slot beginning now: no sleep, not late
    assert clock.t == pytest.approx(1_700_000_000.0)
    limiter.acquire("api")
    # Woke 30 ms after the .25 slot began: that slot stays empty; the .5 slot was reached 5 ms late, in time.
    assert clock.t == pytest.approx(1_700_000_000.505)
    assert limiter.given_up == 1
    with database.session() as s:
        slots = s.scalars(sa.select(RateWindow.window).where(RateWindow.api == "api").order_by(RateWindow.window))
        assert list(slots) == [6_800_000_000, 6_800_000_001, 6_800_000_002]
    other = DbRateLimiter(database, database.corp_pk, per_second=4, clock=clock, sleep=clock.sleep)
    assert other.reserve("api") == pytest.approx(1_700_000_000.75)


def test_rate_limiter_late_every_time_gives_up_within_max_wait(database):
    clock = LateClock(1_700_000_000.1, [1.01] * 10)
    limiter = DbRateLimiter(database, database.corp_pk, per_second=4, clock=clock, sleep=clock.sleep,
                            max_wait=2.0)
    with pytest.raises(RateLimitTimeout):
        limiter.acquire("api")
    assert limiter.given_up == 2


def test_rate_limiter_gives_up_after_max_wait(database):
    clock = Clock(1_700_000_000.0)
    limiter = DbRateLimiter(database, database.corp_pk, per_second=1, clock=clock, sleep=lambda s: None,
                            max_wait=0)
    limiter.acquire("api")
    with pytest.raises(RateLimitTimeout):
        limiter.acquire("api")


def test_rate_limiter_never_exceeds_limit_per_second_under_threads(database):
    """Threads of two limiter instances: every granted slot is a distinct row, and no one-second
    interval holds more than the limit."""
    limiters = [DbRateLimiter(database, database.corp_pk, per_second=10) for _ in range(2)]
    granted: list[float] = []
    lock = threading.Lock()

    def work(limiter):
        for _ in range(4):
            start = limiter.reserve("/topapi/v2/user/list")
            with lock:
                granted.append(start)

    threads = [threading.Thread(target=work, args=(limiters[i % 2],)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(granted) == 24 and len(set(granted)) == 24
    granted.sort()
    assert all(b - a >= 0.1 - 1e-6 for a, b in zip(granted, granted[1:], strict=False))
    with database.session() as s:
        rows = s.scalars(sa.select(RateWindow.count).where(RateWindow.api == "/topapi/v2/user/list")).all()
    assert len(rows) == 24 and set(rows) == {1}


# ---------------------------------------------------------------- events


def test_parse_event_accepts_both_casings():
    new = parse_event({"EventType": "user_add_org", "eventId": "e1", "userId": ["u1", "u2"], "CorpId": "d"})
    old = parse_event({"EventType": "user_leave_org", "UserId": ["u3"], "TimeStamp": "1"})
    dept = parse_event({"EventType": "org_dept_remove", "DeptId": [42]})
    assert (new.kind, new.user_ids, new.event_id) == ("user_upsert", ("u1", "u2"), "e1")
    assert (old.kind, old.user_ids) == ("user_leave", ("u3",))
    assert (dept.kind, dept.dept_ids) == ("dept_remove", ("42",))
    assert parse_event({"EventType": "check_url"}) is None


def test_event_id_fallback_is_stable():
    a = {"EventType": "user_add_org", "UserId": ["u1"], "TimeStamp": "1"}
    assert event_id_of(a) == event_id_of(dict(reversed(list(a.items()))))
    assert event_id_of(a) != event_id_of({**a, "TimeStamp": "2"})


def test_claim_event_only_once(database):
    with database.session() as s:
        assert claim_event(s, database.corp_pk, "evt-1", "user_add_org") is True
    with database.session() as s:
        assert claim_event(s, database.corp_pk, "evt-1", "user_add_org") is False
        assert claim_event(s, database.corp_pk, "evt-2") is True
    with database.session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(ProcessedEvent)) == 2


def test_claim_event_rolled_back_with_failed_work(database):
    with pytest.raises(RuntimeError), database.session() as s:
        claim_event(s, database.corp_pk, "evt-9")
        raise RuntimeError("handler failed")
    with database.session() as s:
        assert claim_event(s, database.corp_pk, "evt-9") is True
