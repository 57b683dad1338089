"""Org read model for pickers and admins: the department tree with leaders, and users."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so

from app.services import normalize, pagination
from app.services.actor import Actor
from app.services.scope import department_path, subtree_user_ids
from models.org import Department, DepartmentLeader, User, UserDepartment


def department_tree(session: so.Session, actor: Actor) -> list[dict[str, Any]]:
    depts = session.execute(
        sa.select(Department).where(Department.corp_id == actor.corp_id, Department.active.is_(True))
        .order_by(Department.depth, Department.sort_order, Department.id)).scalars().all()
    leaders: dict[int, list[dict[str, Any]]] = {}
    for dept_id, uid, name in session.execute(
        sa.select(DepartmentLeader.department_id, User.id, User.name)
        .join(User, User.id == DepartmentLeader.user_id)
        .where(DepartmentLeader.corp_id == actor.corp_id).order_by(User.id)
    ):
        leaders.setdefault(dept_id, []).append({"id": uid, "name": name})
    counts = dict(session.execute(
        sa.select(UserDepartment.department_id, sa.func.count())
        .join(User, User.id == UserDepartment.user_id)
        .where(UserDepartment.corp_id == actor.corp_id, User.active.is_(True))
        .group_by(UserDepartment.department_id)).all())
    nodes = {d.id: {"id": d.id, "platform_dept_id": d.platform_dept_id, "name": d.name, "parent_id": d.parent_id,
                    "order": d.sort_order, "leaders": leaders.get(d.id, []), "member_count": counts.get(d.id, 0),
                    "children": []} for d in depts}
    roots = []
    for d in depts:
        parent = nodes.get(d.parent_id) if d.parent_id else None
        (parent["children"] if parent else roots).append(nodes[d.id])
    return roots


def list_users(session: so.Session, actor: Actor, *, department_id: int | None, active: bool | None,
               q: str | None, cursor: str | None, limit: int) -> dict[str, Any]:
    conditions = [User.corp_id == actor.corp_id]
    if active is not None:
        conditions.append(User.active.is_(active))
    if q:
        pattern = f"%{normalize.like_escape(q)}%"
        conditions.append(sa.or_(User.name.ilike(pattern, escape="\\"), User.platform_userid == q))
    if department_id is not None:
        path = department_path(session, actor, department_id)
        conditions.append(User.id.in_(subtree_user_ids(actor.corp_id, [path])))
    key = pagination.SortKey(User.name, False, "str")
    if cursor:
        value, row_id = pagination.decode_cursor(cursor, "str")
        conditions.append(pagination.after(key, User.id, value, row_id))
    users = session.execute(sa.select(User).where(*conditions).order_by(*pagination.order_by(key, User.id))
                            .limit(limit + 1)).scalars().all()
    has_more = len(users) > limit
    users = users[:limit]
    memberships: dict[int, list[dict[str, Any]]] = {u.id: [] for u in users}
    if users:
        for uid, did, name in session.execute(
            sa.select(UserDepartment.user_id, Department.id, Department.name)
            .join(Department, Department.id == UserDepartment.department_id)
            .where(UserDepartment.user_id.in_(list(memberships))).order_by(Department.id)
        ):
            memberships[uid].append({"id": did, "name": name})
    items = [{"id": u.id, "userid": u.platform_userid, "name": u.name, "title": u.title, "role": u.role,
              "active": u.active, "main_department_id": u.main_department_id, "departments": memberships[u.id]}
             for u in users]
    next_cursor = pagination.encode_cursor(users[-1].name, users[-1].id) if has_more and users else None
    return {"items": items, "next_cursor": next_cursor}
