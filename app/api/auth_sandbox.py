"""Sandbox employee picker for the H5 app: only when the app runs with the sandbox (404 otherwise)."""

from __future__ import annotations

from typing import Annotated

from flask import current_app, jsonify
from pydantic import StringConstraints

from app.api import bp
from app.api.auth_dingtalk import signed_in_json
from app.api.parsing import Query, body
from app.auth.session import sign_in
from app.db import get_database, get_session
from app.errors import NotFound
from app.openapi import accepts
from app.schemas import Strict
from app.services.platform import client_factory
from app.services.sandbox_sign_in import list_employees, picker_corp, sign_in_as


class SandboxSignInIn(Strict):
    userid: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
    corpId: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)] | None = None


def _require_sandbox() -> None:
    if not current_app.config["CRM_SETTINGS"].sandbox:
        raise NotFound("not found")


@bp.get("/auth/sandbox/employees")
def sandbox_employees():
    """Sandbox employees to sign in as (sandbox mode only)."""
    _require_sandbox()
    query = Query({"q", "corpId"})
    corp = picker_corp(get_session(), query.str("corpId", max_length=64))
    people = list_employees(corp, q=query.str("q", max_length=50))
    return jsonify({"corpId": corp.platform_corp_id, "corpName": corp.name, "items": people})


@bp.post("/auth/sandbox/sign-in")
@accepts(SandboxSignInIn)
def sandbox_sign_in():
    """Sign in as a sandbox employee through the real DingTalk code exchange (sandbox mode only)."""
    _require_sandbox()
    data = body(SandboxSignInIn)
    session = get_session()
    corp = picker_corp(session, data.corpId)
    result = sign_in_as(session, corp, data.userid,
                        clients=client_factory(settings=current_app.config["CRM_SETTINGS"], database=get_database()))
    sign_in(result.user)
    return jsonify(signed_in_json(result))
