"""Tasks (待办): to-dos for a person, optionally about a customer or an opportunity.

A task is visible to its assignee, its creator, anyone who can see its customer, managers for tasks of
people in the departments they lead, and admins. A salesperson assigns tasks only to themselves; managers
within their subtree; admins to anyone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so

from app.errors import Forbidden, NotFound, ValidationError
from app.schemas import TaskIn, TaskPatch
from app.services import audit, pagination
from app.services.actor import Actor
from app.services.customers import check_assignable, may_assign, user_refs
from app.services.opportunities import load_opportunity
from app.services.scope import customer_clause, led_department_paths, load_customer, subtree_user_ids
from app.services.timeutil import iso, to_utc
from models.crm import Customer, Task, TaskStatus
from models.org import Corp
from models.types import utcnow

AUDITED_FIELDS = ("title", "description", "assignee_id", "due_at", "customer_id", "opportunity_id", "status",
                  "completed_at")


@dataclass
class TaskQuery:
    assignee_id: int | None = None
    customer_id: int | None = None
    status: list[str] = field(default_factory=list)
    due_before: datetime | None = None
    cursor: str | None = None
    limit: int = 20


def _snapshot(task: Task) -> dict[str, Any]:
    return {f: getattr(task, f) for f in AUDITED_FIELDS}


def task_clause(session: so.Session, actor: Actor) -> sa.ColumnElement[bool]:
    corp = Task.corp_id == actor.corp_id
    if actor.is_admin:
        return corp
    if actor.user_id is None:
        return sa.false()
    # Correlated on the task's own customer (a primary-key probe), not `IN (every visible customer)`,
    # which would materialise the whole scope — public pool included — for each check.
    sees_customer = sa.exists().where(Customer.id == Task.customer_id, customer_clause(session, actor))
    mine = [Task.assignee_id == actor.user_id, Task.created_by_id == actor.user_id, sees_customer]
    if actor.is_manager:
        paths = led_department_paths(session, actor)
        if paths:
            mine.append(Task.assignee_id.in_(subtree_user_ids(actor.corp_id, paths)))
    return sa.and_(corp, sa.or_(*mine))


def load_task(session: so.Session, actor: Actor, task_id: int, *, lock: bool = False) -> Task:
    stmt = sa.select(Task).where(Task.id == task_id, task_clause(session, actor))
    if lock:
        stmt = stmt.with_for_update()
    task = session.execute(stmt).scalar_one_or_none()
    if task is None:
        raise NotFound("任务不存在或无权访问 / task not found", fields={"task_id": "not found"})
    return task


def _dicts(session: so.Session, tasks: list[Task]) -> list[dict[str, Any]]:
    users = user_refs(session, {t.assignee_id for t in tasks} | {t.created_by_id for t in tasks})
    customer_ids = {t.customer_id for t in tasks if t.customer_id is not None}
    names = dict(session.execute(sa.select(Customer.id, Customer.name).where(Customer.id.in_(customer_ids)))
                 .all()) if customer_ids else {}
    return [{
        "id": t.id, "title": t.title, "description": t.description, "status": t.status, "source": t.source,
        "due_at": iso(t.due_at), "completed_at": iso(t.completed_at), "assignee": users.get(t.assignee_id),
        "created_by": users.get(t.created_by_id),
        "customer": {"id": t.customer_id, "name": names.get(t.customer_id)} if t.customer_id else None,
        "opportunity_id": t.opportunity_id, "created_at": iso(t.created_at), "updated_at": iso(t.updated_at),
    } for t in tasks]


def detail(session: so.Session, actor: Actor, task_id: int) -> dict[str, Any]:
    return _dicts(session, [load_task(session, actor, task_id)])[0]


def _check_assignee(session: so.Session, actor: Actor, assignee_id: int) -> None:
    if assignee_id == actor.user_id:
        return
    check_assignable(session, actor, assignee_id, "assignee_id",
                     "不能给该用户分配任务 / you may not assign tasks to this user")


def list_tasks(session: so.Session, actor: Actor, query: TaskQuery) -> dict[str, Any]:
    """Default: my tasks. `assignee_id` (someone in a manager's subtree, anyone for admins) or `customer_id`
    (a customer the caller can see) widen it. Earliest due first, undated last.

    No `task_clause` here: each way in below is itself a scope branch that was just checked (my tasks; a
    permitted assignee; a customer `load_customer` let through), so the corp is the only filter left and
    the query stays on the assignee/customer index."""
    conditions: list[sa.ColumnElement[bool]] = [Task.corp_id == actor.corp_id]
    if query.customer_id is not None:
        load_customer(session, actor, query.customer_id)
        conditions.append(Task.customer_id == query.customer_id)
    if query.assignee_id is not None:
        if query.assignee_id != actor.user_id and not (
                (actor.is_admin or actor.is_manager) and may_assign(session, actor, query.assignee_id)):
            raise Forbidden("只能查看自己或下属的任务 / you may only list your own or your team's tasks",
                            fields={"assignee_id": "not permitted"})
        conditions.append(Task.assignee_id == query.assignee_id)
    elif query.customer_id is None:
        conditions.append(Task.assignee_id == actor.user_id)
    if query.status:
        conditions.append(Task.status.in_(query.status))
    if query.due_before is not None:
        conditions.append(Task.due_at < query.due_before)
    key = pagination.SortKey(Task.due_at, False, "datetime")
    if query.cursor:
        value, row_id = pagination.decode_cursor(query.cursor, "datetime")
        conditions.append(pagination.after(key, Task.id, value, row_id))
    rows = session.execute(sa.select(Task).where(*conditions).order_by(*pagination.order_by(key, Task.id))
                           .limit(query.limit + 1)).scalars().all()
    has_more = len(rows) > query.limit
    rows = rows[: query.limit]
    next_cursor = pagination.encode_cursor(rows[-1].due_at, rows[-1].id) if has_more and rows else None
    return {"items": _dicts(session, rows), "next_cursor": next_cursor}


def create_task(session: so.Session, actor: Actor, data: TaskIn) -> Task:
    assignee_id = data.assignee_id if data.assignee_id is not None else actor.user_id
    if assignee_id is None:
        raise ValidationError("需要指定负责人 / assignee required", fields={"assignee_id": "required"})
    _check_assignee(session, actor, assignee_id)
    customer_id = data.customer_id
    if customer_id is not None:
        load_customer(session, actor, customer_id)
    if data.opportunity_id is not None:
        opp, _, _ = load_opportunity(session, actor, data.opportunity_id)
        if customer_id is not None and opp.customer_id != customer_id:
            raise ValidationError("商机不属于该客户 / opportunity belongs to another customer",
                                  fields={"opportunity_id": "belongs to another customer"})
        customer_id = opp.customer_id
    tz = session.get(Corp, actor.corp_id).timezone
    task = Task(corp_id=actor.corp_id, title=data.title, description=data.description, assignee_id=assignee_id,
                due_at=to_utc(data.due_at, tz), customer_id=customer_id, opportunity_id=data.opportunity_id,
                status=TaskStatus.OPEN, source="manual", created_by_id=actor.user_id)
    session.add(task)
    session.flush()
    audit.record(session, actor, "create", "task", task.id, audit.diff({}, _snapshot(task)))
    session.flush()
    return task


def _may_edit(actor: Actor, task: Task) -> bool:
    return actor.is_admin or actor.is_manager or actor.user_id in (task.assignee_id, task.created_by_id)


def update_task(session: so.Session, actor: Actor, task_id: int, patch: TaskPatch) -> Task:
    task = load_task(session, actor, task_id, lock=True)
    if not _may_edit(actor, task):
        raise Forbidden("只有负责人、创建人、经理或管理员可以修改 / only the assignee, the creator, a manager or "
                        "an admin may change a task")
    given = patch.model_fields_set
    for required in ("title", "status", "assignee_id"):
        if required in given and getattr(patch, required) is None:
            raise ValidationError(f"{required} 不能为空 / {required} cannot be null", fields={required: "required"})
    before = _snapshot(task)
    if "assignee_id" in given and patch.assignee_id != task.assignee_id:
        _check_assignee(session, actor, patch.assignee_id)
        task.assignee_id = patch.assignee_id
    if "title" in given:
        task.title = patch.title
    if "description" in given:
        task.description = patch.description
    if "due_at" in given:
        task.due_at = to_utc(patch.due_at, session.get(Corp, actor.corp_id).timezone)
    if "status" in given and patch.status != task.status:
        task.status = patch.status
        task.completed_at = utcnow() if patch.status == TaskStatus.DONE else None
    changes = audit.diff(before, _snapshot(task))
    if changes:
        task.updated_at = utcnow()
        audit.record(session, actor, "update", "task", task.id, changes)
        if "assignee_id" in changes:
            audit.record(session, actor, "assign", "task", task.id, {"assignee_id": changes["assignee_id"]})
    session.flush()
    return task


def delete_task(session: so.Session, actor: Actor, task_id: int) -> None:
    """The creator, a manager or an admin; an assignee who did not create it cancels it instead."""
    task = load_task(session, actor, task_id, lock=True)
    if not (actor.is_admin or actor.is_manager or (task.created_by_id is not None
                                                   and task.created_by_id == actor.user_id)):
        raise Forbidden("只有创建人、经理或管理员可以删除 / only the creator, a manager or an admin may delete")
    snapshot = _snapshot(task)
    session.delete(task)
    session.flush()
    audit.record(session, actor, "delete", "task", task_id, audit.diff(snapshot, {}))
    session.flush()
