"""Org sync service against an in-memory platform (the sandbox-over-HTTP version lives with the DingTalk
integration tests): upserts, several departments per person, leaders, moves, leavers with handover,
removed departments, resume after a crash, and the SyncRun record."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from app.services.org_sync import SyncAlreadyRunning, SyncFailed, SyncStats, full_sync, open_run
from integrations.base import (
    PermissionDeniedError,
    PlatformClient,
    PlatformDepartment,
    PlatformUser,
    RetryableError,
    UserPage,
)
from models.audit import AuditLog
from models.crm import Customer
from models.org import Corp, Department, DepartmentLeader, User, UserDepartment
from models.platform import SyncRun
from models.types import utcnow
from tests import factories as f


class FakeOrg(PlatformClient):
    """A platform org in memory; `fail_on` makes listing one department's users raise once."""

    platform = "fake"
    user_page_size = 2

    def __init__(self):
        self.depts = {
            "1": PlatformDepartment("1", None, "总公司"),
            "2": PlatformDepartment("2", "1", "销售部"),
            "3": PlatformDepartment("3", "2", "华东"),
            "4": PlatformDepartment("4", "2", "华南"),
        }
        self.users = {
            "boss": PlatformUser("boss", "老板", unionid="ub", department_ids=("1",), leader_of=("1",)),
            "mgr": PlatformUser("mgr", "经理", unionid="um", department_ids=("2",), leader_of=("2",)),
            "zs": PlatformUser("zs", "张三", unionid="uz", department_ids=("3", "4"), main_department_id="3"),
            "ls": PlatformUser("ls", "李四", unionid="ul", department_ids=("4",)),
            "ww": PlatformUser("ww", "王五", unionid="uw", department_ids=("4",)),
        }
        self.calls = 0
        self.fail_on: str | None = None
        self.fail_with: BaseException = RetryableError("系统繁忙 / system busy", code=-1, platform="fake")
        self.fail_times = 1
        self.on_list = None  # hook(dept_id) called before each user listing

    def get_department(self, dept_id):
        self.calls += 1
        return self.depts[dept_id]

    def list_sub_departments(self, dept_id):
        self.calls += 1
        return [d for d in self.depts.values() if d.parent_id == dept_id]

    def list_department_users(self, dept_id, cursor=None):
        self.calls += 1
        if self.on_list is not None:
            self.on_list(dept_id)
        if self.fail_on == dept_id and self.fail_times > 0:
            self.fail_times -= 1
            raise self.fail_with
        members = sorted(u for u, p in self.users.items() if dept_id in p.department_ids)
        start = int(cursor or 0)
        page = members[start : start + self.user_page_size]
        more = start + self.user_page_size < len(members)
        return UserPage([self.users[u] for u in page], start + self.user_page_size if more else None)

    def get_user(self, userid):
        return self.users[userid]

    def test_connection(self):
        raise NotImplementedError

    def exchange_sign_in_code(self, code):
        raise NotImplementedError

    def js_config(self, url):
        raise NotImplementedError

    def send_message(self, userids, message):
        raise NotImplementedError


def _state(database, corp_id):
    with database.session() as s:
        depts = {
            d.platform_dept_id: d
            for d in s.execute(sa.select(Department).where(Department.corp_id == corp_id)).scalars()
        }
        users = {u.platform_userid: u for u in s.execute(sa.select(User).where(User.corp_id == corp_id)).scalars()}
        members = {
            (users_id, dept_id)
            for users_id, dept_id in s.execute(
                sa.select(User.platform_userid, Department.platform_dept_id)
                .join(UserDepartment, UserDepartment.user_id == User.id)
                .join(Department, Department.id == UserDepartment.department_id)
                .where(User.corp_id == corp_id)
            )
        }
        leaders = set(
            s.execute(
                sa.select(User.platform_userid, Department.platform_dept_id)
                .join(DepartmentLeader, DepartmentLeader.user_id == User.id)
                .join(Department, Department.id == DepartmentLeader.department_id)
                .where(User.corp_id == corp_id)
            ).all()
        )
    return depts, users, members, leaders


