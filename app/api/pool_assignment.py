"""Public pool (公海) claim / return with caps, and admin CRUD of lead assignment rules."""

from __future__ import annotations

from flask import jsonify

from app.api import bp
from app.api.parsing import Query, body
from app.auth.session import admin_required, current_actor, login_required
from app.db import get_session
from app.openapi import accepts
from app.schemas_approvals import AssignmentRuleIn, AssignmentRulePatch, PoolReturnIn
from app.services import assignment, pool_claims
from app.services.scope import load_customer


def _customer_brief(customer) -> dict:
    return {"id": customer.id, "name": customer.name, "owner_id": customer.owner_id, "in_pool": customer.in_pool}


@bp.post("/customers/<int:customer_id>/claim")
@login_required
def claim_customer(customer_id: int):
    """Claim a public-pool customer (holding cap, daily cap and reclaim ban apply)."""
    customer = pool_claims.claim(get_session(), current_actor(), customer_id)
    return jsonify(_customer_brief(customer))


@bp.post("/customers/<int:customer_id>/return")
@login_required
@accepts(PoolReturnIn)
def return_customer(customer_id: int):
    """Return a customer to the public pool with a reason."""
    session, actor = get_session(), current_actor()
    load_customer(session, actor, customer_id, for_write=True)
    data = body(PoolReturnIn)
    return jsonify(_customer_brief(pool_claims.return_to_pool(session, actor, customer_id, data.reason)))


@bp.get("/pool/me")
@login_required
def my_pool_status():
    """How many customers I hold and claimed today, against the corp's caps."""
    Query(set())
    return jsonify(pool_claims.my_pool_status(get_session(), current_actor()))


@bp.post("/customers/<int:customer_id>/auto-assign")
@admin_required
def auto_assign_customer(customer_id: int):
    """Apply the assignment rules to a customer without an owner; the reason is returned and audited."""
    session, actor = get_session(), current_actor()
    customer = load_customer(session, actor, customer_id, for_write=True)
    chosen = assignment.assign_unowned(session, actor, customer)
    return jsonify({**_customer_brief(customer), "reason": chosen.reason if chosen else None})


@bp.get("/admin/assignment-rules")
@admin_required
def list_assignment_rules():
    """Lead assignment rules in evaluation order."""
    Query(set())
    return jsonify(assignment.list_rules(get_session(), current_actor()))


@bp.post("/admin/assignment-rules")
@admin_required
@accepts(AssignmentRuleIn)
def create_assignment_rule():
    """Add a rule: region / industry / source lists → a user, or round robin in a team."""
    data = body(AssignmentRuleIn)
    return jsonify(assignment.rule_dict(assignment.create_rule(get_session(), current_actor(), data))), 201


@bp.get("/admin/assignment-rules/<int:assignment_rule_id>")
@admin_required
def get_assignment_rule(assignment_rule_id: int):
    """One assignment rule."""
    return jsonify(assignment.rule_dict(assignment.load_rule(get_session(), current_actor(), assignment_rule_id)))


@bp.patch("/admin/assignment-rules/<int:assignment_rule_id>")
@admin_required
@accepts(AssignmentRulePatch)
def update_assignment_rule(assignment_rule_id: int):
    """Change an assignment rule."""
    session, actor = get_session(), current_actor()
    assignment.load_rule(session, actor, assignment_rule_id)
    data = body(AssignmentRulePatch)
    return jsonify(assignment.rule_dict(assignment.update_rule(session, actor, assignment_rule_id, data)))


@bp.delete("/admin/assignment-rules/<int:assignment_rule_id>")
@admin_required
def delete_assignment_rule(assignment_rule_id: int):
    """Delete an assignment rule."""
    assignment.delete_rule(get_session(), current_actor(), assignment_rule_id)
    return "", 204

