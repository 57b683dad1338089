"""WeComClient driven against the WeCom half of the sandbox over real HTTP on loopback."""

from __future__ import annotations

import hashlib
import threading
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from flask import Flask, request
from werkzeug.serving import make_server

from integrations.base import (
    CredentialsError,
    InvalidCodeError,
    Message,
    PermissionDeniedError,
    PlatformError,
    RateLimitedError,
)
from integrations.dingtalk.tokens import DbTokenStore
from integrations.sandbox import SandboxServer
from integrations.sandbox.wecom_api import create_wecom_blueprint
from integrations.sandbox.wecom_events import crypto_for
from integrations.sandbox.wecom_state import WeComWorld
from integrations.wecom.client import WeComClient, WeComCredentials
from integrations.wecom.crypto import parse_event


@pytest.fixture(scope="module")
def world():
    return WeComWorld(seed=7, corps=2, users=300)


@pytest.fixture(scope="module")
def server(world):
    with SandboxServer(extra_blueprints=(create_wecom_blueprint(world),)) as srv:
        yield srv


@pytest.fixture(autouse=True)
def _reset(world):
    yield
    with world.lock:
        world.faults.clear()
        world.latency = 0.0
        world.max_concurrent = None
        world.clock_offset = 0.0
        for app in world.apps.values():
            app.allow_partys, app.allow_users, app.contact_permission = [1], [], True
            app.trusted_domain = None
            world.org_changed(app)


@pytest.fixture
def http():
    s = requests.Session()
    s.trust_env = False
    yield s
    s.close()


def client_for(server, app, **kwargs) -> WeComClient:
    creds = WeComCredentials(corp_id=app.corp.corp_id, secret=app.secret, agent_id=str(app.agent_id))
    return WeComClient(creds, api_base=f"{server.url}/cgi-bin", **kwargs)


@pytest.fixture
def app(world):
    return world.app()


@pytest.fixture
def client(server, app):
    return client_for(server, app)


def test_bad_secret_and_unknown_corp(server, app):
    bad = WeComClient(WeComCredentials(app.corp.corp_id, "wrong-secret", str(app.agent_id)),
                      api_base=f"{server.url}/cgi-bin")
    report = bad.test_connection()
    assert not report.ok and "40001" in report.message and "wrong-secret" not in report.message
    nobody = WeComClient(WeComCredentials("wwunknown", app.secret, "1"), api_base=f"{server.url}/cgi-bin")
    with pytest.raises(CredentialsError):
        nobody.access_token()


def test_connection_and_full_org_walk(client, world, app):
    report = client.test_connection()
    assert report.ok and report.root_department == app.corp.name
    depts = list(client.walk_departments())
    assert {d.dept_id for d in depts} == {str(i) for i in app.corp.depts}
    seen: dict[str, object] = {}
    for d in depts:
        for u in client.list_department_users(d.dept_id).users:
            seen[u.userid] = u
    assert set(seen) == set(app.corp.users)
    boss = seen["user0001"]
    assert "1" in boss.leader_of and boss.title == "总经理"


def test_visible_range_limits_what_is_read(client, world, app, http, server):
    sales = next(d.dept_id for d in app.corp.depts.values() if d.name == "销售部")
    http.post(f"{server.url}/sandbox/wecom/config", json={"corpId": app.corp.corp_id, "allowPartys": [sales]})
    client._snapshot = None
    assert client.root_department_id() == str(sales)
    names = {d.name for d in client.walk_departments()}
    assert "销售部" in names and "财务部" not in names
    finance = next(d.dept_id for d in app.corp.depts.values() if d.name == "财务部")
    with pytest.raises(PermissionDeniedError):
        client.list_department_users(str(finance))


def test_empty_range_and_missing_permission_are_actionable(client, app, http, server):
    http.post(f"{server.url}/sandbox/wecom/config", json={"corpId": app.corp.corp_id, "allowPartys": []})
    report = client.test_connection()
    assert not report.ok and "可见范围" in report.message
    http.post(f"{server.url}/sandbox/wecom/config",
              json={"corpId": app.corp.corp_id, "allowPartys": [1], "contactPermission": False})
    report = client.test_connection()
    assert not report.ok and "60011" in report.message


