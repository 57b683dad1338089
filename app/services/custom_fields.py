"""Validation of custom field values against the corp's definitions (type, required, options, ranges)."""

from __future__ import annotations

import math
from datetime import date
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so

from app.errors import ValidationError
from models.crm import FieldDefinition, FieldType

MAX_TEXT = 2000


def definitions(session: so.Session, corp_id: int, entity: str) -> dict[str, FieldDefinition]:
    rows = session.execute(
        sa.select(FieldDefinition)
        .where(FieldDefinition.corp_id == corp_id, FieldDefinition.entity == entity,
               FieldDefinition.active.is_(True))
        .order_by(FieldDefinition.sort_order, FieldDefinition.id)
    ).scalars()
    return {d.key: d for d in rows}


def _check(defn: FieldDefinition, value: Any) -> tuple[Any, str | None]:
    """Return (clean value, error message or None)."""
    kind = defn.field_type
    if kind == FieldType.TEXT:
        if not isinstance(value, str):
            return None, "应为文本 / must be a string"
        limit = defn.max_length or MAX_TEXT
        if len(value) > limit:
            return None, f"最多 {limit} 个字符 / at most {limit} characters"
        return value, None
    if kind == FieldType.NUMBER:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            return None, "应为数字 / must be a number"
        if defn.min_value is not None and value < defn.min_value:
            return None, f"不能小于 {defn.min_value:g} / must be ≥ {defn.min_value:g}"
        if defn.max_value is not None and value > defn.max_value:
            return None, f"不能大于 {defn.max_value:g} / must be ≤ {defn.max_value:g}"
        return value, None
    if kind == FieldType.DATE:
        if not isinstance(value, str):
            return None, "应为日期 YYYY-MM-DD / must be a date"
        try:
            return date.fromisoformat(value).isoformat(), None
        except ValueError:
            return None, "应为日期 YYYY-MM-DD / must be a date"
    if kind == FieldType.SELECT:
        if value not in defn.options:
            return None, "不在可选项中 / not one of the options"
        return value, None
    if kind == FieldType.MULTISELECT:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            return None, "应为选项列表 / must be a list of options"
        bad = [v for v in value if v not in defn.options]
        if bad:
            return None, f"不在可选项中 / not options: {', '.join(bad)}"
        return list(dict.fromkeys(value)), None
    return None, "未知字段类型 / unknown field type"


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == []


def validate(session: so.Session, corp_id: int, entity: str, values: dict[str, Any] | None,
             current: dict[str, Any] | None = None) -> dict[str, Any]:
    """Merge `values` over `current` (None removes a value) and validate the result as a whole."""
    defs = definitions(session, corp_id, entity)
    merged = dict(current or {})
    errors: dict[str, str] = {}
    for key, value in (values or {}).items():
        defn = defs.get(key)
        if defn is None:
            errors[f"custom.{key}"] = "未定义的自定义字段 / unknown custom field"
            continue
        if _empty(value):
            merged.pop(key, None)
            continue
        clean, problem = _check(defn, value)
        if problem:
            errors[f"custom.{key}"] = problem
        else:
            merged[key] = clean
    for key, defn in defs.items():
        if defn.required and _empty(merged.get(key)) and f"custom.{key}" not in errors:
            errors[f"custom.{key}"] = "必填 / required"
    if errors:
        raise ValidationError("自定义字段有误 / invalid custom fields", fields=errors)
    # Values of fields since removed from the definitions are kept: history is not silently lost.
    return merged
