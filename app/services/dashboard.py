"""The dashboard: pipeline funnel, this month's leaderboard, customers by source, new customers this month vs
last, and customers going stale — every figure an SQL aggregate over the caller's data scope, in one call.

Scope is by owner (for follow-ups: by author), so a salesperson sees only their own numbers — a customer
they merely collaborate on belongs to someone else's figures; a manager sees themselves plus everyone in the
departments they lead (sub-departments included); an admin the whole corp. Public-pool customers have no
owner, so they count only for an admin, and never as stale (nobody is expected to follow them up).
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
import sqlalchemy.orm as so
from sqlalchemy.dialects import postgresql

from app.errors import ValidationError
from app.services.actor import Actor
from app.services.corps import corp_setting
from app.services.scope import led_department_paths, subtree_user_ids
from app.services.timeutil import iso
from models.crm import Customer, FollowUp, Opportunity, OpportunityStage
from models.org import Corp, User
from models.types import utcnow

PERIODS = ("month",)
LEADERBOARD_SIZE = 10
STALE_PAGE = 20


def month_bounds(now: datetime, tz: str, months_back: int = 0) -> tuple[datetime, datetime]:
    """Start and end (UTC) of the corp-local calendar month containing `now`, or `months_back` before it."""
    zone = ZoneInfo(tz)
    local = now.astimezone(zone)
    index = local.year * 12 + local.month - 1 - months_back
    first = datetime(index // 12, index % 12 + 1, 1)
    nxt = datetime((index + 1) // 12, (index + 1) % 12 + 1, 1)
    # From local dates at midnight, not by adding days, so DST and month lengths need no arithmetic.
    start = datetime.combine(first.date(), time(), tzinfo=zone)
    end = datetime.combine(nxt.date(), time(), tzinfo=zone)
    return start.astimezone(UTC), end.astimezone(UTC)


class _Scope:
    """Which owners' rows the actor may aggregate: `owned(column)` is the SQL filter on an owner column.

    A manager's team is read once as a list of ids: `owner_id = ANY(:ids)` lets PostgreSQL estimate the rows
    and walk the (corp, owner) indexes, where `owner_id IN (subquery)` is planned as a hashed filter over a
    sequential scan of the whole corp — and the page would repeat that subquery in every statement."""

    def __init__(self, session: so.Session, actor: Actor) -> None:
        self.actor = actor
        self.postgres = session.get_bind().dialect.name == "postgresql"
        self.kind = "all" if actor.is_admin else ("team" if actor.is_manager else "own")
        self.ids: list[int] = [actor.user_id] if actor.user_id is not None else []
        if self.kind == "team":
            paths = led_department_paths(session, actor)
            team = session.execute(subtree_user_ids(actor.corp_id, paths)).scalars().all() if paths else []
            self.ids = sorted({*self.ids, *team})
            if not paths:
                self.kind = "own"  # a manager who leads no department sees their own figures

    def owned(self, column: sa.ColumnElement) -> sa.ColumnElement[bool]:
        if self.kind == "all":
            return sa.true()
        if not self.ids:
            return sa.false()
        if len(self.ids) == 1:
            return column == self.ids[0]
        if self.postgres:
            return column == sa.any_(sa.bindparam(None, self.ids, type_=postgresql.ARRAY(sa.BigInteger)))
        return column.in_(self.ids)


def _money(value: Any) -> str:
    return str(Decimal(value or 0).quantize(Decimal("0.01")))


def _rate(numerator: int, denominator: int) -> float | None:
    return round(numerator / denominator, 4) if denominator else None


def dashboard(session: so.Session, actor: Actor, *, period: str = "month", now: datetime | None = None
              ) -> dict[str, Any]:
    if period not in PERIODS:
        raise ValidationError("不支持的统计周期 / unsupported period",
                              fields={"period": f"one of {', '.join(PERIODS)}"})
    now = now or utcnow()
    corp = session.get(Corp, actor.corp_id)
    scope = _Scope(session, actor)
    month = month_bounds(now, corp.timezone)
    last_month = month_bounds(now, corp.timezone, months_back=1)
    try:
        stale_days = max(1, int(corp_setting(corp, "stale_days") or 30))
    except (TypeError, ValueError):
        stale_days = 30  # a broken setting must not take the dashboard down
    return {
        "period": {"kind": period, "start": iso(month[0]), "end": iso(month[1]), "timezone": corp.timezone},
        "scope": scope.kind,
        "funnel": funnel(session, actor, scope),
        "leaderboard": leaderboard(session, actor, scope, *month),
        "sources": sources(session, actor, scope),
        "new_customers": {"this_month": _count_new(session, actor, scope, *month),
                          "last_month": _count_new(session, actor, scope, *last_month)},
        "stale": stale(session, actor, scope, now, stale_days),
    }


def _live_customers(actor: Actor, scope: _Scope) -> list[sa.ColumnElement[bool]]:
    return [Customer.corp_id == actor.corp_id, Customer.deleted_at.is_(None), scope.owned(Customer.owner_id)]


def funnel(session: so.Session, actor: Actor, scope: _Scope) -> dict[str, Any]:
    """Open opportunities by stage in the corp's order, then won and lost. An opportunity has reached a stage
    when its current stage is that one or a later open stage, or won; conversion from a stage to the next is
    reached(next) / reached(stage). Where a lost one was lost is not recorded, so it counts in no conversion."""
    counts = sa.select(Opportunity.stage_id, sa.func.count().label("n"),
                       sa.func.coalesce(sa.func.sum(Opportunity.amount), 0).label("amount")).where(
        Opportunity.corp_id == actor.corp_id, Opportunity.deleted_at.is_(None),
        scope.owned(Opportunity.owner_id)).group_by(Opportunity.stage_id).subquery()
    rows = session.execute(
        sa.select(OpportunityStage.id, OpportunityStage.key, OpportunityStage.name, OpportunityStage.is_won,
                  OpportunityStage.is_lost, OpportunityStage.active,
                  sa.func.coalesce(counts.c.n, 0), sa.func.coalesce(counts.c.amount, 0))
        .outerjoin(counts, counts.c.stage_id == OpportunityStage.id)
        .where(OpportunityStage.corp_id == actor.corp_id)
        .order_by(OpportunityStage.is_lost, OpportunityStage.is_won, OpportunityStage.sort_order, OpportunityStage.id)
    ).all()
    # Retired stages stay visible only while opportunities still sit in them.
    rows = [r for r in rows if r.active or r[6]]
    stages = [{"id": sid, "key": key, "name": name, "won": won, "lost": lost, "count": int(n), "amount": _money(amt)}
              for sid, key, name, won, lost, _active, n, amt in rows]
    path = [s for s in stages if not s["lost"]]
    reached = 0
    for stage in reversed(path):
        reached += stage["count"]
        stage["reached"] = reached
    for stage, nxt in zip(path, path[1:] + [None], strict=True):
        stage["conversion"] = _rate(nxt["reached"], stage["reached"]) if nxt else None
    for stage in stages:
        if stage["lost"]:
            stage["reached"], stage["conversion"] = stage["count"], None
    won = sum(s["count"] for s in stages if s["won"])
    lost = sum(s["count"] for s in stages if s["lost"])
    total = sum(s["count"] for s in stages)
    return {"stages": stages, "total": total, "win_rate": _rate(won, won + lost),
            "open_amount": _money(sum(Decimal(s["amount"]) for s in stages if not (s["won"] or s["lost"])))}


def leaderboard(session: so.Session, actor: Actor, scope: _Scope, start: datetime, end: datetime
                ) -> list[dict[str, Any]]:
    """Top owners this month by won amount, then follow-ups made, then new customers."""
    zero, one = sa.literal_column("0"), sa.literal_column("1")
    won = (sa.select(Opportunity.owner_id.label("user_id"), Opportunity.amount.label("won"),
                     zero.label("follow_ups"), zero.label("customers"))
           .join(OpportunityStage, OpportunityStage.id == Opportunity.stage_id)
           .where(Opportunity.corp_id == actor.corp_id, Opportunity.deleted_at.is_(None),
                  OpportunityStage.is_won.is_(True), Opportunity.closed_at >= start, Opportunity.closed_at < end,
                  Opportunity.owner_id.is_not(None), scope.owned(Opportunity.owner_id)))
    # By when the contact happened (what the month's activity is), which (author, occurred_at) indexes.
    written = (sa.select(FollowUp.author_id, zero, one, zero)
               .where(FollowUp.corp_id == actor.corp_id, FollowUp.occurred_at >= start, FollowUp.occurred_at < end,
                      scope.owned(FollowUp.author_id)))
    created = (sa.select(Customer.owner_id, zero, zero, one)
               .where(*_live_customers(actor, scope), Customer.owner_id.is_not(None),
                      Customer.created_at >= start, Customer.created_at < end))
    union = sa.union_all(won, written, created).subquery()
    totals = (sa.select(union.c.user_id, sa.func.sum(union.c.won).label("won"),
                        sa.func.sum(union.c.follow_ups).label("follow_ups"),
                        sa.func.sum(union.c.customers).label("customers"))
              .group_by(union.c.user_id).subquery())
    rows = session.execute(
        sa.select(totals.c.user_id, User.name, totals.c.won, totals.c.follow_ups, totals.c.customers)
        .join(User, User.id == totals.c.user_id)
        .order_by(totals.c.won.desc(), totals.c.follow_ups.desc(), totals.c.customers.desc(), totals.c.user_id)
        .limit(LEADERBOARD_SIZE)
    ).all()
    return [{"rank": i, "user": {"id": uid, "name": name}, "won_amount": _money(won_amount),
             "follow_ups": int(fus or 0), "new_customers": int(news or 0)}
            for i, (uid, name, won_amount, fus, news) in enumerate(rows, start=1)]


def sources(session: so.Session, actor: Actor, scope: _Scope) -> list[dict[str, Any]]:
    """Customers by source, largest first; customers without a source come back as `source: null`."""
    source = sa.func.nullif(sa.func.trim(Customer.source), "")
    rows = session.execute(
        sa.select(source.label("source"), sa.func.count().label("n")).where(*_live_customers(actor, scope))
        .group_by(source).order_by(sa.func.count().desc(), source)
    ).all()
    return [{"source": src, "count": int(n)} for src, n in rows]


def _count_new(session: so.Session, actor: Actor, scope: _Scope, start: datetime, end: datetime) -> int:
    return int(session.execute(sa.select(sa.func.count()).where(
        *_live_customers(actor, scope), Customer.created_at >= start, Customer.created_at < end)).scalar_one())


def stale(session: so.Session, actor: Actor, scope: _Scope, now: datetime, days: int) -> dict[str, Any]:
    """Owned customers with no follow-up for `days` (never followed up: counted from creation), longest first."""
    cutoff = now - timedelta(days=days)
    base = [*_live_customers(actor, scope), Customer.in_pool.is_(False), Customer.owner_id.is_not(None)]
    # Two index-friendly branches rather than COALESCE, which no index on (corp, last_contact_at) can serve.
    where = [*base, sa.or_(Customer.last_contact_at < cutoff,
                           sa.and_(Customer.last_contact_at.is_(None), Customer.created_at < cutoff))]
    count = session.execute(sa.select(sa.func.count()).where(*where)).scalar_one()
    # The longest-stale page as two index walks, (corp, last_contact_at) and (corp, created_at), merged here:
    # ORDER BY COALESCE(…) would sort every stale row of the scope (most of the corp, for an admin) for 20.
    columns = (Customer.id, Customer.name, Customer.last_contact_at, Customer.created_at, User.name)
    contacted = session.execute(
        sa.select(*columns).outerjoin(User, User.id == Customer.owner_id)
        .where(*base, Customer.last_contact_at < cutoff)
        .order_by(Customer.last_contact_at, Customer.id).limit(STALE_PAGE)).all()
    never = session.execute(
        sa.select(*columns).outerjoin(User, User.id == Customer.owner_id)
        .where(*base, Customer.last_contact_at.is_(None), Customer.created_at < cutoff)
        .order_by(Customer.created_at, Customer.id).limit(STALE_PAGE)).all()
    rows = sorted([*contacted, *never], key=lambda r: (r[2] or r[3], r[0]))[:STALE_PAGE]
    items = [{"id": cid, "name": name, "last_contact_at": iso(last), "owner": owner,
              "days": (now - (last or created)).days} for cid, name, last, created, owner in rows]
    return {"days": days, "count": int(count), "items": items, "more": count > len(items)}
