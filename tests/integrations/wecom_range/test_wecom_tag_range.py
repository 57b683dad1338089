"""A WeCom app whose visible range (可见范围) is given by a tag (`agent/get` → `allow_tags.tagid[]`): the tag's
members and departments are read with `tag/get` (获取标签成员, 90213). Over real HTTP against the sandbox, on
SQLite and PostgreSQL, plus the exact request with `responses`."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
import responses
import sqlalchemy as sa

from app.errors import Forbidden
from app.services.sign_in_wecom import sign_in_with_wecom
from integrations.base import NotFoundError, PermissionDeniedError, RateLimitedError
from integrations.wecom import errors
from integrations.wecom.client import WeComClient, WeComCredentials
from models.audit import AuditLog
from models.crm import Customer
from models.org import Corp, Department, User
from models.platform import SyncStatus
from tests import factories
from tests.integrations import wecom_binding
from tests.integrations.wecom_range.seed11 import PEOPLE, SUBTREE, TAG_DEPT, in_subtree


def _rows(database, corp_pk):
    with database.session() as s:
        users = {u.platform_userid: u for u in s.execute(sa.select(User).where(User.corp_id == corp_pk)).scalars()}
        depts = {d.platform_dept_id for d in
                 s.execute(sa.select(Department).where(Department.corp_id == corp_pk)).scalars()}
        s.expunge_all()
    return users, depts


def _calls(http, server) -> dict[str, int]:
    return http.get(f"{server.url}/sandbox/wecom/calls").json()["byPath"]


# ----------------------------------------------------------------------------- full sync


def test_a_tag_only_range_syncs_exactly_its_people_and_subtree(database, wsettings, corp_pk, sbx, server, http,
                                                                tag_range):
    assert not set(PEOPLE) & in_subtree(sbx)
    assert {d for p in PEOPLE for d in sbx.corp.users[p].dept_ids}.isdisjoint(SUBTREE)
    client = wecom_binding.client(database, wsettings, corp_pk)
    report = client.test_connection()
    assert report.ok, report.message
    assert "华北大区" in report.message and "可见标签 1 个" in report.message
    assert client.root_department_ids() == [str(TAG_DEPT)]

    run = wecom_binding.sync(database, wsettings, corp_pk)
    assert run.status == SyncStatus.SUCCEEDED and run.deactivated == 0
    users, depts = _rows(database, corp_pk)
    assert depts == {str(d) for d in SUBTREE}
    assert set(users) == in_subtree(sbx) | set(PEOPLE) and len(users) < len(sbx.corp.users)
    assert all(u.active for u in users.values())
    # The people named by the tag have no department of ours: theirs are outside the range.
    assert all(users[p].main_department_id is None for p in PEOPLE)
    # One tag/get per tag per read of the range, counted like every other API of the sandbox.
    assert _calls(http, server)["tag/get"] >= 1


def test_a_person_removed_from_the_tag_leaves_with_handover(database, wsettings, corp_pk, sbx, server, http,
                                                            tag_range):
    wecom_binding.sync(database, wsettings, corp_pk)
    leaver, stays = PEOPLE
    with database.session() as s:
        corp = s.get(Corp, corp_pk)
        owner = s.execute(sa.select(User).where(User.corp_id == corp_pk, User.platform_userid == leaver)).scalar_one()
        owned = [factories.customer(s, corp, owner).id for _ in range(2)]
        owner_pk = owner.id

    wecom_binding.put_tag(http, server, sbx, [stays], [TAG_DEPT], tagid=tag_range)  # the admin takes them off the tag
    run = wecom_binding.sync(database, wsettings, corp_pk)
    assert run.status == SyncStatus.SUCCEEDED and run.deactivated == 1
    users, _ = _rows(database, corp_pk)
    assert users[leaver].active is False and users[leaver].left_at is not None
    assert {uid for uid, u in users.items() if u.active} == in_subtree(sbx) | {stays}
    with database.session() as s:
        customers = s.execute(sa.select(Customer).where(Customer.id.in_(owned))).scalars().all()
        assert all(c.owner_id != owner_pk for c in customers)  # to a leader or the public pool
        audit = s.execute(sa.select(AuditLog).where(AuditLog.action == "handover",
                                                    AuditLog.entity_id == owner_pk)).scalar_one()
        assert sorted(audit.changes["customer_ids"]["after"]) == sorted(owned)


def test_range_of_departments_people_and_a_tag_is_their_union(database, wsettings, corp_pk, sbx, server, http):
    tagid = wecom_binding.put_tag(http, server, sbx, ["user0013"], [TAG_DEPT])["tag"]["tagid"]
    wecom_binding.set_range(http, server, sbx, partys=[17], users=["user0011"], tags=[tagid])
    run = wecom_binding.sync(database, wsettings, corp_pk)
    assert run.status == SyncStatus.SUCCEEDED
    users, depts = _rows(database, corp_pk)
    assert depts == {str(d) for d in SUBTREE | {17}}
    in_17 = {u.userid for u in sbx.corp.users.values() if 17 in u.dept_ids}
    assert set(users) == in_subtree(sbx) | in_17 | {"user0011", "user0013"}


# ----------------------------------------------------------------------------- the sandbox's answers


def test_sandbox_answers_the_tag_range(world, sbx, server, http, tag_range):
    client = WeComClient(WeComCredentials(sbx.corp.corp_id, sbx.secret, str(sbx.agent_id)),
                         api_base=f"{server.url}/cgi-bin", http=http)
    agent = client.get("agent/get", agentid=sbx.agent_id)
    assert agent["allow_tags"] == {"tagid": [tag_range]} and agent["allow_partys"] == {"partyid": []}
    data = client.get("tag/get", tagid=tag_range)
    assert data["tagname"] == "重点客户组" and data["partylist"] == [TAG_DEPT]
    assert data["userlist"] == [{"userid": p, "name": sbx.corp.users[p].name} for p in PEOPLE]
    # department/list ("应用可见范围内的部门") includes the tag's departments with their subtrees.
    assert {d["id"] for d in client.get("department/list")["department"]} == SUBTREE
    assert client.get_user(PEOPLE[0]).userid == PEOPLE[0]
    assert client.get_user(next(iter(in_subtree(sbx)))).active
    with pytest.raises(NotFoundError):
        client.get_user("user0011")  # 客户成功部: not in the range
    with pytest.raises(PermissionDeniedError):
        client.list_department_users("17")

    # A tag outside the range answers only the members inside it (90213: "返回列表仅包含应用可见范围的成员").
    other = wecom_binding.put_tag(http, server, sbx, ["user0011", PEOPLE[1]], [17, 8], name="其他")["tag"]["tagid"]
    cut = client.get("tag/get", tagid=other)
    assert cut["userlist"] == [{"userid": PEOPLE[1], "name": sbx.corp.users[PEOPLE[1]].name}]
    assert cut["partylist"] == [8]

    # The sign-in page offers the tag's people, and nobody outside the range.
    page = http.get(f"{server.url}/connect/oauth2/authorize", params={
        "appid": sbx.corp.corp_id, "redirect_uri": "http://crm.test/cb", "response_type": "code",
        "scope": "snsapi_base", "state": "s"}).text
    assert all(p in page for p in PEOPLE) and "user0006" in page and "user0011" not in page


def test_tag_get_is_rate_limited_like_every_api(world, sbx, server, http, tag_range):
    client = WeComClient(WeComCredentials(sbx.corp.corp_id, sbx.secret, str(sbx.agent_id)),
                         api_base=f"{server.url}/cgi-bin", http=http, throttle_retries=0)
    http.post(f"{server.url}/sandbox/wecom/config", json={"perMinute": 2, "resetCounters": True})
    client.tag_members(tag_range)
    client.tag_members(tag_range)
    with pytest.raises(RateLimitedError) as info:
        client.tag_members(tag_range)
    assert info.value.code == "45009"
    assert _calls(http, server)["tag/get"] == 3


def test_unknown_tag_is_40068_with_a_clear_cause(world, sbx, server, http, tag_range):
    client = WeComClient(WeComCredentials(sbx.corp.corp_id, sbx.secret, str(sbx.agent_id)),
                         api_base=f"{server.url}/cgi-bin", http=http)
    with pytest.raises(NotFoundError) as info:
        client.tag_members(999)
    assert info.value.code == "40068" and "标签不存在" in info.value.cause and "tag not found" in info.value.cause
    mapped = errors.error_for(40068, "invalid tagid")
    assert isinstance(mapped, NotFoundError) and mapped.cause == info.value.cause


def test_sandbox_tag_controls_refuse_bad_input(world, sbx, server, http, tag_range):
    base = f"{server.url}/sandbox/wecom"
    bad = http.post(f"{base}/config", json={"corpId": sbx.corp.corp_id, "allowTags": [12345]})
    assert bad.status_code == 400 and bad.json()["field"] == "allowTags"
    bad = http.post(f"{base}/tags", json={"corpId": sbx.corp.corp_id, "tagname": "x", "partylist": ["sales"]})
    assert bad.status_code == 400 and bad.json()["field"] == "partylist"
    unknown = http.post(f"{base}/tags", json={"corpId": sbx.corp.corp_id, "tagname": "x", "userlist": ["nobody"]})
    assert unknown.status_code == 400 and unknown.json()["errcode"] == 60111
    assert sbx.allow_tags == [tag_range] and list(sbx.tags) == [tag_range]
    corps = http.get(f"{base}/corps").json()["corps"][0]
    assert corps["allowTags"] == [tag_range] and corps["tags"][0]["userlist"] == PEOPLE
    # A deleted tag leaves the range with it.
    gone = http.delete(f"{base}/tags/{tag_range}", params={"corpId": sbx.corp.corp_id})
    assert gone.status_code == 200 and gone.json() == {"tags": [], "allowTags": []}


def test_tag_members_can_sign_in_and_others_cannot(database, wsettings, corp_pk, sbx, server, http, tag_range):
    def sign_in(userid):
        code = http.post(f"{server.url}/sandbox/wecom/code",
                         json={"corpId": sbx.corp.corp_id, "userid": userid}).json()["code"]
        with database.session() as s:
            corp = s.get(Corp, corp_pk)
            return sign_in_with_wecom(s, clients=lambda c: wecom_binding.client(database, wsettings, c.id),
                                      corp=corp, code=code).user.platform_userid

    # Before any sync: first sign-in reads the person with user/get, which the tag makes visible.
    assert sign_in(PEOPLE[1]) == PEOPLE[1]
    assert sign_in("user0006") == "user0006"  # 天津组, in the tag's subtree
    with pytest.raises(Forbidden) as info:
        sign_in("user0011")
    assert info.value.code == "outside_visible_range"


# ----------------------------------------------------------------------------- the client, request by request

BASE = "https://wecom.test.invalid/cgi-bin"


@pytest.fixture
def mocked():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add(responses.GET, f"{BASE}/gettoken", json={"errcode": 0, "access_token": "tok-1", "expires_in": 7200})
        yield rsps


@pytest.fixture
def unit_client():
    return WeComClient(WeComCredentials("ww0123456789abcdef", "s" * 43, "1000002"), api_base=BASE,
                       sleep=lambda _s: None)


def _calls_to(rsps, path):
    return [c for c in rsps.calls if urlsplit(c.request.url).path == "/cgi-bin/" + path]


def _query(call):
    return {k: v[0] for k, v in parse_qs(urlsplit(call.request.url).query).items()}


AGENT = {"errcode": 0, "agentid": 1000002, "name": "CRM", "allow_userinfos": {"user": [{"userid": "boss"}]},
         "allow_partys": {"partyid": []}, "allow_tags": {"tagid": [3]}}
TAG = {"errcode": 0, "errmsg": "ok", "tagname": "乒乓球协会", "userlist": [{"userid": "zhangsan", "name": "李四"}],
       "partylist": [2]}


def test_tag_get_is_the_documented_request(unit_client, mocked):
    mocked.add(responses.GET, f"{BASE}/tag/get", json=TAG)
    assert unit_client.tag_members(3) == (["zhangsan"], ["2"])
    (call,) = _calls_to(mocked, "tag/get")
    assert call.request.method == "GET" and _query(call) == {"access_token": "tok-1", "tagid": "3"}


def test_named_people_are_allow_userinfos_and_tag_members(unit_client, mocked):
    mocked.add(responses.GET, f"{BASE}/agent/get", json=AGENT)
    mocked.add(responses.GET, f"{BASE}/tag/get", json=TAG)
    for uid in ("boss", "zhangsan"):
        mocked.add(responses.GET, f"{BASE}/user/get", match=[responses.matchers.query_param_matcher(
            {"access_token": "tok-1", "userid": uid})],
            json={"errcode": 0, "userid": uid, "name": uid, "department": [9], "main_department": 9})
    assert [u.userid for u in unit_client.list_direct_users()] == ["boss", "zhangsan"]
    assert len(_calls_to(mocked, "tag/get")) == 1


def _tag_range_without_departments(mocked, subtree: dict):
    mocked.add(responses.GET, f"{BASE}/department/list", match=[responses.matchers.query_param_matcher(
        {"access_token": "tok-1"})], json={"errcode": 0, "department": []})
    mocked.add(responses.GET, f"{BASE}/agent/get", json={**AGENT, "allow_userinfos": {"user": []}})
    mocked.add(responses.GET, f"{BASE}/tag/get", json=TAG)
    mocked.add(responses.GET, f"{BASE}/department/list", match=[responses.matchers.query_param_matcher(
        {"access_token": "tok-1", "id": "2"})], json=subtree)


def test_tag_department_missing_from_the_list_becomes_a_top(unit_client, mocked):
    """If `department/list` leaves a tag's department out, it is read with its subtree and walked."""
    _tag_range_without_departments(mocked, {"errcode": 0, "department": [
        {"id": 2, "name": "销售部", "parentid": 1, "order": 1}, {"id": 5, "name": "华东组", "parentid": 2}]})
    assert unit_client.root_department_ids() == ["2"]
    assert [d.dept_id for d in unit_client.walk_departments()] == ["2", "5"]
    assert unit_client.get_department("2").name == "销售部" and not _calls_to(mocked, "department/get")