def test_full_sync_builds_the_tree_users_memberships_and_leaders(database):
    with database.session() as s:
        corp = f.corp(s)
    fake = FakeOrg()
    run = full_sync(database, corp.id, fake, threads=3)
    depts, users, members, leaders = _state(database, corp.id)
    assert depts["3"].path == f"/{depts['1'].id}/{depts['2'].id}/{depts['3'].id}/" and depts["3"].depth == 2
    assert set(users) == {"boss", "mgr", "zs", "ls", "ww"} and users["zs"].unionid == "uz"
    assert ("zs", "3") in members and ("zs", "4") in members
    assert users["zs"].main_department_id == depts["3"].id
    assert leaders == {("boss", "1"), ("mgr", "2")}
    assert (run.status, run.added, run.done, run.total) == ("succeeded", 9, 4, 4)
    # root + one listsub per department + user pages (dept 4 has 3 members: 2 pages)
    assert run.calls_made == fake.calls == 1 + 4 + 5


def test_second_sync_moves_deactivates_with_handover_and_removes(database):
    with database.session() as s:
        corp = f.corp(s)
    fake = FakeOrg()
    full_sync(database, corp.id, fake)
    _, users, _, _ = _state(database, corp.id)
    with database.session() as s:
        owned = f.customer(s, s.merge(corp), s.get(User, users["ls"].id), name="李四的客户")

    fake.depts["4"] = PlatformDepartment("4", "3", "华南(并入华东)")  # moved under 华东
    del fake.users["ls"]  # left
    del fake.depts["2"]  # 销售部 dissolved: 华东 moves to the root
    fake.depts["3"] = PlatformDepartment("3", "1", "华东")
    fake.users["mgr"] = PlatformUser("mgr", "经理", unionid="um", department_ids=("1",))
    fake.users["ww"] = PlatformUser("ww", "王五", unionid="uw", department_ids=("4",), leader_of=("4",))
    run = full_sync(database, corp.id, fake)
    depts, users, members, leaders = _state(database, corp.id)
    assert "2" not in depts and run.removed == 1
    assert depts["4"].path == f"/{depts['1'].id}/{depts['3'].id}/{depts['4'].id}/"
    assert not users["ls"].active and users["ls"].left_at is not None and run.deactivated == 1
    assert leaders == {("boss", "1"), ("ww", "4")}
    with database.session() as s:
        customer = s.get(Customer, owned.id)
        # 李四's main department is 华南, now led by 王五.
        assert customer.owner_id == users["ww"].id and not customer.in_pool
        entry = s.execute(sa.select(AuditLog).where(AuditLog.action == "handover")).scalar_one()
        assert entry.entity_id == users["ls"].id and entry.changes["customer_ids"]["after"] == [owned.id]

    fake.users["ls"] = PlatformUser("ls", "李四", unionid="ul", department_ids=("4",))  # re-hired
    full_sync(database, corp.id, fake)
    _, users_after, _, _ = _state(database, corp.id)
    assert users_after["ls"].active and users_after["ls"].id == users["ls"].id and users_after["ls"].left_at is None


def _no_sleep(_seconds):
    return None


def test_transient_failure_is_retried_within_the_run(database):
    with database.session() as s:
        corp = f.corp(s)
    fake = FakeOrg()
    fake.fail_on, fake.fail_times = "4", 2  # "system busy" twice, then fine
    run = full_sync(database, corp.id, fake, threads=2, sleep=_no_sleep)
    assert run.status == "succeeded" and run.errors == []
    assert run.calls_made == fake.calls == 1 + 4 + 5 + 2


def test_failed_sync_is_recorded_and_resumed_not_restarted(database):
    with database.session() as s:
        corp = f.corp(s)
    fake = FakeOrg()
    fake.fail_on = "4"
    fake.fail_with = PermissionDeniedError("没有调用该接口的权限", code=60011, platform="fake")
    with pytest.raises(SyncFailed):
        full_sync(database, corp.id, fake, threads=1, sleep=_no_sleep)
    with database.session() as s:
        failed = s.execute(sa.select(SyncRun)).scalar_one()
        assert failed.status == "failed" and failed.errors[0]["code"] == "60011"
        assert "dept 4" in failed.errors[0]["where"]
        assert set(failed.checkpoint["done"]) == {"1", "2", "3"}
        assert failed.calls_made == fake.calls and failed.done == 3 and failed.total == 4
        # Nobody is deactivated by a run that did not finish.
        assert s.execute(sa.select(sa.func.count()).select_from(User).where(User.active.is_(False))).scalar() == 0
    fake.calls = 0
    run = full_sync(database, corp.id, fake, threads=1)
    assert run.id == failed.id and run.status == "succeeded" and run.done == 4
    # The resumed run walked the tree again (5 calls) but listed users only for department 4 (2 pages).
    assert fake.calls == 5 + 2
    _, users, _, _ = _state(database, corp.id)
    assert all(u.active for u in users.values()) and len(users) == 5


