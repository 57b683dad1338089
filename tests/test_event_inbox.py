"""The event inbox and the org-event service with a fake platform (no network): once-only storage,
claiming, retry with back-off, failure, and the pick-up of pending events after a crash."""

from __future__ import annotations

import base64
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
import sqlalchemy as sa

from app.services import event_inbox, org_events
from app.services.corps import SecretBox, create_corp
from integrations.base import (
    NotFoundError,
    OrgEvent,
    PermissionDeniedError,
    PlatformClient,
    PlatformDepartment,
    PlatformUser,
    RetryableError,
)
from integrations.sandbox.wecom_events import event_xml
from integrations.wecom.crypto import WeComCrypto
from models.inbox import EventState, PlatformEvent
from models.org import Department, User, UserDepartment
from models.types import utcnow
from tests import factories


class FakePlatform(PlatformClient):
    platform = "fake"

    def __init__(self, users=(), depts=()):
        self.users = {u.userid: u for u in users}
        self.depts = {d.dept_id: d for d in depts}
        self.fail_with: Exception | None = None
        self.calls: list[tuple[str, str]] = []

    def _maybe_fail(self):
        if self.fail_with is not None:
            raise self.fail_with

    def get_user(self, userid):
        self.calls.append(("get_user", userid))
        self._maybe_fail()
        if userid not in self.users:
            raise NotFoundError("gone", code=60121)
        return self.users[userid]

    def get_department(self, dept_id):
        self.calls.append(("get_department", dept_id))
        self._maybe_fail()
        if dept_id not in self.depts:
            raise NotFoundError("gone", code=60003)
        return self.depts[dept_id]

    def test_connection(self):
        raise NotImplementedError

    def exchange_sign_in_code(self, code):
        raise NotImplementedError

    def js_config(self, url):
        raise NotImplementedError

    def list_sub_departments(self, dept_id):
        raise NotImplementedError

    def list_department_users(self, dept_id, cursor=None):
        raise NotImplementedError

    def send_message(self, userids, message):
        raise NotImplementedError


@pytest.fixture
def world(session):
    org = factories.org(session)
    session.commit()
    return org


def _event(kind, event_id="e1", users=(), depts=()):
    return OrgEvent(event_id=event_id, kind=kind, user_ids=tuple(users), dept_ids=tuple(depts), raw={"x": 1})


def _store(database, corp_pk, event, event_type="user_add_org"):
    with database.session() as s:
        return event_inbox.record_event(s, corp_pk, event, event_type=event_type, source="http")


def test_record_event_is_once_per_corp_and_event_id(database, world):
    first = _store(database, world.corp.id, _event("user_upsert", "evt-1", ["u1"]))
    again = _store(database, world.corp.id, _event("user_upsert", "evt-1", ["u1"]))
    other = _store(database, world.corp.id, _event("user_upsert", "evt-2", ["u1"]))
    assert isinstance(first, int) and again is None and other not in (None, first)
    with database.session() as s:
        rows = s.execute(sa.select(PlatformEvent).order_by(PlatformEvent.id)).scalars().all()
    assert [(r.event_id, r.state, r.attempts) for r in rows] == [("evt-1", "pending", 0), ("evt-2", "pending", 0)]
    assert rows[0].payload == {"kind": "user_upsert", "user_ids": ["u1"], "dept_ids": [], "raw": {"x": 1}}


def test_user_join_creates_the_user_and_fetches_unknown_departments(database, world):
    new_dept = PlatformDepartment("900", world.sales.platform_dept_id, "西北组")
    person = PlatformUser(userid="newbie", name="新人", unionid="un-newbie", department_ids=("900",))
    fake = FakePlatform(users=[person], depts=[new_dept])
    pk = _store(database, world.corp.id, _event("user_upsert", users=["newbie"]))
    assert event_inbox.apply_event(database, pk, clients=lambda corp: fake) == EventState.APPLIED
    with database.session() as s:
        user = s.execute(sa.select(User).where(User.platform_userid == "newbie")).scalar_one()
        dept = s.execute(sa.select(Department).where(Department.platform_dept_id == "900")).scalar_one()
        assert user.unionid == "un-newbie" and user.main_department_id == dept.id
        assert dept.parent_id == world.sales.id and dept.path == f"{world.sales.path}{dept.id}/"
        assert s.execute(
            sa.select(UserDepartment.department_id).where(UserDepartment.user_id == user.id)
        ).scalars().all() == [dept.id]
        row = s.get(PlatformEvent, pk)
        assert row.applied_at is not None and row.attempts == 1 and row.locked_until is None
    # Applied rows cannot be claimed again.
    assert event_inbox.apply_event(database, pk, clients=lambda corp: fake) is None


