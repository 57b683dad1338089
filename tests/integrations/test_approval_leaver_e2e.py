"""An approver leaves mid-way, end to end over real HTTP: the sandbox fires the signed, encrypted
`user_leave_org` at the running app; the handover re-routes the pending approval step to the leaver's leader,
who gets the approval request (card + 待办 at the sandbox once the worker runs), and the leaver's to-do is
closed."""

from __future__ import annotations

import threading

import pytest
import requests
import sqlalchemy as sa
import time_machine
from werkzeug.serving import make_server

from app import create_app
from app.callbacks.dingtalk import event_applier
from app.schemas_approvals import FlowIn, SubmitIn
from app.services import approval_flows, approvals
from app.services.actor import Actor
from app.services.approval_defaults import install_defaults
from app.services.delivery import Deliverer
from app.services.org_sync import full_sync
from app.services.platform import platform_client
from integrations.sandbox import DingTalkWorld, SandboxServer
from models.approvals import ApprovalInstance, ApprovalTask
from models.org import Corp, Role, User
from models.outbox import OutboxItem
from models.types import utcnow
from tests.approval_helpers import opportunity
from tests.delivery_support import inbox, local
from tests.integrations.sandbox_binding import bind


@pytest.fixture
def server():
    with SandboxServer(DingTalkWorld(seed=29, users=30)) as srv:
        yield srv


@pytest.fixture
def live(database, settings, server):
    sbx = next(iter(server.world.corps.values()))
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
    yield app, sbx, corp_pk
    event_applier(app).stop()
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)
    with server.world.lock:
        sbx.callback_url = None


def _user(s, corp_pk, userid) -> User:
    return s.execute(sa.select(User).where(User.corp_id == corp_pk, User.platform_userid == userid)).scalar_one()


def _todos(server, corp_id):
    session = requests.Session()
    session.trust_env = False
    try:
        return session.get(f"{server.url}/sandbox/dingtalk/todos", params={"corpId": corp_id}, timeout=10).json()[
            "todos"]
    finally:
        session.close()


def test_user_leave_org_reroutes_the_pending_step_to_the_leavers_leader(live, database, settings, server):
    app, sbx, corp_pk = live
    # An approver who is a plain member of exactly one team that has a leader; the applicant is someone else.
    team, approver_uid = next(
        (d, u.userid) for d in sorted(sbx.depts.values(), key=lambda d: d.dept_id) if d.dept_id != 1
        and d.manager_userids for u in sbx.users.values()
        if u.dept_ids == [d.dept_id] and u.userid not in d.manager_userids)
    leader_uid = team.manager_userids[0]
    applicant_uid = next(u for u in sbx.users if u not in (approver_uid, leader_uid))
    clock = time_machine.travel(local("Asia/Shanghai", 2026, 11, 10, 10, 0), tick=True)
    clock.start()
    try:
        _approve_across_a_leave(live, database, settings, server, approver_uid, leader_uid, applicant_uid)
    finally:
        clock.stop()


def _approve_across_a_leave(live, database, settings, server, approver_uid, leader_uid, applicant_uid):
    app, sbx, corp_pk = live
    with database.session() as s:
        install_defaults(s, corp_pk)
        corp = s.get(Corp, corp_pk)
        approver, leader, applicant = (_user(s, corp_pk, u) for u in (approver_uid, leader_uid, applicant_uid))
        admin = _user(s, corp_pk, next(iter(sbx.depts[1].manager_userids)))
        admin.role = Role.ADMIN
        s.flush()
        flow = approval_flows.create_flow(s, Actor(corp_pk, admin.id, Role.ADMIN), FlowIn(
            name="离职改派", kind="custom", steps=[{"name": "指定审批人", "mode": "any",
                                                   "approvers": [{"type": "users", "user_ids": [approver.id]}]}]))
        opp = opportunity(s, corp, applicant, name="离职改派单")
        inst = approvals.submit(s, Actor(corp_pk, applicant.id, applicant.role),
                                SubmitIn(flow_id=flow.id, subject_type="opportunity", subject_id=opp.id))
        inst_id, approver_pk, leader_pk = inst.id, approver.id, leader.id

    Deliverer(database, settings, owner="e2e").step(utcnow())
    [first_todo] = _todos(server, sbx.corp_id)
    assert first_todo["executorIds"] == [sbx.users[approver_uid].unionid] and not first_todo["done"]
    assert len(inbox(server, approver_uid)) == 1

    left = requests.delete(f"{server.url}/sandbox/dingtalk/users/{approver_uid}",
                           params={"corpId": sbx.corp_id}, timeout=10).json()
    assert left["event"]["accepted"]
    assert event_applier(app).wait_idle(20), "the leave event was not applied"

    with database.session() as s:
        assert _user(s, corp_pk, approver_uid).active is False
        inst = s.get(ApprovalInstance, inst_id)
        assert (inst.state, inst.current_step) == ("pending", 0)
        tasks = s.execute(sa.select(ApprovalTask).where(ApprovalTask.instance_id == inst_id)
                          .order_by(ApprovalTask.id)).scalars().all()
        assert [(t.approver_id, t.state) for t in tasks] == [(approver_pk, "reassigned"), (leader_pk, "pending")]
        assert tasks[1].replaces_id == tasks[0].id and tasks[1].step_index == 0
        [request] = s.execute(sa.select(OutboxItem).where(
            OutboxItem.kind == "approval_request", OutboxItem.recipient_user_id == leader_pk)).scalars().all()
        assert request.subject_id == inst_id and request.payload["todo"]["source_id"] == tasks[1].source_id
        assert s.execute(sa.select(OutboxItem.payload).where(
            OutboxItem.kind == "approval_todo_done", OutboxItem.recipient_user_id == approver_pk)
        ).scalar_one()["todo_done"] == tasks[0].source_id

    Deliverer(database, settings, owner="e2e").step(utcnow())
    todos = {t["sourceId"]: t for t in _todos(server, sbx.corp_id)}
    assert todos[tasks[0].source_id]["done"] is True  # the leaver's to-do is closed
    assert todos[tasks[1].source_id]["executorIds"] == [sbx.users[leader_uid].unionid]
    assert todos[tasks[1].source_id]["done"] is False
    cards = [m for m in inbox(server, leader_uid) if m["msg"]["msgtype"] == "action_card"]
    assert len(cards) == 1 and cards[0]["delivered"] == [leader_uid]

    with database.session() as s:
        approvals.decide(s, Actor(corp_pk, leader_pk, Role.SALESPERSON), inst_id, "approve", None)
    Deliverer(database, settings, owner="e2e").step(utcnow())
    assert all(t["done"] for t in _todos(server, sbx.corp_id))
