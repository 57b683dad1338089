"""WeComClient against mocked HTTP (`responses`): exact requests, response mapping, error mapping."""

from __future__ import annotations

import hashlib
import json
import logging
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
from responses import matchers

from integrations.base import (
    CredentialsError,
    InvalidCodeError,
    InvalidTokenError,
    Message,
    NotFoundError,
    PermissionDeniedError,
    PlatformError,
    RateLimitedError,
    RetryableError,
)
from integrations.wecom.client import WeComClient, WeComCredentials

BASE = "https://wecom.test.invalid/cgi-bin"
SECRET = "wecom-app-secret-value-0123456789"
CREDS = WeComCredentials(corp_id="ww0123456789abcdef", secret=SECRET, agent_id="1000002")


@pytest.fixture
def sleeps():
    return []


@pytest.fixture
def usage():
    return []


@pytest.fixture
def clock():
    return [1_700_000_000.0]


@pytest.fixture
def client(sleeps, usage, clock):
    return WeComClient(CREDS, api_base=BASE, sleep=sleeps.append, clock=lambda: clock[0],
                       usage_hook=lambda path, family: usage.append(path))


@pytest.fixture
def mocked():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


def add_token(rsps, *tokens):
    for tok in tokens or ("tok-1",):
        rsps.add(responses.GET, f"{BASE}/gettoken", json={"errcode": 0, "access_token": tok, "expires_in": 7200})


def calls_to(rsps, path):
    return [c for c in rsps.calls if urlsplit(c.request.url).path == "/cgi-bin/" + path]


def query(call):
    return {k: v[0] for k, v in parse_qs(urlsplit(call.request.url).query).items()}


def body(call):
    return json.loads(call.request.body)


DEPTS = {"errcode": 0, "department": [
    {"id": 1, "name": "星河科技", "parentid": 0, "order": 100},
    {"id": 2, "name": "销售部", "parentid": 1, "order": 90},
    {"id": 3, "name": "市场部", "parentid": 1, "order": 95},
    {"id": 4, "name": "华东组", "parentid": 2, "order": 1},
]}


def test_session_ignores_proxy_environment_and_calls_have_timeouts(client, mocked):
    assert client.http.trust_env is False
    add_token(mocked)
    mocked.add(responses.GET, f"{BASE}/user/get", json={"errcode": 0, "userid": "u1", "name": "张三"})
    seen = []
    original = client.http.request

    def spy(method, url, **kwargs):
        seen.append(kwargs.get("timeout"))
        return original(method, url, **kwargs)

    client.http.request = spy
    client.get_user("u1")
    assert seen == [(3.0, 10.0), (3.0, 10.0)]  # gettoken (wechatpy would send none) and user/get


def test_token_request_uses_configured_host_and_is_cached(client, mocked):
    add_token(mocked)
    mocked.add(responses.GET, f"{BASE}/user/get", json={"errcode": 0, "userid": "u1", "name": "张三"})
    client.get_user("u1")
    client.get_user("u1")
    (tok,) = calls_to(mocked, "gettoken")
    assert tok.request.method == "GET"
    assert query(tok) == {"corpid": CREDS.corp_id, "corpsecret": SECRET}
    gets = calls_to(mocked, "user/get")
    assert [query(c) for c in gets] == [{"access_token": "tok-1", "userid": "u1"}] * 2


def test_exchange_sign_in_code_uses_auth_getuserinfo(client, mocked):
    add_token(mocked)
    mocked.add(responses.GET, f"{BASE}/auth/getuserinfo", json={"errcode": 0, "userid": "zhangsan"})
    ident = client.exchange_sign_in_code("code-abc")
    (call,) = calls_to(mocked, "auth/getuserinfo")
    assert call.request.method == "GET"
    assert query(call) == {"access_token": "tok-1", "code": "code-abc"}
    assert ident.userid == "zhangsan"
    assert calls_to(mocked, "user/getuserinfo") == []


