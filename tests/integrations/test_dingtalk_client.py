"""DingTalkClient against mocked HTTP (`responses`): exact requests, response mapping, error mapping."""

from __future__ import annotations

import hashlib
import json
import logging
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses

from integrations.base import (
    CredentialsError,
    InvalidCodeError,
    InvalidTokenError,
    Message,
    NotFoundError,
    PermissionDeniedError,
    PlatformError,
    QuotaExceededError,
    RateLimitedError,
    RetryableError,
)
from integrations.dingtalk.client import DingTalkClient, DingTalkCredentials
from integrations.dingtalk.messages import msg_size

OAPI = "https://oapi.test.invalid"
API = "https://api.test.invalid"
SECRET = "s3cr3t-app-secret-value"
CREDS = DingTalkCredentials(corp_id="dingcorp001", app_key="dingappkey", app_secret=SECRET, agent_id="123456")


@pytest.fixture
def sleeps():
    return []


@pytest.fixture
def usage():
    return []


@pytest.fixture
def client(sleeps, usage):
    return DingTalkClient(
        CREDS, oapi_base=OAPI, api_base=API, sleep=sleeps.append,
        usage_hook=lambda path, family: usage.append((path, str(family))),
    )


@pytest.fixture
def mocked():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


def add_token(rsps, *tokens):
    for tok in tokens or ("tok-1",):
        rsps.add(responses.POST, f"{API}/v1.0/oauth2/accessToken", json={"accessToken": tok, "expireIn": 7200})


def calls_to(rsps, path):
    return [c for c in rsps.calls if urlsplit(c.request.url).path == path]


def query(call):
    return {k: v[0] for k, v in parse_qs(urlsplit(call.request.url).query).items()}


def body(call):
    return json.loads(call.request.body)


def test_session_ignores_proxy_environment(client):
    assert client.http.session.trust_env is False


def test_token_request_and_cache(client, mocked):
    add_token(mocked)
    mocked.add(responses.POST, f"{OAPI}/topapi/v2/department/listsub", json={"errcode": 0, "result": []})
    client.list_sub_departments("1")
    client.list_sub_departments("1")
    (tok_call,) = calls_to(mocked, "/v1.0/oauth2/accessToken")
    assert tok_call.request.method == "POST"
    assert body(tok_call) == {"appKey": "dingappkey", "appSecret": SECRET}
    assert tok_call.request.headers["Content-Type"].startswith("application/json")
    api_calls = calls_to(mocked, "/topapi/v2/department/listsub")
    assert len(api_calls) == 2
    assert all(query(c) == {"access_token": "tok-1"} for c in api_calls)


def test_exchange_sign_in_code(client, mocked):
    add_token(mocked)
    mocked.add(responses.POST, f"{OAPI}/topapi/v2/user/getuserinfo", json={
        "errcode": 0, "errmsg": "ok", "result": {"userid": "zhangsan", "unionid": "uZS", "name": "张三", "sys": False},
    })
    ident = client.exchange_sign_in_code("code-abc")
    (call,) = calls_to(mocked, "/topapi/v2/user/getuserinfo")
    assert call.request.method == "POST"
    assert query(call) == {"access_token": "tok-1"}
    assert body(call) == {"code": "code-abc"}
    assert (ident.userid, ident.unionid, ident.name) == ("zhangsan", "uZS", "张三")


def test_reused_sign_in_code_is_invalid_code_error(client, mocked):
    add_token(mocked)
    mocked.add(responses.POST, f"{OAPI}/topapi/v2/user/getuserinfo",
               json={"errcode": 40078, "errmsg": "不存在的临时授权码"})
    with pytest.raises(InvalidCodeError) as info:
        client.exchange_sign_in_code("used")
    assert info.value.retryable is False
    assert info.value.code == "40078"
    assert len(calls_to(mocked, "/topapi/v2/user/getuserinfo")) == 1


