"""DingTalk error codes → the neutral errors of `integrations.base` (fact sheet §2.1, §2.2).

Each cause is one line, Chinese first then plain English, meant for `crm corp test` and the admin console.
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
    QuotaExceededError,
    RateLimitedError,
    RetryableError,
)

PLATFORM = "dingtalk"

# errcode → (error class, cause, retry_after seconds or None)
_OLD: dict[int, tuple[type[PlatformError], str, float | None]] = {
    -1: (RetryableError, "钉钉系统繁忙，请稍后重试 (DingTalk is busy, retry later)", 1.0),
    40001: (InvalidTokenError, "access_token 无效 (access token rejected)", None),
    40014: (InvalidTokenError, "access_token 不合法 (access token invalid)", None),
    42001: (InvalidTokenError, "access_token 已过期 (access token expired)", None),
    40000: (InvalidTokenError, "access_token 为空 (access token missing)", None),
    40089: (CredentialsError, "CorpId 或 CorpSecret 不正确 (wrong CorpId or CorpSecret)", None),
    40096: (CredentialsError, "AppKey 或 AppSecret 不正确 (wrong AppKey or AppSecret)", None),
    40056: (CredentialsError, "AgentId 不正确 (wrong AgentId)", None),
    40078: (InvalidCodeError, "免登授权码无效、已过期或已使用 (sign-in code expired or already used)", None),
    43007: (PermissionDeniedError, "需要授权 (authorisation required)", None),
    50002: (PermissionDeniedError, "员工不在应用可见范围内 (user outside the app's visible range)", None),
    50004: (PermissionDeniedError, "部门不在应用通讯录权限范围内 (department outside the contact scope)", None),
    60011: (
        PermissionDeniedError,
        "应用没有调用该接口的权限，请在开发者后台开通通讯录等权限 (the app lacks this API permission)",
        None,
    ),
    60020: (
        CredentialsError,
        "服务器出口 IP 不在应用白名单中 (server IP not in the app's IP whitelist)",
        None,
    ),
    60003: (NotFoundError, "部门不存在 (department not found)", None),
    60121: (NotFoundError, "找不到该用户 (user not found)", None),
    33012: (NotFoundError, "无效的 userid (user not found)", None),
    90002: (RateLimitedError, "接口全局调用频率超限 (global API rate limit hit)", 2.0),
    90018: (RateLimitedError, "应用调用该接口频率超限 (per-app API rate limit hit)", 1.0),
    90005: (RateLimitedError, "企业调用该接口次数过多 (too many calls from this org)", 5.0),
    90006: (RateLimitedError, "该凭证调用次数过多 (too many calls with these credentials)", 5.0),
    90001: (RetryableError, "服务器调用被暂时封禁 (calls from this server temporarily blocked)", 300.0),
    90003: (RetryableError, "企业调用被暂时封禁 (calls from this org temporarily blocked)", 300.0),
    90004: (RetryableError, "凭证调用被暂时封禁 (calls with these credentials temporarily blocked)", 300.0),
    90020: (QuotaExceededError, "企业本月接口调用量已用完 (monthly API quota used up)", None),
    41052: (RetryableError, "消息仍在发送中 (message still being sent)", 5.0),
}

# NEW API `code` → (error class, cause, retry_after)
_NEW: dict[str, tuple[type[PlatformError], str, float | None]] = {
    "InvalidAuthentication": _OLD[40014],
    "invalidClientIdOrSecret": _OLD[40096],
    "invalid.client": _OLD[40096],
    "unauthorized.client": _OLD[40096],
    "Forbidden.AccessDenied.AccessTokenPermissionDenied": (
        PermissionDeniedError,
        "应用未开通该接口权限 (the app lacks this API permission)",
        None,
    ),
    "Forbidden.AccessDenied.IpNotInWhiteList": _OLD[60020],
    "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi": _OLD[90018],
    "Forbidden.AccessDenied.QpsLimitForApi": _OLD[90002],
    "Forbidden.AccessDenied.QpmLimitForAppkeyAndApi": (
        RateLimitedError,
        "应用调用该接口每分钟次数超限 (per-app per-minute limit hit)",
        60.0,
    ),
    "Forbidden.AccessDenied.ApiCountLimitForOrg": _OLD[90020],
    "userNotExist": _OLD[60121],
    "userNotFound": _OLD[60121],
    "staff.not.found": _OLD[60121],
    "forbidden.user.notInOrg": _OLD[60121],
    "todo.taskCreate.flowControlError": (
        RateLimitedError,
        "待办创建被限流 (to-do creation throttled)",
        1.0,
    ),
    "todo.taskCreate.lockError": (RetryableError, "待办创建冲突，请重试 (to-do creation conflict)", 1.0),
}


def _build(
    spec: tuple[type[PlatformError], str, float | None], code: Any, message: str | None
) -> PlatformError:
    cls, cause, retry_after = spec
    detail = {"message": message} if message else None
    if issubclass(cls, RetryableError):
        return cls(cause, retry_after=retry_after, code=code, platform=PLATFORM, detail=detail)
    return cls(cause, code=code, platform=PLATFORM, detail=detail)


def _to_int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def old_api_error(body: dict[str, Any]) -> PlatformError | None:
    """None when `errcode` is 0; else the mapped error. `88` wraps the real code in `sub_code`."""
    errcode = _to_int(body.get("errcode"))
    if errcode == 0:
        return None
    message = body.get("errmsg")
    if errcode == 88:
        sub = _to_int(body.get("sub_code"))
        if sub is not None and sub in _OLD:
            return _build(_OLD[sub], sub, body.get("sub_msg") or message)
        return PlatformError(
            f"钉钉鉴权异常 (DingTalk auth error): {body.get('sub_msg') or message}",
            code=body.get("sub_code") or 88,
            platform=PLATFORM,
        )
    if errcode is None:
        return unexpected_body_error(body)
    if errcode in _OLD:
        return _build(_OLD[errcode], errcode, message)
    return PlatformError(f"钉钉接口返回错误 (DingTalk error): {message}", code=errcode, platform=PLATFORM)


def new_api_error(status: int, body: Any) -> PlatformError:
    """Map a non-2xx answer of a v1.0 API. Throttling is 403 there, not 429 (§2.2)."""
    code = body.get("code") if isinstance(body, dict) else None
    message = body.get("message") if isinstance(body, dict) else None
    if code in _NEW:
        return _build(_NEW[code], code, message)
    if isinstance(code, str) and code.startswith("Forbidden.AccessDenied.") and "Limit" in code:
        return RateLimitedError(
            "钉钉接口限流 (DingTalk throttled the call)", retry_after=1.0, code=code, platform=PLATFORM
        )
    if status == 401:
        return _build(_OLD[40014], code or status, message)
    if status == 429:
        return RateLimitedError("钉钉接口限流 (DingTalk throttled the call)", retry_after=1.0,
                                code=code or status, platform=PLATFORM)
    if status >= 500:
        return RetryableError(
            f"钉钉服务暂时不可用 (DingTalk server error {status})",
            retry_after=2.0,
            code=code or status,
            platform=PLATFORM,
        )
    if isinstance(message, str) and "not exist" in message:
        return NotFoundError(f"钉钉对象不存在 (not found): {message}", code=code or status, platform=PLATFORM)
    if isinstance(body, dict) and code is None:
        return unexpected_body_error(body, status=status)
    return PlatformError(
        f"钉钉接口返回错误 (DingTalk error): {message or status}", code=code or status, platform=PLATFORM,
        detail={"message": message} if message else None,
    )


def unexpected_body_error(body: Any, *, status: int | None = None) -> PlatformError:
    """Answers that are not DingTalk JSON at all: the IP block page `{"status":1111,"wait":5,...}`
    or HTML (§2.3) — the caller's IP is blocked for minutes, so back off rather than fail hard."""
    if isinstance(body, dict) and ("punish" in body or body.get("status") == 1111):
        wait = _to_int(body.get("wait")) or 5
        return RetryableError(
            "服务器 IP 调用过于频繁被暂时封禁 (server IP temporarily blocked by DingTalk)",
            retry_after=wait * 60.0,
            code="ip_blocked",
            platform=PLATFORM,
        )
    return RetryableError(
        f"钉钉返回了无法识别的应答 (unexpected answer from DingTalk{f', HTTP {status}' if status else ''})",
        retry_after=5.0,
        code=status or "bad_response",
        platform=PLATFORM,
    )
