"""Read models for the H5 workbench: one call per page.

`context` is what every page needs once per session (who I am, the corp's time zone, custom fields, tags,
stages); `home` is my to-do list. Both only read, through the same scope rules as the rest of the API.
"""

from __future__ import annotations

import importlib
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
import sqlalchemy.orm as so

from app.services import field_definitions, opportunities, tags
from app.services.actor import Actor
from app.services.timeutil import iso
from models.crm import Customer, Task, TaskStatus
from models.org import Corp, User
from models.types import utcnow

HOME_LIMIT = 50


def context(session: so.Session, actor: Actor) -> dict[str, Any]:
    user, corp = session.get(User, actor.user_id), session.get(Corp, actor.corp_id)
    return {
        "user": {"id": user.id, "userid": user.platform_userid, "name": user.name, "role": user.role},
        "corp": {"id": corp.id, "corp_id": corp.platform_corp_id, "name": corp.name, "platform": corp.platform,
                 "timezone": corp.timezone},
        "fields": field_definitions.list_definitions(session, actor, entity=None)["items"],
        "tag_groups": tags.list_tags(session, actor)["groups"],
        "stages": opportunities.list_stages(session, actor)["items"],
        "features": {"approvals": _approvals_module() is not None},
    }


def day_bounds(now: datetime, tz: str) -> tuple[datetime, datetime]:
    """Start and end of the corp's local day containing `now`, in UTC."""
    zone = ZoneInfo(tz)
    today = now.astimezone(zone).date()
    # Built from dates, not by adding 24 h, so a day with a DST change still ends at local midnight.
    start = datetime.combine(today, time(), tzinfo=zone)
    end = datetime.combine(today + timedelta(days=1), time(), tzinfo=zone)
    return start.astimezone(UTC), end.astimezone(UTC)


def _approvals_module():
    """The approvals service, when installed: the home page lists what waits for me without a hard dependency."""
    try:
        module = importlib.import_module("app.services.approvals")
    except ImportError:
        return None
    return module if hasattr(module, "list_for") else None


def home(session: so.Session, actor: Actor, now: datetime | None = None) -> dict[str, Any]:
    """My to-dos: customers whose next contact is due today or overdue, my open tasks, approvals for me."""
    now = now or utcnow()
    corp = session.get(Corp, actor.corp_id)
    start, end = day_bounds(now, corp.timezone)
    due = session.execute(
        sa.select(Customer.id, Customer.name, Customer.grade, Customer.next_contact_at, Customer.last_contact_at)
        .where(Customer.corp_id == actor.corp_id, Customer.owner_id == actor.user_id,
               Customer.deleted_at.is_(None), Customer.in_pool.is_(False),
               Customer.next_contact_at.is_not(None), Customer.next_contact_at < end)
        .order_by(Customer.next_contact_at, Customer.id).limit(HOME_LIMIT)
    ).all()
    follow_ups = [{"customer": {"id": cid, "name": name, "grade": grade}, "next_contact_at": iso(nxt),
                   "last_contact_at": iso(last), "overdue": nxt < start} for cid, name, grade, nxt, last in due]
    task_rows = session.execute(
        sa.select(Task, Customer.name).outerjoin(Customer, Customer.id == Task.customer_id)
        .where(Task.corp_id == actor.corp_id, Task.assignee_id == actor.user_id, Task.status == TaskStatus.OPEN)
        .order_by(Task.due_at.is_(None), Task.due_at, Task.id).limit(HOME_LIMIT)
    ).all()
    tasks_out = [{"id": t.id, "title": t.title, "due_at": iso(t.due_at),
                  "overdue": t.due_at is not None and t.due_at < now,
                  "customer": {"id": t.customer_id, "name": cname} if t.customer_id else None}
                 for t, cname in task_rows]
    approvals_module = _approvals_module()
    approvals = (approvals_module.list_for(session, actor, "waiting", cursor=None, limit=HOME_LIMIT)["items"]
                 if approvals_module else None)
    return {"today": {"start": iso(start), "end": iso(end)}, "follow_ups": follow_ups, "tasks": tasks_out,
            "approvals": approvals, "counts": {
                "follow_ups_overdue": sum(1 for f in follow_ups if f["overdue"]),
                "follow_ups_today": sum(1 for f in follow_ups if not f["overdue"]),
                "tasks": len(tasks_out), "approvals": len(approvals or [])}}


def sandbox_employees(session: so.Session, corp_id: int | None = None) -> list[dict[str, Any]]:
    """Active people of active corps (or of one corp), for the sign-in picker shown beside the sandbox
    (never in production)."""
    rows = session.execute(
        sa.select(Corp.platform_corp_id, Corp.name, User.platform_userid, User.name, User.role, User.title)
        .join(Corp, Corp.id == User.corp_id)
        .where(User.active.is_(True), Corp.active.is_(True), *([Corp.id == corp_id] if corp_id else []))
        .order_by(Corp.id, User.role, User.name, User.id).limit(500)
    ).all()
    return [{"corpId": corp_id, "corp_name": corp_name, "userid": userid, "name": name, "role": role, "title": title}
            for corp_id, corp_name, userid, name, role, title in rows]
