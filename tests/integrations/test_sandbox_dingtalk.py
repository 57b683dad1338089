"""DingTalkClient driven against the sandbox over real HTTP on loopback."""

from __future__ import annotations

import hashlib
import threading
import time

import pytest
import requests
import sqlalchemy as sa
from flask import Flask, jsonify, request
from werkzeug.serving import make_server

from integrations.base import (
    CredentialsError,
    InvalidCodeError,
    Message,
    NotFoundError,
    RateLimitedError,
    RetryableError,
)
from integrations.dingtalk.client import DingTalkClient, DingTalkCredentials
from integrations.dingtalk.crypto import CallbackCrypto
from integrations.dingtalk.events import claim_event, parse_event
from integrations.dingtalk.factory import client_for_corp
from integrations.dingtalk.tokens import DbTokenStore
from integrations.dingtalk.usage import DbUsageCounter
from integrations.sandbox import DingTalkWorld, SandboxServer


@pytest.fixture(scope="module")
def server():
    world = DingTalkWorld(seed=42, corps=2, users=1200)
    with SandboxServer(world) as srv:
        yield srv


@pytest.fixture(autouse=True)
def _reset(server):
    world = server.world
    yield
    with world.lock:
        world.faults.clear()
        world.latency = 0.0
        world.qps_limit = 20
        world.daily_cap = 500
        world.monthly_quota = None
        world.clock_offset = 0.0


@pytest.fixture
def http(server):
    s = requests.Session()
    s.trust_env = False
    yield s
    s.close()


@pytest.fixture
def corp(server):
    return next(iter(server.world.corps.values()))


def make_client(server, corp, **kwargs) -> DingTalkClient:
    creds = DingTalkCredentials(corp.corp_id, corp.app_key, corp.app_secret, str(corp.agent_id))
    return DingTalkClient(creds, oapi_base=server.url, api_base=server.url, **kwargs)


@pytest.fixture
def client(server, corp):
    c = make_client(server, corp, sleep=lambda s: None)
    yield c
    c.http.session.close()


def test_connection_and_wrong_secret(server, corp, client):
    report = client.test_connection()
    assert report.ok and report.root_department == corp.name
    bad = make_client(server, corp.__class__(**{**corp.__dict__, "app_secret": "wrong"}))
    report = bad.test_connection()
    assert not report.ok and "AppSecret" in report.message
    bad.http.session.close()


def test_full_walk_matches_generated_org(server, corp, database):
    # The sandbox enforces 20 QPS per API like DingTalk: a full walk needs the shared limiter.
    from integrations.dingtalk.ratelimit import DbRateLimiter

    client = make_client(server, corp, limiter=DbRateLimiter(database, database.corp_pk), throttle_retries=0)
    depts = list(client.walk_departments())
    assert {d.dept_id for d in depts} == {str(i) for i in corp.depts}
    seen, led = {}, set()
    calls = 0
    for d in depts:
        cursor = None
        while True:
            page = client.list_department_users(d.dept_id, cursor)
            calls += 1
            for u in page.users:
                seen[u.userid] = u  # each listing carries the person's full department list
                led.update((u.userid, dept) for dept in u.leader_of)
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
    assert set(seen) == set(corp.users)
    assert calls > len(depts)  # at least one department needed more than one page of 100
    multi = [u for u in corp.users.values() if len(u.dept_ids) > 1]
    assert multi and all(set(seen[u.userid].department_ids) == {str(d) for d in u.dept_ids} for u in multi)
    leaders = {(uid, str(d.dept_id)) for d in corp.depts.values() for uid in d.manager_userids}
    assert leaders == led
    client.http.session.close()


def test_debug_logging_never_shows_the_token(corp, client, caplog):
    import logging

    caplog.set_level(logging.DEBUG)
    client.get_department("1")
    token = client.access_token()
    assert "access_token=***" in caplog.text  # urllib3 did log the request line…
    assert token not in caplog.text  # …with the token masked
    assert corp.app_secret not in caplog.text


def test_get_user_and_not_found(corp, client):
    some = next(iter(corp.users.values()))
    user = client.get_user(some.userid)
    assert (user.name, user.unionid) == (some.name, some.unionid)
    with pytest.raises(NotFoundError):
        client.get_user("nobody")
    with pytest.raises(NotFoundError):
        client.get_department("99999")