def test_sign_in_code_single_use(client, app, http, server):
    code = http.post(f"{server.url}/sandbox/wecom/code", json={"corpId": app.corp.corp_id,
                                                                 "userid": "user0002"}).json()["code"]
    assert client.exchange_sign_in_code(code).userid == "user0002"
    with pytest.raises(InvalidCodeError):
        client.exchange_sign_in_code(code)
    outsider = http.post(f"{server.url}/sandbox/wecom/code", json={"corpId": app.corp.corp_id,
                                                                     "openid": "oOutsider"}).json()["code"]
    with pytest.raises(PermissionDeniedError):
        client.exchange_sign_in_code(outsider)


def test_oauth_page_logs_in_a_chosen_employee(client, app, http, server):
    params = {"appid": app.corp.corp_id, "redirect_uri": "http://crm.test/auth/wecom/callback?x=1",
              "response_type": "code", "scope": "snsapi_base", "state": "abc123", "agentid": app.agent_id}
    page = http.get(f"{server.url}/connect/oauth2/authorize", params=params)
    assert page.status_code == 200 and "user0003" in page.text
    resp = http.get(f"{server.url}/connect/oauth2/authorize", params={**params, "userid": "user0003"},
                    allow_redirects=False)
    assert resp.status_code == 302
    target = urlsplit(resp.headers["Location"])
    query = parse_qs(target.query)
    assert target.netloc == "crm.test" and query["state"] == ["abc123"] and query["x"] == ["1"]
    assert client.exchange_sign_in_code(query["code"][0]).userid == "user0003"
    bad = http.get(f"{server.url}/connect/oauth2/authorize", params={**params, "scope": "nope"})
    assert bad.status_code == 400


def test_js_config_signatures_match_sandbox_tickets(client, world, app):
    cfg = client.js_config("http://crm.test/h5/?a=1#/x")
    issued = {i.value for i in world.tickets.values()}
    for part in (cfg["config"], cfg["agentConfig"]):
        ticket = next(t for t in issued
                      if hashlib.sha1(f"jsapi_ticket={t}&noncestr={part['nonceStr']}&timestamp={part['timestamp']}"
                                      f"&url=http://crm.test/h5/?a=1".encode()).hexdigest() == part["signature"])
        assert ticket
    before = world.ticket_fetch_count(app.corp.corp_id, "corp")
    client.js_config("http://crm.test/h5/other")
    assert world.ticket_fetch_count(app.corp.corp_id, "corp") == before  # cached


def test_tokens_shared_through_the_database(server, app, database, master_key):
    """Two processes' clients (separate caches) over one DB: one gettoken between them."""
    calls_before = sum(1 for _, _, p in server.app.extensions["sandbox.wecom"].calls if p == "gettoken")
    first = client_for(server, app, token_store=DbTokenStore(database, database.corp_pk, master_key))
    second = client_for(server, app, token_store=DbTokenStore(database, database.corp_pk, master_key))
    first.get_user("user0001")
    second.get_user("user0001")
    calls = server.app.extensions["sandbox.wecom"].calls
    assert sum(1 for _, _, p in calls if p == "gettoken") - calls_before == 1


def test_revoked_token_is_refreshed_once(client, http, server, app):
    client.get_user("user0001")
    http.post(f"{server.url}/sandbox/wecom/tokens/revoke", json={"corpId": app.corp.corp_id})
    assert client.get_user("user0001").userid == "user0001"


def test_send_records_invalid_users_and_caps_drop_silently(client, world, app, http, server):
    receipt = client.send_message(["user0004", "ghost"], Message(title="提醒", markdown="跟进客户 A"))
    assert receipt.accepted == ("user0004",) and receipt.rejected == {"ghost": "invaliduser"}
    # 30 per member per minute: the 31st distinct message is accepted by the API but never arrives.
    for i in range(30):
        client.send_message(["user0005"], Message(title=f"第{i}条", markdown="内容"))
    last = client.send_message(["user0005"], Message(title="第31条", markdown="内容"))
    assert last.accepted == ("user0005",)
    inbox = http.get(f"{server.url}/sandbox/wecom/inbox", params={"userid": "user0005"}).json()["messages"]
    assert [m["dropped"].get("user0005") for m in inbox].count("minute_cap") == 1
    assert inbox[-1]["dropped"] == {"user0005": "minute_cap"}


