"""Approval lifecycle: submit → each step's approvers decide → approved / rejected / withdrawn.

Concurrency: every decision (and a withdrawal) first runs a conditional UPDATE on its instance row
(`… WHERE id = ? AND state = 'pending' AND current_step = ?`). On PostgreSQL that takes the row lock, so
two approvers clicking at the same moment are serialised: the second waits, then either finds its step
still open (an all-must-approve step) and proceeds on fresh rows, or matches nothing and gets a 409 that
carries the final state. SQLite serialises writers anyway.

Notifications are outbox rows only (kinds and payload keys in NOTIFY_KINDS below); the delivery layer
turns `todo` into a DingTalk to-do / WeCom template card and `todo_done` into closing it.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so

from app.errors import Conflict, Forbidden, NotFound, ValidationError
from app.schemas_approvals import SubmitIn
from app.services import approval_routing as routing
from app.services import audit, outbox
from app.services.actor import Actor
from app.services.corps import corp_setting
from app.services.timeutil import iso
from models.approvals import ApprovalFlow, ApprovalInstance, ApprovalState, ApprovalTask, TaskState
from models.crm import Customer, CustomerTag, Opportunity, OpportunityStage, Tag
from models.org import Corp, User
from models.types import utcnow

PRIORITY = 90  # models.outbox.Priority.APPROVAL: approvals go before reminders when quota is tight
NOTIFY_KINDS = {
    "approval_request": "an approver has a decision to make: payload.todo opens a to-do / card",
    "approval_todo_done": "close the approver's to-do: payload.todo_done = task source id",
    "approval_progress": "the applicant: a step was approved and the next started",
    "approval_result": "the applicant: final state",
    "approval_cc": "cc list: final state",
    "approval_reminder": "an approver: still waiting after X hours",
}
STATE_WORDS = {"pending": "审批中 / pending", "approved": "已通过 / approved", "rejected": "已驳回 / rejected",
               "withdrawn": "已撤回 / withdrawn"}
KIND_WORDS = {"discount": "折扣审批", "contract": "合同审批", "large_opportunity": "大额商机审批",
              "custom": "审批"}


def approval_url(instance_id: int) -> str:
    return f"/h5/#/approvals/{instance_id}"


# ----------------------------------------------------------------------------- subject facts


def subject_facts(session: so.Session, corp_id: int, subject_type: str, subject_id: int) -> dict[str, Any] | None:
    """Key facts of a subject for conditions and the approver's page; None when it is not in the corp."""
    if subject_type == "opportunity":
        row = session.execute(
            sa.select(Opportunity, OpportunityStage, Customer)
            .join(OpportunityStage, OpportunityStage.id == Opportunity.stage_id)
            .join(Customer, Customer.id == Opportunity.customer_id)
            .where(Opportunity.id == subject_id, Opportunity.corp_id == corp_id, Opportunity.deleted_at.is_(None))
        ).first()
        if row is None:
            return None
        opp, stage, customer = row
        return {"name": opp.name, "amount": str(Decimal(opp.amount).quantize(Decimal("0.01"))),
                "stage": stage.key, "stage_name": stage.name, "owner_id": opp.owner_id,
                "customer_id": customer.id, "customer_name": customer.name, "grade": customer.grade,
                "custom": dict(opp.custom or {})}
    if subject_type == "customer":
        customer = session.execute(sa.select(Customer).where(
            Customer.id == subject_id, Customer.corp_id == corp_id, Customer.deleted_at.is_(None))).scalar()
        if customer is None:
            return None
        tags = session.execute(sa.select(Tag.group_name, Tag.name).join(CustomerTag, CustomerTag.tag_id == Tag.id)
                               .where(CustomerTag.customer_id == customer.id)).all()
        return {"name": customer.name, "grade": customer.grade, "status": customer.status,
                "industry": customer.industry, "region": customer.region, "source": customer.source,
                "owner_id": customer.owner_id, "tags": [n for _, n in tags] + [f"{g}/{n}" for g, n in tags if g],
                "custom": dict(customer.custom or {})}
    return None


