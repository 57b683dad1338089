"""Approval lifecycle in the service layer: outbox items, decisions, conflicts, locks, leavers, escalation."""

from __future__ import annotations

import threading
from datetime import timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa

from app.errors import Conflict, Forbidden, ValidationError
from app.schemas_approvals import FlowIn, SubmitIn
from app.services import approval_flows, approvals
from models.approvals import ApprovalInstance, ApprovalTask
from models.audit import AuditLog
from models.crm import Opportunity
from models.types import utcnow
from tests.approval_helpers import actor, opportunity, org_with_defaults, outbox


def _submit(session, who, opp, kind="discount", **outcome):
    return approvals.submit(session, actor(who), SubmitIn(kind=kind, subject_type="opportunity", subject_id=opp.id,
                                                          reason="客户要求", outcome=outcome))


def _tasks(session, inst):
    return session.execute(sa.select(ApprovalTask).where(ApprovalTask.instance_id == inst.id)
                           .order_by(ApprovalTask.id)).scalars().all()


def _flow(session, org, name, approvers, mode="any", steps=1):
    data = FlowIn(name=name, kind="custom", steps=[{"name": f"第{i + 1}步", "approvers": approvers, "mode": mode}
                                                   for i in range(steps)], locked_fields=["amount"])
    return approval_flows.create_flow(session, actor(org.admin), data)


def test_submit_sends_the_first_steps_approver_a_todo(session):
    org = org_with_defaults(session)
    opp = opportunity(session, org.corp, org.alice, amount="100000")
    inst = _submit(session, org.alice, opp, discount_rate="0.1", amount="90000")
    assert inst.state == "pending" and inst.current_step == 0
    # the two director steps do not apply: discount 10 %, amount 90,000
    assert [s["applies"] for s in inst.flow_snapshot["steps"]] == [True, False, False]
    [item] = outbox(session, kind="approval_request", approval_id=inst.id)
    [task] = _tasks(session, inst)
    assert item.recipient_user_id == org.east_lead.id == task.approver_id
    assert item.priority == 90
    assert item.payload["todo"] == {"source_id": task.source_id, "title": f"审批：{inst.title}",
                                    "url": f"/h5/#/approvals/{inst.id}"}
    assert item.payload["card"]["task_id"] == task.source_id
    assert session.execute(sa.select(AuditLog.action).where(AuditLog.entity_type == "approval",
                                                            AuditLog.entity_id == inst.id)).scalars().all() == [
        "submit", "step_start"]


def test_approving_the_last_step_applies_the_outcome_and_tells_the_applicant(session):
    org = org_with_defaults(session)
    opp = opportunity(session, org.corp, org.alice, amount="100000")
    inst = _submit(session, org.alice, opp, discount_rate="0.1", amount="90000")
    approvals.decide(session, actor(org.east_lead), inst.id, "approve", "同意")
    assert inst.state == "approved" and inst.applied_at is not None
    assert session.get(Opportunity, opp.id).amount == Decimal("90000.00")
    [done] = outbox(session, kind="approval_todo_done", approval_id=inst.id)
    assert done.recipient_user_id == org.east_lead.id
    assert done.payload["todo_done"] == _tasks(session, inst)[0].source_id
    [result] = outbox(session, kind="approval_result", recipient=org.alice)
    assert result.payload["state"] == "approved"
    terms = approvals.approved_terms(session, org.corp.id, "opportunity", opp.id)
    assert terms["discount_rate"]["value"] == "0.1" and terms["discount_rate"]["approval_id"] == inst.id


def test_conditions_add_the_director_step_and_steps_run_in_order(session):
    org = org_with_defaults(session)
    opp = opportunity(session, org.corp, org.alice, amount="800000")
    inst = _submit(session, org.alice, opp, discount_rate="0.3")
    assert [s["applies"] for s in inst.flow_snapshot["steps"]] == [True, True, True]
    approvals.decide(session, actor(org.east_lead), inst.id, "approve", None)
    assert inst.state == "pending" and inst.current_step == 1
    assert outbox(session, kind="approval_request", recipient=org.manager)
    assert outbox(session, kind="approval_progress", recipient=org.alice)
    approvals.decide(session, actor(org.manager), inst.id, "approve", None)
    # step 3 resolves to the same director again: a separate decision is asked for
    assert inst.current_step == 2
    approvals.decide(session, actor(org.manager), inst.id, "approve", None)
    assert inst.state == "approved"