def test_sign_in_by_non_member_is_refused(client, mocked):
    add_token(mocked)
    mocked.add(responses.GET, f"{BASE}/auth/getuserinfo", json={"errcode": 0, "openid": "oX", "external_userid": "e"})
    with pytest.raises(PermissionDeniedError):
        client.exchange_sign_in_code("code")


@pytest.mark.parametrize("errcode", [40029, 42003])
def test_used_or_expired_code(client, mocked, errcode):
    add_token(mocked)
    mocked.add(responses.GET, f"{BASE}/auth/getuserinfo", json={"errcode": errcode, "errmsg": "invalid code"})
    with pytest.raises(InvalidCodeError):
        client.exchange_sign_in_code("code")
    assert len(calls_to(mocked, "auth/getuserinfo")) == 1


@pytest.mark.parametrize("errcode", [40014, 42001])
def test_rejected_token_is_refreshed_and_call_retried_once(client, mocked, errcode):
    add_token(mocked, "tok-old", "tok-new")
    mocked.add(responses.GET, f"{BASE}/user/get", json={"errcode": errcode, "errmsg": "token"})
    mocked.add(responses.GET, f"{BASE}/user/get", json={"errcode": 0, "userid": "u1", "name": "李四"})
    assert client.get_user("u1").name == "李四"
    assert len(calls_to(mocked, "gettoken")) == 2
    assert [query(c)["access_token"] for c in calls_to(mocked, "user/get")] == ["tok-old", "tok-new"]


def test_token_refresh_gives_up_after_one_retry(client, mocked):
    """wechatpy's own auto-retry would loop ~1000 times here (sdk notes §7)."""
    add_token(mocked, "tok-a", "tok-b", "tok-c")
    for _ in range(5):
        mocked.add(responses.GET, f"{BASE}/user/get", json={"errcode": 42001, "errmsg": "expired"})
    with pytest.raises(InvalidTokenError):
        client.get_user("u1")
    assert len(calls_to(mocked, "user/get")) == 2
    assert len(calls_to(mocked, "gettoken")) == 2


def test_bad_secret_is_not_retried(client, mocked):
    mocked.add(responses.GET, f"{BASE}/gettoken", json={"errcode": 40001, "errmsg": "invalid credential"})
    with pytest.raises(CredentialsError) as info:
        client.get_user("u1")
    assert info.value.code == "40001"
    assert "Secret" in info.value.cause and SECRET not in str(info.value)
    assert len(calls_to(mocked, "gettoken")) == 1


@pytest.mark.parametrize(
    ("errcode", "error", "retryable"),
    [
        (-1, RetryableError, True),
        (40013, CredentialsError, False),
        (60020, CredentialsError, False),
        (301002, CredentialsError, False),
        (60011, PermissionDeniedError, False),
        (48002, PermissionDeniedError, False),
        (60111, NotFoundError, False),
        (45009, RateLimitedError, True),
        (45033, RateLimitedError, True),
        (99999, PlatformError, False),
    ],
)
def test_error_mapping(client, mocked, errcode, error, retryable):
    add_token(mocked)
    mocked.add(responses.GET, f"{BASE}/user/get", json={"errcode": errcode, "errmsg": "x, hint: [abc]"})
    mocked.add(responses.GET, f"{BASE}/user/get", json={"errcode": errcode, "errmsg": "x, hint: [abc]"})
    with pytest.raises(error) as info:
        client.get_user("u1")
    assert type(info.value) is error
    assert info.value.retryable is retryable
    assert info.value.platform == "wecom"
    assert info.value.code == str(errcode)
    assert "\n" not in info.value.cause and "(" in info.value.cause


