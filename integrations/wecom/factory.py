"""Wiring a `WeComClient` for a bound corp: DB token store, usage counter and shared rate limiter."""

from __future__ import annotations

import hashlib
import threading
from typing import Any

from integrations.dingtalk.tokens import DbTokenStore
from integrations.wecom.client import WeComClient, WeComCredentials
from integrations.wecom.ratelimit import DEFAULT_PER_SECOND, DbWindowLimiter
from integrations.wecom.usage import BatchedUsageCounter
from models.db import Database

# One client per (database, corp, credentials, host) per process: each owns a requests.Session and a
# wechatpy client whose API groups hold back-references (sdk notes §8), so they are reused, not rebuilt.
_clients: dict[tuple, tuple[Database, WeComClient]] = {}
_clients_lock = threading.Lock()
_MAX_CACHED = 256


def _key(database: Database, corp: Any, secret: str, settings: Any, per_second: int) -> tuple:
    fingerprint = hashlib.sha256(f"{secret}\0{settings.master_key}".encode()).hexdigest()
    return (id(database), corp.id, corp.platform_corp_id, str(corp.agent_id), fingerprint,
            settings.wecom_api_base, per_second)


def client_for_corp(corp: Any, secret: str, *, settings: Any, database: Database,
                    per_second: int = DEFAULT_PER_SECOND, reuse: bool = True, **kwargs: Any) -> WeComClient:
    """`corp` is a `models.org.Corp`; `secret` the decrypted app secret; `settings` gives the API base,
    master key and time zone. Changing the secret, AgentId or base URL yields a fresh client."""
    if reuse and not kwargs:
        key = _key(database, corp, secret, settings, per_second)
        with _clients_lock:
            hit = _clients.get(key)
            if hit is not None and hit[0] is database:
                return hit[1]
    client = WeComClient(
        WeComCredentials(corp_id=corp.platform_corp_id, secret=secret, agent_id=str(corp.agent_id or "")),
        api_base=settings.wecom_api_base,
        token_store=DbTokenStore(database, corp.id, settings.master_key),
        usage_hook=BatchedUsageCounter(database, corp.id, getattr(corp, "timezone", None) or settings.timezone),
        limiter=DbWindowLimiter(database, corp.id, per_second=per_second),
        **kwargs,
    )
    if reuse and not kwargs:
        with _clients_lock:
            if len(_clients) >= _MAX_CACHED:
                _clients.pop(next(iter(_clients)))
            _clients[key] = (database, client)
    return client
