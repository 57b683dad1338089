"""Decrypted address-book pushes → neutral `OrgEvent`s (fact sheet §6, §7).

The app's callback (`app/callbacks/dingtalk.py`) and Stream adapter (`integrations/dingtalk/stream.py`)
both go `parse_event(payload)` → `app.services.event_inbox.record_event` (the inbox row is the once-only
claim) → applier. `claim_event` below is the older, table-only claim, kept for callers that only need
de-duplication.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so

from integrations.base import OrgEvent
from integrations.dingtalk.sqlutil import upsert_insert
from models.platform import ProcessedEvent
from models.types import utcnow

_KINDS = {
    "user_add_org": "user_upsert",
    "user_modify_org": "user_upsert",
    "user_active_org": "user_upsert",
    "user_leave_org": "user_leave",
    "org_dept_create": "dept_upsert",
    "org_dept_modify": "dept_upsert",
    "org_dept_remove": "dept_remove",
}


def _ids(payload: dict[str, Any], *names: str) -> tuple[str, ...]:
    # Current docs use `userId`/`deptId`, older HTTP samples `UserId`/`DeptId` (§6): accept both.
    for name in names:
        value = payload.get(name)
        if value is None:
            continue
        if isinstance(value, str | int):
            value = [value]
        return tuple(str(v) for v in value)
    return ()


def event_type(payload: dict[str, Any]) -> str | None:
    return payload.get("EventType") or payload.get("eventType")


def event_id_of(payload: dict[str, Any]) -> str:
    """`eventId` when DingTalk sent one; else a digest of the payload, so a redelivery of the same
    body still de-duplicates."""
    explicit = payload.get("eventId") or payload.get("EventId")
    if explicit:
        return str(explicit)
    canonical = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return "sha1:" + hashlib.sha1(canonical.encode("utf-8")).hexdigest()


def parse_event(payload: dict[str, Any]) -> OrgEvent | None:
    kind = _KINDS.get(event_type(payload) or "")
    if kind is None:
        return None
    return OrgEvent(
        event_id=event_id_of(payload),
        kind=kind,
        user_ids=_ids(payload, "userId", "UserId"),
        dept_ids=_ids(payload, "deptId", "DeptId"),
        raw=payload,
    )


def claim_event(session: so.Session, corp_pk: int, event_id: str, event_type: str | None = None) -> bool:
    """Record the event; True only for the first caller. Atomic (unique key + ON CONFLICT DO NOTHING),
    so two web processes receiving the same redelivery cannot both process it. Commit with the work."""
    t = ProcessedEvent.__table__
    # RETURNING, not rowcount: psycopg reports -1 for INSERT ... ON CONFLICT DO NOTHING.
    inserted = session.execute(
        upsert_insert(session, t)
        .values(corp_id=corp_pk, event_id=event_id, event_type=event_type, received_at=utcnow())
        .on_conflict_do_nothing(index_elements=["corp_id", "event_id"])
        .returning(t.c.id)
    ).first()
    return inserted is not None


def prune_processed_events(session: so.Session, older_than) -> int:
    """Forget claims older than `older_than` (DingTalk retries for minutes, not days)."""
    t = ProcessedEvent.__table__
    return session.execute(sa.delete(t).where(t.c.received_at < older_than)).rowcount