def test_leave_deactivates_and_hands_over_by_pool_policy(database, world):
    with database.session() as s:
        corp = s.merge(world.corp)
        corp.settings = {**corp.settings, "leaver_policy": "pool"}
        alice = s.merge(world.alice)
        c1 = factories.customer(s, corp, alice).id
    pk = _store(database, world.corp.id, _event("user_leave", users=[world.alice.platform_userid]), "user_leave_org")
    fake = FakePlatform()
    assert event_inbox.apply_event(database, pk, clients=lambda corp: fake) == EventState.APPLIED
    assert fake.calls == []  # a leave is taken from the event itself
    from models.crm import Customer

    with database.session() as s:
        assert s.get(User, world.alice.id).active is False
        customer = s.get(Customer, c1)
        assert customer.owner_id is None and customer.in_pool is True


def test_join_of_someone_who_no_longer_resolves_deactivates_them(database, world):
    pk = _store(database, world.corp.id, _event("user_upsert", users=[world.bob.platform_userid]), "user_modify_org")
    assert event_inbox.apply_event(database, pk, clients=lambda corp: FakePlatform()) == EventState.APPLIED
    with database.session() as s:
        assert s.get(User, world.bob.id).active is False


def test_retryable_failure_stays_pending_then_the_sweep_applies_it(database, settings, world):
    person = PlatformUser(userid="later", name="稍后", department_ids=(world.east.platform_dept_id,))
    fake = FakePlatform(users=[person])
    fake.fail_with = RetryableError("busy", code=-1, retry_after=1)
    pk = _store(database, world.corp.id, _event("user_upsert", users=["later"]))
    assert event_inbox.apply_event(database, pk, clients=lambda corp: fake) == EventState.PENDING
    with database.session() as s:
        row = s.get(PlatformEvent, pk)
        assert row.attempts == 1 and "busy" in row.error and row.locked_until > utcnow()
    # Backing off: nothing to pick up yet.
    assert event_inbox.apply_pending_events(database, settings, clients=lambda corp: fake) == 0
    fake.fail_with = None
    with database.session() as s:
        s.get(PlatformEvent, pk).locked_until = utcnow() - timedelta(seconds=1)
    assert event_inbox.apply_pending_events(database, settings, corp_id=world.corp.id, clients=lambda corp: fake) == 1
    with database.session() as s:
        row = s.get(PlatformEvent, pk)
        assert row.state == EventState.APPLIED and row.error is None and row.attempts == 2
        assert s.execute(sa.select(User).where(User.platform_userid == "later")).scalar_one().active


def test_non_retryable_failure_is_parked_as_failed_and_nothing_written(database, world):
    fake = FakePlatform(users=[PlatformUser(userid="x1", name="某人")])
    fake.fail_with = PermissionDeniedError("no contacts permission", code=60011)
    pk = _store(database, world.corp.id, _event("user_upsert", users=["x1"]))
    assert event_inbox.apply_event(database, pk, clients=lambda corp: fake) == EventState.FAILED
    with database.session() as s:
        row = s.get(PlatformEvent, pk)
        assert row.state == EventState.FAILED and "60011" in row.error
        assert s.execute(sa.select(User).where(User.platform_userid == "x1")).first() is None


def test_a_crash_mid_apply_leaves_the_event_claimable_after_the_lease(database, settings, world):
    pk = _store(database, world.corp.id, _event("user_leave", users=[world.bob.platform_userid]))
    with database.session() as s:  # an applier claimed it and died
        s.get(PlatformEvent, pk).locked_until = utcnow() + timedelta(seconds=60)
    assert event_inbox.apply_pending_events(database, settings, clients=lambda corp: FakePlatform()) == 0
    with database.session() as s:
        s.get(PlatformEvent, pk).locked_until = utcnow() - timedelta(seconds=1)
    assert event_inbox.apply_pending_events(database, settings, clients=lambda corp: FakePlatform()) == 1


