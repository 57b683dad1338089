"""Approvals: submit, read, decide, withdraw, the three inboxes; admin CRUD of approval flows."""

from __future__ import annotations

from flask import jsonify

from app.api import bp
from app.api.parsing import Query, body
from app.auth.session import admin_required, current_actor, login_required
from app.db import get_session
from app.errors import ValidationError
from app.openapi import accepts
from app.schemas_approvals import DecideIn, FlowIn, FlowPatch, SubmitIn
from app.services import approval_flows, approvals, pagination
from app.services.pagination import parse_limit

BOXES = {"waiting", "submitted", "done"}



def safe_cursor(args: Query) -> str | None:
    """Checked here so a cursor the database could not compare is a 422 before the service runs."""
    raw = args.str("cursor", max_length=500)
    if raw is not None:
        pagination.decode_cursor(raw, "datetime")
    return raw


@bp.post("/approvals")
@login_required
@accepts(SubmitIn)
def submit_approval():
    """Submit an approval on an opportunity or customer; the first step's approvers get a to-do."""
    data = body(SubmitIn)
    session, actor = get_session(), current_actor()
    inst = approvals.submit(session, actor, data)
    return jsonify(approvals.detail(session, actor, inst.id)), 201


@bp.get("/approvals")
@login_required
def list_approvals():
    """box=waiting (for me to decide, default) | submitted (by me) | done (decided by me); newest first."""
    args = Query({"box", "cursor", "limit"})
    box = args.str("box") or "waiting"
    if box not in BOXES:
        raise ValidationError("box 取值无效 / invalid box", fields={"box": f"one of {sorted(BOXES)}"})
    return jsonify(approvals.list_for(get_session(), current_actor(), box, cursor=safe_cursor(args),
                                      limit=parse_limit(args.args.get("limit"))))


@bp.get("/approvals/<int:approval_id>")
@login_required
def get_approval(approval_id: int):
    """One approval: subject key facts, steps, who decided what."""
    Query(set())
    return jsonify(approvals.detail(get_session(), current_actor(), approval_id))


@bp.post("/approvals/<int:approval_id>/decision")
@login_required
@accepts(DecideIn)
def decide_approval(approval_id: int):
    """Approve or reject (a comment is required to reject); 409 with the final state when too late."""
    data = body(DecideIn)
    session, actor = get_session(), current_actor()
    approvals.decide(session, actor, approval_id, data.decision, data.comment, step=data.step, task_id=data.task_id)
    return jsonify(approvals.detail(session, actor, approval_id))


@bp.post("/approvals/<int:approval_id>/withdraw")
@login_required
def withdraw_approval(approval_id: int):
    """The applicant withdraws a pending approval."""
    session, actor = get_session(), current_actor()
    approvals.withdraw(session, actor, approval_id)
    return jsonify(approvals.detail(session, actor, approval_id))


@bp.get("/admin/approval-flows")
@admin_required
def list_approval_flows():
    """Every approval flow of the corp."""
    Query(set())
    return jsonify(approval_flows.list_flows(get_session(), current_actor()))


@bp.post("/admin/approval-flows")
@admin_required
@accepts(FlowIn)
def create_approval_flow():
    """Define a flow: steps of approver specs, all/any mode, optional conditions, cc list."""
    data = body(FlowIn)
    flow = approval_flows.create_flow(get_session(), current_actor(), data)
    return jsonify(approval_flows.flow_dict(flow)), 201


@bp.get("/admin/approval-flows/<int:flow_id>")
@admin_required
def get_approval_flow(flow_id: int):
    """One flow."""
    return jsonify(approval_flows.flow_dict(approval_flows.load_flow(get_session(), current_actor(), flow_id)))


@bp.patch("/admin/approval-flows/<int:flow_id>")
@admin_required
@accepts(FlowPatch)
def update_approval_flow(flow_id: int):
    """Change a flow; approvals already running keep the steps they started with."""
    session, actor = get_session(), current_actor()
    approval_flows.load_flow(session, actor, flow_id)
    data = body(FlowPatch)
    return jsonify(approval_flows.flow_dict(approval_flows.update_flow(session, actor, flow_id, data)))


@bp.delete("/admin/approval-flows/<int:flow_id>")
@admin_required
def delete_approval_flow(flow_id: int):
    """Delete an unused flow; a used one is deactivated instead."""
    approval_flows.delete_flow(get_session(), current_actor(), flow_id)
    return "", 204

