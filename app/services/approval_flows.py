"""Admin CRUD for approval flow definitions. Running approvals keep the snapshot they started with."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so

from app.errors import Conflict, Forbidden, NotFound, ValidationError
from app.schemas_approvals import FlowIn, FlowPatch
from app.services import audit
from app.services.actor import Actor
from app.services.timeutil import iso
from models.approvals import ApprovalFlow, ApprovalInstance, ApprovalState
from models.org import Department, User


def flow_dict(flow: ApprovalFlow) -> dict[str, Any]:
    return {"id": flow.id, "kind": flow.kind, "name": flow.name, "description": flow.description,
            "subject_type": flow.subject_type, "steps": flow.steps, "cc": flow.cc,
            "locked_fields": flow.locked_fields, "active": flow.active, "is_default": flow.is_default,
            "updated_at": iso(flow.updated_at)}


def _admin(actor: Actor) -> None:
    if not actor.is_admin:
        raise Forbidden("仅管理员可用 / admins only")


def _check_refs(session: so.Session, corp_id: int, specs: list[dict[str, Any]], where: str) -> None:
    """Named departments and users must be this corp's: a 422 naming the step, never a silent no-approver."""
    dept_ids = {s["department_id"] for s in specs if s["type"] == "dept_leader"}
    user_ids = {u for s in specs if s["type"] == "users" for u in s["user_ids"]}
    if dept_ids:
        found = set(session.execute(sa.select(Department.id).where(
            Department.corp_id == corp_id, Department.id.in_(dept_ids))).scalars())
        if dept_ids - found:
            raise ValidationError("部门不存在 / unknown department", fields={where: f"unknown department "
                                                                                  f"{sorted(dept_ids - found)}"})
    if user_ids:
        found = set(session.execute(sa.select(User.id).where(User.corp_id == corp_id, User.id.in_(user_ids))).scalars())
        if user_ids - found:
            raise ValidationError("用户不存在 / unknown user",
                                  fields={where: f"unknown user {sorted(user_ids - found)}"})


def _validated(session: so.Session, corp_id: int, steps: list[dict[str, Any]] | None,
               cc: list[dict[str, Any]] | None) -> None:
    for i, step in enumerate(steps or []):
        _check_refs(session, corp_id, step["approvers"], f"steps.{i}.approvers")
    _check_refs(session, corp_id, cc or [], "cc")


def _unique_name(session: so.Session, corp_id: int, name: str, exclude: int | None) -> None:
    stmt = sa.select(ApprovalFlow.id).where(ApprovalFlow.corp_id == corp_id, ApprovalFlow.name == name)
    if exclude is not None:
        stmt = stmt.where(ApprovalFlow.id != exclude)
    if session.execute(stmt).scalar() is not None:
        raise Conflict("流程名称已存在 / a flow with this name exists", fields={"name": "exists"})


def load_flow(session: so.Session, actor: Actor, flow_id: int) -> ApprovalFlow:
    flow = session.execute(sa.select(ApprovalFlow).where(
        ApprovalFlow.id == flow_id, ApprovalFlow.corp_id == actor.corp_id)).scalar()
    if flow is None:
        raise NotFound("审批流程不存在 / flow not found", fields={"flow_id": "not found"})
    return flow


def list_flows(session: so.Session, actor: Actor) -> dict[str, Any]:
    _admin(actor)
    rows = session.execute(sa.select(ApprovalFlow).where(ApprovalFlow.corp_id == actor.corp_id)
                           .order_by(ApprovalFlow.kind, ApprovalFlow.id)).scalars().all()
    return {"items": [flow_dict(f) for f in rows]}


def create_flow(session: so.Session, actor: Actor, data: FlowIn) -> ApprovalFlow:
    _admin(actor)
    raw = data.model_dump(mode="json")
    _validated(session, actor.corp_id, raw["steps"], raw["cc"])
    _unique_name(session, actor.corp_id, data.name, None)
    flow = ApprovalFlow(corp_id=actor.corp_id, is_default=False, **raw)
    session.add(flow)
    session.flush()
    audit.record(session, actor, "create", "approval_flow", flow.id, audit.diff({}, flow_dict(flow)))
    return flow


def update_flow(session: so.Session, actor: Actor, flow_id: int, patch: FlowPatch) -> ApprovalFlow:
    _admin(actor)
    flow = load_flow(session, actor, flow_id)
    raw = patch.model_dump(mode="json", exclude_unset=True)
    for key in ("name", "steps", "active"):
        if key in raw and raw[key] is None:
            raise ValidationError(f"{key} 不能为空 / {key} cannot be null", fields={key: "required"})
    _validated(session, actor.corp_id, raw.get("steps"), raw.get("cc"))
    if raw.get("name"):
        _unique_name(session, actor.corp_id, raw["name"], flow.id)
    before = flow_dict(flow)
    for key, value in raw.items():
        setattr(flow, key, value if value is not None or key == "description" else [])
    session.flush()
    changes = audit.diff(before, flow_dict(flow))
    changes.pop("updated_at", None)
    if changes:
        audit.record(session, actor, "update", "approval_flow", flow.id, changes)
    return flow


def delete_flow(session: so.Session, actor: Actor, flow_id: int) -> None:
    """Deleted when never used; a flow with approvals behind it is only deactivated (history keeps it)."""
    _admin(actor)
    flow = load_flow(session, actor, flow_id)
    used = session.execute(sa.select(ApprovalInstance.id, ApprovalInstance.state).where(
        ApprovalInstance.flow_id == flow.id)).all()
    if any(state == ApprovalState.PENDING for _, state in used):
        raise Conflict("该流程有进行中的审批 / approvals of this flow are pending", fields={"flow_id": "in use"})
    if used:
        flow.active = False
        audit.record(session, actor, "deactivate", "approval_flow", flow.id, {"active": {"before": True,
                                                                                         "after": False}})
    else:
        audit.record(session, actor, "delete", "approval_flow", flow.id, audit.diff(flow_dict(flow), {}))
        session.delete(flow)
    session.flush()
