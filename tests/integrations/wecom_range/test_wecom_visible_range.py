"""A WeCom app whose visible range (可见范围) is several departments that share no visible root, plus a person
named one by one, and a member whose userid the admin changes: over real HTTP against the sandbox, with
the app's callback endpoint live, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
import requests
import sqlalchemy as sa

from integrations.base import NotFoundError, PermissionDeniedError
from integrations.sandbox.wecom_events import change_contact, deliver
from integrations.sandbox.wecom_state import WeComWorld
from integrations.wecom.client import WeComClient, WeComCredentials
from integrations.wecom.events import org_event
from models.crm import Customer
from models.inbox import EventState, PlatformEvent
from models.org import Corp, Department, User, UserDepartment
from models.platform import SyncStatus
from tests import factories
from tests.integrations import wecom_binding

# Seed 11: 华东大区 (4) and 华北大区 (7) sit under 销售部 (3), which is not visible; 财务部 (17) under the
# corp root (1), which is not visible either. Three subtrees, three roots.
RANGE = [4, 7, 17]


_client = wecom_binding.client
_sync = wecom_binding.sync


def _subtree(sbx, top: int) -> set[int]:
    found, queue = set(), [top]
    while queue:
        d = queue.pop()
        found.add(d)
        queue.extend(x.dept_id for x in sbx.corp.depts.values() if x.parent_id == d)
    return found


def _outsider(sbx, visible: set[int]) -> str:
    """Someone none of whose departments is visible: reachable only by being named in the range."""
    return next(u.userid for u in sorted(sbx.corp.users.values(), key=lambda u: u.userid)
                if not set(u.dept_ids) & visible)


def _rows(database, corp_pk):
    with database.session() as s:
        users = {u.platform_userid: (u.id, u.active, u.main_department_id)
                 for u in s.execute(sa.select(User).where(User.corp_id == corp_pk)).scalars()}
        depts = {d.platform_dept_id: d for d in
                 s.execute(sa.select(Department).where(Department.corp_id == corp_pk)).scalars()}
        members = {(uid, did) for uid, did in s.execute(
            sa.select(User.platform_userid, Department.platform_dept_id)
            .join(UserDepartment, UserDepartment.user_id == User.id)
            .join(Department, Department.id == UserDepartment.department_id)
            .where(User.corp_id == corp_pk))}
    return users, depts, members


# ----------------------------------------------------------------------------- full sync


def test_full_sync_walks_every_top_of_a_disjoint_range(database, wsettings, corp_pk, sbx, server, http):
    visible = set().union(*(_subtree(sbx, d) for d in RANGE))
    named = _outsider(sbx, visible)
    wecom_binding.set_range(http, server, sbx, partys=RANGE, users=[named])
    client = _client(database, wsettings, corp_pk)

    report = client.test_connection()
    assert report.ok, report.message
    names = [sbx.corp.depts[d].name for d in RANGE]
    assert "、".join(names) in report.message and "单独可见成员 1 人" in report.message
    assert client.root_department_ids() == [str(d) for d in RANGE]
    # The sandbox answers like WeCom outside the range: a department that exists but is not visible is
    # 60011, one that does not exist is 60123.
    with pytest.raises(PermissionDeniedError) as info:
        client.get_department("3")
    assert info.value.code == "60011" and "可见范围" in info.value.cause
    with pytest.raises(NotFoundError) as missing:
        client.get_department("999")
    assert missing.value.code == "60123"

    run = _sync(database, wsettings, corp_pk)
    assert run.status == SyncStatus.SUCCEEDED and run.deactivated == 0
    users, depts, members = _rows(database, corp_pk)
    assert set(depts) == {str(d) for d in visible}
    for top in RANGE:  # the tops have no parent of ours: each is a root of its own path
        assert depts[str(top)].parent_id is None and depts[str(top)].depth == 0
    child = next(d for d in _subtree(sbx, 4) if d != 4)
    assert depts[str(child)].parent_id == depts["4"].id and depts[str(child)].path.startswith(depts["4"].path)
    in_range = {u.userid for u in sbx.corp.users.values() if set(u.dept_ids) & visible}
    assert set(users) == in_range | {named} and named not in in_range
    assert all(active for _, active, _ in users.values())
    # Memberships exist only for visible departments; the named person has none of ours.
    assert all(int(d) in visible for _, d in members)
    assert not any(uid == named for uid, _ in members) and users[named][2] is None
    expected = {(u.userid, str(d)) for u in sbx.corp.users.values() for d in u.dept_ids if d in visible}
    assert members == expected

    # Narrow the range to one subtree and drop the named person: the rest leaves with the next sync.
    wecom_binding.set_range(http, server, sbx, partys=[4])
    run = _sync(database, wsettings, corp_pk)
    assert run.status == SyncStatus.SUCCEEDED
    users, depts, _ = _rows(database, corp_pk)
    assert set(depts) == {str(d) for d in _subtree(sbx, 4)}
    still = {u.userid for u in sbx.corp.users.values() if set(u.dept_ids) & _subtree(sbx, 4)}
    assert {uid for uid, (_, active, _) in users.items() if active} == still
    assert run.deactivated == len(in_range | {named}) - len(still) > 0


def test_a_range_of_named_people_only_syncs_them(database, wsettings, corp_pk, sbx, server, http):
    named = sorted(sbx.corp.users)[:2]
    wecom_binding.set_range(http, server, sbx, partys=[], users=named)
    run = _sync(database, wsettings, corp_pk)
    assert run.status == SyncStatus.SUCCEEDED
    users, depts, members = _rows(database, corp_pk)
    assert set(users) == set(named) and depts == {} and members == set()


def test_sandbox_range_control_refuses_bad_input(world, sbx, server, http):
    before = (list(sbx.allow_partys), list(sbx.allow_users))
    bad = http.post(f"{server.url}/sandbox/wecom/config",
                    json={"corpId": sbx.corp.corp_id, "allowPartys": ["sales"], "latency": 5})
    assert bad.status_code == 400 and bad.json()["field"] == "allowPartys"
    bad = http.post(f"{server.url}/sandbox/wecom/config", json={"corpId": sbx.corp.corp_id, "allowUsers": "u1"})
    assert bad.status_code == 400 and bad.json()["field"] == "allowUsers"
    assert (sbx.allow_partys, sbx.allow_users) == before and world.latency == 0.0
    assert http.get(f"{server.url}/sandbox/wecom/corps").json()["corps"][0]["allowPartys"] == [1]
    base = f"{server.url}/sandbox/wecom/corps/{sbx.corp.corp_id}/users"
    assert http.patch(f"{base}/user0002", json={"newUserid": ""}).json()["field"] == "newUserid"
    taken = http.patch(f"{base}/user0002", json={"newUserid": "USER0003"})
    assert taken.status_code == 400 and taken.json()["errcode"] == 60102  # userids are case-insensitive
    assert "user0002" in sbx.corp.users


def test_range_from_corp_generation():
    world = WeComWorld(seed=11, users=40, allow_partys=RANGE, allow_users=["user0001"])
    app = world.app()
    assert app.allow_partys == RANGE and world.in_range_user(app, "user0001")
    assert set(world.range_dept_ids(app)) == set().union(*(_subtree(app, d) for d in RANGE))


# ----------------------------------------------------------------------------- userid changes


def test_sandbox_userid_change_keeps_the_member(sbx, server, http):
    client = WeComClient(WeComCredentials(sbx.corp.corp_id, sbx.secret, str(sbx.agent_id)),
                         api_base=f"{server.url}/cgi-bin", http=http)
    before = client.get_user("user0001")
    assert "1" in before.leader_of
    resp = http.patch(f"{server.url}/sandbox/wecom/corps/{sbx.corp.corp_id}/users/user0001",
                      json={"newUserid": "ceo"})
    assert resp.status_code == 200 and resp.json()["user"]["userid"] == "ceo"
    assert resp.json()["event"] is None  # no callback URL configured: nothing fired
    after = client.get_user("ceo")
    assert (after.name, after.department_ids, after.leader_of) == (before.name, before.department_ids,
                                                                   before.leader_of)
    with pytest.raises(NotFoundError) as gone:
        client.get_user("user0001")
    assert gone.value.code == "60111"


def test_update_user_with_new_userid_is_a_rename_event():
    event = org_event({"Event": "change_contact", "ChangeType": "update_user", "UserID": "zhangsan",
                       "NewUserID": "zhang.san", "CreateTime": "1700000000"})
    assert (event.kind, event.user_ids) == ("user_rename", ("zhang.san", "zhangsan"))
    same = org_event({"Event": "change_contact", "ChangeType": "update_user", "UserID": "lisi",
                      "NewUserID": "lisi", "CreateTime": "1700000000"})
    assert (same.kind, same.user_ids) == ("user_upsert", ("lisi",))
    # NewUserID belongs to update_user only; a create_user carrying one is an ordinary join.
    made = org_event({"Event": "change_contact", "ChangeType": "create_user", "UserID": "wangwu",
                      "NewUserID": "x", "CreateTime": "1700000000"})
    assert (made.kind, made.user_ids) == ("user_upsert", ("wangwu",))


@pytest.fixture
def live(database, wsettings, corp_pk, sbx, server):
    _sync(database, wsettings, corp_pk)
    with wecom_binding.serve_callbacks(database, wsettings, sbx, server) as served:
        yield served


def _give_customer(database, corp_pk, userid) -> tuple[int, int]:
    with database.session() as s:
        corp = s.get(Corp, corp_pk)
        user = s.execute(sa.select(User).where(User.corp_id == corp_pk, User.platform_userid == userid)).scalar_one()
        return user.id, factories.customer(s, corp, user).id


def test_changed_userid_renames_the_same_person(database, wsettings, corp_pk, sbx, server, live):
    app, _ = live
    user_pk, customer_pk = _give_customer(database, corp_pk, "user0005")
    depts_before = set(sbx.corp.users["user0005"].dept_ids)
    resp = requests.patch(f"{server.url}/sandbox/wecom/corps/{sbx.corp.corp_id}/users/user0005",
                          json={"newUserid": "zhao.liu"}, timeout=10)
    assert resp.status_code == 200 and resp.json()["event"]["accepted"]
    wecom_binding.settle(app)
    users, _, members = _rows(database, corp_pk)
    assert "user0005" not in users and users["zhao.liu"][:2] == (user_pk, True)
    assert {int(d) for uid, d in members if uid == "zhao.liu"} == depts_before
    with database.session() as s:
        assert s.get(Customer, customer_pk).owner_id == user_pk
        event = s.execute(sa.select(PlatformEvent).where(PlatformEvent.corp_id == corp_pk)
                          .order_by(PlatformEvent.id.desc()).limit(1)).scalar_one()
        assert event.state == EventState.APPLIED and event.payload["kind"] == "user_rename"
    # The nightly sync agrees: nobody left, nobody new, the customer still theirs.
    run = _sync(database, wsettings, corp_pk)
    assert run.status == SyncStatus.SUCCEEDED and run.deactivated == 0 and run.added == 0
    users, _, _ = _rows(database, corp_pk)
    assert users["zhao.liu"][:2] == (user_pk, True) and len(users) == len(sbx.corp.users)


def test_rename_after_a_duplicate_was_made_keeps_the_original_row(database, wsettings, corp_pk, sbx, server, live):
    """WeCom does not promise event order: the person may already have been read under the new userid (a
    plain update_user for the new id applied first) when the rename arrives. The empty duplicate gives way;
    a duplicate that has work of its own is left for an admin and both rows stay."""
    app, url = live
    base = f"{server.url}/sandbox/wecom/corps/{sbx.corp.corp_id}/users"
    cases = {"user0006": ("sun.qi", False), "user0007": ("zhou.ba", True)}
    owners = {old: _give_customer(database, corp_pk, old) for old in cases}
    requests.post(f"{server.url}/sandbox/wecom/callback", json={"corpId": sbx.corp.corp_id, "url": None},
                  timeout=5)  # rename in the console without the event reaching us yet
    for old, (new, _) in cases.items():
        assert requests.patch(f"{base}/{old}", json={"newUserid": new}, timeout=10).status_code == 200
        assert deliver(sbx, url, change_contact(sbx, "update_user", UserID=new))["accepted"]
    wecom_binding.settle(app)
    users, _, _ = _rows(database, corp_pk)
    assert {"sun.qi", "zhou.ba", "user0006", "user0007"} <= set(users)
    _give_customer(database, corp_pk, "zhou.ba")  # the duplicate gets work of its own
    for old, (new, _) in cases.items():
        assert deliver(sbx, url, change_contact(sbx, "update_user", UserID=old, NewUserID=new))["accepted"]
    wecom_binding.settle(app)
    users, _, _ = _rows(database, corp_pk)
    assert "user0006" not in users and users["sun.qi"][0] == owners["user0006"][0]
    assert users["user0007"][0] == owners["user0007"][0] and "zhou.ba" in users
    with database.session() as s:
        events = s.execute(sa.select(PlatformEvent).where(PlatformEvent.corp_id == corp_pk,
                                                          PlatformEvent.event_type == "update_user")).scalars().all()
        assert all(e.state == EventState.APPLIED for e in events) and len(events) == 4
