"""Append-only audit entries written in the same transaction as the change they describe."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy.orm as so

from app.services.actor import Actor
from models.audit import AuditLog


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, list | tuple | set):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Only the fields whose value changed, as {"field": {"before": …, "after": …}}."""
    changes = {}
    for key in sorted(set(before) | set(after)):
        old, new = _plain(before.get(key)), _plain(after.get(key))
        if old != new:
            changes[key] = {"before": old, "after": new}
    return changes


def record(session: so.Session, actor: Actor, action: str, entity_type: str, entity_id: int | None,
           changes: dict[str, Any] | None = None) -> AuditLog:
    entry = AuditLog(
        corp_id=actor.corp_id,
        actor_id=actor.user_id,
        action=action,
        entity_type=entity_type,
        entity_id=entity_id,
        changes=_plain(changes or {}),
        request_id=actor.request_id,
        ip=actor.ip,
    )
    session.add(entry)
    return entry
