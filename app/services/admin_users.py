"""Users and their CRM roles, as the console lists and changes them."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so

from app.errors import Conflict, NotFound, ValidationError
from app.services import audit
from app.services.actor import Actor
from models.org import Role, User


def _row(user: User) -> dict[str, Any]:
    return {"id": user.id, "userid": user.platform_userid, "name": user.name, "title": user.title,
            "role": user.role, "active": user.active}


def list_users(session: so.Session, actor: Actor, *, q: str | None, role: str | None, cursor: int | None,
               limit: int) -> dict[str, Any]:
    stmt = sa.select(User).where(User.corp_id == actor.corp_id)
    if q:
        like = f"%{q.replace('%', '').replace('_', '')}%"
        stmt = stmt.where(sa.or_(User.name.like(like), User.platform_userid.like(like)))
    if role:
        stmt = stmt.where(User.role == role)
    if cursor:
        stmt = stmt.where(User.id > cursor)
    rows = session.execute(stmt.order_by(User.id).limit(limit + 1)).scalars().all()
    return {"items": [_row(u) for u in rows[:limit]], "next_cursor": rows[limit - 1].id if len(rows) > limit else None}


def set_role(session: so.Session, actor: Actor, user_id: int, role: str) -> dict[str, Any]:
    if role not in {r.value for r in Role}:
        raise ValidationError("角色无效 / invalid role", fields={"role": f"one of {sorted(r.value for r in Role)}"})
    # Locked so that two admins demoting each other at once cannot both pass the last-admin check.
    user = session.execute(sa.select(User).where(User.id == user_id, User.corp_id == actor.corp_id)
                           .with_for_update()).scalar_one_or_none()
    if user is None:
        raise NotFound("用户不存在 / user not found", fields={"user_id": "not found"})
    if user.role == role:
        return _row(user)
    if user.role == Role.ADMIN:
        admins = session.execute(
            sa.select(User.id).where(User.corp_id == actor.corp_id, User.role == Role.ADMIN, User.active.is_(True))
            .with_for_update()).scalars().all()
        if set(admins) <= {user.id}:
            raise Conflict("不能撤销最后一位管理员 / cannot demote the last admin", fields={"role": "last admin"})
    before = user.role
    user.role = role
    session.flush()
    audit.record(session, actor, "set_role", "user", user.id, {"role": {"before": before, "after": role}})
    return _row(user)
