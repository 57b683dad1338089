"""Aggregate reads for the H5 workbench, so each page renders from one call instead of a chain.

A blueprint of its own under /api/v1 (registered by `app.h5.init_app`), documented in /openapi.json like the rest.
"""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify
from flask import session as flask_session

from app.api.parsing import Query
from app.auth.session import current_actor, login_required
from app.db import get_session
from app.errors import NotFound
from app.services import workbench

bp = Blueprint("h5_api", __name__, url_prefix="/api/v1")


@bp.get("/h5/context")
@login_required
def context():
    """Me, my corp (with its time zone), custom field definitions, tags and stages: loaded once per session."""
    Query(set())
    return jsonify(workbench.context(get_session(), current_actor()))


@bp.get("/home")
@login_required
def home():
    """My to-dos: follow-ups due today and overdue, my open tasks, approvals waiting for me."""
    Query(set())
    return jsonify(workbench.home(get_session(), current_actor()))


@bp.get("/h5/sandbox-employees")
def sandbox_employees():
    """People the sign-in picker offers beside the sandbox; absent (404) in production."""
    if not current_app.config["CRM_SETTINGS"].dev_login:
        raise NotFound("not found")
    Query(set())
    # Someone already signed in (switching identity) sees only their own corp's people.
    signed_in_corp = flask_session.get("corp_id")
    return jsonify({"items": workbench.sandbox_employees(get_session(), corp_id=signed_in_corp)})
