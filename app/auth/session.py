"""The session cookie and the `Actor` it stands for, re-checked against the database on every request."""

from __future__ import annotations

import functools
import uuid

import sqlalchemy as sa
from flask import g, request, session

from app.db import get_session
from app.errors import Forbidden, Unauthorized
from app.services.actor import Actor
from models.org import Corp, Role, User

SESSION_KEYS = ("corp_id", "user_id")


def sign_in(user: User) -> None:
    session.clear()
    session["corp_id"] = user.corp_id
    session["user_id"] = user.id
    session.permanent = True


def sign_out() -> None:
    session.clear()


def request_id() -> str:
    if "request_id" not in g:
        incoming = request.headers.get("X-Request-Id", "")
        g.request_id = incoming[:64] if incoming.isprintable() and incoming else uuid.uuid4().hex
    return g.request_id


def current_actor() -> Actor:
    """The signed-in, still-active user of a still-active corp, or 401."""
    if "actor" in g:
        return g.actor
    corp_id, user_id = session.get("corp_id"), session.get("user_id")
    if not isinstance(corp_id, int) or not isinstance(user_id, int):
        raise Unauthorized("请先登录 / please sign in")
    row = get_session().execute(
        sa.select(User.role, User.active, Corp.active)
        .join(Corp, Corp.id == User.corp_id)
        .where(User.id == user_id, User.corp_id == corp_id)
    ).first()
    if row is None or not row[1] or not row[2]:
        session.clear()
        raise Unauthorized("账号已停用或不存在，请重新登录 / account inactive, please sign in again")
    g.actor = Actor(corp_id=corp_id, user_id=user_id, role=row[0], request_id=request_id(),
                    ip=request.remote_addr)
    return g.actor


def login_required(view):
    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        current_actor()
        return view(*args, **kwargs)

    return wrapper


def admin_required(view):
    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        if current_actor().role != Role.ADMIN:
            raise Forbidden("仅管理员可用 / admins only")
        return view(*args, **kwargs)

    return wrapper