def test_45033_is_slept_off_once_but_45009_is_not(client, mocked, sleeps):
    add_token(mocked)
    mocked.add(responses.GET, f"{BASE}/user/get", json={"errcode": 45033, "errmsg": "concurrent"})
    mocked.add(responses.GET, f"{BASE}/user/get", json={"errcode": 0, "userid": "u1", "name": "王五"})
    assert client.get_user("u1").name == "王五"
    assert sleeps == [1.0]
    mocked.add(responses.GET, f"{BASE}/user/list", json={"errcode": 45009, "errmsg": "freq"})
    with pytest.raises(RateLimitedError) as info:
        client.list_department_users("2")
    assert info.value.retry_after == 60.0
    assert sleeps == [1.0] and len(calls_to(mocked, "user/list")) == 1


def test_timeout_and_non_json_and_http_5xx_are_retryable(client, mocked):
    add_token(mocked)
    mocked.add(responses.GET, f"{BASE}/user/get", body=requests.ReadTimeout("slow"))
    with pytest.raises(RetryableError) as info:
        client.get_user("u1")
    assert info.value.code == "timeout"
    mocked.add(responses.GET, f"{BASE}/user/get", body="<html>busy</html>")
    with pytest.raises(RetryableError):
        client.get_user("u1")
    mocked.add(responses.GET, f"{BASE}/user/get", status=502, body="bad gateway")
    with pytest.raises(RetryableError) as info:
        client.get_user("u1")
    assert info.value.code == "502"


def test_departments_come_from_one_department_list_call(client, mocked):
    add_token(mocked)
    mocked.add(responses.GET, f"{BASE}/department/list", json=DEPTS)
    depts = list(client.walk_departments())
    assert [d.dept_id for d in depts] == ["1", "3", "2", "4"]  # higher `order` first, as WeCom shows them
    assert depts[0].parent_id is None and depts[3].parent_id == "2"
    (call,) = calls_to(mocked, "department/list")
    assert call.request.method == "GET" and query(call) == {"access_token": "tok-1"}


def test_visible_range_below_root(client, mocked):
    add_token(mocked)
    mocked.add(responses.GET, f"{BASE}/department/list", json={"errcode": 0, "department": [
        {"id": 7, "name": "华南大区", "parentid": 2, "order": 1}, {"id": 8, "name": "深圳组", "parentid": 7}]})
    assert client.root_department_id() == "7"
    assert [d.dept_id for d in client.walk_departments()] == ["7", "8"]


def test_empty_visible_range_is_an_actionable_error(client, mocked):
    add_token(mocked)
    mocked.add(responses.GET, f"{BASE}/department/list", json={"errcode": 0, "department": []})
    mocked.add(responses.GET, f"{BASE}/agent/get", json={"errcode": 0, "agentid": 1000002, "name": "CRM",
                                                        "allow_userinfos": {"user": []},
                                                        "allow_partys": {"partyid": []}})
    with pytest.raises(PermissionDeniedError) as info:
        list(client.walk_departments())
    assert "可见范围" in info.value.cause and "visible range" in info.value.cause
    (agent,) = calls_to(mocked, "agent/get")
    assert query(agent) == {"access_token": "tok-1", "agentid": "1000002"}


def test_disjoint_visible_range_has_one_root_per_subtree(client, mocked):
    """Departments 5 and 9 visible, their parents (and the corp root) not: both are roots, each walked."""
    add_token(mocked)
    mocked.add(responses.GET, f"{BASE}/department/list", json={"errcode": 0, "department": [
        {"id": 9, "name": "财务部", "parentid": 1, "order": 3},
        {"id": 5, "name": "华东大区", "parentid": 3, "order": 1},
        {"id": 6, "name": "上海组", "parentid": 5, "order": 1},
        {"id": 10, "name": "核算组", "parentid": 9, "order": 1}]})
    assert client.root_department_ids() == ["5", "9"]
    assert [d.dept_id for d in client.walk_departments()] == ["5", "6", "9", "10"]
    # Each walk reads the range afresh, once (the roots' own details come from that answer); no id: the
    # whole visible range in one answer.
    assert [query(c) for c in calls_to(mocked, "department/list")] == [{"access_token": "tok-1"}] * 2
    mocked.add(responses.GET, f"{BASE}/agent/get", json={"errcode": 0, "name": "CRM",
                                                        "allow_userinfos": {"user": []}})
    report = client.test_connection()
    assert report.ok and "华东大区、财务部" in report.message and report.root_department == "华东大区"