@pytest.mark.parametrize(
    "rejection",
    [
        {"errcode": 40014, "errmsg": "不合法的access_token"},
        {"errcode": 42001, "errmsg": "access_token超时"},
        {"errcode": 88, "errmsg": "鉴权异常", "sub_code": "40014", "sub_msg": "不合法的access_token"},
    ],
)
def test_rejected_token_is_refreshed_and_call_retried_once(client, mocked, rejection):
    add_token(mocked, "tok-old", "tok-new")
    mocked.add(responses.POST, f"{OAPI}/topapi/v2/user/get", json=rejection)
    mocked.add(responses.POST, f"{OAPI}/topapi/v2/user/get",
               json={"errcode": 0, "result": {"userid": "u1", "name": "李四", "dept_id_list": [2]}})
    user = client.get_user("u1")
    assert user.name == "李四"
    assert len(calls_to(mocked, "/v1.0/oauth2/accessToken")) == 2
    tries = calls_to(mocked, "/topapi/v2/user/get")
    assert [query(c)["access_token"] for c in tries] == ["tok-old", "tok-new"]


def test_token_refresh_gives_up_after_one_retry(client, mocked):
    add_token(mocked, "tok-a", "tok-b", "tok-c")
    for _ in range(3):
        mocked.add(responses.POST, f"{OAPI}/topapi/v2/user/get", json={"errcode": 40014, "errmsg": "bad token"})
    with pytest.raises(InvalidTokenError):
        client.get_user("u1")
    assert len(calls_to(mocked, "/topapi/v2/user/get")) == 2
    assert len(calls_to(mocked, "/v1.0/oauth2/accessToken")) == 2


def test_new_api_invalid_authentication_refreshes(client, mocked):
    add_token(mocked, "tok-old", "tok-new")
    mocked.add(responses.POST, f"{API}/v1.0/oauth2/jsapiTickets", status=400,
               json={"code": "InvalidAuthentication", "message": "不合法的access_token"})
    mocked.add(responses.POST, f"{API}/v1.0/oauth2/jsapiTickets", json={"jsapiTicket": "tkt", "expireIn": 7200})
    cfg = client.js_config("https://crm.example/h5/")
    calls = calls_to(mocked, "/v1.0/oauth2/jsapiTickets")
    assert [c.request.headers["x-acs-dingtalk-access-token"] for c in calls] == ["tok-old", "tok-new"]
    assert "access_token" not in query(calls[1])
    assert cfg["signature"]


@pytest.mark.parametrize(
    ("answer", "error", "retryable"),
    [
        ({"errcode": -1, "errmsg": "系统繁忙"}, RetryableError, True),
        ({"errcode": 60011, "errmsg": "没有调用该接口的权限"}, PermissionDeniedError, False),
        ({"errcode": 88, "sub_code": "60011", "sub_msg": "no permission"}, PermissionDeniedError, False),
        ({"errcode": 50002, "errmsg": "不在授权范围"}, PermissionDeniedError, False),
        ({"errcode": 60020, "errmsg": "访问ip不在白名单之中"}, CredentialsError, False),
        ({"errcode": 60121, "errmsg": "找不到该用户"}, NotFoundError, False),
        ({"errcode": 33012, "errmsg": "无效的userid"}, NotFoundError, False),
        ({"errcode": 90020, "errmsg": "quota"}, QuotaExceededError, False),
        ({"errcode": 90001, "errmsg": "blocked"}, RetryableError, True),
        ({"errcode": 12345, "errmsg": "something new"}, PlatformError, False),
        ({"status": 1111, "wait": 5, "source": "x5", "punish": "deny"}, RetryableError, True),
    ],
)
def test_old_api_error_mapping(client, mocked, answer, error, retryable):
    add_token(mocked)
    mocked.add(responses.POST, f"{OAPI}/topapi/v2/user/get", json=answer)
    with pytest.raises(error) as info:
        client.get_user("u1")
    assert type(info.value) is error
    assert info.value.retryable is retryable
    assert info.value.platform == "dingtalk"
    assert "(" in info.value.cause  # Chinese first, then plain words in brackets
    assert len(calls_to(mocked, "/topapi/v2/user/get")) == 1


def test_ip_block_page_asks_to_wait_minutes(client, mocked):
    add_token(mocked)
    mocked.add(responses.POST, f"{OAPI}/topapi/v2/user/get", json={"status": 1111, "wait": 5, "punish": "deny"})
    with pytest.raises(RetryableError) as info:
        client.get_user("u1")
    assert info.value.retry_after == 300


