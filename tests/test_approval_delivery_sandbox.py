"""Approval requests delivered over real HTTP to the sandbox: on DingTalk an action card plus the approver's 待办
(closed when the task is settled, without a message), on WeCom the 同意 / 驳回 card (updated for every
approver when the approval is decided elsewhere). The clock is under test control (time-machine)."""

from __future__ import annotations

import pytest
import requests
import sqlalchemy as sa
import time_machine

from app.schemas_approvals import FlowIn, SubmitIn
from app.services import approval_flows, approvals, outbox
from app.services.approval_defaults import install_defaults
from app.services.corps import SecretBox, create_corp
from app.services.delivery import NO_UNIONID, Deliverer
from integrations.sandbox import DingTalkWorld, SandboxServer
from integrations.sandbox.wecom_api import create_wecom_blueprint
from integrations.sandbox.wecom_state import WeComWorld
from models.approvals import ApprovalTask
from models.org import Role, User
from models.outbox import Delivery, OutboxItem, OutboxState, Priority
from models.platform import ApiUsage
from models.types import utcnow
from tests.approval_helpers import actor, opportunity
from tests.delivery_support import bind_sandbox_corp, inbox, local, message_text, sandbox_settings

TZ = "Asia/Shanghai"
PUBLIC = "https://crm.example.com"


def _get(url, **params):
    s = requests.Session()
    s.trust_env = False
    try:
        return s.get(url, params=params, timeout=30).json()
    finally:
        s.close()


def _todos(server, corp_id):
    return _get(f"{server.url}/sandbox/dingtalk/todos", corpId=corp_id)["todos"]


def _usage(database, corp_id):
    with database.session() as s:
        return dict(s.execute(sa.select(ApiUsage.family, ApiUsage.count).where(ApiUsage.corp_id == corp_id)).all())


def _items(database, **where):
    with database.session() as s:
        return s.execute(sa.select(OutboxItem).filter_by(**where).order_by(OutboxItem.id)).scalars().all()


def _two_approver_flow(s, corp, admin, first, second):
    return approval_flows.create_flow(s, actor(admin), FlowIn(
        name="双人折扣", kind="custom", steps=[{"name": "主管", "mode": "any", "approvers": [
            {"type": "users", "user_ids": [first.id, second.id]}]}]))


def _submit(s, applicant, flow, opp):
    return approvals.submit(s, actor(applicant), SubmitIn(flow_id=flow.id, subject_type="opportunity",
                                                          subject_id=opp.id))


# ----------------------------------------------------------------------------- DingTalk


@pytest.fixture
def ding(database, settings):
    with SandboxServer(DingTalkWorld(seed=7, users=6)) as server:
        cfg = sandbox_settings(settings, server)
        sandbox_corp = next(iter(server.world.corps.values()))
        with database.session() as s:
            corp, people = bind_sandbox_corp(s, cfg, sandbox_corp)
            install_defaults(s, corp.id)
            admin, applicant, first, second = people[0], people[1], people[2], people[3]
            flow = _two_approver_flow(s, corp, admin, first, second)
            opp = opportunity(s, corp, applicant, name="沙箱双人单")
            ids = {"corp": corp.id, "flow": flow.id, "opp": opp.id, "applicant": applicant.id, "first": first.id,
                   "second": second.id}
            users = {k: (p.platform_userid, p.unionid) for k, p in
                     (("applicant", applicant), ("first", first), ("second", second))}
        yield server, cfg, sandbox_corp.corp_id, ids, users


def _submit_ids(database, ids):
    with database.session() as s:
        applicant = s.get(User, ids["applicant"])
        from models.approvals import ApprovalFlow
        from models.crm import Opportunity

        inst = _submit(s, applicant, s.get(ApprovalFlow, ids["flow"]), s.get(Opportunity, ids["opp"]))
        tasks = {t.approver_id: t.source_id for t in s.execute(
            sa.select(ApprovalTask).where(ApprovalTask.instance_id == inst.id)).scalars()}
        return inst.id, tasks


