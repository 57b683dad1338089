"""Customer endpoints."""

from __future__ import annotations

from flask import jsonify

from app.api import bp
from app.api.parsing import Query, body, corp_zone
from app.auth.session import current_actor, login_required
from app.db import get_session
from app.openapi import accepts
from app.schemas import CustomerIn, CustomerPatch
from app.services import customers
from app.services.pagination import parse_limit

LIST_PARAMS = {"q", "tags_all", "tags_any", "grade", "source", "status", "region", "industry", "owner_id",
               "department_id", "stale_days", "next_contact_before", "next_contact_after", "in_pool", "sort",
               "cursor", "limit"}


@bp.get("/customers")
@login_required
def list_customers():
    """List customers in the caller's data scope, filtered, sorted, one cursor page at a time."""
    actor, session = current_actor(), get_session()
    tz = corp_zone(actor)
    args = Query(LIST_PARAMS)
    in_pool = args.bool("in_pool")
    query = customers.CustomerQuery(
        q=args.str("q", max_length=100), tags_all=args.int_list("tags_all"), tags_any=args.int_list("tags_any"),
        grade=args.str_list("grade", {"A", "B", "C"}), source=args.str_list("source"),
        status=args.str_list("status", {"lead", "prospect", "customer", "lost"}),
        region=args.str_list("region"), industry=args.str_list("industry"), owner_id=args.int_list("owner_id"),
        department_id=args.int("department_id"), stale_days=args.int("stale_days", 0, 3650),
        next_contact_before=args.datetime("next_contact_before", tz),
        next_contact_after=args.datetime("next_contact_after", tz),
        in_pool=False if in_pool is None else in_pool,
        sort=args.str("sort") or "-updated_at", cursor=args.str("cursor", max_length=500),
        limit=parse_limit(args.args.get("limit")),
    )
    return jsonify(customers.list_customers(session, actor, query))


@bp.post("/customers")
@login_required
@accepts(CustomerIn)
def create_customer():
    """Create a customer (with contacts); 409 with the match when it looks like a duplicate."""
    data = body(CustomerIn)
    session = get_session()
    customer = customers.create_customer(session, current_actor(), data)
    return jsonify(customers.detail(session, current_actor(), customer.id)), 201


@bp.get("/customers/<int:customer_id>")
@login_required
def get_customer(customer_id: int):
    """A customer with contacts, recent follow-ups, opportunities and tasks."""
    return jsonify(customers.detail(get_session(), current_actor(), customer_id))


@bp.patch("/customers/<int:customer_id>")
@login_required
@accepts(CustomerPatch)
def update_customer(customer_id: int):
    """Change some fields; only the fields given are touched."""
    data = body(CustomerPatch)
    session = get_session()
    customers.update_customer(session, current_actor(), customer_id, data)
    return jsonify(customers.detail(session, current_actor(), customer_id))


@bp.delete("/customers/<int:customer_id>")
@login_required
def delete_customer(customer_id: int):
    """Soft delete: the row stays for the audit trail and can be restored by an admin."""
    customers.delete_customer(get_session(), current_actor(), customer_id)
    return "", 204