def test_html_answer_is_retryable(client, mocked):
    add_token(mocked)
    mocked.add(responses.POST, f"{OAPI}/topapi/v2/user/get", body="<html>blocked</html>", status=200)
    with pytest.raises(RetryableError):
        client.get_user("u1")


def test_rate_limit_sleeps_then_retries_once_then_raises(client, mocked, sleeps, usage):
    add_token(mocked)
    for _ in range(2):
        mocked.add(responses.POST, f"{OAPI}/topapi/v2/user/get", json={"errcode": 90018, "errmsg": "qps"})
    with pytest.raises(RateLimitedError) as info:
        client.get_user("u1")
    assert info.value.retryable
    assert sleeps == [1.0]
    assert len(calls_to(mocked, "/topapi/v2/user/get")) == 2
    # Throttled calls are not counted by DingTalk, so not by us either.
    assert ("/topapi/v2/user/get", "other") not in usage


def test_rate_limit_then_success(client, mocked, sleeps):
    add_token(mocked)
    mocked.add(responses.POST, f"{OAPI}/topapi/v2/user/get", json={"errcode": 90018, "errmsg": "qps"})
    mocked.add(responses.POST, f"{OAPI}/topapi/v2/user/get", json={"errcode": 0, "result": {"userid": "u1"}})
    assert client.get_user("u1").userid == "u1"
    assert sleeps == [1.0]


@pytest.mark.parametrize(
    ("status", "payload", "error"),
    [
        (403, {"code": "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi"}, RateLimitedError),
        (403, {"code": "Forbidden.AccessDenied.AccessTokenPermissionDenied"}, PermissionDeniedError),
        (403, {"code": "Forbidden.AccessDenied.IpNotInWhiteList"}, CredentialsError),
        (403, {"code": "Forbidden.AccessDenied.ApiCountLimitForOrg"}, QuotaExceededError),
        (500, {"code": "systemError", "message": "x"}, RetryableError),
        (503, None, RetryableError),
        (400, {"code": "todo.taskCreate.paramError", "message": "task exist"}, PlatformError),
    ],
)
def test_new_api_error_mapping(mocked, status, payload, error):
    client = DingTalkClient(CREDS, oapi_base=OAPI, api_base=API, throttle_retries=0)
    add_token(mocked)
    kwargs = {"json": payload} if payload is not None else {"body": "Service Unavailable"}
    mocked.add(responses.POST, f"{API}/v1.0/todo/users/uA/tasks", status=status, **kwargs)
    with pytest.raises(error) as info:
        client.create_todo("uA", subject="s", executor_unionids=["uB"], detail_url="https://x/", source_id="t1")
    assert type(info.value) is error


def test_wrong_app_secret_is_credentials_error(client, mocked):
    mocked.add(responses.POST, f"{API}/v1.0/oauth2/accessToken", status=400,
               json={"code": "invalidClientIdOrSecret", "message": "无效的clientId或者clientSecret"})
    with pytest.raises(CredentialsError) as info:
        client.get_user("u1")
    assert "AppSecret" in info.value.cause


def test_timeout_is_retryable(client, mocked):
    add_token(mocked)
    mocked.add(responses.POST, f"{OAPI}/topapi/v2/user/get", body=requests.ReadTimeout("slow"))
    with pytest.raises(RetryableError) as info:
        client.get_user("u1")
    assert info.value.code == "timeout"


def test_timeouts_are_3s_connect_10s_read(client):
    assert client.http.timeout == (3.0, 10.0)


def test_test_connection_ok(client, mocked):
    add_token(mocked)
    mocked.add(responses.POST, f"{OAPI}/topapi/v2/department/get",
               json={"errcode": 0, "result": {"dept_id": 1, "name": "示例科技有限公司"}})
    report = client.test_connection()
    assert report.ok
    assert report.root_department == "示例科技有限公司"
    assert body(calls_to(mocked, "/topapi/v2/department/get")[0]) == {"dept_id": 1, "language": "zh_CN"}


