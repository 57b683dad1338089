"""Two appliers writing the same new department and member at the same moment (two event appliers, or an event
applier and a full sync's chunk) on PostgreSQL: the second waits for the first and adopts its rows instead of
failing on the unique keys. The overlap is proven, not hoped for: the first transaction stays open until
PostgreSQL shows the second one queued on its insert."""

from __future__ import annotations

import threading
import time

import pytest
import sqlalchemy as sa

from app.services.org_events import OrgChange, apply_change
from app.services.org_sync import apply_listings
from integrations.base import PlatformDepartment, PlatformUser
from models.org import Corp, Department, DepartmentLeader, User, UserDepartment
from tests import factories as f

NEW_DEPT = PlatformDepartment(dept_id="900", parent_id="1", name="西北大区", order=3)
NEWBIE = PlatformUser(userid="newbie01", name="新同事", unionid="union-newbie01", department_ids=("900",),
                      leader_of=("900",), main_department_id="900", department_orders={"900": 7})


def _setup(database):
    with database.session() as s:
        corp = f.corp(s)
        s.add(Department(corp_id=corp.id, platform_dept_id="1", name="总公司", path="/", depth=0))
        return corp.id


def _wait_until_blocked(database, pid_of):
    watcher = sa.create_engine(database.url)
    try:
        for _ in range(600):
            pid = pid_of()
            if pid:
                with watcher.connect() as conn:
                    waiting = conn.execute(sa.text(
                        "SELECT wait_event_type FROM pg_stat_activity WHERE pid = :p"), {"p": pid}).scalar()
                if waiting == "Lock":
                    return
            time.sleep(0.05)
        raise AssertionError("the second applier never queued behind the first one's insert")
    finally:
        watcher.dispose()


def _race(database, first_apply, second_apply):
    """Run `first_apply(session)` and hold its transaction open until `second_apply(session)` waits on it."""
    started, results = threading.Event(), {}

    def run(name, apply, hold):
        try:
            with database.session() as s:
                results[f"{name}_pid"] = s.execute(sa.text("SELECT pg_backend_pid()")).scalar()
                results[name] = apply(s)
                if hold:
                    started.set()
                    _wait_until_blocked(database, lambda: results.get("second_pid"))
        except Exception as exc:  # reported by the assertions below
            results[name] = exc
            started.set()

    one = threading.Thread(target=run, args=("first", first_apply, True))
    one.start()
    assert started.wait(30)
    two = threading.Thread(target=run, args=("second", second_apply, False))
    two.start()
    one.join(60)
    two.join(60)
    return results


def _event(corp_pk):
    def apply(s):
        return apply_change(s, s.get(Corp, corp_pk), OrgChange(departments=[NEW_DEPT], users=[NEWBIE]))
    return apply


def _full_sync_chunk(corp_pk):
    def apply(s):
        from app.services.org_sync import _DeptInfo, _load_depts, apply_department_batch

        known: dict[str, _DeptInfo] = {}
        existing = _load_depts(s, corp_pk)
        root = PlatformDepartment(dept_id="1", parent_id=None, name="总公司")
        added_depts, _ = apply_department_batch(s, corp_pk, [root, NEW_DEPT], 1, existing, known)
        dept_ids = {k: v.id for k, v in known.items()}
        added_users, _, _ = apply_listings(s, corp_pk, [("900", NEWBIE)], 1, dept_ids)
        return {"departments": added_depts, "users": added_users}
    return apply


def _assert_one_of_each(database, corp_pk):
    with database.session() as s:
        depts = s.execute(sa.select(Department).where(Department.corp_id == corp_pk,
                                                      Department.platform_dept_id == "900")).scalars().all()
        users = s.execute(sa.select(User).where(User.corp_id == corp_pk,
                                                User.platform_userid == "newbie01")).scalars().all()
        assert len(depts) == 1 and len(users) == 1
        dept, user = depts[0], users[0]
        root = s.execute(sa.select(Department).where(Department.corp_id == corp_pk,
                                                     Department.platform_dept_id == "1")).scalar_one()
        assert (dept.name, dept.parent_id, dept.path) == ("西北大区", root.id, f"/{root.id}/{dept.id}/")
        assert (user.name, user.unionid, user.main_department_id, user.active) == ("新同事", "union-newbie01",
                                                                                    dept.id, True)
        assert s.execute(sa.select(UserDepartment.department_id)
                         .where(UserDepartment.user_id == user.id)).scalars().all() == [dept.id]
        assert s.execute(sa.select(DepartmentLeader.department_id)
                         .where(DepartmentLeader.user_id == user.id)).scalars().all() == [dept.id]


@pytest.mark.postgres
def test_two_event_appliers_add_the_same_department_and_member_at_once(pg_database):
    corp_pk = _setup(pg_database)
    results = _race(pg_database, _event(corp_pk), _event(corp_pk))
    assert not isinstance(results["first"], Exception), results["first"]
    assert not isinstance(results["second"], Exception), results["second"]
    assert results["first"]["departments"]["added"] == 1 and results["first"]["users"]["added"] == 1
    # The second adopted the first one's rows: nothing added twice.
    assert results["second"]["departments"]["added"] == 0 and results["second"]["users"]["added"] == 0
    _assert_one_of_each(pg_database, corp_pk)


@pytest.mark.postgres
@pytest.mark.parametrize("order", ["event_first", "sync_first"])
def test_an_event_applier_and_a_full_sync_chunk_add_the_same_rows_at_once(pg_database, order):
    corp_pk = _setup(pg_database)
    event, chunk = _event(corp_pk), _full_sync_chunk(corp_pk)
    first, second = (event, chunk) if order == "event_first" else (chunk, event)
    results = _race(pg_database, first, second)
    assert not isinstance(results["first"], Exception), results["first"]
    assert not isinstance(results["second"], Exception), results["second"]
    _assert_one_of_each(pg_database, corp_pk)
