"""The event inbox and the org-event service with a fake platform (no network): once-only storage,
claiming, retry with back-off, failure, and the pick-up of pending events after a crash."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from app.services import event_inbox, org_events
from integrations.base import (
    NotFoundError,
    OrgEvent,
    PermissionDeniedError,
    PlatformClient,
    PlatformDepartment,
    PlatformUser,
    RetryableError,
)
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