def test_reject_needs_a_comment_and_ends_the_approval(session):
    org = org_with_defaults(session)
    opp = opportunity(session, org.corp, org.alice)
    inst = _submit(session, org.alice, opp, discount_rate="0.1")
    with pytest.raises(ValidationError) as err:
        approvals.decide(session, actor(org.east_lead), inst.id, "reject", "  ")
    assert err.value.fields == {"comment": "required"}
    approvals.decide(session, actor(org.east_lead), inst.id, "reject", "折扣太大")
    assert inst.state == "rejected"
    assert _tasks(session, inst)[0].comment == "折扣太大"
    assert outbox(session, kind="approval_result", recipient=org.alice)[0].payload["state"] == "rejected"
    assert session.get(Opportunity, opp.id).amount == Decimal("100000.00")  # nothing applied


def test_only_a_current_approver_decides_and_only_once(session):
    org = org_with_defaults(session)
    opp = opportunity(session, org.corp, org.alice)
    flow = _flow(session, org, "双人会签", [{"type": "users", "user_ids": [org.east_lead.id, org.manager.id]}],
                 mode="all")
    inst = approvals.submit(session, actor(org.alice), SubmitIn(flow_id=flow.id, subject_type="opportunity",
                                                                 subject_id=opp.id))
    with pytest.raises(Forbidden):
        approvals.decide(session, actor(org.alice), inst.id, "approve", None)  # the applicant
    approvals.decide(session, actor(org.east_lead), inst.id, "approve", None)
    assert inst.state == "pending"  # all must approve
    with pytest.raises(Conflict) as err:
        approvals.decide(session, actor(org.east_lead), inst.id, "approve", None)
    assert err.value.code == "already_decided"
    approvals.decide(session, actor(org.manager), inst.id, "approve", None)
    assert inst.state == "approved"


def test_any_one_step_closes_the_other_approvers_todos_and_a_late_click_sees_the_final_state(session):
    org = org_with_defaults(session)
    opp = opportunity(session, org.corp, org.alice)
    flow = _flow(session, org, "任一人", [{"type": "users", "user_ids": [org.east_lead.id, org.manager.id]}])
    inst = approvals.submit(session, actor(org.alice), SubmitIn(flow_id=flow.id, subject_type="opportunity",
                                                                 subject_id=opp.id))
    approvals.decide(session, actor(org.east_lead), inst.id, "approve", None)
    assert inst.state == "approved"
    closed = {i.recipient_user_id for i in outbox(session, kind="approval_todo_done", approval_id=inst.id)}
    assert closed == {org.east_lead.id, org.manager.id}
    with pytest.raises(Conflict) as err:
        approvals.decide(session, actor(org.manager), inst.id, "reject", "晚了")
    assert err.value.code == "approval_finished" and err.value.extra["state"] == "approved"


def test_decision_on_a_stale_step_is_refused(session):
    org = org_with_defaults(session)
    opp = opportunity(session, org.corp, org.alice)
    flow = _flow(session, org, "两步", [{"type": "users", "user_ids": [org.manager.id]}], steps=2)
    inst = approvals.submit(session, actor(org.alice), SubmitIn(flow_id=flow.id, subject_type="opportunity",
                                                                 subject_id=opp.id))
    first_card = _tasks(session, inst)[0].source_id
    approvals.decide(session, actor(org.manager), inst.id, "approve", None, step=0)
    assert inst.current_step == 1
    for kwargs in ({"step": 0}, {"task_id": first_card}):
        with pytest.raises(Conflict) as err:
            approvals.decide(session, actor(org.manager), inst.id, "approve", None, **kwargs)
        assert err.value.code == "stale_step" and err.value.extra["current_step"] == 1
    approvals.decide(session, actor(org.manager), inst.id, "approve", None, step=1)
    assert inst.state == "approved"


