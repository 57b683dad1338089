"""Due follow-up reminders: customers whose agreed next contact time has arrived → their owner.

The scan reads only the window since the previous tick through the (corp_id, next_contact_at) index, so its
cost follows what is due, not how many customers exist; the outbox key makes a re-scanned window harmless.
The rows go from `customers` into `outbox_items` in one INSERT … SELECT inside the database: a burst of
100,000 due in one minute must not cost 100,000 round trips through Python.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
import sqlalchemy.orm as so

from app.services.delivery import local_now
from integrations.dingtalk.sqlutil import upsert_insert
from models.crm import Customer
from models.org import Corp
from models.outbox import OutboxItem, OutboxState, Priority
from models.types import utcnow

# A scheduler that was down longer than this does not flood people with ancient reminders.
MAX_CATCH_UP = timedelta(hours=24)
KIND = "follow_up_due"


def _due(corp_id: int, since: datetime, now: datetime) -> tuple[sa.ColumnElement[bool], ...]:
    return (Customer.corp_id == corp_id, Customer.next_contact_at > since, Customer.next_contact_at <= now,
            Customer.deleted_at.is_(None), Customer.owner_id.is_not(None), Customer.in_pool.is_(False))


def due_customers(session: so.Session, corp_id: int, since: datetime, now: datetime) -> list[sa.Row]:
    return session.execute(
        sa.select(Customer.id, Customer.name, Customer.owner_id, Customer.next_contact_at)
        .where(*_due(corp_id, since, now))
    ).all()


def _sql_parts(dialect: str, offset_minutes: int) -> tuple[sa.ColumnElement, sa.ColumnElement, sa.ColumnElement]:
    """(epoch seconds of the due time, its local HH:MM, a JSON object builder) in the dialect's SQL.

    The local time uses the corp's current UTC offset: exact for zones without daylight saving (all of
    China), at most an hour off around a DST change elsewhere, and only in the reminder's text."""
    due = Customer.next_contact_at
    if dialect == "postgresql":
        epoch = sa.cast(sa.func.floor(sa.extract("epoch", due)), sa.BigInteger)
        hhmm = sa.func.to_char(due + sa.text(f"interval '{offset_minutes} minutes'"), "HH24:MI")
        return epoch, hhmm, sa.func.jsonb_build_object
    epoch = sa.cast(sa.func.strftime("%s", due), sa.Integer)
    hhmm = sa.func.strftime("%H:%M", due, f"{offset_minutes:+d} minutes")
    return epoch, hhmm, sa.func.json_object


def enqueue_due(session: so.Session, corp: Corp, since: datetime | None, now: datetime) -> int:
    """Queue one reminder per customer whose next contact fell in (since, now]; returns rows created."""
    since = max(since or now - MAX_CATCH_UP, now - MAX_CATCH_UP)
    dialect = session.get_bind().dialect.name
    offset = int(local_now(corp, now).utcoffset().total_seconds() // 60)
    epoch, hhmm, json_object = _sql_parts(dialect, offset)
    owner = Customer.owner_id
    # Same shape as outbox.default_key, so a service enqueueing the same reminder meets this row.
    key = sa.func.concat(f"{KIND}:customer:", sa.cast(Customer.id, sa.String), ":", sa.cast(epoch, sa.String), ":",
                         sa.cast(owner, sa.String)) if dialect == "postgresql" else (
        sa.literal(f"{KIND}:customer:") + sa.cast(Customer.id, sa.String) + ":" + sa.cast(epoch, sa.String) + ":"
        + sa.cast(owner, sa.String))
    name = Customer.name
    line = sa.func.concat(hhmm, " 跟进「", name, "」/ follow up ", name) if dialect == "postgresql" else (
        hhmm + " 跟进「" + name + "」/ follow up " + name)
    title = sa.func.substr(sa.literal("跟进提醒：") + name if dialect != "postgresql"
                           else sa.func.concat("跟进提醒：", name), 1, 60)
    stamp = utcnow()
    source = sa.select(
        Customer.corp_id, sa.literal(KIND), owner, sa.literal("customer"), Customer.id, Customer.next_contact_at,
        json_object("line", line, "title", title), sa.literal(int(Priority.REMINDER)), key,
        sa.literal(str(OutboxState.PENDING)), sa.literal(0), Customer.next_contact_at, sa.literal(0),
        sa.literal(stamp, OutboxItem.created_at.type), sa.literal(stamp, OutboxItem.updated_at.type),
    ).where(*_due(corp.id, since, now))
    columns = ["corp_id", "kind", "recipient_user_id", "subject_type", "subject_id", "due_at", "payload", "priority",
               "idempotency_key", "state", "attempts", "next_attempt_at", "deferred_count", "created_at",
               "updated_at"]
    stmt = (upsert_insert(session, OutboxItem.__table__).from_select(columns, source)
            .on_conflict_do_nothing(index_elements=["corp_id", "idempotency_key"]).returning(OutboxItem.id))
    return len(session.execute(stmt).all())  # psycopg reports no rowcount for INSERT … SELECT … ON CONFLICT
