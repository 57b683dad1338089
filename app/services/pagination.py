"""Keyset (cursor) pagination over (sort value, id), stable under inserts, nulls last."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from app.errors import ValidationError

MAX_LIMIT = 100


@dataclass(frozen=True)
class SortKey:
    column: Any
    descending: bool
    kind: str  # "datetime" | "str"


def encode_cursor(value: Any, row_id: int) -> str:
    if isinstance(value, datetime):
        value = value.isoformat()
    raw = json.dumps([value, row_id], ensure_ascii=False, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, kind: str) -> tuple[Any, int]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value, row_id = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if not isinstance(row_id, int) or isinstance(row_id, bool):
            raise TypeError
        if value is not None:
            if kind == "datetime":
                value = datetime.fromisoformat(value)
                if value.tzinfo is None:
                    raise TypeError
            elif not isinstance(value, str):
                raise TypeError
        return value, row_id
    except (ValueError, TypeError, json.JSONDecodeError, UnicodeDecodeError):
        raise ValidationError("无效的分页游标 / invalid cursor", fields={"cursor": "invalid"}) from None


def after(key: SortKey, id_column: Any, value: Any, row_id: int) -> sa.ColumnElement[bool]:
    """Rows strictly after (value, row_id) in ORDER BY column [DESC] NULLS LAST, id [DESC]."""
    col = key.column
    id_next = id_column < row_id if key.descending else id_column > row_id
    if value is None:
        return sa.and_(col.is_(None), id_next)
    beyond = col < value if key.descending else col > value
    return sa.or_(beyond, sa.and_(col == value, id_next), col.is_(None))


def order_by(key: SortKey, id_column: Any) -> list[Any]:
    col = key.column
    if key.descending:
        return [col.desc().nulls_last(), id_column.desc()]
    return [col.asc().nulls_last(), id_column.asc()]


def parse_limit(raw: str | None, default: int = 20) -> int:
    if raw is None or raw == "":
        return default
    try:
        limit = int(raw)
    except ValueError:
        raise ValidationError("limit 应为整数 / limit must be an integer", fields={"limit": "invalid"}) from None
    if not 1 <= limit <= MAX_LIMIT:
        raise ValidationError(f"limit 应在 1–{MAX_LIMIT} / limit must be 1–{MAX_LIMIT}",
                              fields={"limit": "out of range"})
    return limit
