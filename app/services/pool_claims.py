"""Claiming from and returning to the public pool (公海), with the corp's caps.

- holding cap: how many (live, non-pool) customers one person may own;
- daily claim cap: claims per person per corp-local day;
- reclaim ban: a previous owner who returned (or lost) a customer may not claim it back for D days.
Caps live in Corp.settings (`pool_hold_cap`, `pool_daily_claims`, `pool_reclaim_ban_days`); 0 turns a cap off.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
import sqlalchemy.orm as so

from app.errors import Conflict, Forbidden, NotFound, ValidationError
from app.services import audit
from app.services.actor import Actor
from app.services.corps import corp_setting
from app.services.scope import led_department_paths, subtree_user_ids
from models.crm import Customer
from models.org import Corp, User
from models.rules import PoolEvent
from models.types import utcnow

CAP_KEYS = ("pool_hold_cap", "pool_daily_claims", "pool_reclaim_ban_days")


def caps(corp: Corp) -> dict[str, int]:
    return {key: int(corp_setting(corp, key)) for key in CAP_KEYS}


def _local_midnight(corp: Corp, now: datetime) -> datetime:
    local = now.astimezone(ZoneInfo(corp.timezone or "Asia/Shanghai"))
    return local.replace(hour=0, minute=0, second=0, microsecond=0)


def _load_pool_customer(session: so.Session, corp_id: int, customer_id: int) -> Customer:
    customer = session.execute(sa.select(Customer).where(
        Customer.id == customer_id, Customer.corp_id == corp_id, Customer.deleted_at.is_(None))
        .with_for_update()).scalar()
    if customer is None:
        raise NotFound("客户不存在 / customer not found", fields={"customer_id": "not found"})
    return customer


def claim(session: so.Session, actor: Actor, customer_id: int, *, now: datetime | None = None) -> Customer:
    if actor.user_id is None:
        raise Forbidden("系统不能领取客户 / a person must claim")
    now = now or utcnow()
    corp = session.get(Corp, actor.corp_id)
    limits = caps(corp)
    customer = _load_pool_customer(session, actor.corp_id, customer_id)  # row lock: one claimer wins
    if not customer.in_pool or customer.owner_id is not None:
        raise Conflict("该客户已被领取 / this customer has already been claimed", code="already_claimed",
                       fields={"customer_id": "not in the pool"})
    if limits["pool_reclaim_ban_days"]:
        since = now - timedelta(days=limits["pool_reclaim_ban_days"])
        last = session.execute(sa.select(sa.func.max(PoolEvent.created_at)).where(
            PoolEvent.customer_id == customer.id, PoolEvent.user_id == actor.user_id,
            PoolEvent.action.in_(["return", "reclaim"]), PoolEvent.created_at >= since)).scalar()
        if last is not None:
            last = last if last.tzinfo else last.replace(tzinfo=now.tzinfo)
            until = last + timedelta(days=limits["pool_reclaim_ban_days"])
            day = until.date().isoformat()
            raise Conflict(f"您退回该客户未满 {limits['pool_reclaim_ban_days']} 天，{day} 后可再领取 / "
                           f"you returned this customer recently; claim again after {day}",
                           code="reclaim_ban", fields={"customer_id": "recently returned by you"})
    if limits["pool_hold_cap"]:
        held = session.execute(sa.select(sa.func.count()).select_from(Customer).where(
            Customer.corp_id == actor.corp_id, Customer.owner_id == actor.user_id, Customer.deleted_at.is_(None),
            Customer.in_pool.is_(False))).scalar()
        if held >= limits["pool_hold_cap"]:
            raise Conflict(f"持有客户已达上限 {limits['pool_hold_cap']} / holding cap reached", code="hold_cap",
                           fields={"customer_id": f"you hold {held} customers (cap {limits['pool_hold_cap']})"})
    if limits["pool_daily_claims"]:
        today = session.execute(sa.select(sa.func.count()).select_from(PoolEvent).where(
            PoolEvent.corp_id == actor.corp_id, PoolEvent.user_id == actor.user_id, PoolEvent.action == "claim",
            PoolEvent.created_at >= _local_midnight(corp, now))).scalar()
        if today >= limits["pool_daily_claims"]:
            raise Conflict(f"今日领取已达上限 {limits['pool_daily_claims']} / daily claim cap reached",
                           code="daily_claim_cap", fields={"customer_id": f"{today} claims today"})
    customer.owner_id = actor.user_id
    customer.in_pool = False
    customer.updated_at = now
    session.add(PoolEvent(corp_id=actor.corp_id, customer_id=customer.id, user_id=actor.user_id, action="claim",
                          created_at=now))
    session.flush()
    audit.record(session, actor, "claim", "customer", customer.id,
                 {"owner_id": {"before": None, "after": actor.user_id}, "in_pool": {"before": True, "after": False}})
    from app.services import rules

    rules.fire(session, actor, "customer_assigned", customer)
    return customer


def _may_return(session: so.Session, actor: Actor, customer: Customer) -> bool:
    if actor.is_admin or customer.owner_id == actor.user_id:
        return True
    if actor.is_manager:
        paths = led_department_paths(session, actor)
        if paths:
            return session.execute(sa.select(User.id).where(
                User.id == customer.owner_id, User.id.in_(subtree_user_ids(actor.corp_id, paths)))).first() is not None
    return False


def return_to_pool(session: so.Session, actor: Actor, customer_id: int, reason: str | None, *,
                   now: datetime | None = None) -> Customer:
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError("退回公海需要填写原因 / a reason is required", fields={"reason": "required"})
    now = now or utcnow()
    customer = _load_pool_customer(session, actor.corp_id, customer_id)
    if customer.in_pool or customer.owner_id is None:
        raise Conflict("该客户已在公海 / already in the public pool", code="in_pool",
                       fields={"customer_id": "already in the pool"})
    if not _may_return(session, actor, customer):
        raise NotFound("客户不存在或无权访问 / customer not found", fields={"customer_id": "not found"})
    previous = customer.owner_id
    customer.owner_id = None
    customer.in_pool = True
    customer.updated_at = now
    record_return(session, actor.corp_id, customer.id, previous, reason, now=now)
    audit.record(session, actor, "return_to_pool", "customer", customer.id,
                 {"owner_id": {"before": previous, "after": None}, "in_pool": {"before": False, "after": True},
                  "reason": {"before": None, "after": reason}})
    session.flush()
    return customer


def record_return(session: so.Session, corp_id: int, customer_id: int, previous_owner_id: int | None, reason: str,
                  *, action: str = "return", now: datetime | None = None) -> None:
    """Log a customer leaving its owner for the pool; the scheduler's reclaim sweep should call it with
    action="reclaim" so the reclaim ban covers reclaimed customers too."""
    session.add(PoolEvent(corp_id=corp_id, customer_id=customer_id, user_id=previous_owner_id, action=action,
                          reason=reason[:500], created_at=now or utcnow()))


def my_pool_status(session: so.Session, actor: Actor, *, now: datetime | None = None) -> dict[str, Any]:
    now = now or utcnow()
    corp = session.get(Corp, actor.corp_id)
    limits = caps(corp)
    held = session.execute(sa.select(sa.func.count()).select_from(Customer).where(
        Customer.corp_id == actor.corp_id, Customer.owner_id == actor.user_id, Customer.deleted_at.is_(None),
        Customer.in_pool.is_(False))).scalar()
    today = session.execute(sa.select(sa.func.count()).select_from(PoolEvent).where(
        PoolEvent.corp_id == actor.corp_id, PoolEvent.user_id == actor.user_id, PoolEvent.action == "claim",
        PoolEvent.created_at >= _local_midnight(corp, now))).scalar()
    return {"held": held, "claimed_today": today, **limits}