def test_test_connection_reports_cause_without_secret(client, mocked, caplog):
    caplog.set_level(logging.DEBUG)
    mocked.add(responses.POST, f"{API}/v1.0/oauth2/accessToken", status=400,
               json={"code": "invalidClientIdOrSecret", "message": "bad"})
    report = client.test_connection()
    assert not report.ok
    assert "AppKey 或 AppSecret 不正确" in report.message
    assert SECRET not in report.message
    assert SECRET not in caplog.text
    assert SECRET not in repr(client.credentials)


def test_test_connection_reports_missing_permission(client, mocked):
    add_token(mocked)
    mocked.add(responses.POST, f"{OAPI}/topapi/v2/department/get", json={"errcode": 60011, "errmsg": "no"})
    report = client.test_connection()
    assert not report.ok
    assert "权限" in report.message


def test_js_config_signature(mocked):
    clock = lambda: 1_700_000_000.0  # noqa: E731
    client = DingTalkClient(CREDS, oapi_base=OAPI, api_base=API, clock=clock)
    add_token(mocked)
    mocked.add(responses.POST, f"{API}/v1.0/oauth2/jsapiTickets", json={"jsapiTicket": "TICKET", "expireIn": 7200})
    cfg = client.js_config("https://crm.example/h5/?corpid=ding%20x&a=1#/customers")
    (call,) = calls_to(mocked, "/v1.0/oauth2/jsapiTickets")
    assert call.request.headers["x-acs-dingtalk-access-token"] == "tok-1"
    assert cfg["agentId"] == "123456" and cfg["corpId"] == "dingcorp001" and cfg["type"] == 0
    assert cfg["timeStamp"] == 1_700_000_000
    plain = (f"jsapi_ticket=TICKET&noncestr={cfg['nonceStr']}&timestamp=1700000000"
             "&url=https://crm.example/h5/?corpid=ding x&a=1")
    assert cfg["signature"] == hashlib.sha256(plain.encode()).hexdigest()
    client.js_config("https://crm.example/h5/")
    assert len(calls_to(mocked, "/v1.0/oauth2/jsapiTickets")) == 1  # ticket cached


def test_js_config_sha1_setting(mocked):
    client = DingTalkClient(CREDS, oapi_base=OAPI, api_base=API, jsapi_digest="sha1")
    add_token(mocked)
    mocked.add(responses.POST, f"{API}/v1.0/oauth2/jsapiTickets", json={"jsapiTicket": "T", "expireIn": 7200})
    cfg = client.js_config("https://a/")
    plain = f"jsapi_ticket=T&noncestr={cfg['nonceStr']}&timestamp={cfg['timeStamp']}&url=https://a/"
    assert cfg["signature"] == hashlib.sha1(plain.encode()).hexdigest()


def test_departments(client, mocked):
    add_token(mocked)
    mocked.add(responses.POST, f"{OAPI}/topapi/v2/department/listsub", json={"errcode": 0, "result": [
        {"dept_id": 2, "name": "销售部", "parent_id": 1}, {"dept_id": 3, "name": "市场部", "parent_id": 1}]})
    mocked.add(responses.POST, f"{OAPI}/topapi/v2/department/get",
               json={"errcode": 0, "result": {"dept_id": 1, "name": "总公司"}})
    subs = client.list_sub_departments("1")
    assert [(d.dept_id, d.parent_id, d.name) for d in subs] == [("2", "1", "销售部"), ("3", "1", "市场部")]
    assert body(calls_to(mocked, "/topapi/v2/department/listsub")[0]) == {"dept_id": 1, "language": "zh_CN"}
    root = client.get_department("1")
    assert (root.dept_id, root.parent_id) == ("1", None)


def test_department_not_found(client, mocked):
    add_token(mocked)
    mocked.add(responses.POST, f"{OAPI}/topapi/v2/department/get", json={"errcode": 60003, "errmsg": "部门不存在"})
    with pytest.raises(NotFoundError):
        client.get_department("999")


