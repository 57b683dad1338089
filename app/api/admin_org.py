"""Admin endpoints for org sync: start a full sync, and poll its runs (the console's progress bar)."""

from __future__ import annotations

from flask import current_app, jsonify

from app.api import bp
from app.api.parsing import Query
from app.auth.session import admin_required, current_actor
from app.db import get_database, get_session
from app.errors import ValidationError
from app.services import sync_runs
from app.services.pagination import parse_limit
from integrations.base import PlatformError
from models.org import Corp


@bp.get("/admin/org/sync-runs")
@admin_required
def sync_run_list():
    """The corp's org sync runs, newest first, with progress (done/total departments) and counts."""
    args = Query({"limit"})
    limit = parse_limit(args.args.get("limit"), 20)
    return jsonify({"items": sync_runs.list_runs(get_session(), current_actor().corp_id, limit)})


@bp.get("/admin/org/sync-runs/<int:run_id>")
@admin_required
def sync_run_detail(run_id: int):
    """One run: status, progress, calls made, added/updated/deactivated/removed, duration and errors."""
    Query(set())
    return jsonify(sync_runs.get_run(get_session(), current_actor().corp_id, run_id))


@bp.post("/admin/org/sync")
@admin_required
def sync_start():
    """Start (or resume) a full org sync in the background; 409 while one is running."""
    from app.services.platform import platform_client

    Query(set())
    corp_id = current_actor().corp_id
    database = get_database()
    settings = current_app.config["CRM_SETTINGS"]
    corp = get_session().get(Corp, corp_id)
    try:
        client = platform_client(corp, settings=settings, database=database)  # fails here, not in the thread
    except PlatformError as exc:
        raise ValidationError(f"企业未完成绑定 / corp is not bound: {exc.cause}", code="corp_not_bound") from None
    run = sync_runs.start_full_sync(database, corp_id, lambda: client)
    return jsonify(run), 202, {"Location": f"/api/v1/admin/org/sync-runs/{run['id']}"}
