"""Opportunities (商机): scoped through their customer, moved through the corp's stage list.

Reaching a won or lost stage closes the opportunity (`closed_at`); a lost one needs a reason. Leaving a
closed stage reopens it. Stage moves are audited twice: the generic "update" and a "stage_change" entry
that reports can read without parsing diffs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so

from app.errors import Forbidden, NotFound, ValidationError
from app.schemas import OpportunityCreate, OpportunityPatch
from app.services import approvals, audit, custom_fields, pagination, rules
from app.services.actor import Actor
from app.services.customers import check_assignable, user_refs
from app.services.scope import customer_clause, load_customer
from app.services.timeutil import iso
from models.crm import Customer, Opportunity, OpportunityStage
from models.types import utcnow

CENT = Decimal("0.01")
AUDITED_FIELDS = ("name", "amount", "stage", "expected_close_date", "owner_id", "lost_reason", "closed_at", "custom")


@dataclass
class OpportunityQuery:
    stage_keys: list[str] = field(default_factory=list)
    owner_ids: list[int] = field(default_factory=list)
    customer_id: int | None = None
    cursor: str | None = None
    limit: int = 20


def _money(value: Decimal | int | float | None) -> Decimal:
    return Decimal(str(value or 0)).quantize(CENT)


def _snapshot(opp: Opportunity, stage: OpportunityStage) -> dict[str, Any]:
    out = {f: getattr(opp, f) for f in AUDITED_FIELDS if f not in ("amount", "stage")}
    out.update(amount=_money(opp.amount), stage=stage.key)
    return out


def stage_dict(s: OpportunityStage) -> dict[str, Any]:
    return {"id": s.id, "key": s.key, "name": s.name, "probability": s.probability, "sort_order": s.sort_order,
            "is_won": s.is_won, "is_lost": s.is_lost, "active": s.active}


def _dicts(session: so.Session, rows: list[tuple[Opportunity, OpportunityStage, Customer]]) -> list[dict[str, Any]]:
    users = user_refs(session, {o.owner_id for o, _, _ in rows})
    return [{
        "id": o.id, "name": o.name, "amount": str(_money(o.amount)),
        "customer": {"id": c.id, "name": c.name}, "stage": stage_dict(s),
        "expected_close_date": o.expected_close_date.isoformat() if o.expected_close_date else None,
        "owner": users.get(o.owner_id), "lost_reason": o.lost_reason, "closed_at": iso(o.closed_at),
        "custom": o.custom, "created_at": iso(o.created_at), "updated_at": iso(o.updated_at),
    } for o, s, c in rows]


def list_stages(session: so.Session, actor: Actor) -> dict[str, Any]:
    stages = session.execute(
        sa.select(OpportunityStage).where(OpportunityStage.corp_id == actor.corp_id, OpportunityStage.active.is_(True))
        .order_by(OpportunityStage.sort_order, OpportunityStage.id)).scalars().all()
    return {"items": [stage_dict(s) for s in stages]}


def _stage_by_key(session: so.Session, actor: Actor, key: str) -> OpportunityStage:
    stage = session.execute(sa.select(OpportunityStage).where(
        OpportunityStage.corp_id == actor.corp_id, OpportunityStage.key == key,
        OpportunityStage.active.is_(True))).scalar_one_or_none()
    if stage is None:
        raise ValidationError("阶段不存在 / unknown stage", fields={"stage_key": f"unknown stage: {key}"})
    return stage


def _first_open_stage(session: so.Session, actor: Actor) -> OpportunityStage:
    stage = session.execute(
        sa.select(OpportunityStage).where(OpportunityStage.corp_id == actor.corp_id,
                                          OpportunityStage.active.is_(True), OpportunityStage.is_won.is_(False),
                                          OpportunityStage.is_lost.is_(False))
        .order_by(OpportunityStage.sort_order, OpportunityStage.id).limit(1)).scalar_one_or_none()
    if stage is None:
        raise ValidationError("未配置商机阶段 / no open stage configured", fields={"stage_key": "required"})
    return stage


def load_opportunity(session: so.Session, actor: Actor, opportunity_id: int, *, for_write: bool = False,
                     lock: bool = False) -> tuple[Opportunity, OpportunityStage, Customer]:
    stmt = (sa.select(Opportunity, OpportunityStage, Customer)
            .join(OpportunityStage, OpportunityStage.id == Opportunity.stage_id)
            .join(Customer, Customer.id == Opportunity.customer_id)
            .where(Opportunity.id == opportunity_id, Opportunity.corp_id == actor.corp_id,
                   Opportunity.deleted_at.is_(None), customer_clause(session, actor, for_write=for_write)))
    if lock:
        stmt = stmt.with_for_update(of=Opportunity)
    row = session.execute(stmt).first()
    if row is None:
        raise NotFound("商机不存在或无权访问 / opportunity not found", fields={"opportunity_id": "not found"})
    return row[0], row[1], row[2]


def detail(session: so.Session, actor: Actor, opportunity_id: int) -> dict[str, Any]:
    return _dicts(session, [load_opportunity(session, actor, opportunity_id)])[0]


def _check_owner(session: so.Session, actor: Actor, owner_id: int) -> None:
    check_assignable(session, actor, owner_id, "owner_id",
                     "不能把商机分配给该用户 / you may not assign opportunities to this user")


def _clean_reason(value: str | None) -> str | None:
    return (value or "").strip() or None


def _reason_for(stage: OpportunityStage, reason: str | None, *, given: bool) -> str | None:
    """The lost reason to store once at `stage`: required for a lost stage, refused (or dropped) otherwise."""
    if stage.is_lost:
        if not reason:
            raise ValidationError("输单需要填写原因 / a lost opportunity needs a reason",
                                  fields={"lost_reason": "required"})
        return reason
    if given and reason:
        raise ValidationError("只有输单阶段可填原因 / lost_reason only applies to a lost stage",
                              fields={"lost_reason": "only for a lost stage"})
    return None


def create_opportunity(session: so.Session, actor: Actor, data: OpportunityCreate) -> Opportunity:
    customer = load_customer(session, actor, data.customer_id, for_write=True)
    stage = _stage_by_key(session, actor, data.stage_key) if data.stage_key else _first_open_stage(session, actor)
    owner_id = data.owner_id if data.owner_id is not None else actor.user_id
    if owner_id is not None:
        _check_owner(session, actor, owner_id)
    custom = custom_fields.validate(session, actor.corp_id, "opportunity", data.custom)
    lost_reason = _reason_for(stage, _clean_reason(data.lost_reason), given=True)
    opp = Opportunity(corp_id=actor.corp_id, customer_id=customer.id, name=data.name, amount=_money(data.amount),
                      stage_id=stage.id, expected_close_date=data.expected_close_date, owner_id=owner_id,
                      lost_reason=lost_reason, closed_at=utcnow() if stage.is_won or stage.is_lost else None,
                      custom=custom, created_by_id=actor.user_id)
    session.add(opp)
    session.flush()
    audit.record(session, actor, "create", "opportunity", opp.id,
                 {"customer_id": {"before": None, "after": customer.id}, **audit.diff({}, _snapshot(opp, stage))})
    session.flush()
    rules.fire(session, actor, "amount_crossed", opp, before=0, after=opp.amount)
    return opp


def update_opportunity(session: so.Session, actor: Actor, opportunity_id: int, patch: OpportunityPatch) -> Opportunity:
    opp, stage, _ = load_opportunity(session, actor, opportunity_id, for_write=True, lock=True)
    given = patch.model_fields_set
    approvals.assert_not_locked(session, "opportunity", opp.id, {"stage" if k == "stage_key" else k for k in given})
    for required in ("name", "amount", "stage_key", "owner_id"):
        if required in given and getattr(patch, required) is None:
            raise ValidationError(f"{required} 不能为空 / {required} cannot be null", fields={required: "required"})
    before = _snapshot(opp, stage)

    new_stage = None
    if "stage_key" in given and patch.stage_key != stage.key:
        new_stage = _stage_by_key(session, actor, patch.stage_key)
    final = new_stage or stage
    if "lost_reason" in given:
        reason = _reason_for(final, _clean_reason(patch.lost_reason), given=True)
    else:
        reason = _reason_for(final, opp.lost_reason, given=False)
    if "owner_id" in given and patch.owner_id != opp.owner_id:
        _check_owner(session, actor, patch.owner_id)
        opp.owner_id = patch.owner_id
    if "custom" in given:
        opp.custom = custom_fields.validate(session, actor.corp_id, "opportunity", patch.custom or {},
                                            current=opp.custom)
    if "name" in given:
        opp.name = patch.name
    if "amount" in given:
        opp.amount = _money(patch.amount)
    if "expected_close_date" in given:
        opp.expected_close_date = patch.expected_close_date
    if new_stage is not None:
        opp.stage_id = new_stage.id
        opp.closed_at = utcnow() if new_stage.is_won or new_stage.is_lost else None
    opp.lost_reason = reason

    changes = audit.diff(before, _snapshot(opp, final))
    if changes:
        opp.updated_at = utcnow()
        audit.record(session, actor, "update", "opportunity", opp.id, changes)
        if new_stage is not None:
            audit.record(session, actor, "stage_change", "opportunity", opp.id,
                         {"stage": changes["stage"], **({"lost_reason": changes["lost_reason"]}
                                                        if "lost_reason" in changes else {})})
        if "owner_id" in changes:
            audit.record(session, actor, "assign", "opportunity", opp.id, {"owner_id": changes["owner_id"]})
    session.flush()
    if new_stage is not None:
        rules.fire(session, actor, "stage_changed", opp, from_stage=stage.key, to_stage=new_stage.key)
    if "amount" in changes:
        rules.fire(session, actor, "amount_crossed", opp, before=changes["amount"]["before"],
                   after=changes["amount"]["after"])
    return opp


def delete_opportunity(session: so.Session, actor: Actor, opportunity_id: int) -> None:
    opp, _, customer = load_opportunity(session, actor, opportunity_id, for_write=True, lock=True)
    if not (actor.is_admin or actor.is_manager or actor.user_id in (opp.owner_id, customer.owner_id)):
        raise Forbidden("只有负责人、经理或管理员可以删除 / only the owner, a manager or an admin may delete")
    opp.deleted_at = utcnow()
    audit.record(session, actor, "delete", "opportunity", opp.id,
                 {"deleted_at": {"before": None, "after": iso(opp.deleted_at)}})
    session.flush()


def list_opportunities(session: so.Session, actor: Actor, query: OpportunityQuery) -> dict[str, Any]:
    """Most recently changed first. Without a customer filter, public-pool customers' opportunities are
    left out (as the customer list leaves the pool out)."""
    # Without a customer filter the pool is left out below, so the scope needs no pool branch either.
    conditions: list[sa.ColumnElement[bool]] = [
        Opportunity.corp_id == actor.corp_id, Opportunity.deleted_at.is_(None),
        customer_clause(session, actor, include_pool=query.customer_id is not None)]
    if query.customer_id is not None:
        load_customer(session, actor, query.customer_id)
        conditions.append(Opportunity.customer_id == query.customer_id)
    else:
        conditions.append(Customer.in_pool.is_(False))
    if query.stage_keys:
        found = dict(session.execute(sa.select(OpportunityStage.key, OpportunityStage.id).where(
            OpportunityStage.corp_id == actor.corp_id, OpportunityStage.key.in_(query.stage_keys))).all())
        unknown = [k for k in query.stage_keys if k not in found]
        if unknown:
            raise ValidationError("阶段不存在 / unknown stage", fields={"stage_key": f"unknown stage(s): {unknown}"})
        conditions.append(Opportunity.stage_id.in_(list(found.values())))
    if query.owner_ids:
        conditions.append(Opportunity.owner_id.in_(query.owner_ids))
    key = pagination.SortKey(Opportunity.updated_at, True, "datetime")
    if query.cursor:
        value, row_id = pagination.decode_cursor(query.cursor, "datetime")
        conditions.append(pagination.after(key, Opportunity.id, value, row_id))
    rows = session.execute(
        sa.select(Opportunity, OpportunityStage, Customer)
        .join(OpportunityStage, OpportunityStage.id == Opportunity.stage_id)
        .join(Customer, Customer.id == Opportunity.customer_id)
        .where(*conditions).order_by(*pagination.order_by(key, Opportunity.id)).limit(query.limit + 1)).all()
    has_more = len(rows) > query.limit
    rows = [tuple(r) for r in rows[: query.limit]]
    next_cursor = None
    if has_more and rows:
        next_cursor = pagination.encode_cursor(rows[-1][0].updated_at, rows[-1][0].id)
    return {"items": _dicts(session, rows), "next_cursor": next_cursor}