def test_list_department_users_paging(client, mocked):
    add_token(mocked)
    mocked.add(responses.POST, f"{OAPI}/topapi/v2/user/list", json={"errcode": 0, "result": {
        "has_more": True, "next_cursor": 100,
        "list": [{"userid": "u1", "unionid": "x1", "name": "王五", "title": "销售经理", "dept_id_list": [2, 5],
                  "leader": True, "dept_order": 7, "active": False, "mobile": "13800000000"}]}})
    mocked.add(responses.POST, f"{OAPI}/topapi/v2/user/list", json={"errcode": 0, "result": {
        "has_more": False, "list": [{"userid": "u2", "name": "赵六", "dept_id_list": [2]}]}})
    page1 = client.list_department_users("2")
    page2 = client.list_department_users("2", page1.next_cursor)
    c1, c2 = calls_to(mocked, "/topapi/v2/user/list")
    assert body(c1) == {"dept_id": 2, "cursor": 0, "size": 100, "contain_access_limit": False, "language": "zh_CN"}
    assert body(c2)["cursor"] == 100
    assert page1.next_cursor == 100 and page2.next_cursor is None
    u = page1.users[0]
    assert (u.userid, u.unionid, u.name, u.title, u.mobile) == ("u1", "x1", "王五", "销售经理", "13800000000")
    assert u.department_ids == ("2", "5") and u.leader_of == ("2",) and u.department_orders == {"2": 7}
    # Not activated in DingTalk is still an employee.
    assert u.active is True


def test_get_user_leaders_and_orders(client, mocked):
    add_token(mocked)
    mocked.add(responses.POST, f"{OAPI}/topapi/v2/user/get", json={"errcode": 0, "result": {
        "userid": "m1", "unionid": "um1", "name": "钱七", "dept_id_list": [3, 4],
        "leader_in_dept": [{"dept_id": 3, "leader": True}, {"dept_id": 4, "leader": False}],
        "dept_order_list": [{"dept_id": 3, "order": 1}, {"dept_id": 4, "order": 2}]}})
    u = client.get_user("m1")
    assert body(calls_to(mocked, "/topapi/v2/user/get")[0]) == {"userid": "m1", "language": "zh_CN"}
    assert u.leader_of == ("3",) and u.department_orders == {"3": 1, "4": 2} and u.main_department_id == "3"


def test_send_markdown_message(client, mocked, usage):
    add_token(mocked)
    mocked.add(responses.POST, f"{OAPI}/topapi/message/corpconversation/asyncsend_v2",
               json={"errcode": 0, "task_id": 256271667526, "request_id": "r"})
    receipt = client.send_message(["u1", "u2", "u1"], Message(
        title="跟进提醒", markdown="**客户A** 今天需要跟进", url="https://crm.example/h5/#/c/1"))
    (call,) = calls_to(mocked, "/topapi/message/corpconversation/asyncsend_v2")
    sent = body(call)
    assert query(call) == {"access_token": "tok-1"}
    assert sent["agent_id"] == 123456 and sent["userid_list"] == "u1,u2"
    assert sent["msg"]["msgtype"] == "markdown"
    assert sent["msg"]["markdown"]["title"] == "跟进提醒"
    assert "dingtalk://dingtalkclient/page/link?url=https%3A%2F%2Fcrm.example%2Fh5%2F%23%2Fc%2F1" in (
        sent["msg"]["markdown"]["text"])
    # Chinese travels as UTF-8, not \u escapes.
    assert "跟进提醒".encode() in call.request.body
    assert receipt.task_id == "256271667526" and receipt.accepted == ("u1", "u2")
    assert ("/topapi/message/corpconversation/asyncsend_v2", "work_notification") in usage


def test_send_action_card_and_oa(client, mocked):
    add_token(mocked)
    mocked.add(responses.POST, f"{OAPI}/topapi/message/corpconversation/asyncsend_v2",
               json={"errcode": 0, "task_id": 1})
    client.send_message(["u1"], Message(title="折扣审批", markdown="请审批", url="https://a/x", kind="card",
                                        button_text="去审批"))
    client.send_message(["u1"], Message(title="日报", markdown="本日新增 3 个客户", url="https://a/y", kind="oa",
                                        extra={"form": [("新增客户", 3)]}))
    card, oa = (body(c)["msg"] for c in calls_to(mocked, "/topapi/message/corpconversation/asyncsend_v2"))
    assert card["msgtype"] == "action_card"
    assert card["action_card"]["single_title"] == "去审批"
    assert card["action_card"]["single_url"].startswith("dingtalk://dingtalkclient/page/link?url=https%3A")
    assert oa["msgtype"] == "oa"
    assert oa["oa"]["body"]["form"] == [{"key": "新增客户：", "value": "3"}]
    assert oa["oa"]["message_url"].startswith("dingtalk://")


