"""DingTalk HTTP push end to end: the sandbox fires signed, encrypted events at the running app (both
over real HTTP); the app stores them in the inbox, answers `success` and applies them on its thread."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
import sqlalchemy as sa
from werkzeug.serving import make_server

from app import create_app
from app.callbacks.dingtalk import event_applier
from app.services.org_sync import full_sync
from app.services.platform import platform_client
from integrations.dingtalk.crypto import CallbackCrypto
from integrations.sandbox import DingTalkWorld, SandboxServer
from integrations.sandbox.dingtalk_events import crypto_for, deliver, event_payload
from models.audit import AuditLog
from models.crm import Customer
from models.inbox import EventState, PlatformEvent
from models.org import Corp, Department, User, UserDepartment
from tests import factories
from tests.integrations.sandbox_binding import bind


@pytest.fixture(scope="module")
def server():
    with SandboxServer(DingTalkWorld(seed=23, users=30)) as srv:
        yield srv


@pytest.fixture
def sbx(server):
    corp = next(iter(server.world.corps.values()))
    snapshot = {uid: (list(u.dept_ids), dict(u.dept_orders)) for uid, u in corp.users.items()}
    users, depts = dict(corp.users), dict(corp.depts)
    yield corp
    # Tests change the simulated org; put it back for the next one.
    with server.world.lock:
        corp.users.clear()
        corp.users.update(users)
        corp.depts.clear()
        corp.depts.update(depts)
        for uid, (dept_ids, orders) in snapshot.items():
            corp.users[uid].dept_ids, corp.users[uid].dept_orders = dept_ids, orders
        corp.callback_url = None
        server.world.faults.clear()


@pytest.fixture
def live(database, settings, server, sbx):
    """The app on a real loopback port, its sandbox corp bound and fully synced."""
    corp_pk = bind(database, settings, server, sbx)
    with database.session() as s:
        corp = s.get(Corp, corp_pk)
    full_sync(database, corp_pk, platform_client(corp, settings=settings, database=database), threads=4)
    app = create_app(settings, database=database)
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{httpd.server_port}/callbacks/dingtalk/{sbx.corp_id}"
    requests.post(f"{server.url}/sandbox/dingtalk/callback", json={"corpId": sbx.corp_id, "url": url}, timeout=5)
    yield app, url, corp_pk
    event_applier(app).stop()
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


def _settle(app) -> None:
    assert event_applier(app).wait_idle(20), "events were not applied"


def _user(s, corp_pk, userid) -> User | None:
    return s.execute(
        sa.select(User).where(User.corp_id == corp_pk, User.platform_userid == userid)
    ).scalar_one_or_none()


def _memberships(s, user: User) -> set[str]:
    return set(
        s.execute(
            sa.select(Department.platform_dept_id)
            .join(UserDepartment, UserDepartment.department_id == Department.id)
            .where(UserDepartment.user_id == user.id)
        ).scalars()
    )


def _events(s, corp_pk) -> list[PlatformEvent]:
    return list(
        s.execute(sa.select(PlatformEvent).where(PlatformEvent.corp_id == corp_pk).order_by(PlatformEvent.id)).scalars()
    )


def test_join_move_leave_are_applied_and_the_leaver_handed_over(live, database, server, sbx):
    app, _url, corp_pk = live
    sandbox = server.url
    # Join: the sandbox adds a person to a sales team and pushes user_add_org.
    team = next(d for d in sbx.depts.values() if d.name == "上海一组")
    joined = requests.post(
        f"{sandbox}/sandbox/dingtalk/users",
        json={"corpId": sbx.corp_id, "name": "新同事甲", "deptIds": [team.dept_id]},
        timeout=10,
    ).json()
    assert joined["event"]["accepted"], joined
    uid = joined["user"]["userid"]
    _settle(app)
    with database.session() as s:
        newcomer = _user(s, corp_pk, uid)
        assert newcomer is not None and newcomer.active and newcomer.name == "新同事甲"
        assert newcomer.unionid == sbx.users[uid].unionid
        assert _memberships(s, newcomer) == {str(team.dept_id)}

    # Change department: moved to another team; DingTalk redelivers the same event three times.
    other = next(d for d in sbx.depts.values() if d.name == "深圳组")
    with server.world.lock:
        sbx.users[uid].dept_ids = [other.dept_id]
        sbx.users[uid].dept_orders = {other.dept_id: 5}
    moved = requests.post(
        f"{sandbox}/sandbox/dingtalk/events",
        json={"corpId": sbx.corp_id, "eventType": "user_modify_org", "userId": [uid], "times": 3},
        timeout=10,
    ).json()
    assert [d["accepted"] for d in moved["deliveries"]] == [True, True, True]
    _settle(app)
    with database.session() as s:
        assert _memberships(s, _user(s, corp_pk, uid)) == {str(other.dept_id)}
        rows = [e for e in _events(s, corp_pk) if e.event_id == moved["payload"]["eventId"]]
        assert len(rows) == 1 and rows[0].state == EventState.APPLIED and rows[0].attempts == 1

    # Leave: their customers go to the leader of their main department (the corp's default policy).
    with database.session() as s:
        corp = s.get(Corp, corp_pk)
        leaver = _user(s, corp_pk, uid)
        owned = [factories.customer(s, corp, leaver).id for _ in range(3)]
    left = requests.delete(f"{sandbox}/sandbox/dingtalk/users/{uid}", params={"corpId": sbx.corp_id}, timeout=10).json()
    assert left["event"]["accepted"]
    _settle(app)
    leader_userid = other.manager_userids[0]
    with database.session() as s:
        gone = _user(s, corp_pk, uid)
        assert gone.active is False and gone.left_at is not None
        leader = _user(s, corp_pk, leader_userid)
        owners = set(s.execute(sa.select(Customer.owner_id).where(Customer.id.in_(owned))).scalars())
        assert owners == {leader.id}
        audit = s.execute(
            sa.select(AuditLog).where(AuditLog.action == "handover", AuditLog.entity_id == gone.id)
        ).scalar_one()
        assert audit.changes["customer_ids"]["after"] == owned
        assert [e.state for e in _events(s, corp_pk)] == [EventState.APPLIED] * 3


def test_rehired_userid_is_reactivated_not_duplicated(live, database, server, sbx):
    app, url, corp_pk = live
    uid = "user0009"
    person = sbx.users[uid]
    requests.delete(f"{server.url}/sandbox/dingtalk/users/{uid}", params={"corpId": sbx.corp_id}, timeout=10)
    _settle(app)
    with database.session() as s:
        assert _user(s, corp_pk, uid).active is False
    with server.world.lock:
        sbx.users[uid] = person
    assert deliver(sbx, url, event_payload(sbx, "user_add_org", user_ids=[uid]))["accepted"]
    _settle(app)
    with database.session() as s:
        rows = s.execute(sa.select(User).where(User.corp_id == corp_pk, User.platform_userid == uid)).scalars().all()
        assert len(rows) == 1 and rows[0].active and rows[0].left_at is None


def test_department_create_and_remove(live, database, server, sbx):
    app, _url, corp_pk = live
    sales = next(d for d in sbx.depts.values() if d.name == "销售部")
    created = requests.post(
        f"{server.url}/sandbox/dingtalk/departments",
        json={"corpId": sbx.corp_id, "name": "西南大区", "parentId": sales.dept_id},
        timeout=10,
    ).json()
    assert created["event"]["accepted"]
    new_id = str(created["department"]["dept_id"])
    _settle(app)
    with database.session() as s:
        dept = s.execute(
            sa.select(Department).where(Department.corp_id == corp_pk, Department.platform_dept_id == new_id)
        ).scalar_one()
        parent = s.execute(
            sa.select(Department).where(
                Department.corp_id == corp_pk, Department.platform_dept_id == str(sales.dept_id)
            )
        ).scalar_one()
        assert dept.name == "西南大区" and dept.parent_id == parent.id
        assert dept.path == f"{parent.path}{dept.id}/" and dept.depth == parent.depth + 1
    removed = requests.delete(
        f"{server.url}/sandbox/dingtalk/departments/{new_id}", params={"corpId": sbx.corp_id}, timeout=10
    ).json()
    assert removed["event"]["accepted"]
    _settle(app)
    with database.session() as s:
        assert (
            s.execute(
                sa.select(Department).where(Department.corp_id == corp_pk, Department.platform_dept_id == new_id)
            ).first()
            is None
        )


def test_capitalised_keys_and_legacy_corpid_owner_key(live, database, server, sbx):
    """Older HTTP docs send `UserId`; the legacy register API seals with the CorpId (§6, §7.4)."""
    app, url, corp_pk = live
    uid = "user0012"
    with server.world.lock:
        sbx.users[uid].title = "区域总监"
    payload = event_payload(sbx, "user_modify_org")
    payload["UserId"] = [uid]
    legacy = CallbackCrypto(sbx.callback_token, sbx.callback_aes_key, sbx.corp_id)
    env = legacy.seal(json.dumps(payload, ensure_ascii=False))
    resp = requests.post(
        url,
        params={"signature": env.msg_signature, "timeStamp": env.timestamp, "nonce": env.nonce},
        json={"encrypt": env.encrypt},
        timeout=5,
    )
    assert resp.status_code == 200
    reply = resp.json()
    legacy.verify(reply["msg_signature"], reply["timeStamp"], reply["nonce"], reply["encrypt"])
    assert legacy.decrypt(reply["encrypt"]) == "success"  # sealed back with the key the push used
    _settle(app)
    with database.session() as s:
        assert _user(s, corp_pk, uid).title == "区域总监"


def test_check_url_and_unhandled_events_answer_success_and_store_nothing(live, database, sbx):
    _app, url, corp_pk = live
    for kind in ("check_url", "bpms_instance_change"):
        assert deliver(sbx, url, event_payload(sbx, kind))["accepted"]
    with database.session() as s:
        assert _events(s, corp_pk) == []


# ---------------------------------------------------------------- hostile input (no thread, no network)


@pytest.fixture
def bound(database, settings, server, sbx):
    return bind(database, settings, server, sbx)


def _signed(sbx, payload, crypto=None):
    crypto = crypto or crypto_for(sbx)
    env = crypto.seal(json.dumps(payload, ensure_ascii=False))
    return {"msg_signature": env.msg_signature, "timestamp": env.timestamp, "nonce": env.nonce}, env.encrypt


def _nothing_stored(database):
    with database.session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(PlatformEvent)) == 0


def test_bad_signature_is_403(client, database, sbx, bound):
    query, encrypt = _signed(sbx, event_payload(sbx, "user_add_org", user_ids=["user0002"]))
    query["msg_signature"] = "0" * 40
    resp = client.post(f"/callbacks/dingtalk/{sbx.corp_id}", query_string=query, json={"encrypt": encrypt})
    assert resp.status_code == 403 and resp.get_json()["error"]["code"] == "bad_signature"
    _nothing_stored(database)


def test_wrong_owner_key_is_403(client, database, sbx, bound):
    other = CallbackCrypto(sbx.callback_token, sbx.callback_aes_key, "dingSOMEOTHERAPP")
    query, encrypt = _signed(sbx, event_payload(sbx, "user_add_org", user_ids=["user0002"]), other)
    resp = client.post(f"/callbacks/dingtalk/{sbx.corp_id}", query_string=query, json={"encrypt": encrypt})
    assert resp.status_code == 403 and resp.get_json()["error"]["code"] == "wrong_owner_key"
    _nothing_stored(database)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda q, e: (q, {"encrypt": e[: len(e) // 2]}),  # truncated (signature made over the original)
        lambda q, e: (q, {"encrypt": "%%%not base64%%%"}),
        lambda q, e: (q, {"nothing": "here"}),
        lambda q, e: (q, "garbage"),
        lambda q, e: ({}, {"encrypt": e}),
    ],
)
def test_truncated_or_garbage_bodies_are_4xx(client, database, sbx, bound, mangle):
    query, encrypt = _signed(sbx, event_payload(sbx, "user_add_org", user_ids=["user0002"]))
    query, body = mangle(query, encrypt)
    kwargs = {"json": body} if isinstance(body, dict) else {"data": body, "content_type": "application/json"}
    resp = client.post(f"/callbacks/dingtalk/{sbx.corp_id}", query_string=query, **kwargs)
    assert 400 <= resp.status_code < 500 and "error" in resp.get_json()
    _nothing_stored(database)


def test_truncated_but_resigned_ciphertext_is_400(client, database, sbx, bound):
    crypto = crypto_for(sbx)
    env = crypto.seal(json.dumps(event_payload(sbx, "user_add_org", user_ids=["user0002"])))
    cut = env.encrypt[:44]  # whole base64 quanta, whole AES blocks, but the plaintext is cut short
    from integrations.dingtalk.crypto import sign

    query = {
        "msg_signature": sign(sbx.callback_token, env.timestamp, env.nonce, cut),
        "timestamp": env.timestamp,
        "nonce": env.nonce,
    }
    resp = client.post(f"/callbacks/dingtalk/{sbx.corp_id}", query_string=query, json={"encrypt": cut})
    assert resp.status_code == 400 and resp.get_json()["error"]["code"] == "bad_callback"
    _nothing_stored(database)


def test_unknown_corp_and_corp_without_callback_settings_are_404(client, database, sbx, bound):
    query, encrypt = _signed(sbx, event_payload(sbx, "user_add_org", user_ids=["user0002"]))
    assert (
        client.post("/callbacks/dingtalk/dingunknown", query_string=query, json={"encrypt": encrypt}).status_code == 404
    )
    with database.session() as s:
        factories.corp(s, corp_id="dingnocallback")
    resp = client.post("/callbacks/dingtalk/dingnocallback", query_string=query, json={"encrypt": encrypt})
    assert resp.status_code == 404 and resp.get_json()["error"]["code"] == "callback_not_configured"
    _nothing_stored(database)


def test_get_is_a_reachability_check(client, sbx, bound):
    ok = client.get(f"/callbacks/dingtalk/{sbx.corp_id}")
    assert ok.status_code == 200 and ok.get_json() == {"ok": True, "corp": sbx.corp_id, "method": "POST"}
    assert client.get("/callbacks/dingtalk/dingunknown").status_code == 404


def test_a_burst_is_applied_in_parallel_and_each_persons_leave_after_their_join(live, database, server, sbx):
    """Eight people join at once, then (each after their join was answered, before it is applied) all
    leave at once, while eight others change title: the leaves need no fetch and must still not overtake
    the joins; the sandbox keeps answering for the leavers, so order alone decides how they end."""
    app, url, corp_pk = live
    team = next(d for d in sbx.depts.values() if d.name == "上海一组")
    newcomers = [server.world.add_user(sbx, name=f"突发{i}", dept_ids=[team.dept_id]).userid for i in range(8)]
    changed = sorted(uid for uid in sbx.users if uid not in newcomers)[:8]
    with server.world.lock:
        for uid in changed:
            sbx.users[uid].title = f"新职位-{uid}"
    joins = [event_payload(sbx, "user_add_org", user_ids=[uid]) for uid in newcomers]
    leaves = [event_payload(sbx, "user_leave_org", user_ids=[uid]) for uid in newcomers]
    changes = [event_payload(sbx, "user_modify_org", user_ids=[uid]) for uid in changed]
    with ThreadPoolExecutor(max_workers=16) as pool:
        assert all(o["accepted"] for o in pool.map(lambda p: deliver(sbx, url, p), joins + changes))
        assert all(o["accepted"] for o in pool.map(lambda p: deliver(sbx, url, p), leaves))
    _settle(app)
    with database.session() as s:
        events = _events(s, corp_pk)
        assert sorted(e.event_id for e in events) == sorted(p["eventId"] for p in joins + leaves + changes)
        assert {(e.state, e.attempts) for e in events} == {(EventState.APPLIED, 1)}
        for uid in newcomers:
            left = _user(s, corp_pk, uid)
            assert left is not None and left.active is False, uid
        assert {_user(s, corp_pk, uid).title for uid in changed} == {f"新职位-{uid}" for uid in changed}
