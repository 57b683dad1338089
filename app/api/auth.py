"""Session endpoints. Platform sign-in (DingTalk, WeCom) lives with each integration; the development
sign-in here exists only when the app runs beside the sandbox or in tests."""

from __future__ import annotations

import sqlalchemy as sa
from flask import current_app, jsonify

from app.api import bp
from app.api.parsing import body
from app.auth.session import current_actor, login_required, sign_in, sign_out
from app.db import get_session
from app.errors import NotFound
from app.openapi import accepts
from app.schemas import DevLoginIn
from models.org import Corp, User


@bp.post("/auth/dev")
@accepts(DevLoginIn)
def dev_login():
    """Sign in as any active user of a corp — sandbox and tests only."""
    if not current_app.config["CRM_SETTINGS"].dev_login:
        raise NotFound("not found")
    data = body(DevLoginIn)
    user = get_session().execute(
        sa.select(User).join(Corp, Corp.id == User.corp_id)
        .where(Corp.platform_corp_id == data.corpId, User.platform_userid == data.userid,
               User.active.is_(True), Corp.active.is_(True))
    ).scalar_one_or_none()
    if user is None:
        raise NotFound("用户不存在 / no such user", fields={"userid": "unknown"})
    sign_in(user)
    return jsonify({"user": {"id": user.id, "name": user.name, "role": user.role}})


@bp.post("/auth/logout")
def logout():
    sign_out()
    return "", 204


@bp.get("/me")
@login_required
def me():
    """The signed-in user and their corp."""
    actor = current_actor()
    session = get_session()
    user, corp = session.get(User, actor.user_id), session.get(Corp, actor.corp_id)
    return jsonify({"user": {"id": user.id, "userid": user.platform_userid, "name": user.name, "role": user.role},
                    "corp": {"id": corp.id, "corp_id": corp.platform_corp_id, "name": corp.name,
                             "platform": corp.platform, "timezone": corp.timezone}})
