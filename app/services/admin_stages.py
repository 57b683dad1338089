"""Opportunity stages as admins edit them: rename, reorder, win probability, add, retire.

The won and lost stages close opportunities, so they can be renamed but never retired; a stage that
still holds open opportunities cannot be retired either (they would vanish from the pipeline)."""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so

from app.errors import Conflict, NotFound, ValidationError
from app.services import audit
from app.services.actor import Actor
from app.services.opportunities import stage_dict
from models.crm import Opportunity, OpportunityStage

_KEY = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
EDITABLE = ("name", "probability", "sort_order", "active")


def list_all(session: so.Session, actor: Actor) -> dict[str, Any]:
    rows = session.execute(sa.select(OpportunityStage).where(OpportunityStage.corp_id == actor.corp_id)
                           .order_by(OpportunityStage.sort_order, OpportunityStage.id)).scalars().all()
    return {"items": [stage_dict(s) for s in rows]}


def add_stage(session: so.Session, actor: Actor, *, key: str, name: str, probability: int,
              sort_order: int | None) -> OpportunityStage:
    if not _KEY.match(key):
        raise ValidationError("key 只能是小写字母、数字和下划线 / key: lowercase letters, digits, _",
                              fields={"key": "invalid"})
    exists = session.execute(sa.select(OpportunityStage.id).where(
        OpportunityStage.corp_id == actor.corp_id, OpportunityStage.key == key)).scalar_one_or_none()
    if exists:
        raise Conflict("该阶段 key 已存在 / stage key exists", fields={"key": "exists"})
    if sort_order is None:
        sort_order = (session.execute(sa.select(sa.func.max(OpportunityStage.sort_order)).where(
            OpportunityStage.corp_id == actor.corp_id, OpportunityStage.is_won.is_(False),
            OpportunityStage.is_lost.is_(False))).scalar() or 0) + 1
    stage = OpportunityStage(corp_id=actor.corp_id, key=key, name=name, probability=probability,
                             sort_order=sort_order, active=True)
    session.add(stage)
    session.flush()
    audit.record(session, actor, "create", "stage", stage.id, {"key": {"before": None, "after": key},
                                                              "name": {"before": None, "after": name}})
    return stage


def update_stage(session: so.Session, actor: Actor, stage_id: int, changes: dict[str, Any]) -> OpportunityStage:
    stage = session.execute(sa.select(OpportunityStage).where(
        OpportunityStage.id == stage_id, OpportunityStage.corp_id == actor.corp_id)).scalar_one_or_none()
    if stage is None:
        raise NotFound("阶段不存在 / stage not found", fields={"stage_id": "not found"})
    if changes.get("active") is False and stage.active:
        if stage.is_won or stage.is_lost:
            raise ValidationError("赢单/输单阶段不能停用 / the won and lost stages cannot be retired",
                                  fields={"active": "closing stage"})
        open_count = session.execute(sa.select(sa.func.count()).select_from(Opportunity).where(
            Opportunity.corp_id == actor.corp_id, Opportunity.stage_id == stage.id,
            Opportunity.deleted_at.is_(None))).scalar()
        if open_count:
            raise Conflict(f"还有 {open_count} 个商机在此阶段 / {open_count} opportunities are still in this stage",
                           fields={"active": "in use"})
    before = {k: getattr(stage, k) for k in EDITABLE}
    for key, value in changes.items():
        if key in EDITABLE and value is not None:
            setattr(stage, key, value)
    session.flush()
    changed = audit.diff(before, {k: getattr(stage, k) for k in EDITABLE})
    if changed:
        audit.record(session, actor, "update", "stage", stage.id, changed)
    return stage
