"""Shared set-up for tests that run the app against the WeCom sandbox over real HTTP: settings pointing at
the sandbox, a bound sandbox app, its client and a full sync."""

from __future__ import annotations

from app.services.corps import SecretBox, create_corp
from app.services.org_sync import full_sync
from app.services.platform import platform_client
from models.org import Corp


def wecom_settings(settings, server):
    return settings.with_overrides(wecom_api_base=f"{server.url}/cgi-bin", wecom_oauth_base=server.url,
                                   public_url="http://crm.test")


def bind(database, wsettings, sbx) -> int:
    """Bind the sandbox app `sbx` as a WeCom corp; returns our primary key."""
    with database.session() as s:
        corp = create_corp(s, SecretBox(wsettings.master_key), platform="wecom", platform_corp_id=sbx.corp.corp_id,
                           name=sbx.corp.name, agent_id=str(sbx.agent_id),
                           secrets={"secret": sbx.secret, "callback_token": sbx.corp.callback_token,
                                    "aes_key": sbx.corp.callback_aes_key})
        return corp.id


def client(database, wsettings, corp_pk):
    with database.session() as s:
        corp = s.get(Corp, corp_pk)
    return platform_client(corp, settings=wsettings, database=database)


def sync(database, wsettings, corp_pk):
    return full_sync(database, corp_pk, client(database, wsettings, corp_pk), threads=4)