def test_dingtalk_approver_gets_one_action_card_and_one_todo_then_the_todo_is_closed(database, ding):
    server, cfg, corp_id, ids, users = ding
    at = local(TZ, 2026, 11, 10, 10, 0)
    with time_machine.travel(at, tick=True):
        inst_id, tasks = _submit_ids(database, ids)
        # Something else is due for the first approver at the same moment: it must not ride in the card.
        with database.session() as s:
            outbox.enqueue(s, corp_id=ids["corp"], kind="follow_up_due", recipient_user_id=ids["first"],
                           subject_type="customer", subject_id=1, due_at=utcnow(), payload={"line": "跟进客户甲"},
                           priority=Priority.REMINDER)
        Deliverer(database, cfg, owner="d1").step(utcnow())

        link = f"{PUBLIC}/h5/#/approvals/{inst_id}"
        for who in ("first", "second"):
            userid, unionid = users[who]
            cards = [m for m in inbox(server, userid) if m["msg"]["msgtype"] == "action_card"]
            assert len(cards) == 1 and cards[0]["delivered"] == [userid]
            assert "沙箱双人单" in message_text(cards[0]) and "跟进客户甲" not in message_text(cards[0])
            assert "crm.example.com%2Fh5%2F%23%2Fapprovals%2F" + str(inst_id) in message_text(cards[0])
            [todo] = [t for t in _todos(server, corp_id) if t["sourceId"] == tasks[ids[who]]]
            assert todo["executorIds"] == [unionid] and todo["done"] is False
            assert todo["detailUrl"] == {"appUrl": link, "pcUrl": link}
            assert "沙箱双人单" in todo["subject"]
        digest = [m for m in inbox(server, users["first"][0]) if "跟进客户甲" in message_text(m)]
        assert len(digest) == 1 and digest[0]["msg"]["msgtype"] == "markdown"
        assert len(_todos(server, corp_id)) == 2
        usage = _usage(database, ids["corp"])
        assert usage["todo"] == 2 and usage["work_notification"] == 3
        with database.session() as s:
            carried = s.execute(sa.select(Delivery.source_id, Delivery.todo_task_id)
                                .where(Delivery.source_id.is_not(None))).all()
        assert {src for src, _ in carried} == set(tasks.values()) and all(t for _, t in carried)

        before = {who: len(inbox(server, users[who][0])) for who in ("first", "second")}
        with database.session() as s:
            approvals.decide(s, actor(s.get(User, ids["first"])), inst_id, "approve", "同意")
        Deliverer(database, cfg, owner="d1").step(utcnow())

        # Both to-dos are done (the decider's and the other approver's, settled by the decision) …
        assert [t["done"] for t in _todos(server, corp_id)] == [True, True]
        # … without a single message to either approver: closing a to-do is bookkeeping.
        assert {who: len(inbox(server, users[who][0])) for who in ("first", "second")} == before
        assert [i.state for i in _items(database, kind="approval_todo_done")] == [OutboxState.SENT] * 2
        usage = _usage(database, ids["corp"])
        assert usage["todo"] == 4  # one update call per to-do: the recorded task id saves the lookup
        result = [m for m in inbox(server, users["applicant"][0]) if "已通过" in message_text(m)]
        assert len(result) == 1 and result[0]["delivered"]


def test_dingtalk_todo_is_created_once_per_source_id_even_when_the_request_goes_again(database, ding):
    server, cfg, corp_id, ids, users = ding
    at = local(TZ, 2026, 11, 10, 10, 0)
    with time_machine.travel(at, tick=True):
        inst_id, tasks = _submit_ids(database, ids)
        Deliverer(database, cfg, owner="d1").step(utcnow())
        # The send-result poll found the card throttled: the request goes again with the next digest.
        with database.session() as s:
            s.execute(sa.update(OutboxItem).where(OutboxItem.kind == "approval_request")
                      .values(state=OutboxState.PENDING, next_attempt_at=utcnow(), delivery_id=None))
        traveller_now = utcnow()
    with time_machine.travel(traveller_now.replace(minute=5), tick=True):
        Deliverer(database, cfg, owner="d1").step(utcnow())
        assert len(_todos(server, corp_id)) == 2
        assert _usage(database, ids["corp"])["todo"] == 2
        assert all(len([m for m in inbox(server, users[w][0]) if m["msg"]["msgtype"] == "action_card"]) == 2
                   for w in ("first", "second"))


