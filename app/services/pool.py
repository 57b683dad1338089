"""Public-pool reclaim: a customer without follow-up for M days (`pool_reclaim_days`) goes back to the
pool; its owner is warned K days before (`pool_warn_days`) and told when it happens."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
import sqlalchemy.orm as so

from app.services import audit, outbox, pool_claims
from app.services.actor import Actor
from app.services.corps import corp_setting
from models.crm import Customer
from models.org import Corp
from models.outbox import Priority


def last_touch() -> sa.ColumnElement:
    return sa.func.coalesce(Customer.last_contact_at, Customer.created_at)


@dataclass(frozen=True)
class SweepResult:
    warned: int
    reclaimed: int


def sweep(session: so.Session, corp: Corp, now: datetime, *, limit: int = 5000) -> SweepResult:
    reclaim_days = int(corp_setting(corp, "pool_reclaim_days"))
    warn_days = int(corp_setting(corp, "pool_warn_days"))
    reclaim_cutoff = now - timedelta(days=reclaim_days)
    warn_cutoff = now - timedelta(days=max(0, reclaim_days - warn_days))
    owned = (Customer.corp_id == corp.id, Customer.deleted_at.is_(None), Customer.owner_id.is_not(None),
             Customer.in_pool.is_(False))
    doomed = session.execute(
        sa.select(Customer).where(*owned, last_touch() < reclaim_cutoff).order_by(Customer.id).limit(limit)
    ).scalars().all()
    notes = []
    system = Actor.system(corp.id)
    for c in doomed:
        owner_id = c.owner_id
        c.owner_id, c.in_pool = None, True
        audit.record(session, system, "customer.reclaim", "customer", c.id,
                     {"owner_id": {"before": owner_id, "after": None}, "in_pool": {"before": False, "after": True}})
        # Logged as a pool event too, so the previous owner's reclaim ban covers automatic reclaims.
        pool_claims.record_return(session, corp.id, c.id, owner_id, "久未跟进自动收回 / no follow-up, reclaimed",
                                  action="reclaim", now=now)
        notes.append({
            "corp_id": corp.id, "kind": "pool_reclaimed", "recipient_user_id": owner_id, "subject_type": "customer",
            "subject_id": c.id, "due_at": now, "priority": Priority.SWEEP,
            "idempotency_key": f"pool_reclaimed:{c.id}:{int(now.timestamp()) // 86400}:{owner_id}",
            "payload": {"title": f"已收回公海：{c.name}"[:60],
                        "line": f"「{c.name}」{reclaim_days} 天未跟进，已收回公海 / returned to the public pool"},
        })
    session.flush()
    outbox.enqueue_many(session, notes)
    warnings = []
    warn = session.execute(
        sa.select(Customer.id, Customer.name, Customer.owner_id, last_touch().label("touched"))
        .where(*owned, last_touch() < warn_cutoff, last_touch() >= reclaim_cutoff).order_by(Customer.id).limit(limit)
    ).all()
    for r in warn:
        touched = r.touched if r.touched.tzinfo else r.touched.replace(tzinfo=now.tzinfo)
        when = touched + timedelta(days=reclaim_days)
        warnings.append({
            "corp_id": corp.id, "kind": "pool_warning", "recipient_user_id": r.owner_id, "subject_type": "customer",
            "subject_id": r.id, "due_at": now, "priority": Priority.SWEEP,
            "idempotency_key": f"pool_warning:{r.id}:{touched.date().isoformat()}:{r.owner_id}",
            "payload": {"title": f"即将收回公海：{r.name}"[:60],
                        "line": f"「{r.name}」将于 {when.date().isoformat()} 收回公海，请尽快跟进 / "
                                f"goes back to the pool on {when.date().isoformat()}"},
        })
    return SweepResult(warned=outbox.enqueue_many(session, warnings), reclaimed=len(doomed))