class Crash(Exception):
    """Stands in for the process dying mid-run."""


def test_crash_mid_run_resumes_with_fewer_calls_than_from_scratch(database):
    """A bigger org, chunks of 5 users: a crash while listing a late department keeps every finished
    department, and the rerun lists only what was left."""
    with database.session() as s:
        corp = f.corp(s)
    fake = FakeOrg()
    for i in range(5, 25):
        fake.depts[str(i)] = PlatformDepartment(str(i), "2" if i % 2 else "3", f"组{i}")
        for j in range(3):
            fake.users[f"u{i}-{j}"] = PlatformUser(f"u{i}-{j}", f"员工{i}-{j}", department_ids=(str(i),))
    scratch = FakeOrg()
    scratch.depts, scratch.users = dict(fake.depts), dict(fake.users)
    with database.session() as s:
        other = f.corp(s, corp_id="dingother")
    full_sync(database, other.id, scratch, threads=2, chunk_users=5)
    from_scratch = scratch.calls

    fake.fail_on, fake.fail_with = "24", Crash("killed")
    with pytest.raises(SyncFailed):
        full_sync(database, corp.id, fake, threads=2, chunk_users=5)
    with database.session() as s:
        crashed = s.execute(sa.select(SyncRun).where(SyncRun.corp_id == corp.id)).scalar_one()
        assert crashed.status == "failed" and crashed.errors[0]["code"] == "Crash"
        done_before = set(crashed.checkpoint["done"])
    assert "24" not in done_before and len(done_before) >= 10
    fake.calls = 0
    run = full_sync(database, corp.id, fake, threads=2, chunk_users=5)
    assert run.status == "succeeded" and run.id == crashed.id and run.done == run.total == 24
    assert fake.calls < from_scratch
    # tree walk again (1 + 24) plus the departments not finished before the crash
    pages = {d: max(1, -(-sum(d in u.department_ids for u in fake.users.values()) // fake.user_page_size))
             for d in fake.depts}
    assert fake.calls == 25 + sum(n for d, n in pages.items() if d not in done_before)
    _, users, members, _ = _state(database, corp.id)
    assert len(users) == 5 + 60 and all(u.active for u in users.values())
    assert ("u24-2", "24") in members


def test_a_killed_run_is_taken_over_but_a_live_one_is_not(database):
    with database.session() as s:
        corp = f.corp(s)
        live = SyncRun(corp_id=corp.id, kind="full", status="running", heartbeat_at=utcnow(), checkpoint={})
        s.add(live)
    with pytest.raises(SyncAlreadyRunning):
        full_sync(database, corp.id, FakeOrg())
    with database.session() as s:
        s.get(SyncRun, live.id).heartbeat_at = utcnow() - timedelta(minutes=5)  # the process died
    run = full_sync(database, corp.id, FakeOrg())
    assert run.id == live.id and run.status == "succeeded"
    assert open_run(database, corp.id).id != live.id  # a finished run is not resumed


class ListingOrg(FakeOrg):
    """Like DingTalk's `user/list`: each listing only knows the listed department's order and whether
    the person leads it."""

    def __init__(self):
        super().__init__()
        self.lead: set[tuple[str, str]] = {("boss", "1"), ("mgr", "2"), ("zs", "3"), ("zs", "4")}
        self.order = {("zs", "2"): 7, ("zs", "3"): 5, ("zs", "4"): 9}
        self.users["zs"] = PlatformUser("zs", "张三", unionid="uz", title="经理", mobile="13800000000",
                                        department_ids=("3", "4", "2"), main_department_id="3")

    def list_department_users(self, dept_id, cursor=None):
        page = super().list_department_users(dept_id, cursor)
        from dataclasses import replace

        return UserPage(
            [replace(u, leader_of=(dept_id,) if (u.userid, dept_id) in self.lead else (),
                     department_orders={dept_id: self.order.get((u.userid, dept_id), 0)}) for u in page.users],
            page.next_cursor,
        )


def test_person_in_three_departments_gets_each_listing(database):
    with database.session() as s:
        corp = f.corp(s)
    fake = ListingOrg()
    run = full_sync(database, corp.id, fake, threads=2, chunk_users=1)
    depts, users, members, leaders = _state(database, corp.id)
    assert {d for u, d in members if u == "zs"} == {"2", "3", "4"}
    assert {d for u, d in leaders if u == "zs"} == {"3", "4"}
    assert users["zs"].title == "经理" and users["zs"].mobile == "13800000000"
    with database.session() as s:
        orders = dict(s.execute(sa.select(UserDepartment.department_id, UserDepartment.sort_order)
                                .where(UserDepartment.user_id == users["zs"].id)).all())
    assert orders == {depts["2"].id: 7, depts["3"].id: 5, depts["4"].id: 9}
    assert run.added == 4 + 5 and run.updated == 0  # three sightings of 张三 are one addition

    # 张三 leaves 华南 (and its leadership) and stops leading 华东; nothing else changes.
    fake.users["zs"] = PlatformUser("zs", "张三", unionid="uz", title="经理", mobile="13800000000",
                                    department_ids=("3", "2"), main_department_id="3")
    fake.lead -= {("zs", "3"), ("zs", "4")}
    run = full_sync(database, corp.id, fake, threads=2)
    _, users2, members, leaders = _state(database, corp.id)
    assert {d for u, d in members if u == "zs"} == {"2", "3"}
    assert {d for u, d in leaders if u == "zs"} == set()
    assert (run.added, run.updated, run.deactivated) == (0, 0, 0)
    assert users2["zs"].id == users["zs"].id


def test_progress_is_readable_from_another_session_while_running(database):
    with database.session() as s:
        corp = f.corp(s)
    fake = FakeOrg()
    for i in range(5, 15):
        fake.depts[str(i)] = PlatformDepartment(str(i), "1", f"组{i}")
        fake.users[f"u{i}"] = PlatformUser(f"u{i}", f"员工{i}", department_ids=(str(i),))
    seen = []

    def peek(dept_id):
        if dept_id == "14":
            import time as _time

            _time.sleep(1.2)  # let the applier commit a progress chunk
            with database.session() as s:
                run = s.execute(sa.select(SyncRun)).scalar_one()
                seen.append((run.status, run.done, run.total, run.calls_made, run.heartbeat_at))

    fake.on_list = peek
    run = full_sync(database, corp.id, fake, threads=1, progress_every=0.5)
    status, done, total, calls, beat = seen[0]
    assert status == "running" and 0 < done < total <= 14 and calls > 0 and beat is not None
    assert (run.done, run.total) == (14, 14)


def test_stats_report_calls_and_apply_rate(database):
    with database.session() as s:
        corp = f.corp(s)
    stats = SyncStats()
    fake = FakeOrg()
    full_sync(database, corp.id, fake, stats=stats)
    assert stats.api_calls == fake.calls and stats.users_applied == 6  # 张三 is listed twice
    assert stats.apply_seconds > 0 and stats.apply_rate > 0 and stats.chunks >= 1


class MovingOrg(FakeOrg):
    """华南 (4) is moved under 华东 (3) while the walk runs: both parents list it."""

    def list_sub_departments(self, dept_id):
        kids = super().list_sub_departments(dept_id)
        if dept_id == "3":
            kids = [*kids, self.depts["4"]]
        return kids


def test_a_department_seen_twice_during_the_walk_is_synced_once(database):
    with database.session() as s:
        corp = f.corp(s)
    fake = MovingOrg()
    run = full_sync(database, corp.id, fake, threads=2)
    assert run.status == "succeeded" and run.total == run.done == 4
    # root + 4 listsub + 5 user pages: department 4 was neither walked nor listed twice
    assert fake.calls == 1 + 4 + 5


def s_count(session, table, *where) -> int:
    return session.scalar(sa.select(sa.func.count()).select_from(table).where(*where))


def _dangling_pairs(session) -> int:
    """Membership and leader rows whose person or department does not exist."""
    count = 0
    for t in (UserDepartment.__table__, DepartmentLeader.__table__):
        orphan = sa.or_(~sa.exists().where(User.id == t.c.user_id),
                        ~sa.exists().where(Department.id == t.c.department_id))
        count += s_count(session, t, orphan)
    return count


def test_removed_department_leaver_and_deleted_corp_leave_no_dangling_pairs(database):
    """The pair tables carry no corp foreign key of their own: what keeps them clean is the user and
    department keys (CASCADE), through a department removal, a leaver and the corp's deletion."""
    with database.session() as s:
        corp = f.corp(s)
        other = f.corp(s, corp_id="dingneighbour")
    fake = FakeOrg()
    fake.users["ww"] = PlatformUser("ww", "王五", unionid="uw", department_ids=("4",), leader_of=("4",))
    full_sync(database, corp.id, fake)
    full_sync(database, other.id, FakeOrg())
    depts, users, _, _ = _state(database, corp.id)
    ud, dl = UserDepartment.__table__, DepartmentLeader.__table__
    with database.session() as s:
        assert s_count(s, ud, ud.c.department_id == depts["4"].id) == 3
        assert s_count(s, dl, dl.c.department_id == depts["4"].id) == 1

    del fake.depts["4"]  # 华南 dissolved, its people move to 华东; the manager leaves
    for userid in ("zs", "ls", "ww"):
        fake.users[userid] = PlatformUser(userid, fake.users[userid].name, department_ids=("3",))
    del fake.users["mgr"]
    run = full_sync(database, corp.id, fake)
    assert (run.removed, run.deactivated) == (1, 1)
    with database.session() as s:
        assert s_count(s, ud, ud.c.department_id == depts["4"].id) == 0
        assert s_count(s, dl, dl.c.department_id == depts["4"].id) == 0
        assert s_count(s, dl, dl.c.user_id == users["mgr"].id) == 0  # a leaver leads nothing
        assert _dangling_pairs(s) == 0
        # The keys that matter are still enforced: a pair naming a missing department is refused.
        with pytest.raises(sa.exc.IntegrityError), s.begin_nested():
            s.execute(ud.insert().values(corp_id=corp.id, user_id=users["zs"].id,
                                         department_id=depts["4"].id, sort_order=0))

    with database.session() as s:
        s.execute(sa.delete(Corp).where(Corp.id == corp.id))
    with database.session() as s:
        assert s_count(s, ud, ud.c.corp_id == corp.id) == s_count(s, dl, dl.c.corp_id == corp.id) == 0
        assert _dangling_pairs(s) == 0
        assert s_count(s, ud, ud.c.corp_id == other.id) == 6  # the neighbour is untouched


def test_an_unchanged_org_rewrites_no_pair_and_no_updated_at(database):
    with database.session() as s:
        corp = f.corp(s)
    fake = ListingOrg()
    full_sync(database, corp.id, fake)
    ud, dl = UserDepartment.__table__, DepartmentLeader.__table__
    pg = database.dialect == "postgresql"

    def snapshot():
        with database.session() as s:
            stamps = dict(s.execute(sa.select(User.platform_userid, User.updated_at)
                                    .where(User.corp_id == corp.id)).all())
            # PostgreSQL: a row's xmin changes with every write to it, even one that sets the same value.
            versions = ({t.name: set(s.execute(sa.text(f"SELECT user_id, department_id, xmin::text FROM {t.name}")))
                         for t in (ud, dl)} if pg else None)
        return stamps, versions

    before = snapshot()
    run = full_sync(database, corp.id, fake)
    assert (run.added, run.updated, run.deactivated, run.removed) == (0, 0, 0, 0)
    assert snapshot() == before
    with database.session() as s:
        assert set(s.scalars(sa.select(User.last_sync_run_id).where(User.corp_id == corp.id))) == {run.id}
