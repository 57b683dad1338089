"""The sandbox speaks DingTalk's wire protocol as documented (fact sheet §0.3, §1, §4, §5, §9)."""

from __future__ import annotations

import pytest
import requests

from integrations.sandbox import DingTalkWorld, SandboxServer


@pytest.fixture(scope="module")
def srv():
    with SandboxServer(DingTalkWorld(seed=3, users=30)) as server:
        yield server


@pytest.fixture
def http():
    s = requests.Session()
    s.trust_env = False
    yield s
    s.close()


@pytest.fixture
def corp(srv):
    return next(iter(srv.world.corps.values()))


def token(srv, http, corp):
    answer = http.post(f"{srv.url}/v1.0/oauth2/accessToken", json={"appKey": corp.app_key,
                                                                     "appSecret": corp.app_secret})
    assert answer.status_code == 200
    return answer.json()


def test_same_token_while_valid_new_one_after_expiry(srv, http, corp):
    first = token(srv, http, corp)
    assert first["expireIn"] == 7200
    assert token(srv, http, corp)["accessToken"] == first["accessToken"]
    srv.world.clock_offset += 7201
    try:
        old = http.post(f"{srv.url}/topapi/v2/department/get", params={"access_token": first["accessToken"]},
                        json={"dept_id": 1}).json()
        assert (old["errcode"], old["sub_code"]) == (88, "42001")
        assert token(srv, http, corp)["accessToken"] != first["accessToken"]
    finally:
        srv.world.clock_offset = 0


def test_token_endpoint_rejects_form_body_and_bad_secret(srv, http, corp):
    form = http.post(f"{srv.url}/v1.0/oauth2/accessToken", data={"appKey": corp.app_key,
                                                                   "appSecret": corp.app_secret})
    assert form.status_code == 400
    bad = http.post(f"{srv.url}/v1.0/oauth2/accessToken", json={"appKey": corp.app_key, "appSecret": "x"})
    assert (bad.status_code, bad.json()["code"]) == (400, "invalidClientIdOrSecret")


def test_token_in_the_wrong_place(srv, http, corp):
    tok = token(srv, http, corp)["accessToken"]
    old = http.post(f"{srv.url}/topapi/v2/department/get", headers={"x-acs-dingtalk-access-token": tok},
                    json={"dept_id": 1})
    assert old.status_code == 200 and (old.json()["errcode"], old.json()["sub_code"]) == (88, "40000")
    new = http.post(f"{srv.url}/v1.0/oauth2/jsapiTickets", params={"access_token": tok})
    assert (new.status_code, new.json()["code"]) == (400, "AuthenticationFailed.MissingParameter")


def test_ticket_renewal_capped_at_24_hours(srv, http, corp):
    tok = token(srv, http, corp)["accessToken"]
    headers = {"x-acs-dingtalk-access-token": tok}
    first = http.post(f"{srv.url}/v1.0/oauth2/jsapiTickets", headers=headers).json()["jsapiTicket"]
    try:
        for _ in range(13):  # keep renewing every 2 h minus a bit, well past 24 h
            srv.world.clock_offset += 7000
            tok = token(srv, http, corp)["accessToken"]
            ticket = http.post(f"{srv.url}/v1.0/oauth2/jsapiTickets",
                               headers={"x-acs-dingtalk-access-token": tok}).json()["jsapiTicket"]
            if ticket != first:
                break
        assert ticket != first
        assert srv.world.clock_offset <= 24 * 3600 + 7000
    finally:
        srv.world.clock_offset = 0


def test_user_list_paging_and_size_limit(srv, http, corp):
    tok = token(srv, http, corp)["accessToken"]
    big = max(corp.depts, key=lambda d: len(corp.members(d)))
    members = [u.userid for u in corp.members(big)]
    got, cursor = [], 0
    while True:
        page = http.post(f"{srv.url}/topapi/v2/user/list", params={"access_token": tok},
                         json={"dept_id": big, "cursor": cursor, "size": 2}).json()["result"]
        got += [u["userid"] for u in page["list"]]
        if not page["has_more"]:
            assert "next_cursor" not in page
            break
        cursor = page["next_cursor"]
    assert got == members
    too_big = http.post(f"{srv.url}/topapi/v2/user/list", params={"access_token": tok},
                        json={"dept_id": big, "cursor": 0, "size": 101}).json()
    assert too_big["errcode"] != 0


def test_send_requires_right_agent_and_valid_msg(srv, http, corp):
    tok = token(srv, http, corp)["accessToken"]
    url = f"{srv.url}/topapi/message/corpconversation/asyncsend_v2"
    uid = sorted(corp.users)[0]
    wrong_agent = http.post(url, params={"access_token": tok}, json={
        "agent_id": 1, "userid_list": uid, "msg": {"msgtype": "text", "text": {"content": "x"}}}).json()
    assert wrong_agent["errcode"] == 40056
    no_body = http.post(url, params={"access_token": tok}, json={
        "agent_id": corp.agent_id, "userid_list": uid, "msg": {"msgtype": "text"}}).json()
    assert no_body["errcode"] == 400002
    ok = http.post(url, params={"access_token": tok}, json={
        "agent_id": corp.agent_id, "userid_list": uid, "msg": {"msgtype": "text", "text": {"content": "hi"}}}).json()
    assert ok["errcode"] == 0 and isinstance(ok["task_id"], int)


def test_generated_org_is_deterministic():
    a, b = DingTalkWorld(seed=9), DingTalkWorld(seed=9)
    ca, cb = next(iter(a.corps.values())), next(iter(b.corps.values()))
    assert ca.credentials() == cb.credentials()
    assert [(u.userid, u.name, u.dept_ids) for u in ca.users.values()] == [
        (u.userid, u.name, u.dept_ids) for u in cb.users.values()]
    other = next(iter(DingTalkWorld(seed=10).corps.values()))
    assert other.corp_id != ca.corp_id
    assert len(ca.callback_aes_key) == 43


def test_serve_in_background_with_callback_template(http):
    from integrations.sandbox import serve

    server = serve("127.0.0.1", 0, seed=5, corps=2, users=10, block=False,
                   callback_url="http://127.0.0.1:5000/callbacks/dingtalk/{corp}")
    try:
        corps = http.get(f"{server.url}/sandbox/dingtalk/corps").json()["corps"]
        assert len(corps) == 2
        assert all(c["callbackUrl"] == f"http://127.0.0.1:5000/callbacks/dingtalk/{c['corpId']}" for c in corps)
        assert http.get(f"{server.url}/healthz").json() == {"ok": True}
    finally:
        server.stop()
