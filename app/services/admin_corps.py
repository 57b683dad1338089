"""Binding a corp from the admin console: who may bind what, the credentials sealed at rest, and the
connection test told in plain words with what to fix on the platform's side.

The console is per corp: an admin may re-bind (update the credentials of) and test their own corp. A
brand-new corp is added from the CLI (`crm corp add`), or from the console only in sandbox/development
mode — otherwise an admin of one company could create tenants nobody else controls. Corps added that
way remember the corp they were bound from, so that corp's admins may go on testing and fixing them.
"""

from __future__ import annotations

import re
import secrets as token_source
import string
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so

from app.errors import Forbidden, NotFound, ValidationError
from app.services import audit
from app.services.actor import Actor
from app.services.corps import SecretBox, create_corp, public_dict
from integrations.base import PlatformError
from models.org import Corp, Platform

BOUND_FROM = "bound_from_corp"
AES_KEY_LENGTH = 43  # both platforms: 43 characters of base64 without the trailing "="

# What the admin fixes for each documented error code, in the platform's console.
_HINTS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("40089", "40096", "invalidClientIdOrSecret", "invalid.client", "unauthorized.client"),
     "在开发者后台「凭证与基础信息」重新复制 AppKey 和 AppSecret / copy the AppKey and AppSecret again from the "
     "developer console (Credentials)"),
    (("wecom 40001",), "在企业微信管理后台「应用管理」查看或重置该应用的 Secret / view or reset the app's Secret in "
     "the WeCom admin console (App Management)"),
    (("40013",), "核对 CorpID：企业微信管理后台「我的企业」页底部 / check the CorpID at the bottom of "
     "My Company in the WeCom admin console"),
    (("40056", "301002"), "核对 AgentId，须与 Secret 属于同一个应用 / check the AgentId: it must belong to the "
     "same app as the secret"),
    (("60020", "Forbidden.AccessDenied.IpNotInWhiteList"),
     "把本服务器的出口 IP 加入应用的 IP 白名单（企业可信 IP）/ add this server's egress IP to the app's IP whitelist "
     "(trusted IPs)"),
    (("60011", "50004", "48002", "60021", "43007",
      "Forbidden.AccessDenied.AccessTokenPermissionDenied"),
     "为应用开通通讯录读取权限，并把全部门加入应用可见范围 / grant the app contact (address book) read permission "
     "and add all departments to its visible range"),
)
NETWORK_HINT = ("检查本服务器能否访问平台接口（防火墙、代理、DNS）/ check that this server can reach the platform's "
                "API (firewall, proxy, DNS)")


def _random_token(length: int) -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(token_source.choice(alphabet) for _ in range(length))


def can_add_corps(settings: Any) -> bool:
    return bool(settings.sandbox or settings.dev_login)


def visible_corps(session: so.Session, actor: Actor) -> list[Corp]:
    """The actor's own corp, then the corps bound from it (sandbox/development mode only)."""
    corps = session.execute(sa.select(Corp).order_by(Corp.id)).scalars().all()
    return [c for c in corps if c.id == actor.corp_id or (c.settings or {}).get(BOUND_FROM) == actor.corp_id]


def get_corp(session: so.Session, actor: Actor, corp_pk: int) -> Corp:
    corp = session.get(Corp, corp_pk)
    if corp is None or not (corp.id == actor.corp_id or (corp.settings or {}).get(BOUND_FROM) == actor.corp_id):
        raise NotFound("企业不存在 / corp not found", fields={"corp_id": "not found"})
    return corp


def callback_url(settings: Any, corp: Corp) -> str:
    return f"{settings.public_url.rstrip('/')}/callbacks/{corp.platform}/{corp.platform_corp_id}"


def corp_view(settings: Any, corp: Corp, *, shown_once: dict[str, str] | None = None) -> dict[str, Any]:
    """The public fields plus the callback URL; the callback token and AES key only right after the admin
    set or generated them (they must be pasted into the platform console), never later."""
    view = public_dict(corp)
    view.update(callback_url=callback_url(settings, corp), sandbox=bool((corp.settings or {}).get("sandbox")))
    if shown_once:
        view["callback"] = shown_once
    return view


def _secrets(platform: str, data: Any) -> dict[str, str]:
    values = {"callback_token": data.callback_token or _random_token(32),
              "aes_key": data.aes_key or _random_token(AES_KEY_LENGTH)}
    if len(values["aes_key"]) != AES_KEY_LENGTH:
        raise ValidationError("AES Key 应为 43 位 / the AES key must be 43 characters", fields={"aes_key": "length"})
    if platform == Platform.DINGTALK:
        if not data.app_key:
            raise ValidationError("请填写 AppKey / AppKey required", fields={"app_key": "required"})
        if not data.app_secret:
            raise ValidationError("请填写 AppSecret / AppSecret required", fields={"app_secret": "required"})
        values["app_secret"] = data.app_secret
    else:
        if not data.secret:
            raise ValidationError("请填写应用 Secret / app Secret required", fields={"secret": "required"})
        if not data.agent_id:
            raise ValidationError("请填写 AgentId / AgentId required", fields={"agent_id": "required"})
        values["secret"] = data.secret
    return values


