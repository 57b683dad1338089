"""The app with a WeCom corp bound to the sandbox, over real HTTP: `crm corp test`, OAuth sign-in, JS-SDK
config, full org sync, encrypted address-book callbacks and an approval decided by a card click."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import sqlalchemy as sa

from app import create_app
from app.callbacks.wecom import card_pool
from app.schemas_approvals import FlowIn, SubmitIn
from app.services import approval_flows, approvals
from app.services.actor import Actor
from app.services.approval_defaults import install_defaults
from app.services.corps import SecretBox
from app.services.org_sync import SyncFailed
from integrations.base import Message
from integrations.sandbox import SandboxServer
from integrations.sandbox.wecom_api import create_wecom_blueprint
from integrations.sandbox.wecom_events import change_contact, crypto_for, deliver
from integrations.sandbox.wecom_state import Fault, WeComWorld
from models.approvals import ApprovalInstance, ApprovalTask
from models.inbox import PlatformEvent
from models.org import Corp, Department, Role, User
from models.platform import SyncStatus
from tests.approval_helpers import opportunity
from tests.integrations import wecom_binding

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def world():
    return WeComWorld(seed=11, users=40)


@pytest.fixture(scope="module")
def server(world):
    with SandboxServer(extra_blueprints=(create_wecom_blueprint(world),)) as srv:
        yield srv


@pytest.fixture
def sbx(world):
    app = world.app()
    corp = app.corp
    users = {uid: (u, list(u.dept_ids)) for uid, u in corp.users.items()}
    depts = dict(corp.depts)
    yield app
    with world.lock:
        corp.users.clear()
        for uid, (u, dept_ids) in users.items():
            u.dept_ids = dept_ids
            corp.users[uid] = u
        corp.depts.clear()
        corp.depts.update(depts)
        app.callback_url, app.allow_partys, app.contact_permission = None, [1], True
        world.org_changed(app)
        world.faults.clear()


@pytest.fixture
def wsettings(settings, server):
    return wecom_binding.wecom_settings(settings, server)


@pytest.fixture
def corp_pk(database, wsettings, sbx):
    return wecom_binding.bind(database, wsettings, sbx)


_client = wecom_binding.client
_sync = wecom_binding.sync


def _user(s, corp_pk, userid) -> User | None:
    return s.execute(
        sa.select(User).where(User.corp_id == corp_pk, User.platform_userid == userid)).scalar_one_or_none()


# ----------------------------------------------------------------------------- binding, crm corp test


def test_crm_corp_add_and_test_name_the_cause(server, sbx, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_")}
    env.update(CRM_INSTANCE_PATH=str(tmp_path / "instance"), CRM_WECOM_API_BASE=f"{server.url}/cgi-bin")

    def crm(*args):
        return subprocess.run([sys.executable, "-m", "app.cli", *args], env=env, cwd=ROOT, capture_output=True,
                              text=True, timeout=60)

    assert crm("db", "upgrade").returncode == 0
    added = crm("corp", "add", "--platform", "wecom", "--corp-id", sbx.corp.corp_id, "--secret", sbx.secret,
                "--agent-id", str(sbx.agent_id))
    assert added.returncode == 0 and sbx.secret not in added.stdout
    ok = crm("corp", "test")
    assert ok.returncode == 0, ok.stderr
    assert sbx.corp.name in ok.stdout
    assert crm("corp", "add", "--platform", "wecom", "--corp-id", "wwotherapp", "--secret", "wrong",
               "--agent-id", "1000009").returncode == 0
    bad = crm("corp", "test", "--corp", "wwotherapp")
    assert bad.returncode == 1 and bad.stderr.strip().count("\n") == 0 and "CorpID" in bad.stderr


def test_corp_test_reports_bad_secret_and_untrusted_ip(database, wsettings, corp_pk, world, sbx):
    with database.session() as s:
        corp = s.get(Corp, corp_pk)
        corp.secrets_ciphertext = SecretBox(wsettings.master_key).seal({"secret": "not-the-secret"})
    report = _client(database, wsettings, corp_pk).test_connection()
    assert not report.ok and "40001" in report.message and "not-the-secret" not in report.message
    with database.session() as s:
        s.get(Corp, corp_pk).secrets_ciphertext = SecretBox(wsettings.master_key).seal({"secret": sbx.secret})
    world.faults.append(Fault(path="gettoken", remaining=1, errcode=60020))
    report = _client(database, wsettings, corp_pk).test_connection()
    assert not report.ok and "60020" in report.message and "IP" in report.message


# ----------------------------------------------------------------------------- sign-in


def test_oauth_sign_in_round_trip(database, wsettings, corp_pk, sbx, server):
    _sync(database, wsettings, corp_pk)
    app = create_app(wsettings, database=database)
    web = app.test_client()
    start = web.get(f"/auth/wecom/start?corp={sbx.corp.corp_id}&next=/h5/%23/customers")
    assert start.status_code == 302
    target = urlsplit(start.headers["Location"])
    query = parse_qs(target.query)
    assert f"{target.scheme}://{target.netloc}" == server.url and target.path == "/connect/oauth2/authorize"
    assert target.fragment == "wechat_redirect"
    assert query["scope"] == ["snsapi_base"] and query["appid"] == [sbx.corp.corp_id]
    assert query["redirect_uri"] == ["http://crm.test/auth/wecom/callback"]
    assert query["agentid"] == [str(sbx.agent_id)] and query["state"][0].isalnum()
    # The sandbox page signs in the chosen employee and sends the browser back with code + state.
    back = requests.get(f"{server.url}{target.path}?{target.query}&userid=user0003", allow_redirects=False,
                        timeout=5)
    assert back.status_code == 302
    callback = urlsplit(back.headers["Location"])
    done = web.get(f"{callback.path}?{callback.query}")
    assert done.status_code == 302 and done.headers["Location"] == "/h5/#/customers"
    me = web.get("/api/v1/me").get_json()
    assert me["user"]["userid"] == "user0003"
    # The same callback URL again (a replay) is refused: state is single use.
    again = web.get(f"{callback.path}?{callback.query}")
    assert again.status_code == 401 and again.get_json()["error"]["code"] == "invalid_state"


def test_oauth_refuses_foreign_state_and_offsite_next(database, wsettings, corp_pk, sbx, server):
    app = create_app(wsettings, database=database)
    web = app.test_client()
    assert web.get("/auth/wecom/callback?code=abc&state=forged").status_code == 401
    start = web.get(f"/auth/wecom/start?corp={sbx.corp.corp_id}&next=//evil.example/x")
    target = urlsplit(start.headers["Location"])
    state = parse_qs(target.query)["state"][0]
    code = requests.post(f"{server.url}/sandbox/wecom/code", json={"userid": "user0004"}, timeout=5).json()["code"]
    other = app.test_client()  # another browser: has not started a sign-in
    assert other.get(f"/auth/wecom/callback?code={code}&state={state}").status_code == 401
    done = web.get(f"/auth/wecom/callback?code={code}&state={state}")
    # user0004 was never synced: fetched and added during sign-in; the off-site `next` became /h5/.
    assert done.status_code == 302 and done.headers["Location"] == "/h5/"
    with database.session() as s:
        assert _user(s, corp_pk, "user0004") is not None
    assert web.get("/auth/wecom/start?corp=wwnobody").status_code == 404
    assert web.get("/auth/wecom/start").status_code == 422


def test_jssdk_config_endpoint(database, wsettings, corp_pk, sbx):
    app = create_app(wsettings, database=database)
    web = app.test_client()
    resp = web.get(f"/api/v1/auth/wecom/jssdk-config?corpId={sbx.corp.corp_id}&url=http://crm.test/h5/?a=1")
    assert resp.status_code == 200, resp.get_json()
    data = resp.get_json()
    assert data["config"]["appId"] == sbx.corp.corp_id and data["agentConfig"]["agentid"] == str(sbx.agent_id)
    assert data["config"]["signature"] != data["agentConfig"]["signature"]
    foreign = web.get(f"/api/v1/auth/wecom/jssdk-config?corpId={sbx.corp.corp_id}&url=https://evil.example/")
    assert foreign.status_code == 422 and foreign.get_json()["error"]["fields"] == {"url": "foreign origin"}
    missing = web.get("/api/v1/auth/wecom/jssdk-config?url=http://crm.test/h5/")
    assert missing.status_code == 422 and "corpId" in missing.get_json()["error"]["fields"]


# ----------------------------------------------------------------------------- org sync


def test_full_sync_mirrors_the_visible_range(database, wsettings, corp_pk, sbx):
    run = _sync(database, wsettings, corp_pk)
    assert run.status == SyncStatus.SUCCEEDED
    with database.session() as s:
        users = {u.platform_userid for u in s.execute(sa.select(User).where(User.corp_id == corp_pk)).scalars()}
        depts = {d.platform_dept_id: d for d in
                 s.execute(sa.select(Department).where(Department.corp_id == corp_pk)).scalars()}
    assert users == set(sbx.corp.users)
    assert set(depts) == {str(d) for d in sbx.corp.depts}
    assert depts["1"].name == sbx.corp.name


def test_sync_with_empty_visible_range_fails_with_a_clear_cause(database, wsettings, corp_pk, sbx, world):
    sbx.allow_partys = []
    world.org_changed(sbx)
    with pytest.raises(SyncFailed) as info:
        _sync(database, wsettings, corp_pk)
    assert "可见范围" in str(info.value) and "visible range" in str(info.value)


# ----------------------------------------------------------------------------- callbacks


@pytest.fixture
def live(database, wsettings, corp_pk, sbx, server):
    _sync(database, wsettings, corp_pk)
    with wecom_binding.serve_callbacks(database, wsettings, sbx, server) as served:
        yield served


def test_address_book_events_are_applied(database, corp_pk, sbx, server, live):
    app, _ = live
    base = f"{server.url}/sandbox/wecom/corps/{sbx.corp.corp_id}"
    dept = requests.post(f"{base}/departments", json={"name": "西南大区", "parentid": 1}, timeout=10).json()
    assert dept["event"]["accepted"]
    new_dept = str(dept["department"]["id"])
    # One event at a time: two appliers (another app object's sweeper in this process) applying a new
    # department and a member of it at once can both insert the department (see the report).
    wecom_binding.settle(app)
    made = requests.post(f"{base}/users", json={"name": "新同事", "department": [int(new_dept)],
                                                 "userid": "newhire1"}, timeout=10).json()
    assert made["event"]["accepted"] and made["event"]["status"] == 200
    wecom_binding.settle(app)
    with database.session() as s:
        user = _user(s, corp_pk, "newhire1")
        assert user is not None and user.name == "新同事" and user.active
        name = s.execute(sa.select(Department.name).where(Department.corp_id == corp_pk,
                                                          Department.platform_dept_id == new_dept)).scalar()
        assert name == "西南大区"
    requests.patch(f"{base}/users/newhire1", json={"name": "新同事（改名）"}, timeout=10)
    wecom_binding.settle(app)
    with database.session() as s:
        assert _user(s, corp_pk, "newhire1").name == "新同事（改名）"
    requests.delete(f"{base}/users/newhire1", timeout=10)
    requests.delete(f"{base}/departments/{new_dept}", timeout=10)
    wecom_binding.settle(app)
    with database.session() as s:
        assert _user(s, corp_pk, "newhire1").active is False
        assert s.execute(sa.select(Department.id).where(Department.corp_id == corp_pk,
                                                        Department.platform_dept_id == new_dept)).first() is None


def test_redelivered_event_is_stored_once_and_bad_signatures_leave_no_trace(database, corp_pk, sbx, live):
    app, url = live
    fields = change_contact(sbx, "update_user", UserID="user0002")
    first = deliver(sbx, url, fields)
    second = deliver(sbx, url, fields)  # WeCom's retry: identical XML
    assert first["accepted"] and second["accepted"]
    wecom_binding.settle(app)
    with database.session() as s:
        rows = s.execute(sa.select(PlatformEvent).where(PlatformEvent.corp_id == corp_pk)).scalars().all()
    assert len(rows) == 1
    env = crypto_for(sbx).encrypt("<xml><Event>change_contact</Event></xml>")
    forged = requests.post(url, params={"msg_signature": "0" * 40, "timestamp": env.timestamp, "nonce": env.nonce},
                           data=env.body.encode(), timeout=5)
    assert forged.status_code == 403
    garbage = requests.post(url, params={"msg_signature": "x", "timestamp": "1", "nonce": "n"}, data=b"not xml",
                            timeout=5)
    assert garbage.status_code == 400
    with database.session() as s:
        assert s.execute(sa.select(sa.func.count()).select_from(PlatformEvent)
                         .where(PlatformEvent.corp_id == corp_pk)).scalar() == 1


def test_approval_decided_by_a_card_click(database, wsettings, corp_pk, sbx, server, live):
    app, _ = live
    with database.session() as s:
        install_defaults(s, corp_pk)
        corp = s.get(Corp, corp_pk)
        admin, applicant = _user(s, corp_pk, "user0001"), _user(s, corp_pk, "user0005")
        first, second = _user(s, corp_pk, "user0002"), _user(s, corp_pk, "user0003")
        admin.role = Role.ADMIN
        s.flush()
        flow = approval_flows.create_flow(s, Actor(corp_pk, admin.id, Role.ADMIN), FlowIn(
            name="折扣", kind="custom", steps=[{"name": "主管", "mode": "any",
                                               "approvers": [{"type": "users", "user_ids": [first.id, second.id]}]}]))
        opp = opportunity(s, corp, applicant)
        inst = approvals.submit(s, Actor(corp_pk, applicant.id, applicant.role),
                                SubmitIn(flow_id=flow.id, subject_type="opportunity", subject_id=opp.id))
        tasks = {t.approver_id: t.source_id for t in
                 s.execute(sa.select(ApprovalTask).where(ApprovalTask.instance_id == inst.id)).scalars()}
        inst_id, first_id, second_id = inst.id, first.id, second.id
    client = _client(database, wsettings, corp_pk)
    # What the delivery layer does for an approval request on WeCom: one card per approver's task.
    sent = {}
    for userid, user_pk in (("user0002", first_id), ("user0003", second_id)):
        sent[userid] = client.send_message([userid], Message(
            title="折扣审批", markdown="客户 A 申请 8 折", url="http://crm.test/h5/#/approvals/1", kind="approval",
            extra={"task_id": tasks[user_pk], "form": [("申请人", "user0005")]}))
    click = requests.post(f"{server.url}/sandbox/wecom/cards/{sent['user0002'].task_id}/click",
                          json={"corpId": sbx.corp.corp_id, "userid": "user0002", "key": "approve"}, timeout=10)
    assert click.status_code == 200 and click.json()["event"]["accepted"]
    card_pool(app).submit(lambda: None).result(timeout=20)  # the decision thread has run
    with database.session() as s:
        inst = s.get(ApprovalInstance, inst_id)
        assert inst.state == "approved"
        decided = s.execute(sa.select(ApprovalTask).where(ApprovalTask.instance_id == inst_id,
                                                          ApprovalTask.approver_id == first_id)).scalar_one()
        assert decided.state == "approved"
    inbox = requests.get(f"{server.url}/sandbox/wecom/inbox", params={"userid": "user0002"}, timeout=5).json()
    assert inbox["messages"][-1]["cards"]["user0002"] == {"buttons": [], "replace_name": "已同意"}
    # The other approver clicks too late: nothing changes, their card says it is already handled.
    late = requests.post(f"{server.url}/sandbox/wecom/cards/{sent['user0003'].task_id}/click",
                         json={"corpId": sbx.corp.corp_id, "userid": "user0003", "key": "reject"}, timeout=10)
    assert late.status_code == 200
    card_pool(app).submit(lambda: None).result(timeout=20)
    with database.session() as s:
        assert s.get(ApprovalInstance, inst_id).state == "approved"
    inbox = requests.get(f"{server.url}/sandbox/wecom/inbox", params={"userid": "user0003"}, timeout=5).json()
    assert inbox["messages"][-1]["cards"]["user0003"]["replace_name"] == "已处理"
