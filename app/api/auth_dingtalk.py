"""DingTalk sign-in (免登) and the `dd.config` signature for H5 pages."""

from __future__ import annotations

from typing import Annotated

from flask import current_app, jsonify, request
from pydantic import StringConstraints

from app.api import bp
from app.api.parsing import Query, body
from app.auth.session import sign_in
from app.db import get_database, get_session
from app.errors import ValidationError
from app.openapi import accepts
from app.schemas import Strict
from app.services.jsapi_config import jsapi_config
from app.services.platform import client_factory
from app.services.sign_in import SignedIn, sign_in_with_dingtalk

CorpIdStr = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64,
                                             pattern=r"^[A-Za-z0-9_\-]+$")]
AuthCodeStr = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128,
                                               pattern=r"^[A-Za-z0-9_\-]+$")]


class DingTalkSignInIn(Strict):
    # DingTalk's own field names, as the JSAPI hands them over.
    corpId: CorpIdStr
    authCode: AuthCodeStr


def _clients():
    return client_factory(settings=current_app.config["CRM_SETTINGS"], database=get_database())


def signed_in_json(result: SignedIn) -> dict:
    user, corp = result.user, result.corp
    return {"user": {"id": user.id, "userid": user.platform_userid, "name": user.name, "role": user.role},
            "corp": {"id": corp.id, "corp_id": corp.platform_corp_id, "name": corp.name},
            "created": result.created}


def complete_dingtalk_sign_in(corp_id: str, auth_code: str):
    """Exchange the code, then start the session (shared with the sandbox picker)."""
    result = sign_in_with_dingtalk(get_session(), clients=_clients(), corp_id=corp_id, auth_code=auth_code)
    sign_in(result.user)
    return jsonify(signed_in_json(result))


@bp.post("/auth/dingtalk")
@accepts(DingTalkSignInIn)
def dingtalk_sign_in():
    """Sign in with a DingTalk workbench auth code (dd.requestAuthCode)."""
    data = body(DingTalkSignInIn)
    return complete_dingtalk_sign_in(data.corpId, data.authCode)


@bp.get("/auth/dingtalk/jsapi-config")
def dingtalk_jsapi_config():
    """Signed values for dd.config on one of our pages."""
    query = Query({"corpId", "url"})
    corp_id = query.str("corpId", max_length=64)
    if corp_id is None:
        raise ValidationError("缺少 corpId / corpId is required", fields={"corpId": "required"})
    settings = current_app.config["CRM_SETTINGS"]
    origins = (settings.public_url, request.host_url.rstrip("/"))
    config = jsapi_config(get_session(), clients=_clients(), corp_id=corp_id, url=query.args.get("url", ""),
                          allowed_origins=origins, default_digest=settings.dingtalk_jsapi_digest)
    return jsonify(config)