def test_send_refuses_more_than_100_userids(client, mocked):
    with pytest.raises(ValueError):
        client.send_message([f"u{i}" for i in range(101)], Message(title="t", markdown="m"))
    assert not mocked.calls


def test_send_trims_body_to_2048_bytes(client, mocked):
    add_token(mocked)
    mocked.add(responses.POST, f"{OAPI}/topapi/message/corpconversation/asyncsend_v2",
               json={"errcode": 0, "task_id": 1})
    client.send_message(["u1"], Message(title="长消息", markdown="客户跟进记录" * 400, url="https://a/"))
    msg = body(calls_to(mocked, "/topapi/message/corpconversation/asyncsend_v2")[0])["msg"]
    assert msg_size(msg) <= 2048
    assert msg_size(msg) > 1900  # trimmed, not gutted
    assert "…" in msg["markdown"]["text"] and msg["markdown"]["text"].endswith(")")


def test_send_refuses_when_title_alone_too_big(client, mocked):
    from integrations.dingtalk.messages import MessageTooLargeError

    buttons = [{"title": "同意", "url": "https://a/" + "x" * 700}] * 4
    with pytest.raises(MessageTooLargeError):
        client.send_message(["u1"], Message(title="t", markdown="m", kind="approval", extra={"buttons": buttons}))
    assert not mocked.calls


def test_delivery_report(client, mocked):
    add_token(mocked)
    mocked.add(responses.POST, f"{OAPI}/topapi/message/corpconversation/getsendresult", json={
        "errcode": 0, "send_result": {
            "read_user_id_list": ["u1"], "unread_user_id_list": ["u2", "u3"],
            "invalid_user_id_list": ["ghost"], "forbidden_user_id_list": [],
            "failed_user_id_list": [], "forbidden_list": [{"code": "143106", "count": 1, "userid": "u3"}]}})
    report = client.delivery_report("42")
    (call,) = calls_to(mocked, "/topapi/message/corpconversation/getsendresult")
    assert body(call) == {"agent_id": 123456, "task_id": 42}
    assert report.delivered == ("u1", "u2")
    assert report.failed == {"ghost": "invalid", "u3": "duplicate"}


def test_delivery_report_still_sending_is_retryable(client, mocked):
    add_token(mocked)
    mocked.add(responses.POST, f"{OAPI}/topapi/message/corpconversation/getsendresult",
               json={"errcode": 41052, "errmsg": "sending"})
    with pytest.raises(RetryableError):
        client.delivery_report("42")


def test_create_todo(client, mocked, usage):
    add_token(mocked)
    mocked.add(responses.POST, f"{API}/v1.0/todo/users/uCreator/tasks",
               json={"id": "task-1", "subject": "审批：折扣申请", "done": False})
    task = client.create_todo("uCreator", subject="审批：折扣申请", executor_unionids=["uBoss"],
                              detail_url="https://crm.example/h5/#/approvals/9", source_id="approval-9",
                              due_time_ms=1_700_000_000_000, priority=20)
    (call,) = calls_to(mocked, "/v1.0/todo/users/uCreator/tasks")
    assert call.request.method == "POST"
    assert query(call) == {"operatorId": "uCreator"}
    assert call.request.headers["x-acs-dingtalk-access-token"] == "tok-1"
    assert body(call) == {
        "subject": "审批：折扣申请", "executorIds": ["uBoss"],
        "detailUrl": {"appUrl": "https://crm.example/h5/#/approvals/9",
                      "pcUrl": "https://crm.example/h5/#/approvals/9"},
        "sourceId": "approval-9", "creatorId": "uCreator", "dueTime": 1_700_000_000_000, "priority": 20,
        "notifyConfigs": {"dingNotify": "1"},
    }
    assert task["id"] == "task-1"
    assert ("/v1.0/todo/users/uCreator/tasks", "todo") in usage