def test_applicant_who_is_the_approver_has_that_step_skipped(session):
    org = org_with_defaults(session)
    opp = opportunity(session, org.corp, org.east_lead)
    flow = approval_flows.create_flow(session, actor(org.admin), FlowIn(name="自审", kind="custom", steps=[
        {"name": "组长", "approvers": [{"type": "users", "user_ids": [org.east_lead.id]}]},
        {"name": "经理", "approvers": [{"type": "direct_leader"}]}]))
    inst = approvals.submit(session, actor(org.east_lead), SubmitIn(flow_id=flow.id, subject_type="opportunity",
                                                                     subject_id=opp.id))
    assert inst.current_step == 1
    skipped, pending = _tasks(session, inst)
    assert (skipped.step_index, skipped.state, skipped.approver_id) == (0, "skipped", org.east_lead.id)
    assert "申请人即审批人" in skipped.note
    assert (pending.approver_id, pending.state) == (org.manager.id, "pending")
    detail = approvals.detail(session, actor(org.east_lead), inst.id)
    assert detail["steps"][0]["tasks"][0]["state"] == "skipped"


def test_withdraw_by_the_applicant_only_while_pending(session):
    org = org_with_defaults(session)
    opp = opportunity(session, org.corp, org.alice)
    inst = _submit(session, org.alice, opp, discount_rate="0.1")
    with pytest.raises(Forbidden):
        approvals.withdraw(session, actor(org.east_lead), inst.id)
    approvals.withdraw(session, actor(org.alice), inst.id)
    assert inst.state == "withdrawn"
    assert outbox(session, kind="approval_todo_done", recipient=org.east_lead)
    with pytest.raises(Conflict):
        approvals.withdraw(session, actor(org.alice), inst.id)
    with pytest.raises(Conflict) as err:
        approvals.decide(session, actor(org.east_lead), inst.id, "approve", None)
    assert err.value.extra["state"] == "withdrawn"


def test_locked_fields_while_pending(session):
    org = org_with_defaults(session)
    opp = opportunity(session, org.corp, org.alice)
    inst = _submit(session, org.alice, opp, discount_rate="0.1")
    approvals.assert_not_locked(session, "opportunity", opp.id, {"name"})  # not an approved field
    with pytest.raises(Conflict) as err:
        approvals.assert_not_locked(session, "opportunity", opp.id, ["amount", "name"])
    assert err.value.code == "locked_by_approval" and list(err.value.fields) == ["amount"]
    with pytest.raises(Conflict):  # one pending approval of a kind per subject
        _submit(session, org.alice, opp, discount_rate="0.2")
    approvals.decide(session, actor(org.east_lead), inst.id, "approve", None)
    approvals.assert_not_locked(session, "opportunity", opp.id, ["amount"])


def test_approver_who_leaves_is_rerouted_to_their_leader(session):
    org = org_with_defaults(session)
    opp = opportunity(session, org.corp, org.alice)
    inst = _submit(session, org.alice, opp, discount_rate="0.1")
    org.east_lead.active = False
    session.flush()
    assert approvals.reroute_leaver(session, org.east_lead.id) == 1
    old, new = _tasks(session, inst)
    assert (old.state, new.approver_id, new.state, new.replaces_id) == ("reassigned", org.manager.id, "pending", old.id)
    assert outbox(session, kind="approval_todo_done", recipient=org.east_lead)
    assert outbox(session, kind="approval_request", recipient=org.manager)
    approvals.decide(session, actor(org.manager), inst.id, "approve", None)
    assert inst.state == "approved"