def test_people_named_in_the_range_are_read_one_by_one(client, mocked):
    add_token(mocked)
    mocked.add(responses.GET, f"{BASE}/agent/get", json={"errcode": 0, "agentid": 1000002, "name": "CRM",
                                                        "allow_userinfos": {"user": [{"userid": "boss"},
                                                                                     {"userid": "gone"}]},
                                                        "allow_partys": {"partyid": []}})
    mocked.add(responses.GET, f"{BASE}/user/get", match=[matchers.query_param_matcher(
        {"access_token": "tok-1", "userid": "boss"})],
        json={"errcode": 0, "userid": "boss", "name": "老板", "department": [2], "main_department": 2})
    mocked.add(responses.GET, f"{BASE}/user/get", match=[matchers.query_param_matcher(
        {"access_token": "tok-1", "userid": "gone"})], json={"errcode": 60111, "errmsg": "userid not found"})
    users = client.list_direct_users()
    assert [(u.userid, u.department_ids) for u in users] == [("boss", ("2",))]
    assert len(calls_to(mocked, "user/get")) == 2
    # Departments none, people some: a range of named people is not empty, there is just nothing to walk.
    mocked.add(responses.GET, f"{BASE}/department/list", json={"errcode": 0, "department": []})
    assert client.root_department_ids() == []


def test_list_department_users_maps_fields(client, mocked):
    add_token(mocked)
    mocked.add(responses.GET, f"{BASE}/user/list", json={"errcode": 0, "userlist": [
        {"userid": "zhangsan", "name": "张三", "department": [2, 4], "order": [10, 20], "position": "经理",
         "status": 1, "main_department": 4, "is_leader_in_dept": [1, 0]},
        {"userid": "lisi", "name": "李四", "department": [2], "status": 5},
        {"userid": "wangwu", "name": "王五", "department": [2], "status": 4},
    ]})
    page = client.list_department_users("2")
    (call,) = calls_to(mocked, "user/list")
    assert query(call) == {"access_token": "tok-1", "department_id": "2"}
    assert page.next_cursor is None
    zs, ls, ww = page.users
    assert zs.department_ids == ("2", "4") and zs.leader_of == ("2",) and zs.main_department_id == "4"
    assert zs.department_orders == {"2": 10, "4": 20} and zs.title == "经理" and zs.mobile is None
    assert (zs.active, ls.active, ww.active) == (True, False, True)


def test_missing_contact_permission(client, mocked):
    add_token(mocked)
    mocked.add(responses.GET, f"{BASE}/user/list", json={"errcode": 60011, "errmsg": "no privilege"})
    with pytest.raises(PermissionDeniedError) as info:
        client.list_department_users("2")
    assert "可见范围" in info.value.cause


def test_test_connection_reports_cause(client, mocked):
    mocked.add(responses.GET, f"{BASE}/gettoken", json={"errcode": 60020, "errmsg": "not allow to access from your ip"})
    report = client.test_connection()
    assert report.ok is False and "IP" in report.message and "60020" in report.message


def test_test_connection_ok(client, mocked):
    add_token(mocked)
    mocked.add(responses.GET, f"{BASE}/agent/get", json={"errcode": 0, "agentid": 1000002, "name": "CRM"})
    mocked.add(responses.GET, f"{BASE}/department/list", json=DEPTS)
    report = client.test_connection()
    assert report.ok and report.root_department == "星河科技"
    (agent,) = calls_to(mocked, "agent/get")
    assert query(agent) == {"access_token": "tok-1", "agentid": "1000002"}