def test_department_events(database, world):
    fake = FakePlatform(
        depts=[PlatformDepartment(world.south.platform_dept_id, world.sales.platform_dept_id, "华南大组")]
    )
    pk = _store(database, world.corp.id, _event("dept_upsert", depts=[world.south.platform_dept_id]), "org_dept_modify")
    assert event_inbox.apply_event(database, pk, clients=lambda corp: fake) == EventState.APPLIED
    with database.session() as s:
        assert s.get(Department, world.south.id).name == "华南大组"
    pk = _store(
        database, world.corp.id, _event("dept_remove", "e2", depts=[world.south.platform_dept_id]), "org_dept_remove"
    )
    assert event_inbox.apply_event(database, pk, clients=lambda corp: fake) == EventState.APPLIED
    with database.session() as s:
        assert s.get(Department, world.south.id) is None
        assert s.get(User, world.bob.id).main_department_id is None


def test_applier_thread_applies_submitted_events(database, settings, world):
    person = PlatformUser(userid="threaded", name="线程", department_ids=(world.east.platform_dept_id,))
    applier = event_inbox.EventApplier(database, settings, clients=lambda corp: FakePlatform(users=[person]))
    try:
        applier.submit(_store(database, world.corp.id, _event("user_upsert", users=["threaded"])))
        assert applier.wait_idle(20)
    finally:
        applier.stop()
    with database.session() as s:
        assert s.execute(sa.select(User).where(User.platform_userid == "threaded")).scalar_one().active


def test_unknown_kind_is_rejected():
    with pytest.raises(ValueError):
        org_events.fetch_change(FakePlatform(), "nonsense", [], [], set())


def test_events_about_one_person_apply_in_arrival_order(database, settings, world):
    """Join then leave, submitted back to back with the same shard key: the leave wins."""
    person = PlatformUser(userid="brief", name="短暂", department_ids=(world.east.platform_dept_id,))
    applier = event_inbox.EventApplier(database, settings, clients=lambda corp: FakePlatform(users=[person]), workers=4)
    try:
        join = _store(database, world.corp.id, _event("user_upsert", "j", ["brief"]))
        leave = _store(database, world.corp.id, _event("user_leave", "l", ["brief"]), "user_leave_org")
        applier.submit(join, "user:brief")
        applier.submit(leave, "user:brief")
        assert applier.wait_idle(20)
    finally:
        applier.stop()
    with database.session() as s:
        assert s.execute(sa.select(User).where(User.platform_userid == "brief")).scalar_one().active is False


class SlowPlatform(FakePlatform):
    """Each call takes a while, as a real one does; counts how many overlap."""

    def __init__(self, *args, delay=0.05, **kwargs):
        super().__init__(*args, **kwargs)
        self.delay = delay
        self.in_flight = 0
        self.most_in_flight = 0
        self._lock = threading.Lock()

    def get_user(self, userid):
        with self._lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            time.sleep(self.delay)
            return super().get_user(userid)
        finally:
            with self._lock:
                self.in_flight -= 1


def _states(database, pks):
    with database.session() as s:
        return [s.get(PlatformEvent, pk).state for pk in pks]


def test_a_batch_asks_once_per_person_and_writes_in_arrival_order(database, world):
    person = PlatformUser(userid="twice", name="两次", department_ids=(world.east.platform_dept_id,))
    fake = FakePlatform(users=[person])
    join = _store(database, world.corp.id, _event("user_upsert", "j", ["twice"]))
    change = _store(database, world.corp.id, _event("user_upsert", "c", ["twice"]), "user_modify_org")
    leave = _store(database, world.corp.id, _event("user_leave", "l", ["twice"]), "user_leave_org")
    states = event_inbox.apply_events(database, [leave, join, change], clients=lambda corp: fake)
    assert states == {join: "applied", change: "applied", leave: "applied"}
    assert fake.calls == [("get_user", "twice")]
    with database.session() as s:
        assert s.execute(sa.select(User).where(User.platform_userid == "twice")).scalar_one().active is False
        assert {s.get(PlatformEvent, pk).attempts for pk in (join, change, leave)} == {1}
    # Exactly once: nothing of the batch can be claimed again.
    assert event_inbox.apply_events(database, [join, change, leave], clients=lambda corp: fake) == {}


