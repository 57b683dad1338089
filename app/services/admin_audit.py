"""The audit log as admins read it: filtered pages, and a streaming CSV export for Excel."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
import sqlalchemy.orm as so

from models.audit import AuditLog
from models.org import User

CSV_HEADER = ("时间 / time", "操作人 / actor", "操作 / action", "对象 / entity", "对象ID / entity id",
              "变更 / changes", "请求 / request id", "IP")
# Excel runs a cell that starts with one of these as a formula: such text is prefixed with a quote.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class AuditFilter:
    actor_id: int | None = None
    action: str | None = None
    entity_type: str | None = None
    entity_id: int | None = None
    since: datetime | None = None
    until: datetime | None = None


def _select(corp_id: int, flt: AuditFilter) -> sa.Select:
    stmt = (sa.select(AuditLog, User.name).outerjoin(User, User.id == AuditLog.actor_id)
            .where(AuditLog.corp_id == corp_id))
    if flt.actor_id is not None:
        stmt = stmt.where(AuditLog.actor_id == flt.actor_id)
    if flt.action:
        stmt = stmt.where(AuditLog.action == flt.action)
    if flt.entity_type:
        stmt = stmt.where(AuditLog.entity_type == flt.entity_type)
    if flt.entity_id is not None:
        stmt = stmt.where(AuditLog.entity_id == flt.entity_id)
    if flt.since:
        stmt = stmt.where(AuditLog.created_at >= flt.since)
    if flt.until:
        stmt = stmt.where(AuditLog.created_at < flt.until)
    return stmt.order_by(AuditLog.id.desc())


def _row(entry: AuditLog, actor_name: str | None, zone: ZoneInfo) -> dict[str, Any]:
    return {"id": entry.id, "created_at": entry.created_at.astimezone(zone).isoformat(),
            "actor": {"id": entry.actor_id, "name": actor_name} if entry.actor_id else None,
            "action": entry.action, "entity_type": entry.entity_type, "entity_id": entry.entity_id,
            "changes": entry.changes, "request_id": entry.request_id, "ip": entry.ip}


def list_entries(session: so.Session, corp_id: int, zone: str, flt: AuditFilter, *, cursor: int | None,
                 limit: int) -> dict[str, Any]:
    stmt = _select(corp_id, flt)
    if cursor:
        stmt = stmt.where(AuditLog.id < cursor)
    rows = session.execute(stmt.limit(limit + 1)).all()
    tz = ZoneInfo(zone)
    items = [_row(entry, name, tz) for entry, name in rows[:limit]]
    return {"items": items, "next_cursor": items[-1]["id"] if len(rows) > limit else None}


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return f"'{text}" if text.startswith(_FORMULA_START) else text


def csv_lines(database: Any, corp_id: int, zone: str, flt: AuditFilter, batch: int = 1000) -> Iterator[str]:
    """UTF-8 with a BOM (so Excel reads the Chinese), in chunks read with their own session: the export
    streams after the request's own transaction has been committed."""
    tz = ZoneInfo(zone)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_HEADER)
    yield "\ufeff" + buffer.getvalue()
    cursor = None
    with database.session() as session:
        while True:
            stmt = _select(corp_id, flt)
            if cursor:
                stmt = stmt.where(AuditLog.id < cursor)
            rows = session.execute(stmt.limit(batch)).all()
            if not rows:
                return
            buffer.seek(0)
            buffer.truncate()
            for entry, name in rows:
                writer.writerow([_cell(v) for v in (
                    entry.created_at.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S"), name or "", entry.action,
                    entry.entity_type, entry.entity_id,
                    json.dumps(entry.changes, ensure_ascii=False, sort_keys=True) if entry.changes else "",
                    entry.request_id, entry.ip)])
            yield buffer.getvalue()
            cursor = rows[-1][0].id
            session.expunge_all()
