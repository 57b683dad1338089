"""Shared set-up for the delivery tests: a sandbox corp over real HTTP bound as a CRM corp, its users
mirrored as CRM users, and readers of the sandbox inbox."""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import datetime

import requests

from app.services.corps import SecretBox, create_corp
from models.org import Corp, Role, User


def bind_sandbox_corp(session, settings, sandbox_corp, *, users: int | None = None,
                      corp_settings: dict | None = None) -> tuple[Corp, list[User]]:
    corp = create_corp(
        session, SecretBox(settings.master_key), platform="dingtalk", platform_corp_id=sandbox_corp.corp_id,
        name=sandbox_corp.name, agent_id=str(sandbox_corp.agent_id), app_key=sandbox_corp.app_key,
        secrets={"app_secret": sandbox_corp.app_secret},
    )
    corp.settings = {**corp.settings, **(corp_settings or {})}
    people = []
    for i, su in enumerate(list(sandbox_corp.users.values())[:users]):
        person = User(corp_id=corp.id, platform_userid=su.userid, unionid=su.unionid, name=su.name,
                      role=Role.ADMIN if i == 0 else Role.SALESPERSON)
        session.add(person)
        people.append(person)
    session.flush()
    return corp, people


def sandbox_settings(settings, server):
    return settings.with_overrides(dingtalk_oapi_base=server.url, dingtalk_api_base=server.url,
                                   public_url="https://crm.example.com")


def inbox(server, userid: str | None = None) -> list[dict]:
    s = requests.Session()
    s.trust_env = False
    params = {"userid": userid} if userid else {}
    data = s.get(f"{server.url}/sandbox/dingtalk/inbox", params=params, timeout=30).json()
    s.close()
    return data["messages"]


def message_text(message: dict) -> str:
    return json.dumps(message["msg"], ensure_ascii=False)


def marker_counts(messages: list[dict], pattern: str = r"item-(\d+)-x") -> Counter:
    """How often each marker appears in delivered messages (dropped ones do not reach anyone)."""
    seen: Counter = Counter()
    for m in messages:
        if not m["delivered"]:
            continue
        for marker in set(re.findall(pattern, message_text(m))):
            seen[marker] += len(m["delivered"])
    return seen


def local(corp_tz: str, *args) -> datetime:
    from zoneinfo import ZoneInfo

    return datetime(*args, tzinfo=ZoneInfo(corp_tz))