def test_js_config_signs_both_tickets_and_caches_them(client, mocked, clock):
    add_token(mocked)
    mocked.add(responses.GET, f"{BASE}/get_jsapi_ticket", json={"errcode": 0, "ticket": "corp-t", "expires_in": 7200})
    mocked.add(responses.GET, f"{BASE}/ticket/get", json={"errcode": 0, "ticket": "agent-t", "expires_in": 7200})
    url = "https://crm.example/h5/?a=1&b=中文#/deal/3"
    cfg = client.js_config(url)
    page = "https://crm.example/h5/?a=1&b=中文"
    for part, ticket in ((cfg["config"], "corp-t"), (cfg["agentConfig"], "agent-t")):
        plain = f"jsapi_ticket={ticket}&noncestr={part['nonceStr']}&timestamp={part['timestamp']}&url={page}"
        assert part["signature"] == hashlib.sha1(plain.encode()).hexdigest()
    assert cfg["config"]["appId"] == CREDS.corp_id
    assert cfg["agentConfig"]["agentid"] == "1000002" and cfg["agentConfig"]["corpid"] == CREDS.corp_id
    (agent_call,) = calls_to(mocked, "ticket/get")
    assert query(agent_call) == {"access_token": "tok-1", "type": "agent_config"}
    clock[0] += 3600
    client.js_config(url)
    assert len(calls_to(mocked, "get_jsapi_ticket")) == 1 and len(calls_to(mocked, "ticket/get")) == 1
    clock[0] += 3000  # within 10 minutes of the 2 h expiry: both are refreshed
    add_token(mocked, "tok-2")
    client.js_config(url)
    assert len(calls_to(mocked, "get_jsapi_ticket")) == 2 and len(calls_to(mocked, "ticket/get")) == 2


def test_official_jssdk_signature_vector(client):
    sig = client.wx.jsapi.get_jsapi_signature(
        "Wm3WZYTPz0wzccnW",
        "sM4AOVdWfPE4DxkXGEs8VMCPGGVi4C3VM0P37wVUCFvkVAy_90u5h9nbSlYy3-Sl-HhTdfl2fzFy1AOcHKP7qg",
        1414587457, "http://mp.weixin.qq.com?params=value")
    assert sig == "0f9de62fce790f9a083d5c99e95740ceb90c27ed"


def test_send_markdown_records_invalid_users(client, mocked):
    add_token(mocked)
    mocked.add(responses.POST, f"{BASE}/message/send", json={
        "errcode": 0, "invaliduser": "zhaoliu", "invalidparty": "", "msgid": "MSG1"})
    receipt = client.send_message(["ZhangSan", "ZhaoLiu"], Message(title="跟进提醒", markdown="客户**A**", url="https://x/h5"))
    (call,) = calls_to(mocked, "message/send")
    assert call.request.method == "POST" and query(call) == {"access_token": "tok-1"}
    sent = body(call)
    assert sent["touser"] == "ZhangSan|ZhaoLiu" and sent["agentid"] == 1000002
    assert sent["msgtype"] == "markdown" and sent["markdown"]["content"].startswith("**跟进提醒**\n客户**A**")
    assert sent["enable_duplicate_check"] == 1
    assert receipt.task_id == "MSG1" and receipt.accepted == ("ZhangSan",)
    assert receipt.rejected == {"ZhaoLiu": "invaliduser"}


def test_send_textcard(client, mocked):
    add_token(mocked)
    mocked.add(responses.POST, f"{BASE}/message/send", json={"errcode": 0, "msgid": "M"})
    client.send_message(["u1"], Message(title="标" * 100, markdown="说" * 300, url="https://x/h5", kind="card",
                                        button_text="查看详情"))
    card = body(calls_to(mocked, "message/send")[0])["textcard"]
    assert len(card["title"].encode()) <= 128 and card["title"].endswith("…")
    assert len(card["description"].encode()) <= 512
    assert card["url"] == "https://x/h5" and card["btntxt"] == "查看详情"


