"""The one place that turns a bound corp into its platform client."""

from __future__ import annotations

from typing import Any

from app.services.corps import SecretBox
from integrations.base import CredentialsError, PlatformClient
from models.db import Database
from models.org import Corp, Platform


def client_for(corp: Corp, *, settings: Any, database: Database) -> PlatformClient:
    # A sandbox corp carries its own base URLs; every other corp keeps the process-wide hosts.
    settings = settings.for_corp(corp)
    secrets = SecretBox(settings.master_key).open(corp.secrets_ciphertext)
    if corp.platform == Platform.DINGTALK:
        from integrations.dingtalk.factory import client_for_corp

        if not corp.app_key or not secrets.get("app_secret"):
            raise CredentialsError("未配置 AppKey/AppSecret / AppKey or AppSecret missing", platform="dingtalk")
        return client_for_corp(corp, secrets["app_secret"], settings=settings, database=database)
    if corp.platform == Platform.WECOM:
        from integrations.wecom.factory import client_for_corp as wecom_client

        if not corp.agent_id or not secrets.get("secret"):
            raise CredentialsError("未配置 Secret/AgentId / WeCom secret or AgentId missing", platform="wecom")
        return wecom_client(corp, secrets["secret"], settings=settings, database=database)
    raise CredentialsError(f"平台 {corp.platform} 尚未接入 / platform {corp.platform} not supported yet",
                           platform=corp.platform)
