"""Admin console API for automation rules and their firing log."""

from __future__ import annotations

from flask import jsonify

from app.api import bp
from app.api.approvals import safe_cursor
from app.api.parsing import Query, body
from app.auth.session import admin_required, current_actor
from app.db import get_session
from app.openapi import accepts
from app.schemas_approvals import RuleIn, RulePatch
from app.services import rules
from app.services.pagination import parse_limit


@bp.get("/admin/rules")
@admin_required
def list_rules():
    """Every automation rule of the corp, in evaluation order."""
    Query(set())
    return jsonify(rules.list_rules(get_session(), current_actor()))


@bp.post("/admin/rules")
@admin_required
@accepts(RuleIn)
def create_rule():
    """Add a rule: trigger, optional condition, actions."""
    data = body(RuleIn)
    return jsonify(rules.rule_dict(rules.create_rule(get_session(), current_actor(), data))), 201


@bp.get("/admin/rules/<int:rule_id>")
@admin_required
def get_rule(rule_id: int):
    """One rule."""
    return jsonify(rules.rule_dict(rules.load_rule(get_session(), current_actor(), rule_id)))


@bp.patch("/admin/rules/<int:rule_id>")
@admin_required
@accepts(RulePatch)
def update_rule(rule_id: int):
    """Change a rule, or enable / disable it."""
    session, actor = get_session(), current_actor()
    rules.load_rule(session, actor, rule_id)
    data = body(RulePatch)
    return jsonify(rules.rule_dict(rules.update_rule(session, actor, rule_id, data)))


@bp.delete("/admin/rules/<int:rule_id>")
@admin_required
def delete_rule(rule_id: int):
    """Delete a rule (its firing log stays)."""
    rules.delete_rule(get_session(), current_actor(), rule_id)
    return "", 204


@bp.get("/admin/rule-firings")
@admin_required
def list_rule_firings():
    """The firing log, newest first: rule, subject, actions taken, loop stops."""
    args = Query({"rule_id", "cursor", "limit"})
    rule_id = args.int("rule_id", minimum=1)
    return jsonify(rules.list_firings(get_session(), current_actor(), rule_id=rule_id,
                                      cursor=safe_cursor(args),
                                      limit=parse_limit(args.args.get("limit"))))

