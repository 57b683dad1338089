"""Keyset (cursor) pagination over (sort value, id), stable under inserts, nulls last."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from app.errors import ValidationError

MAX_LIMIT = 100
MAX_ID = 2**63 - 1  # BIGINT: a larger id makes PostgreSQL raise instead of matching nothing
YEARS = (1900, 2999)  # outside this, UTC conversion may overflow and nothing real is dated there


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


def _invalid() -> ValidationError:
    return ValidationError("无效的分页游标 / invalid cursor", fields={"cursor": "invalid"})


def decode_cursor(cursor: str, kind: str) -> tuple[Any, int]:
    """The (value, id) a cursor stands for, or 422 — also for values the database could not compare
    (ids beyond BIGINT, NUL characters, times outside 1900–2999), which would otherwise be a 500."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value, row_id = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if not isinstance(row_id, int) or isinstance(row_id, bool) or abs(row_id) > MAX_ID:
            raise TypeError
        if value is not None:
            if kind == "datetime":
                value = datetime.fromisoformat(value)
                if value.tzinfo is None or not YEARS[0] <= value.astimezone(UTC).year <= YEARS[1]:
                    raise TypeError
            elif not isinstance(value, str) or "\x00" in value:
                raise TypeError
        return value, row_id
    except (ValueError, TypeError, OverflowError, json.JSONDecodeError, UnicodeDecodeError):
        raise _invalid() from None


def _nullable(column: Any) -> bool:
    expr = getattr(column, "expression", column)
    return bool(getattr(expr, "nullable", True))


def after(key: SortKey, id_column: Any, value: Any, row_id: int) -> sa.ColumnElement[bool]:
    """Rows strictly after (value, row_id) in ORDER BY column [DESC] NULLS LAST, id [DESC]."""
    col = key.column
    id_next = id_column < row_id if key.descending else id_column > row_id
    if value is None:
        return sa.and_(col.is_(None), id_next)
    beyond = col < value if key.descending else col > value
    if not _nullable(col):
        # No IS NULL branch for a NOT NULL column: the OR would keep the planner off the sort index.
        return sa.or_(beyond, sa.and_(col == value, id_next))
    return sa.or_(beyond, sa.and_(col == value, id_next), col.is_(None))


def order_by(key: SortKey, id_column: Any) -> list[Any]:
    """NULLS LAST only where NULLs can occur: on a NOT NULL column it changes no result but stops a
    btree (…, col, id) from serving `col DESC` by a backward scan, which yields NULLS FIRST."""
    col = key.column
    first = col.desc() if key.descending else col.asc()
    if _nullable(col):
        first = first.nulls_last()
    return [first, id_column.desc() if key.descending else id_column.asc()]


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
