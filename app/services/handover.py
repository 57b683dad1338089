"""Leaver handover: nothing a departing employee owned is orphaned.

Their customers, open opportunities and open tasks go, in one transaction, either to the leader of their
main department (walking up the tree when that is the leaver or nobody) or back to the public pool — the
corp's `leaver_policy`. Every move is audited.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
import sqlalchemy.orm as so

from app.services import approvals, audit, outbox
from app.services.actor import Actor
from app.services.corps import corp_setting
from models.crm import Customer, Opportunity, Task, TaskStatus
from models.org import Corp, Department, DepartmentLeader, Role, User
from models.outbox import Priority
from models.types import utcnow


@dataclass(frozen=True)
class HandoverResult:
    receiver_id: int | None  # None: the public pool
    customers: int
    opportunities: int
    tasks: int


def leader_for(session: so.Session, user: User) -> User | None:
    """The nearest active leader above `user`, starting at their main department; the corp admin last."""
    dept = session.get(Department, user.main_department_id) if user.main_department_id else None
    while dept is not None:
        leader = session.execute(
            sa.select(User)
            .join(DepartmentLeader, DepartmentLeader.user_id == User.id)
            .where(DepartmentLeader.department_id == dept.id, User.active.is_(True), User.id != user.id)
            .order_by(User.id)
            .limit(1)
        ).scalar()
        if leader is not None:
            return leader
        dept = session.get(Department, dept.parent_id) if dept.parent_id else None
    return session.execute(
        sa.select(User)
        .where(User.corp_id == user.corp_id, User.role == Role.ADMIN, User.active.is_(True), User.id != user.id)
        .order_by(User.id)
        .limit(1)
    ).scalar()


def hand_over(session: so.Session, corp: Corp, leaver: User) -> HandoverResult:
    actor = Actor.system(corp.id)
    receiver = None if corp_setting(corp, "leaver_policy") == "pool" else leader_for(session, leaver)
    to_pool = receiver is None
    customer_ids = list(
        session.execute(
            sa.select(Customer.id).where(
                Customer.corp_id == corp.id, Customer.owner_id == leaver.id, Customer.deleted_at.is_(None)
            )
        ).scalars()
    )
    if customer_ids:
        session.execute(
            sa.update(Customer)
            .where(Customer.id.in_(customer_ids))
            .values(owner_id=None if to_pool else receiver.id, in_pool=to_pool)
        )
    opp_ids = list(
        session.execute(
            sa.select(Opportunity.id).where(
                Opportunity.corp_id == corp.id,
                Opportunity.owner_id == leaver.id,
                Opportunity.closed_at.is_(None),
                Opportunity.deleted_at.is_(None),
            )
        ).scalars()
    )
    if opp_ids:
        session.execute(
            sa.update(Opportunity).where(Opportunity.id.in_(opp_ids)).values(owner_id=None if to_pool else receiver.id)
        )
    task_ids = list(
        session.execute(
            sa.select(Task.id).where(
                Task.corp_id == corp.id, Task.assignee_id == leaver.id, Task.status == TaskStatus.OPEN
            )
        ).scalars()
    )
    if task_ids:
        if to_pool:
            session.execute(sa.update(Task).where(Task.id.in_(task_ids)).values(status=TaskStatus.CANCELLED))
        else:
            session.execute(sa.update(Task).where(Task.id.in_(task_ids)).values(assignee_id=receiver.id))
    if customer_ids or opp_ids or task_ids:
        audit.record(
            session,
            actor,
            "handover",
            "user",
            leaver.id,
            {
                "receiver_id": {"before": leaver.id, "after": None if to_pool else receiver.id},
                "customer_ids": {"before": None, "after": customer_ids},
                "opportunity_ids": {"before": None, "after": opp_ids},
                "task_ids": {"before": None, "after": task_ids},
            },
        )
    # Approvals waiting on the leaver go to their leader, whatever the customer policy.
    approvals.reroute_leaver(session, leaver.id)
    if receiver is not None and (customer_ids or opp_ids or task_ids):
        outbox.enqueue(
            session, corp_id=corp.id, kind="handover", recipient_user_id=receiver.id, subject_type="user",
            subject_id=leaver.id, due_at=utcnow(), priority=Priority.REMINDER,
            payload={"title": f"离职交接：{leaver.name}"[:60],
                     "line": f"{leaver.name} 已离职，移交给你 {len(customer_ids)} 个客户、{len(opp_ids)} 个商机、"
                             f"{len(task_ids)} 个任务 / {leaver.name} left: {len(customer_ids)} customers, "
                             f"{len(opp_ids)} opportunities, {len(task_ids)} tasks handed to you"},
        )
    return HandoverResult(None if to_pool else receiver.id, len(customer_ids), len(opp_ids), len(task_ids))
