"""WeCom errcodes → the neutral errors of `integrations.base` (fact sheet §7).

Every cause is one line, Chinese first then plain English, for `crm corp test` and the admin console.
WeCom answers HTTP 200 with `{"errcode", "errmsg"}`; we branch on the code only, never on `errmsg`
(its text changes and carries a hint URL).
"""

from __future__ import annotations

from typing import Any

from integrations.base import (
    CredentialsError,
    InvalidCodeError,
    InvalidTokenError,
    NotFoundError,
    PermissionDeniedError,
    PlatformError,
    RateLimitedError,
    RetryableError,
)

PLATFORM = "wecom"

_Spec = tuple[type[PlatformError], str, float | None]

# errcode → (error class, cause, retry_after seconds or None)
CODES: dict[int, _Spec] = {
    -1: (RetryableError, "企业微信系统繁忙，请稍后重试 (WeCom is busy, retry later)", 1.0),
    # 40001 is "invalid secret" in WeCom, not "token invalid" as in the Official-Account API (§1).
    40001: (CredentialsError, "Secret 不正确、已重置或应用已停用 (wrong or reset app secret, or the app is disabled)",
            None),
    40013: (CredentialsError, "CorpID 不正确 (wrong CorpID)", None),
    40056: (CredentialsError, "AgentId 不正确 (wrong AgentId)", None),
    301002: (CredentialsError, "AgentId 与 Secret 不属于同一个应用 (AgentId and secret belong to different apps)",
             None),
    60020: (
        CredentialsError,
        "服务器出口 IP 不在应用的企业可信 IP 中，请在应用设置里添加 (server IP not in the app's trusted IPs)",
        None,
    ),
    40014: (InvalidTokenError, "access_token 不合法 (access token invalid)", None),
    42001: (InvalidTokenError, "access_token 已过期 (access token expired)", None),
    41001: (InvalidTokenError, "缺少 access_token (access token missing)", None),
    40029: (InvalidCodeError, "登录 code 无效或已使用 (sign-in code invalid or already used)", None),
    42003: (InvalidCodeError, "登录 code 已过期 (sign-in code expired)", None),
    60011: (
        PermissionDeniedError,
        "应用没有该成员/部门的通讯录权限：请把部门加入应用的可见范围 "
        "(no contact permission: add the departments to the app's visible range)",
        None,
    ),
    60021: (PermissionDeniedError, "成员不在应用可见范围内 (user outside the app's visible range)", None),
    48002: (PermissionDeniedError, "应用无权调用该接口 (the app may not call this API)", None),
    50001: (
        PermissionDeniedError,
        "回调域名不是应用的可信域名 (redirect host is not a trusted domain of the app)",
        None,
    ),
    81013: (
        PermissionDeniedError,
        "接收人全部无效或不在应用可见范围内 (every recipient is invalid or outside the visible range)",
        None,
    ),
    40003: (NotFoundError, "成员 userid 无效 (invalid userid)", None),
    60111: (NotFoundError, "成员不存在 (user not found)", None),
    60123: (NotFoundError, "部门不存在 (department not found)", None),
    # Not in the §7 list; 获取标签成员 (90213) answers it for an unknown tag.
    40068: (NotFoundError, "标签不存在或已删除：请检查应用可见范围中的标签 (tag not found or deleted: check the "
                           "tags in the app's visible range)", None),
    # A 45009 block lasts the whole window (1 min / 1 h / 1 day, §8): do not hammer.
    45009: (RateLimitedError, "接口调用频率超限 (WeCom API frequency limit hit)", 60.0),
    45033: (RateLimitedError, "接口并发调用超限 (too many concurrent calls to this WeCom API)", 1.0),
    40032: (PlatformError, "接收人超过 1000 个 (more than 1000 recipients in one call)", None),
    40035: (PlatformError, "参数不合法 (invalid parameter)", None),
    42012: (PlatformError, "jsapi_ticket 不可用 (JS-SDK ticket unusable)", None),
    42017: (PlatformError, "卡片按钮 key 不存在 (card button key does not exist)", None),
}


def _to_int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def error_for(errcode: Any, errmsg: str | None = None) -> PlatformError | None:
    """None for success (0), else the mapped error; unknown codes become a plain `PlatformError`."""
    code = _to_int(errcode)
    if code == 0:
        return None
    detail = {"errmsg": errmsg} if errmsg else None
    if code in CODES:
        cls, cause, retry_after = CODES[code]
        if issubclass(cls, RetryableError):
            return cls(cause, retry_after=retry_after, code=code, platform=PLATFORM, detail=detail)
        return cls(cause, code=code, platform=PLATFORM, detail=detail)
    # errmsg may carry a hint URL and request id, but never a secret: the first clause is safe to show.
    short = (errmsg or "").split(",")[0][:80]
    return PlatformError(f"企业微信接口返回错误 (WeCom error){': ' + short if short else ''}", code=code,
                         platform=PLATFORM, detail=detail)


def timeout_error(path: str) -> RetryableError:
    # A timed-out send may still have been delivered; senders rely on idempotency keys upstream.
    return RetryableError(f"连接企业微信超时 (timed out calling WeCom {path})", retry_after=2.0, code="timeout",
                          platform=PLATFORM)


def network_error(exc: BaseException) -> RetryableError:
    return RetryableError(f"无法连接企业微信 (cannot reach WeCom: {type(exc).__name__})", retry_after=2.0,
                          code="network", platform=PLATFORM)


def http_error(status: int | None) -> PlatformError:
    if status is not None and (status >= 500 or status == 429):
        return RetryableError(f"企业微信服务暂时不可用 (WeCom HTTP {status})", retry_after=2.0, code=status,
                              platform=PLATFORM)
    return PlatformError(f"企业微信返回 HTTP {status} (unexpected HTTP status)", code=status or "http",
                         platform=PLATFORM)


def bad_response() -> RetryableError:
    return RetryableError("企业微信返回了无法识别的应答 (unexpected answer from WeCom)", retry_after=5.0,
                          code="bad_response", platform=PLATFORM)


EMPTY_RANGE = (
    "应用可见范围内没有任何部门、成员或标签：请在企业微信管理后台 → 应用管理 → 本应用 → 可见范围 中添加，"
    "否则同步不到任何成员 (the app's visible range has no departments, people or tags: add them in the admin "
    "console, otherwise sync finds no one)"
)


def empty_range_error() -> PermissionDeniedError:
    return PermissionDeniedError(EMPTY_RANGE, code="empty_visible_range", platform=PLATFORM)