def test_send_approval_card_and_update_it(client, mocked):
    add_token(mocked)
    mocked.add(responses.POST, f"{BASE}/message/send", json={"errcode": 0, "msgid": "M2", "response_code": "RC1"})
    msg = Message(title="折扣审批", markdown="客户 A 申请 8 折", url="https://x/h5/approvals/9", kind="approval",
                  extra={"task_id": "appr-9-step-1", "form": [("申请人", "张三"), ("折扣", "8 折")]})
    receipt = client.send_message(["mgr1", "mgr2"], msg)
    sent = body(calls_to(mocked, "message/send")[0])
    card = sent["template_card"]
    assert sent["msgtype"] == "template_card" and "enable_duplicate_check" not in sent
    assert card["card_type"] == "button_interaction" and card["task_id"] == "appr-9-step-1"
    assert [(b["text"], b["key"]) for b in card["button_list"]] == [("同意", "approve"), ("驳回", "reject")]
    assert card["horizontal_content_list"][0] == {"keyname": "申请人", "value": "张三"}
    assert card["card_action"] == {"type": 1, "url": "https://x/h5/approvals/9"}
    assert receipt.response_code == "RC1" and receipt.card_task_id == "appr-9-step-1"

    mocked.add(responses.POST, f"{BASE}/message/update_template_card", json={"errcode": 0, "invaliduser": []})
    client.update_template_card("RC1", atall=True, replace_name="已同意")
    (upd,) = calls_to(mocked, "message/update_template_card")
    assert query(upd) == {"access_token": "tok-1"}
    assert body(upd) == {"agentid": 1000002, "response_code": "RC1", "atall": 1, "button": {"replace_name": "已同意"}}


def test_approval_without_task_id_is_refused(client):
    with pytest.raises(ValueError):
        client.send_message(["u1"], Message(title="t", markdown="m", kind="approval"))


def test_all_recipients_invalid_is_a_receipt_not_a_crash(client, mocked):
    add_token(mocked)
    mocked.add(responses.POST, f"{BASE}/message/send", json={"errcode": 81013, "errmsg": "all invalid"})
    receipt = client.send_message(["gone1", "gone2"], Message(title="t", markdown="m"))
    assert receipt.accepted == () and receipt.rejected == {"gone1": "invaliduser", "gone2": "invaliduser"}


def test_more_than_1000_recipients_is_refused_before_sending(client):
    with pytest.raises(ValueError):
        client.send_message([f"u{i}" for i in range(1001)], Message(title="t", markdown="m"))


def test_usage_is_counted_per_path(client, mocked, usage):
    add_token(mocked)
    mocked.add(responses.GET, f"{BASE}/user/get", json={"errcode": 0, "userid": "u1", "name": "x"})
    client.get_user("u1")
    assert usage == ["gettoken", "user/get"]


def test_debug_logging_never_shows_the_secret_or_token(client, mocked, caplog):
    add_token(mocked)
    mocked.add(responses.GET, f"{BASE}/user/get", json={"errcode": 0, "userid": "u1", "name": "x"})
    record = logging.LogRecord("urllib3.connectionpool", logging.DEBUG, __file__, 1, '%s "%s %s"', (
        "https://h:443", "GET", f"/cgi-bin/gettoken?corpid=ww1&corpsecret={SECRET}&x=1"), None)
    for f in logging.getLogger("urllib3.connectionpool").filters:
        f.filter(record)
    assert SECRET not in record.getMessage() and "corpsecret=***" in record.getMessage()
    with caplog.at_level(logging.DEBUG):
        client.get_user("u1")
    assert SECRET not in caplog.text and "tok-1" not in caplog.text