def test_update_and_delete_todo(client, mocked):
    add_token(mocked)
    mocked.add(responses.PUT, f"{API}/v1.0/todo/users/uC/tasks/t1", json={"result": True})
    mocked.add(responses.PUT, f"{API}/v1.0/todo/users/uC/tasks/t1/executorStatus", json={"result": True})
    mocked.add(responses.DELETE, f"{API}/v1.0/todo/users/uC/tasks/t1", json={"result": True})
    assert client.complete_todo("uC", "t1")
    assert client.set_todo_executor_status("uC", "t1", {"uB": True})
    assert client.delete_todo("uC", "t1")
    put, status, delete = mocked.calls[1:]
    assert (put.request.method, body(put), query(put)) == ("PUT", {"done": True}, {"operatorId": "uC"})
    assert body(status) == {"executorStatusList": [{"id": "uB", "isDone": True}]}
    assert delete.request.method == "DELETE" and query(delete) == {"operatorId": "uC"}


def test_usage_hook_counts_by_family(client, mocked, usage):
    add_token(mocked)
    mocked.add(responses.POST, f"{OAPI}/topapi/v2/department/listsub", json={"errcode": 0, "result": []})
    client.list_sub_departments("1")
    assert usage == [("/v1.0/oauth2/accessToken", "other"), ("/topapi/v2/department/listsub", "other")]


def test_failing_usage_hook_does_not_break_calls(mocked):
    def broken(path, family):
        raise RuntimeError("db down")

    client = DingTalkClient(CREDS, oapi_base=OAPI, api_base=API, usage_hook=broken)
    add_token(mocked)
    mocked.add(responses.POST, f"{OAPI}/topapi/v2/department/listsub", json={"errcode": 0, "result": []})
    assert client.list_sub_departments("1") == []


def test_limiter_is_asked_for_each_call(mocked):
    asked = []

    class Limiter:
        def acquire(self, api):
            asked.append(api)

    client = DingTalkClient(CREDS, oapi_base=OAPI, api_base=API, limiter=Limiter())
    add_token(mocked)
    mocked.add(responses.POST, f"{OAPI}/topapi/v2/department/listsub", json={"errcode": 0, "result": []})
    client.list_sub_departments("1")
    assert asked == ["/v1.0/oauth2/accessToken", "/topapi/v2/department/listsub"]


def test_delivery_report_maps_every_failure_family(client, mocked):
    add_token(mocked)
    mocked.add(responses.POST, f"{OAPI}/topapi/message/corpconversation/getsendresult", json={
        "errcode": 0, "send_result": {
            "read_user_id_list": ["ok1"], "unread_user_id_list": ["ok2", "cap", "dup"],
            "invalid_user_id_list": ["gone"], "forbidden_user_id_list": ["blocked"],
            "failed_user_id_list": ["broken"],
            "forbidden_list": [{"code": "143105", "count": 1, "userid": "cap"},
                               {"code": "143106", "count": 1, "userid": "dup"},
                               {"code": "1430099", "count": 1, "userid": "odd"}]}})
    report = client.delivery_report("7")
    assert report.delivered == ("ok1", "ok2")
    assert report.failed == {"gone": "invalid", "blocked": "forbidden", "broken": "failed", "cap": "daily_cap",
                             "dup": "duplicate", "odd": "forbidden:1430099"}


def test_action_card_button_opens_the_h5_page_inside_dingtalk(client, mocked):
    add_token(mocked)
    mocked.add(responses.POST, f"{OAPI}/topapi/message/corpconversation/asyncsend_v2",
               json={"errcode": 0, "task_id": 5})
    receipt = client.send_message(["u1"], Message(title="审批", markdown="请审批 #9", kind="approval",
                                                  extra={"buttons": [{"title": "去审批",
                                                                      "url": "https://crm.example/h5/#/approvals/9"}]}))
    card = body(calls_to(mocked, "/topapi/message/corpconversation/asyncsend_v2")[0])["msg"]["action_card"]
    assert card["btn_json_list"] == [{
        "title": "去审批",
        "action_url": "dingtalk://dingtalkclient/page/link?url=https%3A%2F%2Fcrm.example%2Fh5%2F%23%2Fapprovals%2F9"
                      "&pc_slide=true"}]
    assert receipt.task_id == "5"