def test_dingtalk_approver_without_unionid_still_gets_the_card_and_the_reason_is_recorded(database, ding):
    server, cfg, corp_id, ids, users = ding
    with database.session() as s:
        s.get(User, ids["first"]).unionid = None
    with time_machine.travel(local(TZ, 2026, 11, 10, 10, 0), tick=True):
        inst_id, tasks = _submit_ids(database, ids)
        Deliverer(database, cfg, owner="d1").step(utcnow())
        assert [t["sourceId"] for t in _todos(server, corp_id)] == [tasks[ids["second"]]]
        assert len(inbox(server, users["first"][0])) == 1
        [first_item] = [i for i in _items(database, kind="approval_request") if i.recipient_user_id == ids["first"]]
        assert first_item.state == OutboxState.SENT and first_item.last_error == NO_UNIONID

        with database.session() as s:
            approvals.decide(s, actor(s.get(User, ids["second"])), inst_id, "approve", "同意")
        Deliverer(database, cfg, owner="d1").step(utcnow())
        assert [t["done"] for t in _todos(server, corp_id)] == [True]
        assert {i.state for i in _items(database, kind="approval_todo_done")} == {OutboxState.SENT}


def test_dingtalk_request_settled_before_delivery_is_not_sent(database, ding):
    server, cfg, corp_id, ids, users = ding
    with time_machine.travel(local(TZ, 2026, 11, 10, 10, 0), tick=True):
        inst_id, _ = _submit_ids(database, ids)
        with database.session() as s:
            approvals.withdraw(s, actor(s.get(User, ids["applicant"])), inst_id)
        Deliverer(database, cfg, owner="d1").step(utcnow())
        assert inbox(server, users["first"][0]) == [] and inbox(server, users["second"][0]) == []
        assert _todos(server, corp_id) == []
        assert {i.state for i in _items(database, kind="approval_request")} == {OutboxState.DROPPED}
        assert "todo" not in _usage(database, ids["corp"])


def test_dingtalk_todo_outage_retries_the_request_without_sending_the_card_first(database, ding):
    from datetime import timedelta

    from integrations.sandbox.dingtalk_state import Fault

    server, cfg, corp_id, ids, users = ding
    at = local(TZ, 2026, 11, 10, 10, 0)
    with time_machine.travel(at, tick=False):
        inst_id, tasks = _submit_ids(database, ids)
        server.world.faults.append(Fault(path="/v1.0/todo/", remaining=2, status=500))
        Deliverer(database, cfg, owner="d1").step(utcnow())
        # Neither approver has a card yet: the request waits for its to-do, so a retry sends exactly one card.
        assert inbox(server, users["first"][0]) == [] and inbox(server, users["second"][0]) == []
        waiting = _items(database, kind="approval_request")
        assert {(i.state, i.attempts) for i in waiting} == {(OutboxState.PENDING, 1)}
        retry_at = max(i.next_attempt_at for i in waiting)
    with time_machine.travel(retry_at + timedelta(seconds=1), tick=False):
        Deliverer(database, cfg, owner="d1").step(utcnow())
        assert {t["sourceId"] for t in _todos(server, corp_id)} == set(tasks.values())
        assert all(len(inbox(server, users[w][0])) == 1 for w in ("first", "second"))
        assert {i.state for i in _items(database, kind="approval_request")} == {OutboxState.SENT}


def test_dingtalk_todo_refused_for_good_still_sends_the_card_and_says_why(database, ding):
    server, cfg, corp_id, ids, users = ding
    with database.session() as s:
        s.get(User, ids["first"]).unionid = "not-a-member-of-this-corp"
    with time_machine.travel(local(TZ, 2026, 11, 10, 10, 0), tick=True):
        _submit_ids(database, ids)
        Deliverer(database, cfg, owner="d1").step(utcnow())
        assert len(inbox(server, users["first"][0])) == 1
        [first_item] = [i for i in _items(database, kind="approval_request") if i.recipient_user_id == ids["first"]]
        assert first_item.state == OutboxState.SENT
        assert first_item.last_error.startswith("待办创建失败 / to-do not created")
        assert len(_todos(server, corp_id)) == 1  # the other approver's


# ----------------------------------------------------------------------------- WeCom


@pytest.fixture
def wecom(database, settings):
    world = WeComWorld(seed=13, users=8)
    with SandboxServer(extra_blueprints=(create_wecom_blueprint(world),)) as server:
        app = world.app()
        cfg = settings.with_overrides(wecom_api_base=f"{server.url}/cgi-bin", wecom_oauth_base=server.url,
                                      public_url=PUBLIC)
        with database.session() as s:
            corp = create_corp(s, SecretBox(cfg.master_key), platform="wecom", platform_corp_id=app.corp.corp_id,
                               name=app.corp.name, agent_id=str(app.agent_id), secrets={"secret": app.secret})
            people = []
            for i, su in enumerate(list(app.corp.users.values())[:4]):
                person = User(corp_id=corp.id, platform_userid=su.userid, name=su.name,
                              role=Role.ADMIN if i == 0 else Role.SALESPERSON)
                s.add(person)
                people.append(person)
            s.flush()
            install_defaults(s, corp.id)
            admin, applicant, first, second = people
            flow = _two_approver_flow(s, corp, admin, first, second)
            opp = opportunity(s, corp, applicant, name="企微双人单")
            ids = {"corp": corp.id, "flow": flow.id, "opp": opp.id, "applicant": applicant.id, "first": first.id,
                   "second": second.id}
            users = {"applicant": applicant.platform_userid, "first": first.platform_userid,
                     "second": second.platform_userid}
        yield server, cfg, ids, users


