"""Follow-ups (跟进记录): a customer's timeline. Writing one moves the customer's last/next contact times.

Times typed without a zone are the corp's local time (`app.services.timeutil.to_utc`).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so

from app.errors import Forbidden, NotFound, ValidationError
from app.schemas import FollowUpIn
from app.services import audit, pagination, rules
from app.services.actor import Actor
from app.services.customers import follow_up_dict, user_refs
from app.services.scope import customer_clause, load_customer
from app.services.timeutil import iso, to_utc
from models.crm import Contact, Customer, FollowUp
from models.org import Corp
from models.types import utcnow

# Clocks of phones in the field drift; a little "future" is tolerated, more is a typo.
FUTURE_TOLERANCE = timedelta(minutes=5)
AUDITED_FIELDS = ("customer_id", "contact_id", "author_id", "kind", "content", "occurred_at", "location",
                  "latitude", "longitude", "next_contact_at")


def _snapshot(f: FollowUp) -> dict[str, Any]:
    return {name: getattr(f, name) for name in AUDITED_FIELDS}


def load_follow_up(session: so.Session, actor: Actor, follow_up_id: int) -> tuple[FollowUp, Customer]:
    row = session.execute(
        sa.select(FollowUp, Customer).join(Customer, Customer.id == FollowUp.customer_id)
        .where(FollowUp.id == follow_up_id, FollowUp.corp_id == actor.corp_id, customer_clause(session, actor))
    ).first()
    if row is None:
        raise NotFound("跟进记录不存在或无权访问 / follow-up not found", fields={"follow_up_id": "not found"})
    return row[0], row[1]


def list_follow_ups(session: so.Session, actor: Actor, customer_id: int, *, cursor: str | None,
                    limit: int) -> dict[str, Any]:
    """Newest first, keyset-paged over (occurred_at, id)."""
    customer = load_customer(session, actor, customer_id)
    key = pagination.SortKey(FollowUp.occurred_at, True, "datetime")
    conditions = [FollowUp.customer_id == customer.id, FollowUp.corp_id == actor.corp_id]
    if cursor:
        value, row_id = pagination.decode_cursor(cursor, "datetime")
        conditions.append(pagination.after(key, FollowUp.id, value, row_id))
    rows = session.execute(sa.select(FollowUp).where(*conditions)
                           .order_by(*pagination.order_by(key, FollowUp.id)).limit(limit + 1)).scalars().all()
    has_more = len(rows) > limit
    rows = rows[:limit]
    users = user_refs(session, {r.author_id for r in rows})
    next_cursor = pagination.encode_cursor(rows[-1].occurred_at, rows[-1].id) if has_more and rows else None
    return {"items": [follow_up_dict(r, users) for r in rows], "next_cursor": next_cursor}


def detail(session: so.Session, actor: Actor, follow_up_id: int) -> dict[str, Any]:
    follow_up, _ = load_follow_up(session, actor, follow_up_id)
    return follow_up_dict(follow_up, user_refs(session, {follow_up.author_id}))


def create_follow_up(session: so.Session, actor: Actor, customer_id: int, data: FollowUpIn) -> FollowUp:
    customer = load_customer(session, actor, customer_id, for_write=True, lock=True)
    tz = session.get(Corp, actor.corp_id).timezone
    now = utcnow()
    occurred_at = to_utc(data.occurred_at, tz) or now
    if occurred_at > now + FUTURE_TOLERANCE:
        raise ValidationError("跟进时间不能晚于现在 / occurred_at cannot be in the future",
                              fields={"occurred_at": "in the future"})
    next_contact_at = to_utc(data.next_contact_at, tz)
    if data.contact_id is not None:
        found = session.execute(sa.select(Contact.id).where(
            Contact.id == data.contact_id, Contact.customer_id == customer.id, Contact.corp_id == actor.corp_id,
            Contact.deleted_at.is_(None))).scalar_one_or_none()
        if found is None:
            raise ValidationError("联系人不属于该客户 / contact does not belong to this customer",
                                  fields={"contact_id": "not a contact of this customer"})

    follow_up = FollowUp(corp_id=actor.corp_id, customer_id=customer.id, contact_id=data.contact_id,
                         author_id=actor.user_id, kind=data.kind, content=data.content, occurred_at=occurred_at,
                         location=data.location, latitude=data.latitude, longitude=data.longitude,
                         next_contact_at=next_contact_at, created_at=now)
    session.add(follow_up)
    session.flush()
    audit.record(session, actor, "create", "follow_up", follow_up.id, audit.diff({}, _snapshot(follow_up)))

    before = {"last_contact_at": customer.last_contact_at, "next_contact_at": customer.next_contact_at}
    if customer.last_contact_at is None or occurred_at > customer.last_contact_at:
        customer.last_contact_at = occurred_at
    if next_contact_at is not None:
        customer.next_contact_at = next_contact_at
    changes = audit.diff(before, {"last_contact_at": customer.last_contact_at,
                                  "next_contact_at": customer.next_contact_at})
    if changes:
        customer.updated_at = now
        audit.record(session, actor, "update", "customer", customer.id,
                     {**changes, "follow_up_id": {"before": None, "after": follow_up.id}})
    session.flush()
    rules.fire(session, actor, "follow_up_written", follow_up)
    return follow_up


def delete_follow_up(session: so.Session, actor: Actor, follow_up_id: int) -> None:
    """The author, or a manager/admin whose write scope covers the customer. Removed for good, but audited
    with its full content; the customer's last contact time falls back to the latest remaining one."""
    follow_up, customer = load_follow_up(session, actor, follow_up_id)
    if follow_up.author_id != actor.user_id:
        in_write_scope = session.execute(sa.select(Customer.id).where(
            Customer.id == customer.id, customer_clause(session, actor, for_write=True))).first() is not None
        if not ((actor.is_manager or actor.is_admin) and in_write_scope):
            raise Forbidden("只有作者、经理或管理员可以删除 / only the author, a manager or an admin may delete")
    snapshot = _snapshot(follow_up)
    session.delete(follow_up)
    session.flush()
    audit.record(session, actor, "delete", "follow_up", follow_up_id, audit.diff(snapshot, {}))
    if customer.last_contact_at is not None and customer.last_contact_at == snapshot["occurred_at"]:
        latest = session.execute(sa.select(sa.func.max(FollowUp.occurred_at)).where(
            FollowUp.customer_id == customer.id)).scalar()
        if latest != customer.last_contact_at:
            audit.record(session, actor, "update", "customer", customer.id,
                         {"last_contact_at": {"before": iso(customer.last_contact_at), "after": iso(latest)},
                          "follow_up_id": {"before": follow_up_id, "after": None}})
            customer.last_contact_at = latest
    session.flush()
