"""Org sync service against an in-memory platform (the sandbox-over-HTTP version lives with the DingTalk
integration tests): upserts, several departments per person, leaders, moves, leavers with handover,
removed departments, resume after a crash, and the SyncRun record."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from app.services.org_sync import SyncFailed, full_sync
from integrations.base import PlatformClient, PlatformDepartment, PlatformUser, RetryableError, UserPage
from models.audit import AuditLog
from models.crm import Customer
from models.org import Department, DepartmentLeader, User, UserDepartment
from models.platform import SyncRun
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

    def get_department(self, dept_id):
        self.calls += 1
        return self.depts[dept_id]

    def list_sub_departments(self, dept_id):
        self.calls += 1
        return [d for d in self.depts.values() if d.parent_id == dept_id]

    def list_department_users(self, dept_id, cursor=None):
        self.calls += 1
        if self.fail_on == dept_id:
            self.fail_on = None
            raise RetryableError("系统繁忙 / system busy", code=-1, platform="fake")
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


def test_failed_sync_is_recorded_and_resumed_not_restarted(database):
    with database.session() as s:
        corp = f.corp(s)
    fake = FakeOrg()
    fake.fail_on = "4"
    with pytest.raises(SyncFailed):
        full_sync(database, corp.id, fake, threads=1)
    with database.session() as s:
        failed = s.execute(sa.select(SyncRun)).scalar_one()
        assert failed.status == "failed" and failed.errors[0]["code"] == "-1"
        assert set(failed.checkpoint["done"]) == {"1", "2", "3"}
        # Nobody is deactivated by a run that did not finish.
        assert s.execute(sa.select(sa.func.count()).select_from(User).where(User.active.is_(False))).scalar() == 0
    fake.calls = 0
    run = full_sync(database, corp.id, fake, threads=1)
    assert run.id == failed.id and run.status == "succeeded" and run.done == 4
    # The resumed run walked the tree again (5 calls) but listed users only for department 4 (2 pages).
    assert fake.calls == 5 + 2
    _, users, _, _ = _state(database, corp.id)
    assert all(u.active for u in users.values()) and len(users) == 5
