"""Corps (tenants): creation with sensible defaults, secrets sealed at rest, per-corp settings."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so
from cryptography.fernet import Fernet, InvalidToken

from app.errors import Conflict, NotFound, ValidationError
from models.crm import OpportunityStage
from models.org import Corp, Platform

DEFAULT_STAGES = (
    # key, name, win probability %, won, lost
    ("initial", "初步接触", 10, False, False),
    ("needs", "需求确认", 30, False, False),
    ("proposal", "方案报价", 50, False, False),
    ("negotiation", "谈判", 70, False, False),
    ("won", "赢单", 100, True, False),
    ("lost", "输单", 0, False, True),
)

DEFAULT_SETTINGS: dict[str, Any] = {
    "stale_days": 30,
    "pool_reclaim_days": 60,
    "pool_warn_days": 7,
    "approval_escalate_hours": 24,
    "agenda_time": "09:00",
    "quiet_hours": ["21:00", "08:00"],
    "leaver_policy": "leader",  # leader | pool
    "monthly_api_quota": 5000,
    "quiet_hours_approvals": True,  # approvals go out even in quiet hours
    "org_sync_time": "02:00",  # nightly full sync, corp time
    "pool_hold_cap": 200,
    "pool_daily_claims": 20,
    "pool_reclaim_ban_days": 7,
}


class SecretBox:
    """Fernet (AES-128-CBC + HMAC-SHA256) keyed by CRM_MASTER_KEY."""

    def __init__(self, master_key: str) -> None:
        self._fernet = Fernet(master_key.encode())

    def seal(self, values: dict[str, str]) -> str:
        import json

        return self._fernet.encrypt(json.dumps(values).encode()).decode()

    def open(self, ciphertext: str | None) -> dict[str, str]:
        import json

        if not ciphertext:
            return {}
        try:
            return json.loads(self._fernet.decrypt(ciphertext.encode()))
        except InvalidToken:
            raise ValueError("corp secrets cannot be decrypted: CRM_MASTER_KEY changed?") from None


def create_corp(session: so.Session, box: SecretBox, *, platform: str, platform_corp_id: str, name: str,
                agent_id: str | None = None, app_key: str | None = None,
                secrets: dict[str, str] | None = None, timezone: str = "Asia/Shanghai") -> Corp:
    if platform not in {p.value for p in Platform}:
        raise ValidationError("平台应为 dingtalk 或 wecom / platform must be dingtalk or wecom",
                              fields={"platform": "invalid"})
    if not platform_corp_id.strip():
        raise ValidationError("CorpId 不能为空 / corp id required", fields={"corp_id": "required"})
    exists = session.execute(
        sa.select(Corp.id).where(Corp.platform == platform, Corp.platform_corp_id == platform_corp_id)
    ).scalar_one_or_none()
    if exists:
        raise Conflict("该企业已绑定 / corp already bound", fields={"corp_id": "exists"})
    corp = Corp(
        platform=platform, platform_corp_id=platform_corp_id.strip(), name=name.strip() or platform_corp_id,
        agent_id=agent_id, app_key=app_key,
        secrets_ciphertext=box.seal({k: v for k, v in (secrets or {}).items() if v}) if secrets else None,
        timezone=timezone, settings=dict(DEFAULT_SETTINGS),
    )
    session.add(corp)
    session.flush()
    for order, (key, label, prob, won, lost) in enumerate(DEFAULT_STAGES):
        session.add(OpportunityStage(corp_id=corp.id, key=key, name=label, probability=prob,
                                     sort_order=order, is_won=won, is_lost=lost))
    session.flush()
    # Imported here: approval defaults reach back into the CRM services, which import this module.
    from app.services.approval_defaults import install_defaults

    install_defaults(session, corp.id)
    session.flush()
    return corp


def find_corp(session: so.Session, corp_ref: str | None) -> Corp:
    """`--corp <CorpId>`; optional when exactly one corp is bound."""
    if corp_ref:
        corp = session.execute(sa.select(Corp).where(Corp.platform_corp_id == corp_ref)).scalar_one_or_none()
        if corp is None:
            raise NotFound(f"没有绑定 CorpId 为 {corp_ref} 的企业 / no corp {corp_ref}")
        return corp
    corps = session.execute(sa.select(Corp).order_by(Corp.id).limit(2)).scalars().all()
    if not corps:
        raise NotFound("尚未绑定任何企业 / no corp bound yet (crm corp add)")
    if len(corps) > 1:
        raise ValidationError("绑定了多个企业，请用 --corp 指定 / several corps bound: pass --corp",
                              fields={"corp": "required"})
    return corps[0]


def corp_setting(corp: Corp, key: str) -> Any:
    return (corp.settings or {}).get(key, DEFAULT_SETTINGS.get(key))


def public_dict(corp: Corp) -> dict[str, Any]:
    """What the API and CLI may show: never the secrets."""
    return {"id": corp.id, "platform": corp.platform, "corp_id": corp.platform_corp_id, "name": corp.name,
            "agent_id": corp.agent_id, "app_key": corp.app_key, "timezone": corp.timezone,
            "has_secrets": bool(corp.secrets_ciphertext), "active": corp.active}