def test_tag_department_refused_with_its_subtree_is_read_alone(unit_client, mocked):
    # Refused with its subtree: the department alone (department/get), so its own members are listed.
    _tag_range_without_departments(mocked, {"errcode": 60011, "errmsg": "no privilege"})
    mocked.add(responses.GET, f"{BASE}/department/get", json={
        "errcode": 0, "department": {"id": 2, "name": "销售部", "parentid": 1}})
    assert unit_client.root_department_ids() == ["2"]
    (get,) = _calls_to(mocked, "department/get")
    assert _query(get) == {"access_token": "tok-1", "id": "2"}
    assert unit_client.list_sub_departments("2") == []


def test_empty_range_fires_only_when_nothing_is_visible(unit_client, mocked):
    mocked.add(responses.GET, f"{BASE}/department/list", json={"errcode": 0, "department": []})
    # Only a tag's people: not empty, nothing to walk.
    mocked.add(responses.GET, f"{BASE}/agent/get", json={**AGENT, "allow_userinfos": {"user": []}})
    mocked.add(responses.GET, f"{BASE}/tag/get", json={**TAG, "partylist": []})
    assert unit_client.root_department_ids() == []
    # A tag with nobody in range, no departments, no people: empty.
    mocked.replace(responses.GET, f"{BASE}/tag/get", json={**TAG, "userlist": [], "partylist": []})
    with pytest.raises(PermissionDeniedError) as info:
        unit_client.root_department_ids()
    assert info.value.code == "empty_visible_range" and "标签" in info.value.cause
