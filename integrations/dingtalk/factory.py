"""Wiring a `DingTalkClient` for a bound corp: DB token store, usage counter and shared rate limiter."""

from __future__ import annotations

import hashlib
import threading
from typing import Any

from integrations.dingtalk.client import DingTalkClient, DingTalkCredentials
from integrations.dingtalk.ratelimit import DEFAULT_PER_SECOND, DbRateLimiter
from integrations.dingtalk.tokens import DbTokenStore
from integrations.dingtalk.usage import DbUsageCounter
from models.db import Database

# One client per (database, corp, credentials, hosts): the client is thread-safe, and reusing it keeps
# the in-memory token copy and the HTTP connection pool instead of rebuilding them per request.
_clients: dict[tuple, tuple[Database, DingTalkClient]] = {}
_clients_lock = threading.Lock()
_MAX_CACHED = 256


def _key(database: Database, corp: Any, app_secret: str, settings: Any, per_second: int) -> tuple:
    fingerprint = hashlib.sha256(f"{app_secret}\0{settings.master_key}".encode()).hexdigest()
    return (id(database), corp.id, corp.platform_corp_id, corp.app_key, str(corp.agent_id), fingerprint,
            settings.dingtalk_oapi_base, settings.dingtalk_api_base, per_second)


def client_for_corp(corp: Any, app_secret: str, *, settings: Any, database: Database,
                    per_second: int = DEFAULT_PER_SECOND, reuse: bool = True, **kwargs: Any) -> DingTalkClient:
    """`corp` is a `models.org.Corp` (or anything with the same attributes); `app_secret` is the
    decrypted AppSecret; `settings` provides the base URLs, master key and time zone.

    With `reuse` (and no extra `kwargs`) the same client object is returned for unchanged settings;
    changing the secret, AppKey, AgentId or a base URL yields a fresh one.
    """
    if reuse and not kwargs:
        key = _key(database, corp, app_secret, settings, per_second)
        with _clients_lock:
            hit = _clients.get(key)
            if hit is not None and hit[0] is database:
                return hit[1]
    credentials = DingTalkCredentials(
        corp_id=corp.platform_corp_id,
        app_key=corp.app_key or "",
        app_secret=app_secret,
        agent_id=str(corp.agent_id or ""),
    )
    client = DingTalkClient(
        credentials,
        oapi_base=settings.dingtalk_oapi_base,
        api_base=settings.dingtalk_api_base,
        token_store=DbTokenStore(database, corp.id, settings.master_key),
        usage_hook=DbUsageCounter(database, corp.id, getattr(corp, "timezone", None) or settings.timezone),
        limiter=DbRateLimiter(database, corp.id, per_second=per_second),
        **kwargs,
    )
    if reuse and not kwargs:
        with _clients_lock:
            if len(_clients) >= _MAX_CACHED:
                _clients.pop(next(iter(_clients)))
            _clients[key] = (database, client)
    return client