def test_escalation_reminds_first_then_moves_up_a_level(session):
    org = org_with_defaults(session)
    opp = opportunity(session, org.corp, org.alice)
    inst = _submit(session, org.alice, opp, discount_rate="0.1")
    now = utcnow()
    assert approvals.escalate_due(session, org.corp.id, now + timedelta(hours=1)) == {"reminded": 0, "escalated": 0}
    assert approvals.escalate_due(session, org.corp.id, now + timedelta(hours=25)) == {"reminded": 1, "escalated": 0}
    assert outbox(session, kind="approval_reminder", recipient=org.east_lead)
    assert approvals.escalate_due(session, org.corp.id, now + timedelta(hours=30)) == {"reminded": 0, "escalated": 0}
    assert approvals.escalate_due(session, org.corp.id, now + timedelta(hours=50)) == {"reminded": 0, "escalated": 1}
    pending = [t for t in _tasks(session, inst) if t.state == "pending"]
    assert [t.approver_id for t in pending] == [org.manager.id]
    assert inst.escalations == 1


def _two_approver_instance(database):
    with database.session() as s:
        org = org_with_defaults(s)
        opp = opportunity(s, org.corp, org.alice)
        flow = _flow(s, org, "并发", [{"type": "users", "user_ids": [org.east_lead.id, org.manager.id]}])
        inst = approvals.submit(s, actor(org.alice), SubmitIn(flow_id=flow.id, subject_type="opportunity",
                                                               subject_id=opp.id))
        return inst.id, actor(org.east_lead), actor(org.manager)


@pytest.mark.postgres
def test_two_approvers_at_the_same_moment_one_wins(pg_database):
    database = pg_database
    inst_id, first, second = _two_approver_instance(database)
    first_done, results = threading.Event(), {}

    def decide(who, name, hold):
        try:
            with database.session() as s:
                pid = s.execute(sa.text("SELECT pg_backend_pid()")).scalar()
                results[f"{name}_pid"] = pid
                approvals.decide(s, who, inst_id, "approve", None)
                if hold:  # keep the row lock until the other is queued behind it
                    first_done.set()
                    _wait_until_blocked(database, lambda: results.get("second_pid"))
            results[name] = "ok"
        except Conflict as exc:
            results[name] = exc

    one = threading.Thread(target=decide, args=(first, "first", True))
    one.start()
    assert first_done.wait(30)
    two = threading.Thread(target=decide, args=(second, "second", False))
    two.start()
    one.join(30)
    two.join(30)
    assert results["first"] == "ok"
    loser = results["second"]
    assert isinstance(loser, Conflict) and loser.code == "approval_finished" and loser.extra["state"] == "approved"
    with database.session() as s:
        inst = s.get(ApprovalInstance, inst_id)
        assert inst.state == "approved"
        states = sorted(t.state for t in _tasks(s, inst))
        assert states == ["approved", "cancelled"]


def _wait_until_blocked(database, pid_of):
    """Poll pg_stat_activity until the other session waits on a lock (proves the race really overlapped)."""
    import time

    watcher = sa.create_engine(database.url)
    try:
        for _ in range(600):
            pid = pid_of()
            if pid:
                with watcher.connect() as conn:
                    waiting = conn.execute(sa.text(
                        "SELECT wait_event_type FROM pg_stat_activity WHERE pid = :p"), {"p": pid}).scalar()
                if waiting == "Lock":
                    return
            time.sleep(0.05)
        raise AssertionError("the second approver never queued on the row lock")
    finally:
        watcher.dispose()


def test_escalation_at_the_top_of_the_tree_keeps_the_approver(session):
    org = org_with_defaults(session)
    opp = opportunity(session, org.corp, org.alice)
    flow = _flow(session, org, "管理员审批", [{"type": "users", "user_ids": [org.admin.id]}])
    inst = approvals.submit(session, actor(org.alice), SubmitIn(flow_id=flow.id, subject_type="opportunity",
                                                                 subject_id=opp.id))
    now = utcnow()
    approvals.escalate_due(session, org.corp.id, now + timedelta(hours=25))
    assert approvals.escalate_due(session, org.corp.id, now + timedelta(hours=50)) == {"reminded": 0, "escalated": 1}
    [task] = _tasks(session, inst)
    assert (task.approver_id, task.state) == (org.admin.id, "pending")