def _point_at_sandbox(corp: Corp, settings: Any) -> None:
    base = f"http://127.0.0.1:{settings.sandbox_port}"
    bases = ({"dingtalk_oapi_base": base, "dingtalk_api_base": base} if corp.platform == Platform.DINGTALK
             else {"wecom_api_base": f"{base}/cgi-bin", "wecom_oauth_base": base})
    corp.settings = {**(corp.settings or {}), "sandbox": True, **bases}


def add_corp(session: so.Session, actor: Actor, settings: Any, data: Any) -> tuple[Corp, dict[str, str]]:
    if not can_add_corps(settings):
        raise Forbidden("新企业请用命令行 crm corp add 绑定；控制台只能更新本企业的凭证 / add a new corp with "
                        "`crm corp add`; the console updates this corp's credentials only", code="cli_only")
    if data.sandbox and not settings.sandbox:
        raise ValidationError("未运行沙箱 / the sandbox is not running", fields={"sandbox": "not available"})
    values = _secrets(data.platform, data)
    corp = create_corp(session, SecretBox(settings.master_key), platform=data.platform,
                       platform_corp_id=data.corp_id.strip(), name=data.name or data.corp_id,
                       agent_id=data.agent_id or None, app_key=data.app_key or None, secrets=values)
    corp.settings = {**(corp.settings or {}), BOUND_FROM: actor.corp_id}
    if data.sandbox:
        _point_at_sandbox(corp, settings)
    session.flush()
    audit.record(session, actor, "bind", "corp", corp.id,
                 {"platform": {"before": None, "after": corp.platform},
                  "corp_id": {"before": None, "after": corp.platform_corp_id}})
    return corp, {"token": values["callback_token"], "aes_key": values["aes_key"]}


def update_corp(session: so.Session, actor: Actor, settings: Any, corp_pk: int,
                data: Any) -> tuple[Corp, dict[str, str] | None]:
    """Re-bind: only what the admin typed changes; a blank secret keeps the stored one."""
    corp = get_corp(session, actor, corp_pk)
    box = SecretBox(settings.master_key)
    stored = box.open(corp.secrets_ciphertext)
    changed: dict[str, Any] = {}
    for name in ("name", "app_key", "agent_id"):
        value = getattr(data, name)
        if value is not None and value.strip() and value.strip() != getattr(corp, name):
            changed[name] = {"before": getattr(corp, name), "after": value.strip()}
            setattr(corp, name, value.strip())
    new_secrets = dict(stored)
    secret_key = "app_secret" if corp.platform == Platform.DINGTALK else "secret"
    for field, key in ((secret_key, secret_key), ("callback_token", "callback_token"), ("aes_key", "aes_key")):
        value = getattr(data, field, None)
        if value:
            new_secrets[key] = value
    if data.regenerate_callback:
        new_secrets["callback_token"], new_secrets["aes_key"] = _random_token(32), _random_token(AES_KEY_LENGTH)
    if len(new_secrets.get("aes_key") or "x" * AES_KEY_LENGTH) != AES_KEY_LENGTH:
        raise ValidationError("AES Key 应为 43 位 / the AES key must be 43 characters", fields={"aes_key": "length"})
    # Secrets are audited by name only: the log must never hold them.
    changed.update({k: {"before": "***", "after": "***"} for k in new_secrets if new_secrets[k] != stored.get(k)})
    if new_secrets != stored:
        corp.secrets_ciphertext = box.seal(new_secrets)
    session.flush()
    if changed:
        audit.record(session, actor, "rebind", "corp", corp.id, changed)
    callback_changed = any(new_secrets.get(k) != stored.get(k) for k in ("callback_token", "aes_key"))
    shown = {"token": new_secrets["callback_token"], "aes_key": new_secrets["aes_key"]} if callback_changed else None
    return corp, shown


def hints_for(message: str, platform: str) -> list[str]:
    out = [hint for codes, hint in _HINTS
           if any(re.search(rf"(?<![\w.]){re.escape(c)}(?![\w.])", message) for c in codes)]
    if not out and re.search(r"timeout|timed out|connect|网络|resolve", message, re.I):
        out.append(NETWORK_HINT)
    return out


def test_corp(session: so.Session, actor: Actor, settings: Any, database: Any, corp_pk: int) -> dict[str, Any]:
    """Fetch a token and read the root department; the answer in plain words and what to fix."""
    from integrations.registry import client_for

    corp = get_corp(session, actor, corp_pk)
    try:
        report = client_for(corp, settings=settings, database=database).test_connection()
        ok, message = report.ok, report.message
    except PlatformError as exc:
        ok, message = False, str(exc)
    result = {"ok": ok, "message": message, "hints": [] if ok else hints_for(message, corp.platform),
              "callback_url": callback_url(settings, corp)}
    audit.record(session, actor, "test", "corp", corp.id, {"ok": {"before": None, "after": ok}})
    return result