def test_a_retried_event_holds_back_later_ones_about_the_same_person(database, settings, world):
    person = PlatformUser(userid="flaky", name="不稳", department_ids=(world.east.platform_dept_id,))
    other = PlatformUser(userid="steady", name="稳定", department_ids=(world.east.platform_dept_id,))

    class FlakyFor(FakePlatform):
        flaky: Exception | None = RetryableError("busy", code=-1)

        def get_user(self, userid):
            if userid == "flaky" and self.flaky is not None:
                self.calls.append(("get_user", userid))
                raise self.flaky
            return super().get_user(userid)

    fake = FlakyFor(users=[person, other])
    join = _store(database, world.corp.id, _event("user_upsert", "j", ["flaky"]))
    unrelated = _store(database, world.corp.id, _event("user_upsert", "u", ["steady"]))
    leave = _store(database, world.corp.id, _event("user_leave", "l", ["flaky"]), "user_leave_org")
    states = event_inbox.apply_events(database, [join, unrelated, leave], clients=lambda corp: fake)
    assert states == {join: "pending", unrelated: "applied", leave: "pending"}
    with database.session() as s:
        held, blocker = s.get(PlatformEvent, leave), s.get(PlatformEvent, join)
        # The leave was not tried (no attempt spent) and comes free together with the join.
        assert held.attempts == 0 and held.locked_until == blocker.locked_until > utcnow()
        assert held.error == f"waits for event {join}"
        assert s.execute(sa.select(User).where(User.platform_userid == "flaky")).first() is None
        past = utcnow() - timedelta(seconds=1)
        held.locked_until = blocker.locked_until = past
    fake.flaky = None
    assert event_inbox.apply_pending_events(database, settings, clients=lambda corp: fake) == 2
    assert _states(database, [join, leave]) == ["applied", "applied"]
    with database.session() as s:
        assert s.execute(sa.select(User).where(User.platform_userid == "flaky")).scalar_one().active is False


def test_applier_overlaps_different_people_and_keeps_each_persons_order(database, settings, world):
    """Ten people join and leave at once: their fetches overlap, and each person's leave still comes
    after their join although a leave needs no fetch and would otherwise finish first."""
    people = [PlatformUser(userid=f"p{i}", name=f"人{i}", department_ids=(world.east.platform_dept_id,))
              for i in range(10)]
    fake = SlowPlatform(users=people)
    applier = event_inbox.EventApplier(database, settings, clients=lambda corp: fake, workers=4)
    pks = []
    try:
        for i, person in enumerate(people):
            join = _store(database, world.corp.id, _event("user_upsert", f"j{i}", [person.userid]))
            applier.submit(join, event_inbox.event_keys([person.userid]))
            leave = _store(database, world.corp.id, _event("user_leave", f"l{i}", [person.userid]),
                           "user_leave_org")
            applier.submit(leave, event_inbox.event_keys([person.userid]))
            pks += [join, leave]
        assert applier.wait_idle(20)
    finally:
        applier.stop()
    assert set(_states(database, pks)) == {"applied"}
    assert fake.most_in_flight > 1
    with database.session() as s:
        active = s.execute(sa.select(User.platform_userid, User.active)
                           .where(User.platform_userid.in_([p.userid for p in people]))).all()
    assert sorted(active) == sorted((p.userid, False) for p in people)


def test_one_event_naming_several_people_fetches_them_at_once(database, world):
    people = [PlatformUser(userid=f"m{i}", name=f"多{i}", department_ids=(world.east.platform_dept_id,))
              for i in range(6)]
    fake = SlowPlatform(users=people)
    pk = _store(database, world.corp.id, _event("user_upsert", users=[p.userid for p in people]))
    with ThreadPoolExecutor(max_workers=6) as pool:
        assert event_inbox.apply_events(database, [pk], clients=lambda corp: fake, run=pool.map) == {pk: "applied"}
    assert fake.most_in_flight == 6
    with database.session() as s:
        assert s.execute(sa.select(sa.func.count()).select_from(User)
                         .where(User.platform_userid.like("m%"))).scalar() == 6


def test_event_keys_name_every_person_and_department():
    assert event_inbox.event_keys(["a", "b", "a"], ["7"]) == ("user:a", "user:b", "dept:7")
    assert event_inbox.event_keys() == ()


