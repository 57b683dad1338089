"""Custom field definitions (自定义字段): admins define them per entity, everyone reads them to render forms.

Deleting deactivates: stored values stay on the records, and the key cannot be reused for a different
meaning (re-creating the key is a 409; reactivate it with PATCH {"active": true} instead).
"""

from __future__ import annotations

import math
from typing import Any

import sqlalchemy as sa
import sqlalchemy.exc
import sqlalchemy.orm as so

from app.errors import Conflict, Forbidden, NotFound, ValidationError
from app.schemas import FieldDefinitionIn, FieldDefinitionPatch
from app.services import audit
from app.services.actor import Actor
from models.crm import FieldDefinition, FieldType
from models.types import utcnow

AUDITED_FIELDS = ("entity", "key", "label", "field_type", "required", "options", "min_value", "max_value",
                  "max_length", "sort_order", "active")
CHOICE_TYPES = {FieldType.SELECT, FieldType.MULTISELECT}


def _snapshot(d: FieldDefinition) -> dict[str, Any]:
    return {f: getattr(d, f) for f in AUDITED_FIELDS}


def field_dict(d: FieldDefinition) -> dict[str, Any]:
    return {"id": d.id, "entity": d.entity, "key": d.key, "label": d.label, "field_type": d.field_type,
            "required": d.required, "options": list(d.options or []), "min_value": d.min_value,
            "max_value": d.max_value, "max_length": d.max_length, "sort_order": d.sort_order, "active": d.active}


def _admin(actor: Actor) -> None:
    if not actor.is_admin:
        raise Forbidden("仅管理员可用 / admins only")


def load_definition(session: so.Session, actor: Actor, field_id: int) -> FieldDefinition:
    d = session.execute(sa.select(FieldDefinition).where(
        FieldDefinition.id == field_id, FieldDefinition.corp_id == actor.corp_id)).scalar_one_or_none()
    if d is None:
        raise NotFound("字段不存在 / field not found", fields={"field_id": "not found"})
    return d


def list_definitions(session: so.Session, actor: Actor, *, entity: str | None,
                     include_inactive: bool = False) -> dict[str, Any]:
    if include_inactive:
        _admin(actor)
    conditions = [FieldDefinition.corp_id == actor.corp_id]
    if entity is not None:
        conditions.append(FieldDefinition.entity == entity)
    if not include_inactive:
        conditions.append(FieldDefinition.active.is_(True))
    rows = session.execute(sa.select(FieldDefinition).where(*conditions).order_by(
        FieldDefinition.entity, FieldDefinition.sort_order, FieldDefinition.id)).scalars().all()
    return {"items": [field_dict(d) for d in rows]}


def _check_shape(field_type: str, options: list[str], min_value: float | None, max_value: float | None,
                 max_length: int | None) -> None:
    """The definition as a whole makes sense for its type; names the first offending field."""
    errors: dict[str, str] = {}
    if field_type in CHOICE_TYPES:
        if not options:
            errors["options"] = "选项不能为空 / select fields need at least one option"
        elif len(set(options)) != len(options):
            errors["options"] = "选项重复 / duplicate options"
    elif options:
        errors["options"] = "只有单选/多选字段有选项 / only select fields have options"
    for name, value in (("min_value", min_value), ("max_value", max_value)):
        if value is None:
            continue
        if field_type != FieldType.NUMBER:
            errors[name] = "只有数字字段有范围 / only number fields have a range"
        elif not math.isfinite(value):
            errors[name] = "应为有限数字 / must be a finite number"
    if "min_value" not in errors and "max_value" not in errors and min_value is not None and max_value is not None \
            and min_value > max_value:
        errors["max_value"] = "最大值不能小于最小值 / max_value must be ≥ min_value"
    if max_length is not None and field_type != FieldType.TEXT:
        errors["max_length"] = "只有文本字段有长度限制 / only text fields have a max length"
    if errors:
        raise ValidationError("字段定义有误 / invalid field definition", fields=errors)


def _flush_unique(session: so.Session) -> None:
    try:
        session.flush()
    except sqlalchemy.exc.IntegrityError:
        raise Conflict("字段标识已存在 / a field with this key already exists", fields={"key": "duplicate"}) from None


def create_definition(session: so.Session, actor: Actor, data: FieldDefinitionIn) -> FieldDefinition:
    _admin(actor)
    _check_shape(data.field_type, data.options, data.min_value, data.max_value, data.max_length)
    exists = session.execute(sa.select(FieldDefinition.id, FieldDefinition.active).where(
        FieldDefinition.corp_id == actor.corp_id, FieldDefinition.entity == data.entity,
        FieldDefinition.key == data.key)).first()
    if exists is not None:
        hint = "" if exists.active else " (停用中，可重新启用 / inactive: reactivate it instead)"
        raise Conflict(f"字段标识已存在 / a field with this key already exists{hint}", fields={"key": "duplicate"},
                       extra={"existing_id": exists.id})
    d = FieldDefinition(corp_id=actor.corp_id, entity=data.entity, key=data.key, label=data.label,
                        field_type=data.field_type, required=data.required, options=list(data.options),
                        min_value=data.min_value, max_value=data.max_value, max_length=data.max_length,
                        sort_order=data.sort_order, active=True)
    session.add(d)
    _flush_unique(session)
    audit.record(session, actor, "create", "field_definition", d.id, audit.diff({}, _snapshot(d)))
    session.flush()
    return d


def update_definition(session: so.Session, actor: Actor, field_id: int, patch: FieldDefinitionPatch) -> FieldDefinition:
    d = load_definition(session, actor, field_id)
    _admin(actor)
    given = patch.model_fields_set
    for required in ("label", "required", "options", "sort_order", "active"):
        if required in given and getattr(patch, required) is None:
            raise ValidationError(f"{required} 不能为空 / {required} cannot be null", fields={required: "required"})
    merged = {name: getattr(patch, name) if name in given else getattr(d, name)
              for name in ("options", "min_value", "max_value", "max_length")}
    _check_shape(d.field_type, list(merged["options"] or []), merged["min_value"], merged["max_value"],
                 merged["max_length"])
    before = _snapshot(d)
    for name in ("label", "required", "min_value", "max_value", "max_length", "sort_order", "active"):
        if name in given:
            setattr(d, name, getattr(patch, name))
    if "options" in given:
        d.options = list(patch.options)
    changes = audit.diff(before, _snapshot(d))
    if changes:
        d.updated_at = utcnow()
        audit.record(session, actor, "update", "field_definition", d.id, changes)
    session.flush()
    return d


def deactivate_definition(session: so.Session, actor: Actor, field_id: int) -> None:
    d = load_definition(session, actor, field_id)
    _admin(actor)
    if not d.active:
        return
    d.active = False
    d.updated_at = utcnow()
    audit.record(session, actor, "delete", "field_definition", d.id, {"active": {"before": True, "after": False}})
    session.flush()
