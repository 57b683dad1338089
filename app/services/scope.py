"""Data scope: which customers (and so which contacts, follow-ups, opportunities, tasks) an actor may see.

- salesperson: customers they own or collaborate on;
- manager: also customers owned by anyone in the departments they lead, sub-departments included;
- admin: every customer of the corp.
Public-pool customers are readable by everyone in the corp (to be claimed), writable only by admins.
Every clause starts with the corp, so no query built here can reach another tenant.
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlalchemy.orm as so

from app.errors import NotFound
from app.services.actor import Actor
from models.crm import Customer, CustomerCollaborator
from models.org import Department, DepartmentLeader, UserDepartment


def led_department_paths(session: so.Session, actor: Actor) -> list[str]:
    if actor.user_id is None:
        return []
    rows = session.execute(
        sa.select(Department.path)
        .join(DepartmentLeader, DepartmentLeader.department_id == Department.id)
        .where(DepartmentLeader.user_id == actor.user_id, Department.corp_id == actor.corp_id)
    ).scalars()
    paths = sorted(set(rows))
    # Drop paths already covered by an ancestor path: fewer OR branches for the planner.
    return [p for p in paths if not any(p != q and p.startswith(q) for q in paths)]


def subtree_user_ids(corp_id: int, paths: list[str]) -> sa.Select:
    """Users in any department under `paths` (a person in several departments counts once)."""
    return (
        sa.select(UserDepartment.user_id)
        .join(Department, Department.id == UserDepartment.department_id)
        .where(Department.corp_id == corp_id, sa.or_(*[Department.path.startswith(p) for p in paths]))
        .distinct()
    )


def _collaborates(user_id: int) -> sa.ColumnElement[bool]:
    return sa.exists().where(
        CustomerCollaborator.customer_id == Customer.id, CustomerCollaborator.user_id == user_id
    )


def customer_clause(session: so.Session, actor: Actor, *, for_write: bool = False) -> sa.ColumnElement[bool]:
    corp = sa.and_(Customer.corp_id == actor.corp_id, Customer.deleted_at.is_(None))
    if actor.is_admin:
        return corp
    if actor.user_id is None:
        return sa.false()
    mine = [Customer.owner_id == actor.user_id, _collaborates(actor.user_id)]
    if actor.is_manager:
        paths = led_department_paths(session, actor)
        if paths:
            mine.append(Customer.owner_id.in_(subtree_user_ids(actor.corp_id, paths)))
    if not for_write:
        mine.append(Customer.in_pool.is_(True))
    return sa.and_(corp, sa.or_(*mine))


def load_customer(session: so.Session, actor: Actor, customer_id: int, *, for_write: bool = False,
                  lock: bool = False) -> Customer:
    """The customer if the actor may see it (or write it); 404 otherwise — never 403, so ids of other
    tenants and other people's customers do not leak."""
    stmt = sa.select(Customer).where(Customer.id == customer_id, customer_clause(session, actor,
                                                                                for_write=for_write))
    if lock:
        stmt = stmt.with_for_update()
    customer = session.execute(stmt).scalar_one_or_none()
    if customer is None:
        raise NotFound("客户不存在或无权访问 / customer not found", fields={"customer_id": "not found"})
    return customer


def visible_customer_ids(session: so.Session, actor: Actor) -> sa.Select:
    return sa.select(Customer.id).where(customer_clause(session, actor))
