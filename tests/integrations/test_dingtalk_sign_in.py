"""POST /api/v1/auth/dingtalk and GET /api/v1/auth/dingtalk/jsapi-config against the sandbox over HTTP."""

from __future__ import annotations

import hashlib

import pytest
import requests
import sqlalchemy as sa

from integrations.dingtalk.jsapi import normalise_url
from integrations.sandbox import DingTalkWorld, SandboxServer
from models.org import User
from tests.integrations.sandbox_binding import bind


@pytest.fixture(scope="module")
def server():
    with SandboxServer(DingTalkWorld(seed=11, users=30)) as srv:
        yield srv


@pytest.fixture(autouse=True)
def _clear_faults(server):
    yield
    with server.world.lock:
        server.world.faults.clear()


@pytest.fixture
def sbx(server):
    return next(iter(server.world.corps.values()))


@pytest.fixture
def corp_pk(database, settings, server, sbx):
    return bind(database, settings, server, sbx)


def _code(server, sbx, userid: str) -> str:
    resp = requests.post(
        f"{server.url}/sandbox/dingtalk/authcode", json={"corpId": sbx.corp_id, "userid": userid}, timeout=5
    )
    assert resp.status_code == 200, resp.text
    return resp.json()["code"]


def _calls(server, path: str) -> int:
    return sum(1 for _t, _a, p in server.world.calls if p == path)


def _fault(server, path: str, **fields) -> None:
    resp = requests.post(f"{server.url}/sandbox/dingtalk/faults", json={"path": path, **fields}, timeout=5)
    assert resp.status_code == 201


def test_new_user_signs_in_and_is_created_from_the_platform(client, database, server, sbx, corp_pk):
    someone = sbx.users["user0005"]
    resp = client.post(
        "/api/v1/auth/dingtalk", json={"corpId": sbx.corp_id, "authCode": _code(server, sbx, "user0005")}
    )
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert body["created"] is True and body["user"]["userid"] == "user0005" and body["user"]["name"] == someone.name
    with database.session() as s:
        user = s.execute(
            sa.select(User).where(User.corp_id == corp_pk, User.platform_userid == "user0005")
        ).scalar_one()
        assert user.unionid == someone.unionid and user.active
    me = client.get("/api/v1/me")
    assert me.status_code == 200 and me.get_json()["user"]["userid"] == "user0005"


def test_known_user_signs_in_without_fetching_the_profile(client, server, sbx, corp_pk):
    first = client.post(
        "/api/v1/auth/dingtalk", json={"corpId": sbx.corp_id, "authCode": _code(server, sbx, "user0003")}
    )
    assert first.status_code == 200
    fetched = _calls(server, "/topapi/v2/user/get")
    client.post("/api/v1/auth/logout")
    again = client.post(
        "/api/v1/auth/dingtalk", json={"corpId": sbx.corp_id, "authCode": _code(server, sbx, "user0003")}
    )
    assert again.status_code == 200 and again.get_json()["created"] is False
    assert again.get_json()["user"]["id"] == first.get_json()["user"]["id"]
    assert _calls(server, "/topapi/v2/user/get") == fetched


def test_reused_code_is_refused_without_a_session(client, server, sbx, corp_pk):
    code = _code(server, sbx, "user0004")
    assert client.post("/api/v1/auth/dingtalk", json={"corpId": sbx.corp_id, "authCode": code}).status_code == 200
    client.post("/api/v1/auth/logout")
    resp = client.post("/api/v1/auth/dingtalk", json={"corpId": sbx.corp_id, "authCode": code})
    assert resp.status_code == 401
    assert resp.get_json()["error"]["code"] == "invalid_auth_code" and "authCode" in resp.get_json()["error"]["fields"]
    assert client.get("/api/v1/me").status_code == 401


def test_unknown_corp_is_404_and_never_reaches_the_platform(client, server, sbx, corp_pk):
    before = _calls(server, "/topapi/v2/user/getuserinfo")
    resp = client.post("/api/v1/auth/dingtalk", json={"corpId": "dingnotbound", "authCode": "abc"})
    assert resp.status_code == 404 and resp.get_json()["error"]["fields"] == {"corpId": "unknown"}
    assert _calls(server, "/topapi/v2/user/getuserinfo") == before
    assert client.get("/api/v1/me").status_code == 401


def test_user_outside_visible_range_is_403(client, database, server, sbx, corp_pk):
    _fault(server, "/topapi/v2/user/getuserinfo", errcode=50002, errmsg="员工不在授权范围", corpId=sbx.corp_id)
    resp = client.post(
        "/api/v1/auth/dingtalk", json={"corpId": sbx.corp_id, "authCode": _code(server, sbx, "user0006")}
    )
    assert resp.status_code == 403 and resp.get_json()["error"]["code"] == "outside_visible_range"
    assert client.get("/api/v1/me").status_code == 401
    with database.session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(User).where(User.platform_userid == "user0006")) == 0


