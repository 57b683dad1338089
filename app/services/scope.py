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
from sqlalchemy.dialects import postgresql

from app.errors import NotFound, ValidationError
from app.services.actor import Actor
from models.crm import Customer, CustomerCollaborator
from models.org import Department, DepartmentLeader, UserDepartment


def _outermost(paths: set[str]) -> list[str]:
    # Drop paths already covered by an ancestor path: fewer OR branches for the planner.
    ordered = sorted(paths)
    return [p for p in ordered if not any(p != q and p.startswith(q) for q in ordered)]


def led_department_paths(session: so.Session, actor: Actor) -> list[str]:
    if actor.user_id is None:
        return []
    rows = session.execute(
        sa.select(Department.path)
        .join(DepartmentLeader, DepartmentLeader.department_id == Department.id)
        .where(DepartmentLeader.user_id == actor.user_id, Department.corp_id == actor.corp_id)
    ).scalars()
    return _outermost(set(rows))


def _unknown_department() -> ValidationError:
    return ValidationError("部门不存在 / unknown department", fields={"department_id": "unknown"})


def department_path(session: so.Session, actor: Actor, department_id: int) -> str:
    """The path of one of the actor's corp's departments; 422 naming `department_id` if there is none."""
    path = session.execute(sa.select(Department.path).where(
        Department.id == department_id, Department.corp_id == actor.corp_id)).scalar_one_or_none()
    if path is None:
        raise _unknown_department()
    return path


def department_and_led_paths(session: so.Session, actor: Actor, department_id: int) -> tuple[str, list[str] | None]:
    """`department_path`, plus for a manager the paths they lead, read in the same round trip (to hand to
    `customer_clause(led_paths=…)`); None for anyone else."""
    if not (actor.is_manager and actor.user_id is not None):
        return department_path(session, actor, department_id), None
    leads = DepartmentLeader.user_id.is_not(None)
    rows = session.execute(
        sa.select(Department.id, Department.path, leads)
        .outerjoin(DepartmentLeader, sa.and_(DepartmentLeader.department_id == Department.id,
                                             DepartmentLeader.user_id == actor.user_id))
        .where(Department.corp_id == actor.corp_id, sa.or_(Department.id == department_id, leads))
    ).all()
    path = next((p for d, p, _ in rows if d == department_id), None)
    if path is None:
        raise _unknown_department()
    return path, _outermost({p for _, p, is_led in rows if is_led})


def within(path: str, paths: list[str]) -> bool:
    """Is the subtree at `path` inside one of the subtrees at `paths`?"""
    return any(path.startswith(p) for p in paths)


def subtree_user_ids(corp_id: int, paths: list[str]) -> sa.Select:
    """Users in any department under `paths` (a person in several departments counts once)."""
    return (
        sa.select(UserDepartment.user_id)
        .join(Department, Department.id == UserDepartment.department_id)
        .where(Department.corp_id == corp_id, sa.or_(*[Department.path.startswith(p) for p in paths]))
        .distinct()
    )


def _collaborates(session: so.Session, user_id: int) -> sa.ColumnElement[bool]:
    if session.get_bind().dialect.name == "postgresql":
        # An InitPlan array: `id = ANY(…)` can join a BitmapOr with the owner index, where a correlated
        # EXISTS forces a walk over every customer of the corp. CAST keeps ANY((SELECT …)) an array.
        ids = sa.select(sa.func.array_agg(CustomerCollaborator.customer_id)).where(
            CustomerCollaborator.user_id == user_id).scalar_subquery()
        return Customer.id == sa.any_(sa.cast(ids, postgresql.ARRAY(sa.BigInteger)))
    return sa.exists().where(CustomerCollaborator.customer_id == Customer.id, CustomerCollaborator.user_id == user_id)


def customer_clause(session: so.Session, actor: Actor, *, for_write: bool = False, include_pool: bool = True,
                    led_paths: list[str] | None = None) -> sa.ColumnElement[bool]:
    """`include_pool=False` when the caller filters the pool out anyway: a dead `in_pool` branch in the OR
    still stops the planner from using the owner index. `led_paths` saves the query when already read."""
    corp = sa.and_(Customer.corp_id == actor.corp_id, Customer.deleted_at.is_(None))
    if actor.is_admin:
        return corp
    if actor.user_id is None:
        return sa.false()
    mine = [Customer.owner_id == actor.user_id, _collaborates(session, actor.user_id)]
    if actor.is_manager:
        paths = led_department_paths(session, actor) if led_paths is None else led_paths
        if paths:
            mine.append(Customer.owner_id.in_(subtree_user_ids(actor.corp_id, paths)))
    if not for_write and include_pool:
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