def test_same_body_twice_is_delivered_once(client, http, server):
    msg = Message(title="重复", markdown="同样的内容")
    client.send_message(["user0006"], msg)
    client.send_message(["user0006"], msg)
    inbox = http.get(f"{server.url}/sandbox/wecom/inbox", params={"userid": "user0006"}).json()["messages"]
    assert [m["dropped"] for m in inbox] == [{}, {"user0006": "duplicate"}]


def test_more_than_1000_touser_is_refused_by_the_sandbox(client, app):
    token = client.access_token()
    body = {"touser": "|".join(f"u{i}" for i in range(1001)), "agentid": app.agent_id, "msgtype": "text",
            "text": {"content": "x"}}
    resp = client.http.post(f"{client.api_base}/message/send", params={"access_token": token}, json=body)
    assert resp.json()["errcode"] == 40032


def test_frequency_limit_answers_45009(client, world):
    world.per_minute = 3
    try:
        client._snapshot = None
        with pytest.raises(RateLimitedError) as info:
            for _ in range(5):
                client.get_user("user0001")
        assert info.value.code == "45009"
    finally:
        world.per_minute = 10_000
        world.api_calls.clear()


@pytest.fixture
def receiver(world, app):
    """A stand-in app callback endpoint that decrypts events and replies with `update_button`."""
    crypto = crypto_for(app)
    got: list[dict[str, str]] = []
    hook = Flask("receiver")

    @hook.route("/cb", methods=["GET", "POST"])
    def cb():
        args = request.args
        if request.method == "GET":
            return crypto.verify_url(args["msg_signature"], args["timestamp"], args["nonce"], args["echostr"])
        event = parse_event(crypto.decrypt_body(request.get_data(), args["msg_signature"], args["timestamp"],
                                                args["nonce"]))
        got.append(event)
        if event.get("Event") == "template_card_event":
            inner = ("<xml><ToUserName><![CDATA[u]]></ToUserName><FromUserName><![CDATA[c]]></FromUserName>"
                     "<CreateTime>1</CreateTime><MsgType><![CDATA[update_button]]></MsgType>"
                     "<Button><ReplaceName><![CDATA[已处理]]></ReplaceName></Button></xml>")
            return crypto.passive_reply(inner, nonce=args["nonce"])
        return ""

    srv = make_server("127.0.0.1", 0, hook, threaded=True)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_port}/cb", got
    srv.shutdown()
    app.callback_url = None


def test_callback_verification_events_and_card_click(client, world, app, http, server, receiver):
    url, got = receiver
    saved = http.post(f"{server.url}/sandbox/wecom/callback", json={"corpId": app.corp.corp_id, "url": url})
    assert saved.status_code == 200 and saved.json()["check"]["ok"]
    created = http.post(f"{server.url}/sandbox/wecom/corps/{app.corp.corp_id}/users",
                        json={"name": "新人甲", "department": [2], "userid": "newbie1"}).json()
    assert created["event"]["accepted"]
    assert got[-1]["ChangeType"] == "create_user" and got[-1]["Name"] == "新人甲"

    card = Message(title="折扣审批", markdown="8 折", kind="approval", extra={"task_id": "appr-1-s1"})
    receipt = client.send_message(["user0002", "user0003"], card)
    assert receipt.response_code
    clicked = http.post(f"{server.url}/sandbox/wecom/cards/{receipt.task_id}/click",
                        json={"corpId": app.corp.corp_id, "userid": "user0002", "key": "approve"}).json()
    event = got[-1]
    assert event["Event"] == "template_card_event" and event["TaskId"] == "appr-1-s1"
    assert event["EventKey"] == "approve" and event["FromUserName"] == "user0002"
    assert clicked["message"]["cards"]["user0002"]["replace_name"] == "已处理"
    assert clicked["message"]["cards"]["user0003"]["buttons"] == ["同意", "驳回"]
    # Update everyone's copy with the click's one-shot code; it works once.
    client.update_template_card(event["ResponseCode"], atall=True, replace_name="已同意")
    inbox = http.get(f"{server.url}/sandbox/wecom/inbox", params={"userid": "user0003"}).json()["messages"]
    assert inbox[-1]["cards"]["user0003"] == {"buttons": [], "replace_name": "已同意"}
    with pytest.raises(PlatformError) as info:
        client.update_template_card(event["ResponseCode"], atall=True, replace_name="again")
    assert info.value.code == "40035"
    # The same task id cannot be reused for another card.
    with pytest.raises(PlatformError) as info:
        client.send_message(["user0002"], card)
    assert info.value.code == "40035"
