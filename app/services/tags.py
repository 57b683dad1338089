"""Tags (标签) in groups, e.g. 行业/制造业. Admins and managers create them; only admins rename or delete."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
import sqlalchemy.exc
import sqlalchemy.orm as so

from app.errors import Conflict, Forbidden, NotFound, ValidationError
from app.schemas import TagIn, TagPatch
from app.services import audit
from app.services.actor import Actor
from models.crm import CustomerTag, Tag
from models.types import utcnow

AUDITED_FIELDS = ("group_name", "name", "color")


def _snapshot(tag: Tag) -> dict[str, Any]:
    return {f: getattr(tag, f) for f in AUDITED_FIELDS}


def tag_dict(t: Tag) -> dict[str, Any]:
    return {"id": t.id, "group": t.group_name, "name": t.name, "color": t.color}


def load_tag(session: so.Session, actor: Actor, tag_id: int) -> Tag:
    tag = session.execute(sa.select(Tag).where(Tag.id == tag_id, Tag.corp_id == actor.corp_id)).scalar_one_or_none()
    if tag is None:
        raise NotFound("标签不存在 / tag not found", fields={"tag_id": "not found"})
    return tag


def list_tags(session: so.Session, actor: Actor) -> dict[str, Any]:
    """Every tag of the corp grouped by group name (tags are corp-wide vocabulary, not scoped data)."""
    tags = session.execute(sa.select(Tag).where(Tag.corp_id == actor.corp_id)
                           .order_by(Tag.group_name, Tag.name, Tag.id)).scalars().all()
    groups: dict[str, list[dict[str, Any]]] = {}
    for t in tags:
        groups.setdefault(t.group_name, []).append(tag_dict(t))
    return {"groups": [{"name": name, "tags": items} for name, items in groups.items()]}


def _ensure_unique(session: so.Session, actor: Actor, group_name: str, name: str, exclude_id: int | None) -> None:
    stmt = sa.select(Tag.id).where(Tag.corp_id == actor.corp_id, Tag.group_name == group_name, Tag.name == name)
    if exclude_id is not None:
        stmt = stmt.where(Tag.id != exclude_id)
    if session.execute(stmt.limit(1)).first() is not None:
        raise Conflict("该分组下已有同名标签 / a tag with this name already exists in the group",
                       fields={"name": "duplicate"})


def _flush_unique(session: so.Session) -> None:
    try:
        session.flush()
    except sqlalchemy.exc.IntegrityError:
        # A concurrent insert won the race; the request's transaction is rolled back by the 409.
        raise Conflict("该分组下已有同名标签 / a tag with this name already exists in the group",
                       fields={"name": "duplicate"}) from None


def create_tag(session: so.Session, actor: Actor, data: TagIn) -> Tag:
    if not (actor.is_admin or actor.is_manager):
        raise Forbidden("只有经理或管理员可以新建标签 / only managers and admins may create tags")
    _ensure_unique(session, actor, data.group_name, data.name, None)
    tag = Tag(corp_id=actor.corp_id, group_name=data.group_name, name=data.name, color=data.color)
    session.add(tag)
    _flush_unique(session)
    audit.record(session, actor, "create", "tag", tag.id, audit.diff({}, _snapshot(tag)))
    session.flush()
    return tag


def update_tag(session: so.Session, actor: Actor, tag_id: int, patch: TagPatch) -> Tag:
    tag = load_tag(session, actor, tag_id)
    if not actor.is_admin:
        raise Forbidden("仅管理员可修改标签 / admins only")
    given = patch.model_fields_set
    for required in ("group_name", "name"):
        if required in given and getattr(patch, required) is None:
            raise ValidationError(f"{required} 不能为空 / {required} cannot be null", fields={required: "required"})
    before = _snapshot(tag)
    group_name = patch.group_name if "group_name" in given else tag.group_name
    name = patch.name if "name" in given else tag.name
    if (group_name, name) != (tag.group_name, tag.name):
        _ensure_unique(session, actor, group_name, name, tag.id)
    tag.group_name, tag.name = group_name, name
    if "color" in given:
        tag.color = patch.color
    changes = audit.diff(before, _snapshot(tag))
    if changes:
        tag.updated_at = utcnow()
        _flush_unique(session)
        audit.record(session, actor, "update", "tag", tag.id, changes)
    session.flush()
    return tag


def delete_tag(session: so.Session, actor: Actor, tag_id: int) -> None:
    """Removed for good, along with its links to customers (the audit entry keeps the count)."""
    tag = load_tag(session, actor, tag_id)
    if not actor.is_admin:
        raise Forbidden("仅管理员可删除标签 / admins only")
    snapshot = _snapshot(tag)
    unlinked = session.execute(
        sa.delete(CustomerTag).where(CustomerTag.tag_id == tag.id, CustomerTag.corp_id == actor.corp_id)
    ).rowcount
    session.delete(tag)
    session.flush()
    audit.record(session, actor, "delete", "tag", tag_id,
                 {**audit.diff(snapshot, {}), "customer_count": {"before": unlinked, "after": 0}})
    session.flush()
