"""The daily agenda: at the corp's agenda time, each person with something on their plate gets one list —
today's follow-ups, overdue ones, open tasks due today or earlier, and approvals waiting for them."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta

import sqlalchemy as sa
import sqlalchemy.orm as so

from app.services import approvals, outbox
from app.services.corps import corp_setting
from app.services.delivery import _hm, local_now
from models.crm import Customer, Task, TaskStatus
from models.org import Corp, User
from models.outbox import Priority


def agenda_due(corp: Corp, now: datetime) -> bool:
    local = local_now(corp, now)
    return local.time() >= _hm(corp_setting(corp, "agenda_time"))


def enqueue_agendas(session: so.Session, corp: Corp, now: datetime) -> int:
    """Once per local day, from the agenda time on; returns agendas created."""
    if not agenda_due(corp, now):
        return 0
    local = local_now(corp, now)
    start = local.replace(hour=0, minute=0, second=0, microsecond=0)
    end = start + timedelta(days=1)
    counts: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    live = (Customer.corp_id == corp.id, Customer.deleted_at.is_(None), Customer.owner_id.is_not(None),
            Customer.in_pool.is_(False))
    for owner, n in session.execute(
        sa.select(Customer.owner_id, sa.func.count())
        .where(*live, Customer.next_contact_at >= start, Customer.next_contact_at < end).group_by(Customer.owner_id)
    ):
        counts[owner]["today"] = n
    for owner, n in session.execute(
        sa.select(Customer.owner_id, sa.func.count())
        .where(*live, Customer.next_contact_at < start, Customer.next_contact_at >= start - timedelta(days=30))
        .group_by(Customer.owner_id)
    ):
        counts[owner]["overdue"] = n
    for owner, n in session.execute(
        sa.select(Task.assignee_id, sa.func.count())
        .where(Task.corp_id == corp.id, Task.status == TaskStatus.OPEN, Task.due_at < end)
        .group_by(Task.assignee_id)
    ):
        counts[owner]["tasks"] = n
    for owner, n in approvals.pending_counts(session, corp.id).items():
        counts[owner]["approvals"] = n
    active = set(session.execute(
        sa.select(User.id).where(User.corp_id == corp.id, User.active.is_(True), User.id.in_(list(counts)))
    ).scalars())
    day = local.strftime("%Y-%m-%d")
    rows = []
    for user_id, c in counts.items():
        if user_id not in active:
            continue
        line = (f"今日跟进 {c['today']}，逾期 {c['overdue']}，待办任务 {c['tasks']}，待您审批 {c['approvals']} / "
                f"today {c['today']}, overdue {c['overdue']}, tasks {c['tasks']}, "
                f"approvals waiting for you {c['approvals']}")
        rows.append({
            "corp_id": corp.id, "kind": "agenda", "recipient_user_id": user_id, "subject_type": "agenda",
            "subject_id": None, "due_at": now, "priority": Priority.AGENDA,
            "idempotency_key": f"agenda:{day}:{user_id}",
            "payload": {"title": f"今日日程 {local.strftime('%m-%d')}", "line": line, **dict(c)},
        })
    return outbox.enqueue_many(session, rows)