def test_an_earlier_event_nobody_holds_is_adopted_and_applied_first(database, world):
    """Two web processes: the join went to one whose applier has not got to it, the leave to another."""
    person = PlatformUser(userid="split", name="分开", department_ids=(world.east.platform_dept_id,))
    fake = FakePlatform(users=[person])
    join = _store(database, world.corp.id, _event("user_upsert", "j", ["split"]))
    _store(database, world.corp.id, _event("user_upsert", "x", ["someone-else"]))
    leave = _store(database, world.corp.id, _event("user_leave", "l", ["split"]), "user_leave_org")
    assert event_inbox.apply_events(database, [leave], clients=lambda corp: fake) == {join: "applied",
                                                                                      leave: "applied"}
    assert fake.calls == [("get_user", "split")]
    with database.session() as s:
        assert s.execute(sa.select(User).where(User.platform_userid == "split")).scalar_one().active is False
    # The first process's applier comes to the join: already done, nothing happens twice.
    assert event_inbox.apply_event(database, join, clients=lambda corp: fake) is None


def test_a_later_event_waits_while_another_applier_applies_an_earlier_one(database, settings, world):
    person = PlatformUser(userid="inflight", name="进行中", department_ids=(world.east.platform_dept_id,))
    fake = FakePlatform(users=[person])
    join = _store(database, world.corp.id, _event("user_upsert", "j", ["inflight"]))
    leave = _store(database, world.corp.id, _event("user_leave", "l", ["inflight"]), "user_leave_org")
    with database.session() as s:  # another process's applier has claimed the join and is fetching
        s.get(PlatformEvent, join).locked_until = utcnow() + timedelta(seconds=60)
    assert event_inbox.apply_events(database, [leave], clients=lambda corp: fake) == {leave: event_inbox.HELD}
    with database.session() as s:
        row = s.get(PlatformEvent, leave)
        assert (row.state, row.attempts, row.locked_until, row.error) == ("pending", 0, None,
                                                                          f"waits for event {join}")
    applier = event_inbox.EventApplier(database, settings, clients=lambda corp: fake, workers=2)
    try:
        applier.submit(leave, event_inbox.event_keys(["inflight"]))
        time.sleep(0.3)  # the applier keeps looking, and keeps waiting
        assert _states(database, [join, leave]) == ["pending", "pending"]
        with database.session() as s:  # the other applier finishes the join
            s.get(PlatformEvent, join).locked_until = None
        # Unleased for an instant, the join may also be adopted by the waiting applier: either way once.
        assert event_inbox.apply_event(database, join, clients=lambda corp: fake) in ("applied", None)
        assert applier.wait_idle(20)
    finally:
        applier.stop()
    assert _states(database, [join, leave]) == ["applied", "applied"]
    with database.session() as s:
        assert s.execute(sa.select(User).where(User.platform_userid == "inflight")).scalar_one().active is False


def test_wecom_contact_events_reach_the_shared_applier_keyed_by_person(app, client, database, settings):
    """The WeCom callback stores into the same inbox and hands over with the same keys as DingTalk, so
    a join and a leave of one person cannot overtake each other there either."""
    token, aes_key = "wecom-token", base64.b64encode(os.urandom(32)).decode().rstrip("=")
    with database.session() as s:
        corp = create_corp(s, SecretBox(settings.master_key), platform="wecom", platform_corp_id="wwkeyed",
                           name="键控", agent_id="1000002",
                           secrets={"secret": "s", "callback_token": token, "aes_key": aes_key})
        corp_pk = corp.id

    class Recorder:
        def __init__(self):
            self.submitted = []

        def submit(self, event_pk, key=None):
            self.submitted.append((event_pk, key))

    recorder = Recorder()
    app.extensions["crm.event_applier"] = recorder
    crypto = WeComCrypto(token, aes_key, "wwkeyed")
    for change in ("create_user", "delete_user"):
        env = crypto.encrypt(event_xml({"ToUserName": "wwkeyed", "FromUserName": "sys", "CreateTime": 1700000000,
                                        "MsgType": "event", "Event": "change_contact", "ChangeType": change,
                                        "UserID": "zhangsan"}))
        resp = client.post("/callbacks/wecom/wwkeyed", data=env.body.encode(),
                           query_string={"msg_signature": env.msg_signature, "timestamp": env.timestamp,
                                         "nonce": env.nonce})
        assert resp.status_code == 200, resp.get_data(as_text=True)
    with database.session() as s:
        stored = s.execute(sa.select(PlatformEvent.id, PlatformEvent.payload).where(PlatformEvent.corp_id == corp_pk)
                           .order_by(PlatformEvent.id)).all()
    assert [p["kind"] for _, p in stored] == ["user_upsert", "user_leave"]
    assert recorder.submitted == [(pk, ("user:zhangsan",)) for pk, _ in stored]