def test_sign_in_code_single_use(server, corp, client, http):
    userid = sorted(corp.users)[3]
    code = http.post(f"{server.url}/sandbox/dingtalk/authcode",
                     json={"corpId": corp.corp_id, "userid": userid}).json()["code"]
    ident = client.exchange_sign_in_code(code)
    assert ident.userid == userid and ident.unionid == corp.users[userid].unionid
    with pytest.raises(InvalidCodeError):
        client.exchange_sign_in_code(code)


def test_sign_in_code_expires_after_5_minutes(server, corp, client, http):
    code = http.post(f"{server.url}/sandbox/dingtalk/authcode",
                     json={"corpId": corp.corp_id, "userid": sorted(corp.users)[0]}).json()["code"]
    http.post(f"{server.url}/sandbox/dingtalk/config", json={"advanceClock": 301})
    with pytest.raises(InvalidCodeError):
        client.exchange_sign_in_code(code)


def test_code_of_another_corp_is_rejected(server, client, http):
    other = list(server.world.corps.values())[1]
    code = http.post(f"{server.url}/sandbox/dingtalk/authcode",
                     json={"corpId": other.corp_id, "userid": sorted(other.users)[0]}).json()["code"]
    with pytest.raises(InvalidCodeError):
        client.exchange_sign_in_code(code)


def test_js_config_uses_sandbox_ticket(server, corp, client):
    cfg = client.js_config("http://127.0.0.1:5000/h5/?corpid=" + corp.corp_id)
    ticket = server.world.tickets[corp.app_key].value
    plain = (f"jsapi_ticket={ticket}&noncestr={cfg['nonceStr']}&timestamp={cfg['timeStamp']}"
             f"&url=http://127.0.0.1:5000/h5/?corpid={corp.corp_id}")
    assert cfg["signature"] == hashlib.sha256(plain.encode()).hexdigest()


def test_revoked_token_is_refreshed_transparently(server, corp, client, http):
    client.get_department("1")
    old = client.access_token()
    http.post(f"{server.url}/sandbox/dingtalk/tokens/revoke", json={"corpId": corp.corp_id})
    assert client.get_department("1").dept_id == "1"
    assert client.access_token() != old


def test_expired_token_in_shared_store_is_refreshed(server, corp, database, master_key, http):
    store = DbTokenStore(database, database.corp_pk, master_key)
    first = make_client(server, corp, token_store=store)
    first.get_department("1")
    # Another process starts later and reuses the stored token without calling the token endpoint.
    tokens_before = sum(1 for _, _, p in server.world.calls if p == "/v1.0/oauth2/accessToken")
    second = make_client(server, corp, token_store=DbTokenStore(database, database.corp_pk, master_key))
    second.get_department("1")
    assert sum(1 for _, _, p in server.world.calls if p == "/v1.0/oauth2/accessToken") == tokens_before
    for c in (first, second):
        c.http.session.close()


def test_send_message_delivery_and_silent_drops(server, corp, client, http):
    users = sorted(corp.users)[:3]
    msg = Message(title="跟进提醒", markdown="客户 **华为** 今日需跟进 #1", url="http://127.0.0.1:5000/h5/#/c/1")
    receipt = client.send_message([*users, "ghost"], msg)
    again = client.send_message(users[:1], msg)  # identical content, same user, same day
    report = client.delivery_report(receipt.task_id)
    assert set(report.delivered) == set(users)
    assert report.failed == {"ghost": "invalid"}
    dup = client.delivery_report(again.task_id)
    assert dup.delivered == () and dup.failed == {users[0]: "duplicate"}
    inbox = http.get(f"{server.url}/sandbox/dingtalk/inbox", params={"userid": users[0]}).json()["messages"]
    entry = next(m for m in inbox if m["taskId"] == int(receipt.task_id))
    assert entry["msg"]["markdown"]["title"] == "跟进提醒" and users[0] in entry["delivered"]
    assert next(m for m in inbox if m["taskId"] == int(again.task_id))["dropped"] == {users[0]: "143106"}


def test_daily_cap_per_user(server, corp, client, http):
    http.post(f"{server.url}/sandbox/dingtalk/config", json={"dailyCap": 2})
    uid = sorted(corp.users)[10]
    tasks = [client.send_message([uid], Message(title="t", markdown=f"第 {i} 条")).task_id for i in range(3)]
    assert client.delivery_report(tasks[1]).delivered == (uid,)
    assert client.delivery_report(tasks[2]).failed == {uid: "daily_cap"}


