"""The newcomer's employee picker: list the sandbox corp's people and sign in as one of them through
the real 免登 exchange (a code minted by the sandbox, redeemed by `sign_in_with_dingtalk`)."""

from __future__ import annotations

from typing import Any

import sqlalchemy.orm as so

from app.errors import NotFound
from app.services.platform import ClientFactory, unavailable
from app.services.sandbox_corp import sandbox_corps
from app.services.sign_in import SignedIn, sign_in_with_dingtalk
from integrations.base import PlatformError
from integrations.sandbox.control import SandboxControl
from models.org import Corp

MAX_LISTED = 50


def picker_corp(session: so.Session, corp_id: str | None) -> Corp:
    corps = sandbox_corps(session)
    for corp in corps:
        if corp_id in (None, corp.platform_corp_id):
            return corp
    raise NotFound("没有沙箱企业 / no sandbox corp bound", code="no_sandbox_corp",
                   fields={"corpId": "not a sandbox corp"} if corp_id else {})


def _control(corp: Corp) -> SandboxControl:
    return SandboxControl(corp.settings["dingtalk_oapi_base"])


def list_employees(corp: Corp, *, q: str | None, limit: int = MAX_LISTED) -> list[dict[str, Any]]:
    """Employees of the simulated corp (not only those synced yet), filtered by name, userid, title or
    department."""
    try:
        people = _control(corp).employees(corp.platform_corp_id)
    except PlatformError as exc:
        raise unavailable(exc) from exc
    if q:
        needle = q.lower()
        people = [p for p in people
                  if needle in " ".join([p["userid"], p["name"], p.get("title") or "", *p["departments"]]).lower()]
    return people[:limit]


def sign_in_as(session: so.Session, corp: Corp, userid: str, *, clients: ClientFactory) -> SignedIn:
    try:
        code = _control(corp).auth_code(corp.platform_corp_id, userid)
    except PlatformError as exc:
        if exc.code == "400":
            raise NotFound("沙箱中没有这个员工 / no such sandbox employee", code="unknown_employee",
                           fields={"userid": "unknown"}) from None
        raise unavailable(exc) from exc
    return sign_in_with_dingtalk(session, clients=clients, corp_id=corp.platform_corp_id, auth_code=code)