def test_deactivated_user_is_refused(client, database, server, sbx, corp_pk):
    assert (
        client.post(
            "/api/v1/auth/dingtalk", json={"corpId": sbx.corp_id, "authCode": _code(server, sbx, "user0007")}
        ).status_code
        == 200
    )
    client.post("/api/v1/auth/logout")
    with database.session() as s:
        s.execute(sa.update(User).where(User.platform_userid == "user0007").values(active=False))
    resp = client.post(
        "/api/v1/auth/dingtalk", json={"corpId": sbx.corp_id, "authCode": _code(server, sbx, "user0007")}
    )
    assert resp.status_code == 403 and resp.get_json()["error"]["code"] == "account_disabled"
    assert client.get("/api/v1/me").status_code == 401


def test_platform_busy_is_503_not_500(client, server, sbx, corp_pk):
    _fault(server, "/topapi/v2/user/getuserinfo", errcode=-1, errmsg="系统繁忙", corpId=sbx.corp_id)
    resp = client.post(
        "/api/v1/auth/dingtalk", json={"corpId": sbx.corp_id, "authCode": _code(server, sbx, "user0008")}
    )
    assert resp.status_code == 503 and resp.get_json()["error"]["code"] == "platform_unavailable"


@pytest.mark.parametrize(
    "payload, field",
    [
        ({"corpId": "dingx"}, "authCode"),
        ({"authCode": "abc"}, "corpId"),
        ({"corpId": "dingx", "authCode": "abc", "extra": 1}, "extra"),
        ({"corpId": "ding x", "authCode": "abc"}, "corpId"),
        ({"corpId": "dingx", "authCode": "a" * 200}, "authCode"),
    ],
)
def test_bad_bodies_name_the_field(client, payload, field):
    resp = client.post("/api/v1/auth/dingtalk", json=payload)
    assert resp.status_code == 422 and field in resp.get_json()["error"]["fields"]


# ---------------------------------------------------------------- dd.config


PAGE = "http://localhost/h5/customers?tab=mine&q=%E5%BC%A0"


def _expected(server, sbx, config, url, digest):
    ticket = server.world.tickets[sbx.app_key].value
    plain = (
        f"jsapi_ticket={ticket}&noncestr={config['nonceStr']}&timestamp={config['timeStamp']}&url={normalise_url(url)}"
    )
    return hashlib.new(digest, plain.encode()).hexdigest()


def test_jsapi_config_is_signed_with_sha256(client, server, sbx, corp_pk):
    resp = client.get("/api/v1/auth/dingtalk/jsapi-config", query_string={"corpId": sbx.corp_id, "url": PAGE})
    assert resp.status_code == 200, resp.get_json()
    config = resp.get_json()
    assert set(config) == {"agentId", "corpId", "timeStamp", "nonceStr", "signature"}
    assert config["corpId"] == sbx.corp_id and str(config["agentId"]) == str(sbx.agent_id)
    assert len(config["signature"]) == 64 and config["signature"] == _expected(server, sbx, config, PAGE, "sha256")


def test_jsapi_digest_is_a_corp_setting(client, database, settings, server, sbx):
    bind(database, settings, server, sbx, jsapi_digest="sha1")
    config = client.get(
        "/api/v1/auth/dingtalk/jsapi-config", query_string={"corpId": sbx.corp_id, "url": PAGE}
    ).get_json()
    assert len(config["signature"]) == 40 and config["signature"] == _expected(server, sbx, config, PAGE, "sha1")


def test_jsapi_ticket_is_cached(client, server, sbx, corp_pk):
    before = _calls(server, "/v1.0/oauth2/jsapiTickets")
    for _ in range(3):
        assert (
            client.get(
                "/api/v1/auth/dingtalk/jsapi-config", query_string={"corpId": sbx.corp_id, "url": PAGE}
            ).status_code
            == 200
        )
    assert _calls(server, "/v1.0/oauth2/jsapiTickets") - before <= 1


@pytest.mark.parametrize(
    "url, reason",
    [
        ("/h5/customers", "not an absolute http(s) URL"),
        ("ftp://localhost/h5/", "not an absolute http(s) URL"),
        ("http://localhost/h5/#/customers", "has a fragment"),
        ("https://evil.example/h5/", "foreign origin"),
        ("http://localhost/h5/ x", "invalid"),
    ],
)
def test_jsapi_url_is_validated(client, sbx, corp_pk, url, reason):
    resp = client.get("/api/v1/auth/dingtalk/jsapi-config", query_string={"corpId": sbx.corp_id, "url": url})
    assert resp.status_code == 422 and resp.get_json()["error"]["fields"] == {"url": reason}


def test_jsapi_config_unknown_corp_and_missing_params(client, corp_pk):
    unknown = client.get("/api/v1/auth/dingtalk/jsapi-config", query_string={"corpId": "dingnope", "url": PAGE})
    assert unknown.status_code == 404
    missing = client.get("/api/v1/auth/dingtalk/jsapi-config", query_string={"url": PAGE})
    assert missing.status_code == 422 and "corpId" in missing.get_json()["error"]["fields"]
