"""The dashboard: every chart of the H5 dashboard page from one call."""

from __future__ import annotations

from flask import jsonify

from app.api import bp
from app.api.parsing import Query
from app.auth.session import current_actor, login_required
from app.db import get_session
from app.services import dashboard as dashboard_service


@bp.get("/dashboard")
@login_required
def dashboard():
    """Funnel by stage with conversion rates, this month's leaderboard, customers by source, new customers this
    month vs last, and customers going stale — within the caller's data scope (`period`: month)."""
    args = Query({"period"})
    period = args.str("period", max_length=16) or "month"
    return jsonify(dashboard_service.dashboard(get_session(), current_actor(), period=period))
