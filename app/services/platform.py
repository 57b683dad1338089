"""A bound corp's platform client, and the one way platform failures become API errors.

`Settings.for_corp` applies the corp's own base URLs, so the sandbox corp talks to the local sandbox
while every other corp keeps the real hosts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from app.errors import ApiError
from integrations.base import PlatformClient, PlatformError
from integrations.registry import client_for
from models.db import Database
from models.org import Corp

ClientFactory = Callable[[Corp], PlatformClient]


class PlatformUnavailable(ApiError):
    """The platform could not be reached or refused our app's credentials: not the caller's fault."""

    status = 503
    code = "platform_unavailable"


def platform_client(corp: Corp, *, settings: Any, database: Database) -> PlatformClient:
    try:
        return client_for(corp, settings=settings, database=database)
    except ValueError as exc:  # secrets that no longer decrypt: the master key changed
        raise PlatformUnavailable("企业密钥无法解密，请管理员重新绑定 / corp secrets unreadable, rebind the corp",
                                  code="corp_secrets_unreadable") from exc


def client_factory(*, settings: Any, database: Database) -> ClientFactory:
    return lambda corp: platform_client(corp, settings=settings, database=database)


def unavailable(exc: PlatformError) -> PlatformUnavailable:
    """A 503 naming the platform's cause (never secrets: causes are fixed sentences)."""
    extra = {"platform_code": exc.code} if exc.code else {}
    name = {"dingtalk": "钉钉", "wecom": "企业微信"}.get(exc.platform, "平台")
    return PlatformUnavailable(f"{name}暂时不可用 / platform unavailable: {exc.cause}", extra=extra)
