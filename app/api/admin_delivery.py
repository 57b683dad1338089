"""Admin console API for delivery: the log with per-recipient verdicts, retry, and quota usage."""

from __future__ import annotations

from flask import jsonify

from app.api import bp
from app.api.parsing import Query, corp_zone
from app.auth.session import admin_required, current_actor
from app.db import get_session
from app.services import delivery, outbox
from app.services.pagination import parse_limit
from models.org import Corp
from models.outbox import OutboxState
from models.types import utcnow

KINDS_MAX = 20


@bp.get("/admin/deliveries")
@admin_required
def deliveries():
    """Outbox items newest first; filters: state, kind, recipient, from/to (due time), cursor, limit."""
    args = Query({"state", "kind", "recipient", "from", "to", "cursor", "limit"})
    actor = current_actor()
    cursor = args.int("cursor", minimum=1)
    return jsonify(outbox.list_items(
        get_session(), actor.corp_id, states=args.str_list("state", {s.value for s in OutboxState}),
        kinds=args.str_list("kind")[:KINDS_MAX], recipient_id=args.int("recipient", minimum=1),
        since=args.datetime("from", corp_zone(actor)), until=args.datetime("to", corp_zone(actor)),
        cursor=cursor, limit=parse_limit(args.args.get("limit"), 50)))


@bp.post("/admin/deliveries/<int:item_id>/retry")
@admin_required
def retry_delivery(item_id: int):
    """Put a failed delivery back in the queue."""
    Query(set())
    item = outbox.retry(get_session(), current_actor().corp_id, item_id)
    return jsonify({"id": item.id, "state": item.state, "next_attempt_at": item.next_attempt_at.isoformat()})


@bp.get("/admin/usage")
@admin_required
def usage():
    """This month's platform calls against the quota, per family, and what was merged or deferred."""
    Query(set())
    session = get_session()
    corp = session.get(Corp, current_actor().corp_id)
    return jsonify(delivery.usage_report(session, corp, utcnow()))