def _wecom_inbox(server, userid):
    return _get(f"{server.url}/sandbox/wecom/inbox", userid=userid)["messages"]


def test_wecom_approvers_get_a_card_each_and_every_copy_is_updated_after_the_decision(database, wecom):
    server, cfg, ids, users = wecom
    with time_machine.travel(local(TZ, 2026, 11, 10, 10, 0), tick=True):
        inst_id, tasks = _submit_ids(database, ids)
        Deliverer(database, cfg, owner="w1").step(utcnow())
        for who in ("first", "second"):
            [card] = _wecom_inbox(server, users[who])
            body = card["body"]["template_card"]
            assert card["msgtype"] == "template_card" and body["card_type"] == "button_interaction"
            assert body["task_id"] == tasks[ids[who]]
            assert [b["text"] for b in body["button_list"]] == ["同意", "驳回"]
            assert body["card_action"]["url"] == f"{PUBLIC}/h5/#/approvals/{inst_id}"
            assert card["cards"][users[who]] == {"buttons": ["同意", "驳回"]}
        with database.session() as s:
            codes = s.execute(sa.select(Delivery.source_id, Delivery.response_code)
                              .where(Delivery.source_id.is_not(None))).all()
        assert {src for src, _ in codes} == set(tasks.values()) and all(code for _, code in codes)

        with database.session() as s:  # decided in the H5 page, not on a card
            approvals.decide(s, actor(s.get(User, ids["first"])), inst_id, "approve", None)
        Deliverer(database, cfg, owner="w1").step(utcnow())
        first_card = _wecom_inbox(server, users["first"])[0]
        second_card = _wecom_inbox(server, users["second"])[0]
        assert first_card["cards"][users["first"]] == {"buttons": [], "replace_name": "已同意"}
        assert second_card["cards"][users["second"]] == {"buttons": [], "replace_name": "审批已通过"}
        # No extra messages to the approvers; the codes are spent and forgotten.
        assert len(_wecom_inbox(server, users["first"])) == 1 and len(_wecom_inbox(server, users["second"])) == 1
        with database.session() as s:
            assert s.execute(sa.select(sa.func.count()).select_from(Delivery)
                             .where(Delivery.response_code.is_not(None))).scalar_one() == 0
        assert {i.state for i in _items(database, kind="approval_todo_done")} == {OutboxState.SENT}
        calls = _get(f"{server.url}/sandbox/wecom/calls")["byPath"]
        assert calls.get("message/update_template_card") == 2


def test_wecom_card_whose_code_expired_is_replaced_by_a_short_message(database, wecom):
    from datetime import timedelta

    server, cfg, ids, users = wecom
    start = local(TZ, 2026, 11, 10, 10, 0)
    with time_machine.travel(start, tick=False):
        inst_id, tasks = _submit_ids(database, ids)
        Deliverer(database, cfg, owner="w1").step(utcnow())
        with database.session() as s:  # the first card's code was spent elsewhere; the second card is 2 days old
            s.execute(sa.update(Delivery).where(Delivery.source_id == tasks[ids["first"]])
                      .values(response_code="spent-code"))
            s.execute(sa.update(Delivery).where(Delivery.source_id == tasks[ids["second"]])
                      .values(response_code="expired-code", sent_at=start - timedelta(days=2)))
            approvals.withdraw(s, actor(s.get(User, ids["applicant"])), inst_id)
        Deliverer(database, cfg, owner="w1").step(utcnow())
        # A young card whose code failed: nothing more to do (no extra message).
        assert len(_wecom_inbox(server, users["first"])) == 1
        # An old one: a short message says the approval is settled.
        [card, notice] = _wecom_inbox(server, users["second"])
        assert notice["msgtype"] == "textcard" and "已撤回" in notice["body"]["textcard"]["title"]
        assert {i.state for i in _items(database, kind="approval_todo_done")} == {OutboxState.SENT}