def test_oversized_raw_send_is_refused_by_sandbox(server, corp, client):
    from integrations.base import PlatformError

    body = {"agent_id": corp.agent_id, "userid_list": sorted(corp.users)[0],
            "msg": {"msgtype": "text", "text": {"content": "长" * 700}}}
    with pytest.raises(PlatformError) as info:
        client._oapi("/topapi/message/corpconversation/asyncsend_v2", body)
    assert info.value.code == "400002"
    body["msg"] = {"msgtype": "text", "text": {"content": "ok"}}
    body["userid_list"] = ",".join(sorted(corp.users)[:101])
    with pytest.raises(PlatformError):
        client._oapi("/topapi/message/corpconversation/asyncsend_v2", body)


def test_long_message_is_trimmed_and_accepted(corp, client):
    receipt = client.send_message([sorted(corp.users)[5]], Message(title="长", markdown="跟进记录" * 600))
    assert receipt.task_id


def test_qps_limit_answers_90018(server, corp, http):
    c = make_client(server, corp, throttle_retries=0)
    c.access_token()
    time.sleep(1.0 - time.time() % 1.0)  # start in a fresh one-second window
    http.post(f"{server.url}/sandbox/dingtalk/config", json={"qpsLimit": 3})
    errors = []

    def hit():
        try:
            c.get_department("1")
        except RateLimitedError as exc:
            errors.append(exc)

    start = time.time()
    threads = [threading.Thread(target=hit) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if time.time() - start < 0.9:  # all 12 landed within ~one second window
        assert errors and all(e.code == "90018" for e in errors)
    c.http.session.close()


def test_shared_limiter_keeps_under_sandbox_qps(server, corp, database, http):
    """Three clients (think: three worker processes) share one DB limiter. Calls that cross a second
    boundary in flight can still meet a rare 90018; the client's single sleep-and-retry absorbs it."""
    from integrations.dingtalk.ratelimit import DbRateLimiter

    limiter = DbRateLimiter(database, database.corp_pk, per_second=4)
    clients = [make_client(server, corp, limiter=limiter) for _ in range(3)]
    for c in clients:
        c.access_token()
    http.post(f"{server.url}/sandbox/dingtalk/config", json={"qpsLimit": 5})
    time.sleep(1.0 - time.time() % 1.0)  # a fresh second: earlier tests' calls must not share it
    errors, done = [], []

    def work(c):
        for _ in range(4):
            try:
                done.append(c.list_sub_departments("1"))
            except RateLimitedError as exc:
                errors.append(exc)

    started = time.time()
    threads = [threading.Thread(target=work, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(done) == 12
    assert time.time() - started >= 1.0  # 12 calls at 4 per window need at least three windows
    per_second: dict[int, int] = {}
    for at, _, path in server.world.calls:
        if path == "/topapi/v2/department/listsub" and at >= started:
            per_second[int(at)] = per_second.get(int(at), 0) + 1
    assert sum(per_second.values()) <= 14  # 12 plus at most a couple of absorbed retries
    for c in clients:
        c.http.session.close()


def test_default_limiter_meets_no_90018_while_a_hog_delays_every_thread(server, corp, database):
    """Two limiter instances (two processes) at the default rate, six threads, no retries, and a thread
    hogging the GIL so that the callers and the sandbox itself run late: the sandbox, counting calls per
    arrival second at DingTalk's 20, answers no 90018 and sees no second over 20."""
    from integrations.dingtalk.ratelimit import DEFAULT_PER_SECOND, DbRateLimiter

    limiters = [DbRateLimiter(database, database.corp_pk) for _ in range(2)]
    clients = [make_client(server, corp, limiter=limiters[i % 2], throttle_retries=0) for i in range(6)]
    for c in clients:
        c.access_token()
    world = server.world
    throttled_before = world.throttled.get("/topapi/v2/department/listsub", 0)
    stop = threading.Event()

    def hog():
        while not stop.is_set():
            sum(range(20_000))

    errors: list[Exception] = []

    def work(c):
        for _ in range(12):
            try:
                c.list_sub_departments("1")
            except RateLimitedError as exc:
                errors.append(exc)

    hogs = [threading.Thread(target=hog) for _ in range(2)]
    threads = [threading.Thread(target=work, args=(c,)) for c in clients]
    started = time.time()
    for t in [*hogs, *threads]:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    for t in hogs:
        t.join()
    elapsed = time.time() - started
    assert errors == []
    assert world.throttled.get("/topapi/v2/department/listsub", 0) == throttled_before
    per_second: dict[int, int] = {}
    for at, _, path in world.calls:
        if path == "/topapi/v2/department/listsub" and at >= started:
            per_second[int(at)] = per_second.get(int(at), 0) + 1
    assert sum(per_second.values()) == 72 and max(per_second.values()) <= 20
    assert elapsed >= 72 / DEFAULT_PER_SECOND - 1  # paced by the limiter, not let through
    for c in clients:
        c.http.session.close()


def test_fault_injection_maps_to_errors(server, client, http):
    http.post(f"{server.url}/sandbox/dingtalk/faults", json={"path": "/topapi/v2/department/get", "errcode": -1})
    with pytest.raises(RetryableError):
        client.get_department("1")
    assert client.get_department("1").dept_id == "1"
    http.post(f"{server.url}/sandbox/dingtalk/faults", json={"path": "/topapi/v2/department/get",
                                                            "errcode": 60020, "errmsg": "访问ip不在白名单之中"})
    with pytest.raises(CredentialsError):
        client.get_department("1")
    http.post(f"{server.url}/sandbox/dingtalk/faults",
              json={"path": "/topapi/v2/department/get", "raw": {"status": 1111, "wait": 5, "punish": "deny"}})
    with pytest.raises(RetryableError) as info:
        client.get_department("1")
    assert info.value.retry_after == 300


def test_latency_beyond_read_timeout_is_retryable(server, corp, http):
    c = make_client(server, corp)
    c.access_token()
    c.http.timeout = (3.0, 0.2)
    http.post(f"{server.url}/sandbox/dingtalk/config", json={"latency": 0.5})
    with pytest.raises(RetryableError) as info:
        c.get_department("1")
    assert info.value.code == "timeout"
    c.http.session.close()


def test_todo_lifecycle(server, corp, client):
    creator, executor = (corp.users[u] for u in sorted(corp.users)[:2])
    task = client.create_todo(creator.unionid, subject="审批：合同 #7", executor_unionids=[executor.unionid],
                              detail_url="http://127.0.0.1:5000/h5/#/approvals/7", source_id="approval-7")
    assert task["id"] and task["done"] is False
    from integrations.base import PlatformError

    with pytest.raises(PlatformError) as info:
        client.create_todo(creator.unionid, subject="again", executor_unionids=[executor.unionid],
                           detail_url="http://x/", source_id="approval-7")
    assert info.value.code == "todo.taskCreate.paramError"
    assert client.complete_todo(creator.unionid, task["id"])
    assert server.world.todos[task["id"]]["done"] is True
    assert client.delete_todo(creator.unionid, task["id"])
    with pytest.raises(NotFoundError):
        client.complete_todo(creator.unionid, task["id"])


def test_usage_counted_into_db(server, corp, database):
    counter = DbUsageCounter(database, database.corp_pk)
    c = make_client(server, corp, usage_hook=counter)
    c.send_message([sorted(corp.users)[7]], Message(title="t", markdown=f"usage {time.time()}"))
    c.get_department("1")
    totals = counter.totals()
    assert totals["work_notification"] == 1 and totals["other"] >= 1
    c.http.session.close()


def test_monthly_quota_exhausted(server, corp, client, http):
    http.post(f"{server.url}/sandbox/dingtalk/config", json={"monthlyQuota": 0})
    from integrations.base import QuotaExceededError

    with pytest.raises(QuotaExceededError):
        client.send_message([sorted(corp.users)[0]], Message(title="t", markdown="quota"))
    client.get_department("1")  # contacts are exempt


def test_factory_wires_db_state(server, corp, database, master_key):
    from models.org import Corp
    from models.platform import PlatformToken

    class S:
        dingtalk_oapi_base = dingtalk_api_base = server.url
        timezone = "Asia/Shanghai"

    S.master_key = master_key
    with database.session() as s:
        row = s.get(Corp, database.corp_pk)
        row.platform_corp_id, row.app_key, row.agent_id = corp.corp_id, corp.app_key, str(corp.agent_id)
    with database.session() as s:
        row = s.get(Corp, database.corp_pk)
    c = client_for_corp(row, corp.app_secret, settings=S, database=database)
    assert c.test_connection().ok
    with database.session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(PlatformToken)) == 1
    assert client_for_corp(row, corp.app_secret, settings=S, database=database) is c
    changed = client_for_corp(row, "new-secret", settings=S, database=database)
    assert changed is not c and not changed.test_connection().ok


# ---------------------------------------------------------------- events to a real callback endpoint


@pytest.fixture
def receiver(corp, database):
    """A minimal callback endpoint like the app's: verify, decrypt, claim once, answer success."""
    crypto = CallbackCrypto(corp.callback_token, corp.callback_aes_key, [corp.app_key, corp.corp_id])
    handled = []
    app = Flask("receiver")

    @app.post("/callbacks/dingtalk/<corp_id>")
    def callback(corp_id):
        payload = crypto.open_request(request.args.to_dict(), request.get_json())
        event = parse_event(payload)
        if event:
            with database.session() as s:
                if claim_event(s, database.corp_pk, event.event_id, payload["EventType"]):
                    handled.append(event)
        return jsonify(crypto.success_reply())

    srv = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_port}/callbacks/dingtalk/{corp.corp_id}", handled
    srv.shutdown()
    srv.server_close()
    thread.join(timeout=5)


def test_fired_event_is_decrypted_and_deduplicated(server, corp, http, receiver):
    url, handled = receiver
    someone = sorted(corp.users)[4]
    answer = http.post(f"{server.url}/sandbox/dingtalk/events", json={
        "corpId": corp.corp_id, "eventType": "user_modify_org", "userId": [someone], "url": url, "times": 3,
    }).json()
    assert answer["accepted"] is True
    assert [d["accepted"] for d in answer["deliveries"]] == [True, True, True]
    assert len(handled) == 1
    assert handled[0].kind == "user_upsert" and handled[0].user_ids == (someone,)


def test_org_change_fires_events(server, corp, http, receiver):
    url, handled = receiver
    http.post(f"{server.url}/sandbox/dingtalk/callback", json={"corpId": corp.corp_id, "url": url})
    try:
        added = http.post(f"{server.url}/sandbox/dingtalk/users",
                          json={"corpId": corp.corp_id, "name": "新来的", "deptIds": [2]}).json()
        assert added["event"]["accepted"]
        uid = added["user"]["userid"]
        removed = http.delete(f"{server.url}/sandbox/dingtalk/users/{uid}", params={"corpId": corp.corp_id}).json()
        assert removed["event"]["accepted"]
    finally:
        http.post(f"{server.url}/sandbox/dingtalk/callback", json={"corpId": corp.corp_id, "url": None})
    assert [(e.kind, e.user_ids) for e in handled] == [("user_upsert", (uid,)), ("user_leave", (uid,))]


def test_event_to_wrong_receiver_is_reported_unaccepted(server, corp, http):
    app = Flask("bad")

    @app.post("/cb")
    def cb():
        return "ok"

    srv = make_server("127.0.0.1", 0, app, threaded=True)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        answer = http.post(f"{server.url}/sandbox/dingtalk/events", json={
            "corpId": corp.corp_id, "eventType": "check_url", "url": f"http://127.0.0.1:{srv.server_port}/cb"}).json()
    finally:
        srv.shutdown()
        srv.server_close()
        t.join(timeout=5)
    assert answer["accepted"] is False and "校验" in answer["deliveries"][0]["error"]


# ---------------------------------------------------------------- limits added for issue 3


def test_to_all_user_three_broadcasts_a_day_then_silently_dropped(server, corp, client, http):
    everyone = set(corp.users)
    tasks = []
    for i in range(4):
        body = {"agent_id": corp.agent_id, "to_all_user": True,
                "msg": {"msgtype": "text", "text": {"content": f"全员通知 {i}"}}}
        tasks.append(client._oapi("/topapi/message/corpconversation/asyncsend_v2", body)["task_id"])
    inbox = {m["taskId"]: m for m in http.get(f"{server.url}/sandbox/dingtalk/inbox",
                                               params={"corpId": corp.corp_id}).json()["messages"]}
    for task in tasks[:3]:
        assert set(inbox[task]["delivered"]) | set(inbox[task]["dropped"]) == everyone
        assert "to_all_user_daily_limit" not in inbox[task]["dropped"].values()
    # the fourth broadcast of the day answers success, like the platform, but reaches nobody
    assert inbox[tasks[3]]["delivered"] == []
    assert set(inbox[tasks[3]]["dropped"]) == everyone
    assert set(inbox[tasks[3]]["dropped"].values()) == {"to_all_user_daily_limit"}
    assert client.delivery_report(str(tasks[3])).failed[sorted(everyone)[0]] == "forbidden:to_all_user_daily_limit"


def test_recipients_beyond_the_per_send_cap_are_dropped(server, corp, client, http, monkeypatch):
    from integrations.sandbox import dingtalk_state

    monkeypatch.setattr(dingtalk_state, "MAX_RECIPIENTS_PER_SEND", 5)
    body = {"agent_id": corp.agent_id, "dept_id_list": "1",
            "msg": {"msgtype": "text", "text": {"content": "部门通知 cap"}}}
    task = client._oapi("/topapi/message/corpconversation/asyncsend_v2", body)["task_id"]
    sent = server.world.messages[task]
    assert len(sent.delivered) + sum(1 for c in sent.dropped.values() if c != "recipients_per_send_limit") <= 5
    assert list(sent.dropped.values()).count("recipients_per_send_limit") == len(corp.users) - 5


def test_more_than_20_departments_per_send_is_refused(corp, client):
    from integrations.base import PlatformError

    body = {"agent_id": corp.agent_id, "dept_id_list": ",".join(str(d) for d in range(1, 22)),
            "msg": {"msgtype": "text", "text": {"content": "x"}}}
    with pytest.raises(PlatformError) as info:
        client._oapi("/topapi/message/corpconversation/asyncsend_v2", body)
    assert info.value.code == "400002"


def test_fault_after_n_calls_and_delayed_answer_is_a_timeout(server, corp, http):
    c = make_client(server, corp, sleep=lambda s: None)
    c.http.timeout = (3.0, 0.3)
    http.post(f"{server.url}/sandbox/dingtalk/faults",
              json={"path": "/topapi/v2/department/get", "after": 2, "delay": 0.6})
    assert c.get_department("1").dept_id == "1"
    assert c.get_department("1").dept_id == "1"
    with pytest.raises(RetryableError) as info:
        c.get_department("1")
    assert info.value.code == "timeout"
    assert c.get_department("1").dept_id == "1"  # one fault, used up
    c.http.session.close()


def test_500_and_system_busy_faults_on_new_and_old_apis(server, corp, client, http):
    http.post(f"{server.url}/sandbox/dingtalk/faults", json={"path": "/topapi/v2/user/list", "status": 502})
    http.post(f"{server.url}/sandbox/dingtalk/faults", json={"path": "/v1.0/todo/", "errcode": -1})
    with pytest.raises(RetryableError) as old:
        client.list_department_users("1")
    someone = corp.users[sorted(corp.users)[0]]
    with pytest.raises(RetryableError) as new:
        client.create_todo(someone.unionid, subject="x", executor_unionids=[someone.unionid],
                           detail_url="http://127.0.0.1/h5/", source_id="fault-1")
    assert old.value.code == "502" and new.value.code == "systemError"


def test_token_expiring_mid_run_is_refreshed_once(server, corp, http):
    c = make_client(server, corp)
    before = server.world.call_counts.get("/v1.0/oauth2/accessToken", 0)
    c.list_sub_departments("1")
    http.post(f"{server.url}/sandbox/dingtalk/config", json={"advanceClock": 7300})  # the token is now stale
    for _ in range(3):
        c.list_sub_departments("1")
    assert server.world.call_counts["/v1.0/oauth2/accessToken"] - before == 2  # first fetch + one refresh
    c.http.session.close()


def test_calls_endpoint_counts_every_call_and_throttles(server, corp, http):
    http.delete(f"{server.url}/sandbox/dingtalk/calls")
    c = make_client(server, corp, throttle_retries=0)
    c.get_department("1")
    http.post(f"{server.url}/sandbox/dingtalk/faults", json={"path": "/topapi/v2/department/get", "errcode": 60011})
    with pytest.raises(Exception):  # noqa: B017 - any error: only the counting matters here
        c.get_department("1")
    data = http.get(f"{server.url}/sandbox/dingtalk/calls").json()
    assert data["byPath"]["/topapi/v2/department/get"] == 2 and data["throttled"] == {}
    stats = http.get(f"{server.url}/sandbox/dingtalk/corps/{corp.corp_id}/stats", params={"pageSize": 100}).json()
    assert stats["users"] == len(corp.users) and stats["departments"] == len(corp.depts)
    assert stats["minimumCalls"] == stats["departments"] + stats["userPages"]
    c.http.session.close()
