"""Org read API for pickers and admins."""

from __future__ import annotations

from flask import jsonify

from app.api import bp
from app.api.parsing import Query
from app.auth.session import current_actor, login_required
from app.db import get_session
from app.services import org
from app.services.pagination import parse_limit


@bp.get("/org/departments")
@login_required
def departments():
    """The department tree with leaders and member counts."""
    Query(set())
    return jsonify({"items": org.department_tree(get_session(), current_actor())})


@bp.get("/org/users")
@login_required
def users():
    """Users, filtered by department subtree, active flag and name."""
    args = Query({"department_id", "active", "q", "cursor", "limit"})
    return jsonify(org.list_users(
        get_session(), current_actor(), department_id=args.int("department_id"), active=args.bool("active"),
        q=args.str("q"), cursor=args.str("cursor", max_length=500), limit=parse_limit(args.args.get("limit"), 50)))