def _number(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return Decimal(str(value))
    except ArithmeticError:
        return None


def _field(facts: dict[str, Any], name: str) -> Any:
    if name.startswith("custom."):
        return (facts.get("custom") or {}).get(name[len("custom."):])
    return facts.get(name)


def matches(condition: list[dict[str, Any]], facts: dict[str, Any]) -> bool:
    """All comparisons hold. A missing field fails every comparison except `ne` and `exists` false."""
    for cmp in condition or []:
        value, op, want = _field(facts, cmp["field"]), cmp["op"], cmp.get("value")
        if op == "exists":
            ok = (value not in (None, "", [])) == (want is not False)
        elif op in {"gt", "gte", "lt", "lte"}:
            left, right = _number(value), _number(want)
            ok = left is not None and right is not None and {
                "gt": left > right, "gte": left >= right, "lt": left < right, "lte": left <= right}[op]
        elif op == "eq":
            ok = value == want or (_number(value) is not None and _number(value) == _number(want))
        elif op == "ne":
            ok = not (value == want or (_number(value) is not None and _number(value) == _number(want)))
        elif op == "in":
            ok = value in (want or [])
        else:  # contains
            ok = isinstance(value, list | str) and want in value
        if not ok:
            return False
    return True


# ----------------------------------------------------------------------------- notifications


def _notify(session: so.Session, inst: ApprovalInstance, kind: str, recipient_id: int, key: str,
            payload: dict[str, Any]) -> None:
    # No absolute "url": the delivery layer links subject_type "approval" to CRM_PUBLIC_URL/h5/#/approvals/<id>.
    base = {"approval_id": inst.id, "title": inst.title, "kind": inst.kind, "state": inst.state,
            "path": approval_url(inst.id)}
    outbox.enqueue(session, corp_id=inst.corp_id, kind=kind, recipient_user_id=recipient_id,
                   subject_type="approval", subject_id=inst.id, due_at=utcnow(), payload={**base, **payload},
                   priority=PRIORITY, idempotency_key=f"approval:{inst.id}:{key}")


def _request(session: so.Session, inst: ApprovalInstance, task: ApprovalTask, applicant_name: str,
             step_name: str) -> None:
    text = f"{applicant_name} 提交的{inst.title}等待您审批（{step_name}）/ waiting for your approval"
    _notify(session, inst, "approval_request", task.approver_id, f"request:{task.source_id}", {
        "text": text, "step": task.step_index, "task_id": task.source_id,
        "todo": {"source_id": task.source_id, "title": f"审批：{inst.title}", "url": approval_url(inst.id)},
        "card": {"task_id": task.source_id, "buttons": [{"key": "approve", "text": "同意 / Approve"},
                                                        {"key": "reject", "text": "驳回 / Reject"}]},
    })


def _close_todo(session: so.Session, inst: ApprovalInstance, task: ApprovalTask, why: str) -> None:
    _notify(session, inst, "approval_todo_done", task.approver_id, f"done:{task.source_id}",
            {"todo_done": task.source_id, "task_state": task.state, "reason": why})


# ----------------------------------------------------------------------------- flows


def find_flow(session: so.Session, corp_id: int, *, kind: str | None, flow_id: int | None) -> ApprovalFlow:
    stmt = sa.select(ApprovalFlow).where(ApprovalFlow.corp_id == corp_id, ApprovalFlow.active.is_(True))
    if flow_id is not None:
        stmt = stmt.where(ApprovalFlow.id == flow_id)
    else:
        stmt = stmt.where(ApprovalFlow.kind == kind).order_by(ApprovalFlow.is_default.desc(), ApprovalFlow.id)
    flow = session.execute(stmt.limit(1)).scalar()
    if flow is None:
        field = "flow_id" if flow_id is not None else "kind"
        raise ValidationError("没有可用的审批流程 / no active approval flow", fields={field: "no active flow"})
    return flow


# ----------------------------------------------------------------------------- submit


def submit(session: so.Session, actor: Actor, data: SubmitIn) -> ApprovalInstance:
    if actor.user_id is None:
        raise Forbidden("系统不能发起审批 / a person must submit")
    return start(session, actor.corp_id, actor.user_id, data, actor=actor)


def _visible_subject(session: so.Session, actor: Actor, subject_type: str, subject_id: int) -> None:
    """The applicant must be able to see the subject (their data scope), else 404."""
    from app.services.scope import customer_clause

    if subject_type == "customer":
        stmt = sa.select(Customer.id).where(Customer.id == subject_id, customer_clause(session, actor))
    else:
        stmt = (sa.select(Opportunity.id).join(Customer, Customer.id == Opportunity.customer_id)
                .where(Opportunity.id == subject_id, Opportunity.corp_id == actor.corp_id,
                       customer_clause(session, actor)))
    if session.execute(stmt).scalar() is None:
        raise NotFound("审批对象不存在或无权访问 / subject not found", fields={"subject_id": "not found"})


def start(session: so.Session, corp_id: int, applicant_id: int, data: SubmitIn, *,
          actor: Actor | None = None) -> ApprovalInstance:
    """Submit on behalf of `applicant_id` (the API passes the signed-in actor; rules pass the owner)."""
    applicant = session.get(User, applicant_id)
    if applicant is None or applicant.corp_id != corp_id or not applicant.active:
        raise ValidationError("申请人无效 / applicant inactive or unknown", fields={"applicant_id": "invalid"})
    actor = actor or Actor(corp_id=corp_id, user_id=applicant_id, role=applicant.role)
    _visible_subject(session, actor, data.subject_type, data.subject_id)
    facts = subject_facts(session, corp_id, data.subject_type, data.subject_id)
    if facts is None:
        raise NotFound("审批对象不存在 / subject not found", fields={"subject_id": "not found"})
    flow = find_flow(session, corp_id, kind=data.kind, flow_id=data.flow_id)
    if flow.subject_type != data.subject_type:
        raise ValidationError("该流程不适用于此对象 / flow does not apply to this subject",
                              fields={"subject_type": f"flow expects {flow.subject_type}"})
    busy = session.execute(sa.select(ApprovalInstance.id).where(
        ApprovalInstance.corp_id == corp_id, ApprovalInstance.subject_type == data.subject_type,
        ApprovalInstance.subject_id == data.subject_id, ApprovalInstance.kind == flow.kind,
        ApprovalInstance.state == ApprovalState.PENDING)).scalar()
    if busy is not None:
        raise Conflict("该对象已有同类审批在进行中 / an approval of this kind is already pending",
                       fields={"subject_id": "approval pending"}, extra={"approval_id": busy})
    outcome = data.outcome.model_dump(mode="json", exclude_none=True)
    # Conditions see the subject as it would be once approved (e.g. the requested discount rate).
    view = {**facts, **{k: v for k, v in outcome.items() if k != "note"}}
    steps = [{**step, "applies": matches(step.get("condition") or [], view)} for step in flow.steps]
    now = utcnow()
    inst = ApprovalInstance(
        corp_id=corp_id, flow_id=flow.id, kind=flow.kind, subject_type=data.subject_type,
        subject_id=data.subject_id, applicant_id=applicant_id, reason=data.reason,
        title=data.title or f"{KIND_WORDS.get(flow.kind, '审批')}：{facts['name']}",
        flow_snapshot={"name": flow.name, "steps": steps, "cc": flow.cc, "locked_fields": flow.locked_fields},
        subject_facts=facts, outcome=outcome, current_step=0, state=ApprovalState.PENDING, version=0,
        step_started_at=now,
    )
    session.add(inst)
    session.flush()
    audit.record(session, actor, "submit", "approval", inst.id, {
        "flow_id": {"before": None, "after": flow.id}, "subject": {"before": None, "after":
                                                                   f"{data.subject_type}:{data.subject_id}"},
        "outcome": {"before": None, "after": outcome}})
    _start_step(session, inst, 0, applicant, actor)
    session.flush()
    return inst


def _new_task(inst: ApprovalInstance, step: int, approver_id: int | None, state: str, note: str | None = None,
              replaces_id: int | None = None) -> ApprovalTask:
    return ApprovalTask(corp_id=inst.corp_id, instance_id=inst.id, step_index=step, approver_id=approver_id,
                        state=state, source_id=uuid.uuid4().hex, note=note, replaces_id=replaces_id,
                        decided_at=utcnow() if state != TaskState.PENDING else None)


def _start_step(session: so.Session, inst: ApprovalInstance, index: int, applicant: User, actor: Actor) -> None:
    """Open the first applicable step at or after `index`; with none left, the approval is approved."""
    steps = inst.flow_snapshot["steps"]
    while index < len(steps):
        step = steps[index]
        if step.get("applies", True):
            res = routing.resolve(session, inst.corp_id, applicant.id, step["approvers"])
            if res.skipped_applicant:
                session.add(_new_task(inst, index, applicant.id, TaskState.SKIPPED,
                                      "申请人即审批人，跳过 / applicant is the approver: skipped"))
            if res.approver_ids:
                inst.current_step = index
                inst.step_started_at = utcnow()
                inst.reminded_at = None
                tasks = [_new_task(inst, index, uid, TaskState.PENDING, res.notes.get(uid))
                         for uid in res.approver_ids]
                session.add_all(tasks)
                session.flush()
                for task in tasks:
                    _request(session, inst, task, applicant.name, step["name"])
                audit.record(session, actor, "step_start", "approval", inst.id,
                             {"step": {"before": None, "after": index},
                              "approver_ids": {"before": None, "after": res.approver_ids}})
                return
            if not res.skipped_applicant:
                session.add(_new_task(inst, index, None, TaskState.SKIPPED,
                                      "找不到审批人，跳过 / nobody to approve: skipped"))
        index += 1
    inst.current_step = len(steps)
    _finish(session, inst, ApprovalState.APPROVED, actor)


def _finish(session: so.Session, inst: ApprovalInstance, state: str, actor: Actor) -> None:
    now = utcnow()
    inst.state = state
    inst.finished_at = now
    open_tasks = session.execute(sa.select(ApprovalTask).where(
        ApprovalTask.instance_id == inst.id, ApprovalTask.state == TaskState.PENDING)
        .execution_options(populate_existing=True)).scalars().all()
    for task in open_tasks:
        task.state = TaskState.CANCELLED
        task.decided_at = now
        _close_todo(session, inst, task, f"审批{STATE_WORDS[state]}")
    audit.record(session, actor, state if state != "approved" else "approve_final", "approval", inst.id,
                 {"state": {"before": "pending", "after": state}})
    if state == ApprovalState.APPROVED:
        _apply_outcome(session, inst, actor)
    _notify(session, inst, "approval_result", inst.applicant_id, f"result:{state}",
            {"text": f"您提交的{inst.title}{STATE_WORDS[state]}"})
    if state in (ApprovalState.APPROVED, ApprovalState.REJECTED) and inst.flow_snapshot.get("cc"):
        res = routing.resolve(session, inst.corp_id, inst.applicant_id, inst.flow_snapshot["cc"])
        for uid in res.approver_ids:
            _notify(session, inst, "approval_cc", uid, f"cc:{uid}",
                    {"text": f"抄送：{inst.title}{STATE_WORDS[state]}"})


def _apply_outcome(session: so.Session, inst: ApprovalInstance, actor: Actor) -> None:
    """Make the approved terms effective. An approved amount goes onto the opportunity (a real column the
    pipeline sums); every approved term, e.g. the discount rate, stays on the approval as `outcome` and
    `approved_terms()` reads them back (there is no discount column, and custom fields belong to admins)."""
    amount = inst.outcome.get("amount")
    if inst.subject_type == "opportunity" and amount is not None:
        opp = session.get(Opportunity, inst.subject_id)
        if opp is not None and opp.deleted_at is None:
            before = Decimal(opp.amount).quantize(Decimal("0.01"))
            opp.amount = Decimal(str(amount))
            opp.updated_at = utcnow()
            audit.record(session, actor, "apply_approval", "opportunity", opp.id,
                         {"amount": {"before": before, "after": Decimal(str(amount))},
                          "approval_id": {"before": None, "after": inst.id}})
    inst.applied_at = utcnow()


def approved_terms(session: so.Session, corp_id: int, subject_type: str, subject_id: int) -> dict[str, Any]:
    """The effective approved terms of a subject: later approvals override earlier ones key by key."""
    rows = session.execute(sa.select(ApprovalInstance.outcome, ApprovalInstance.id, ApprovalInstance.kind).where(
        ApprovalInstance.corp_id == corp_id, ApprovalInstance.subject_type == subject_type,
        ApprovalInstance.subject_id == subject_id, ApprovalInstance.state == ApprovalState.APPROVED)
        .order_by(ApprovalInstance.finished_at, ApprovalInstance.id)).all()
    out: dict[str, Any] = {}
    for outcome, inst_id, kind in rows:
        for key, value in (outcome or {}).items():
            out[key] = {"value": value, "approval_id": inst_id, "kind": kind}
    return out


# ----------------------------------------------------------------------------- decide / withdraw


def _load(session: so.Session, corp_id: int, instance_id: int, *, fresh: bool = False) -> ApprovalInstance:
    stmt = sa.select(ApprovalInstance).where(ApprovalInstance.id == instance_id, ApprovalInstance.corp_id == corp_id)
    if fresh:
        stmt = stmt.execution_options(populate_existing=True)
    inst = session.execute(stmt).scalar()
    if inst is None:
        raise NotFound("审批不存在 / approval not found", fields={"approval_id": "not found"})
    return inst


def _finished_conflict(inst: ApprovalInstance) -> Conflict:
    return Conflict(f"审批已结束：{STATE_WORDS[inst.state]} / this approval is already {inst.state}",
                    code="approval_finished", extra={"state": inst.state, "current_step": inst.current_step})


def _stale_conflict(inst: ApprovalInstance) -> Conflict:
    return Conflict("该步骤已处理，审批已进入下一步，请刷新 / this step was already decided; reload",
                    code="stale_step", extra={"state": inst.state, "current_step": inst.current_step})


def _gate(session: so.Session, inst: ApprovalInstance, step: int) -> ApprovalInstance:
    """The conditional UPDATE every state change goes through (see the module docstring)."""
    result = session.execute(
        sa.update(ApprovalInstance)
        .where(ApprovalInstance.id == inst.id, ApprovalInstance.state == ApprovalState.PENDING,
               ApprovalInstance.current_step == step)
        .values(version=ApprovalInstance.version + 1)
        .execution_options(synchronize_session=False))
    fresh = _load(session, inst.corp_id, inst.id, fresh=True)
    if result.rowcount != 1:
        raise _finished_conflict(fresh) if fresh.state != ApprovalState.PENDING else _stale_conflict(fresh)
    return fresh


def decide(session: so.Session, actor: Actor, instance_id: int, decision: str, comment: str | None, *,
           step: int | None = None, task_id: str | None = None) -> ApprovalInstance:
    comment = (comment or "").strip() or None
    if decision == "reject" and not comment:
        raise ValidationError("驳回需要填写意见 / a comment is required to reject", fields={"comment": "required"})
    inst = _load(session, actor.corp_id, instance_id)
    mine = session.execute(sa.select(ApprovalTask).where(
        ApprovalTask.instance_id == inst.id, ApprovalTask.approver_id == actor.user_id)
        .order_by(ApprovalTask.id)).scalars().all()
    if not mine:
        if _may_view(session, actor, inst):
            raise Forbidden("您不是该审批的审批人 / you are not an approver of this approval")
        raise NotFound("审批不存在 / approval not found", fields={"approval_id": "not found"})
    if task_id is not None:
        card = next((t for t in mine if t.source_id == task_id), None)
        if card is None:
            raise ValidationError("待办不属于您 / this task is not yours", fields={"task_id": "not yours"})
        step = card.step_index if step is None else step
    if inst.state != ApprovalState.PENDING:
        raise _finished_conflict(inst)
    if step is not None and step != inst.current_step:
        raise _stale_conflict(inst)
    inst = _gate(session, inst, inst.current_step if step is None else step)
    task = session.execute(sa.select(ApprovalTask).where(
        ApprovalTask.instance_id == inst.id, ApprovalTask.approver_id == actor.user_id,
        ApprovalTask.step_index == inst.current_step, ApprovalTask.state == TaskState.PENDING)
        .execution_options(populate_existing=True)).scalar()
    if task is None:
        if any(t.step_index == inst.current_step and t.state in (TaskState.APPROVED, TaskState.REJECTED)
               for t in mine):
            raise Conflict("您已处理过该步骤 / you already decided this step", code="already_decided",
                           extra={"state": inst.state, "current_step": inst.current_step})
        raise Forbidden("您不是当前步骤的审批人 / you are not an approver of the current step")
    now = utcnow()
    task.state = TaskState.APPROVED if decision == "approve" else TaskState.REJECTED
    task.comment = comment
    task.decided_at = now
    inst.updated_at = now
    audit.record(session, actor, decision, "approval", inst.id,
                 {"step": {"before": None, "after": inst.current_step}, "task_id": {"before": None, "after": task.id},
                  "comment": {"before": None, "after": comment}})
    _close_todo(session, inst, task, "已处理 / decided")
    applicant = session.get(User, inst.applicant_id)
    if decision == "reject":
        _finish(session, inst, ApprovalState.REJECTED, actor)
    else:
        _after_approval(session, inst, applicant, actor)
    session.flush()
    return inst


def _after_approval(session: so.Session, inst: ApprovalInstance, applicant: User, actor: Actor) -> None:
    step = inst.flow_snapshot["steps"][inst.current_step]
    pending = session.execute(sa.select(ApprovalTask).where(
        ApprovalTask.instance_id == inst.id, ApprovalTask.step_index == inst.current_step,
        ApprovalTask.state == TaskState.PENDING).execution_options(populate_existing=True)).scalars().all()
    if step.get("mode", "any") == "all" and pending:
        return
    now = utcnow()
    for other in pending:  # an any-one step is settled: the others' to-dos close
        other.state = TaskState.CANCELLED
        other.decided_at = now
        other.note = "他人已审批 / settled by another approver"
        _close_todo(session, inst, other, "他人已审批 / settled by another approver")
    if inst.current_step + 1 < len(inst.flow_snapshot["steps"]):
        _notify(session, inst, "approval_progress", inst.applicant_id, f"progress:{inst.current_step}",
                {"text": f"{inst.title}：{step['name']} 已通过 / step approved", "step": inst.current_step})
    _start_step(session, inst, inst.current_step + 1, applicant, actor)


def withdraw(session: so.Session, actor: Actor, instance_id: int) -> ApprovalInstance:
    inst = _load(session, actor.corp_id, instance_id)
    if inst.applicant_id != actor.user_id:
        if _may_view(session, actor, inst):
            raise Forbidden("只有申请人可以撤回 / only the applicant may withdraw")
        raise NotFound("审批不存在 / approval not found", fields={"approval_id": "not found"})
    if inst.state != ApprovalState.PENDING:
        raise _finished_conflict(inst)
    inst = _gate(session, inst, inst.current_step)
    _finish(session, inst, ApprovalState.WITHDRAWN, actor)
    session.flush()
    return inst


# ----------------------------------------------------------------------------- locks


def assert_not_locked(session: so.Session, subject_type: str, subject_id: int, changed_fields) -> None:
    """409 naming each field a pending approval holds (call before writing the subject)."""
    changed = set(changed_fields or ())
    if not changed:
        return
    rows = session.execute(sa.select(ApprovalInstance.id, ApprovalInstance.flow_snapshot).where(
        ApprovalInstance.subject_type == subject_type, ApprovalInstance.subject_id == subject_id,
        ApprovalInstance.state == ApprovalState.PENDING)).all()
    locked: dict[str, str] = {}
    for inst_id, snapshot in rows:
        for name in sorted(changed & set(snapshot.get("locked_fields") or [])):
            locked.setdefault(name, f"审批 #{inst_id} 进行中，暂不可修改 / locked by pending approval {inst_id}")
    if locked:
        raise Conflict("审批进行中，相关字段已锁定 / fields locked while an approval is pending",
                       code="locked_by_approval", fields=locked)


# ----------------------------------------------------------------------------- leavers and escalation


def _reassign(session: so.Session, inst: ApprovalInstance, task: ApprovalTask, to_ids: list[int], note: str,
              actor: Actor) -> list[int]:
    now = utcnow()
    task.state = TaskState.REASSIGNED
    task.decided_at = now
    task.note = note
    _close_todo(session, inst, task, note)
    applicant = session.get(User, inst.applicant_id)
    holders = set(session.execute(sa.select(ApprovalTask.approver_id).where(
        ApprovalTask.instance_id == inst.id, ApprovalTask.step_index == task.step_index,
        ApprovalTask.state.in_([TaskState.PENDING, TaskState.APPROVED]))).scalars())
    created = []
    for uid in to_ids:
        if uid in holders or uid == inst.applicant_id:
            continue
        new = _new_task(inst, task.step_index, uid, TaskState.PENDING, note, replaces_id=task.id)
        session.add(new)
        session.flush()
        _request(session, inst, new, applicant.name, inst.flow_snapshot["steps"][task.step_index]["name"])
        created.append(uid)
    audit.record(session, actor, "reroute", "approval", inst.id,
                 {"approver_id": {"before": task.approver_id, "after": created}, "note": {"before": None,
                                                                                         "after": note}})
    return created


def _settle_if_done(session: so.Session, inst: ApprovalInstance, actor: Actor) -> None:
    """After re-routing left a step without pending approvers (everyone else already approved)."""
    pending = session.execute(sa.select(sa.func.count()).where(
        ApprovalTask.instance_id == inst.id, ApprovalTask.step_index == inst.current_step,
        ApprovalTask.state == TaskState.PENDING)).scalar()
    if pending == 0:
        approved = session.execute(sa.select(sa.func.count()).where(
            ApprovalTask.instance_id == inst.id, ApprovalTask.step_index == inst.current_step,
            ApprovalTask.state == TaskState.APPROVED)).scalar()
        applicant = session.get(User, inst.applicant_id)
        if approved:
            _start_step(session, inst, inst.current_step + 1, applicant, actor)
        else:
            # Nobody is left to ask: re-resolve the step from the current org chart.
            _start_step(session, inst, inst.current_step, applicant, actor)


def _pending_tasks_of(session: so.Session, user_id: int) -> list[tuple[ApprovalTask, ApprovalInstance]]:
    return [tuple(r) for r in session.execute(
        sa.select(ApprovalTask, ApprovalInstance)
        .join(ApprovalInstance, ApprovalInstance.id == ApprovalTask.instance_id)
        .where(ApprovalTask.approver_id == user_id, ApprovalTask.state == TaskState.PENDING,
               ApprovalInstance.state == ApprovalState.PENDING,
               ApprovalTask.step_index == ApprovalInstance.current_step)
        .order_by(ApprovalTask.id)).all()]


def reroute_leaver(session: so.Session, user_id: int) -> int:
    """A departing or deactivated approver's open approver tasks go to their leader. Returns how many."""
    moved = 0
    for task, inst in _pending_tasks_of(session, user_id):
        actor = Actor.system(inst.corp_id)
        to_ids = routing.leader_of(session, user_id)
        _reassign(session, inst, task, to_ids, "审批人已离职，转其上级 / approver left: re-routed to their leader",
                  actor)
        _settle_if_done(session, inst, actor)
        moved += 1
    session.flush()
    return moved


def escalate_due(session: so.Session, corp_id: int, now: datetime) -> dict[str, int]:
    """Pending longer than the corp's `approval_escalate_hours`: first remind the approvers; still pending
    another period later, escalate each open task to the approver's next-level leader."""
    corp = session.get(Corp, corp_id)
    hours = float(corp_setting(corp, "approval_escalate_hours") or 24)
    cutoff = now - timedelta(hours=hours)
    actor = Actor.system(corp_id)
    counts = {"reminded": 0, "escalated": 0}
    due = session.execute(sa.select(ApprovalInstance).where(
        ApprovalInstance.corp_id == corp_id, ApprovalInstance.state == ApprovalState.PENDING,
        ApprovalInstance.step_started_at <= cutoff).order_by(ApprovalInstance.id)).scalars().all()
    for inst in due:
        tasks = session.execute(sa.select(ApprovalTask).where(
            ApprovalTask.instance_id == inst.id, ApprovalTask.step_index == inst.current_step,
            ApprovalTask.state == TaskState.PENDING)).scalars().all()
        if inst.reminded_at is None:
            for task in tasks:
                _notify(session, inst, "approval_reminder", task.approver_id,
                        f"remind:{task.source_id}:{inst.escalations}",
                        {"text": f"{inst.title} 已等待超过 {hours:g} 小时 / waiting over {hours:g} h",
                         "todo": {"source_id": task.source_id, "title": f"审批：{inst.title}",
                                  "url": approval_url(inst.id)}})
            inst.reminded_at = now
            counts["reminded"] += 1
        elif inst.reminded_at <= cutoff:
            for task in tasks:
                up = [u for u in routing.leader_of(session, task.approver_id) if u != task.approver_id]
                if up:  # at the top of the tree there is nobody to escalate to: the reminder stands
                    _reassign(session, inst, task, up,
                              "超时未处理，升级至上一级 / overdue: escalated to the next level", actor)
            inst.escalations += 1
            inst.step_started_at = now
            inst.reminded_at = None
            _settle_if_done(session, inst, actor)
            counts["escalated"] += 1
    session.flush()
    return counts


# ----------------------------------------------------------------------------- reading


def _may_view(session: so.Session, actor: Actor, inst: ApprovalInstance) -> bool:
    if actor.is_admin or inst.applicant_id == actor.user_id:
        return True
    return session.execute(sa.select(ApprovalTask.id).where(
        ApprovalTask.instance_id == inst.id, ApprovalTask.approver_id == actor.user_id).limit(1)).scalar() is not None


def _names(session: so.Session, ids: set[int | None]) -> dict[int, str]:
    ids = {i for i in ids if i is not None}
    if not ids:
        return {}
    return dict(session.execute(sa.select(User.id, User.name).where(User.id.in_(ids))).all())


def summary(inst: ApprovalInstance, names: dict[int, str]) -> dict[str, Any]:
    return {"id": inst.id, "kind": inst.kind, "title": inst.title, "state": inst.state,
            "subject": {"type": inst.subject_type, "id": inst.subject_id},
            "applicant": {"id": inst.applicant_id, "name": names.get(inst.applicant_id)},
            "current_step": inst.current_step, "created_at": iso(inst.created_at),
            "finished_at": iso(inst.finished_at), "url": approval_url(inst.id)}


def detail(session: so.Session, actor: Actor, instance_id: int) -> dict[str, Any]:
    inst = _load(session, actor.corp_id, instance_id)
    if not _may_view(session, actor, inst):
        raise NotFound("审批不存在 / approval not found", fields={"approval_id": "not found"})
    tasks = session.execute(sa.select(ApprovalTask).where(ApprovalTask.instance_id == inst.id)
                            .order_by(ApprovalTask.step_index, ApprovalTask.id)).scalars().all()
    names = _names(session, {inst.applicant_id} | {t.approver_id for t in tasks})
    steps = []
    for index, step in enumerate(inst.flow_snapshot.get("steps", [])):
        steps.append({
            "index": index, "name": step["name"], "mode": step.get("mode", "any"),
            "applies": step.get("applies", True),
            "status": ("current" if index == inst.current_step and inst.state == "pending" else
                       "skipped" if not step.get("applies", True) else
                       "done" if index < inst.current_step else "waiting"),
            "tasks": [{"task_id": t.source_id, "approver": {"id": t.approver_id, "name": names.get(t.approver_id)},
                       "state": t.state, "comment": t.comment, "note": t.note, "decided_at": iso(t.decided_at)}
                      for t in tasks if t.step_index == index],
        })
    live = subject_facts(session, inst.corp_id, inst.subject_type, inst.subject_id)
    my_task = next((t for t in tasks if t.approver_id == actor.user_id and t.state == TaskState.PENDING
                    and t.step_index == inst.current_step and inst.state == ApprovalState.PENDING), None)
    return {**summary(inst, names), "reason": inst.reason, "outcome": inst.outcome,
            "subject_facts": inst.subject_facts, "subject_now": live, "steps": steps,
            "locked_fields": inst.flow_snapshot.get("locked_fields", []), "version": inst.version,
            "can_decide": my_task is not None, "my_task_id": my_task.source_id if my_task else None,
            "can_withdraw": inst.applicant_id == actor.user_id and inst.state == ApprovalState.PENDING,
            "applied_at": iso(inst.applied_at)}


def pending_counts(session: so.Session, corp_id: int) -> dict[int, int]:
    """How many approvals wait for each person's decision right now (the agenda's "待审批" line): one per
    approval whose current step holds an open task of theirs — the same rule as the "waiting" box."""
    rows = session.execute(
        sa.select(ApprovalTask.approver_id, sa.func.count(sa.distinct(ApprovalTask.instance_id)))
        .join(ApprovalInstance, ApprovalInstance.id == ApprovalTask.instance_id)
        .where(ApprovalInstance.corp_id == corp_id, ApprovalInstance.state == ApprovalState.PENDING,
               ApprovalTask.state == TaskState.PENDING, ApprovalTask.step_index == ApprovalInstance.current_step,
               ApprovalTask.approver_id.is_not(None))
        .group_by(ApprovalTask.approver_id)).all()
    return dict(rows)


def list_for(session: so.Session, actor: Actor, box: str, *, cursor: str | None, limit: int) -> dict[str, Any]:
    """box: waiting (my pending decisions), submitted (mine as applicant), done (I decided). Newest first."""
    from app.services import pagination

    conditions: list[sa.ColumnElement[bool]] = [ApprovalInstance.corp_id == actor.corp_id]
    if box == "waiting":
        conditions += [ApprovalInstance.state == ApprovalState.PENDING, sa.exists().where(
            ApprovalTask.instance_id == ApprovalInstance.id, ApprovalTask.approver_id == actor.user_id,
            ApprovalTask.state == TaskState.PENDING, ApprovalTask.step_index == ApprovalInstance.current_step)]
    elif box == "submitted":
        conditions.append(ApprovalInstance.applicant_id == actor.user_id)
    else:
        conditions.append(sa.exists().where(
            ApprovalTask.instance_id == ApprovalInstance.id, ApprovalTask.approver_id == actor.user_id,
            ApprovalTask.state.in_([TaskState.APPROVED, TaskState.REJECTED])))
    key = pagination.SortKey(ApprovalInstance.created_at, True, "datetime")
    if cursor:
        value, row_id = pagination.decode_cursor(cursor, "datetime")
        conditions.append(pagination.after(key, ApprovalInstance.id, value, row_id))
    rows = session.execute(sa.select(ApprovalInstance).where(*conditions)
                           .order_by(*pagination.order_by(key, ApprovalInstance.id)).limit(limit + 1)).scalars().all()
    more = len(rows) > limit
    rows = rows[:limit]
    names = _names(session, {r.applicant_id for r in rows})
    return {"items": [summary(r, names) for r in rows],
            "next_cursor": pagination.encode_cursor(rows[-1].created_at, rows[-1].id) if more and rows else None}
