"""Sign-in from the WeCom workbench: OAuth2 `snsapi_base` (fact sheet §2).

`start_oauth` builds the authorize URL and the one-time `state` that ties the round trip to the browser
that began it; `finish_oauth` checks that state (signed session value, compared in constant time, claimed
once in the database so a replayed callback URL is refused), exchanges the code with `auth/getuserinfo`
and finds — or, before the first sync, fetches and adds — the person. Nothing here touches the session
cookie: the view stores the pending state and starts the session after success.
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import sqlalchemy as sa
import sqlalchemy.orm as so

from app.errors import NotFound, Unauthorized, ValidationError
from app.services.platform import ClientFactory, unavailable
from app.services.sign_in import SignedIn, outside_range, user_for_identity
from integrations.base import InvalidCodeError, PermissionDeniedError, PlatformError
from models.org import Corp, Platform
from models.platform import ProcessedEvent

STATE_TTL = 600  # the OAuth code itself lives 5 minutes (§2.1); the user may linger on the page a little
DEFAULT_NEXT = "/h5/"
MAX_NEXT = 1024


def find_wecom_corp(session: so.Session, corp_id: str | None, *, field: str = "corp") -> Corp:
    if not corp_id:
        raise ValidationError("缺少企业 CorpID / corp is required", fields={field: "required"})
    corp = session.execute(
        sa.select(Corp).where(Corp.platform == Platform.WECOM, Corp.platform_corp_id == corp_id)
    ).scalar_one_or_none()
    if corp is None or not corp.active:
        raise NotFound("该企业未绑定本应用 / this corp is not bound to the app", code="unknown_corp",
                       fields={field: "unknown"})
    return corp


def safe_next(value: str | None) -> str:
    """Only a path on this site: `/h5/...`. Absolute URLs, `//host` and `/\\host` (browsers treat both
    as another host) and control characters fall back to the H5 home."""
    if not value or len(value) > MAX_NEXT or not value.isprintable():
        return DEFAULT_NEXT
    if not value.startswith("/") or value.startswith(("//", "/\\")) or "\\" in value:
        return DEFAULT_NEXT
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return DEFAULT_NEXT
    return value


@dataclass(frozen=True)
class OAuthStart:
    url: str  # where to send the browser
    pending: dict[str, Any]  # what the view keeps in the signed session until the callback


def start_oauth(corp: Corp, *, oauth_base: str, redirect_uri: str, next_path: str | None,
                now: float | None = None) -> OAuthStart:
    # `state` must be [a-zA-Z0-9] and ≤128 bytes (§2.1): a random hex nonce.
    state = secrets.token_hex(16)
    query = urlencode({"appid": corp.platform_corp_id, "redirect_uri": redirect_uri, "response_type": "code",
                       "scope": "snsapi_base", "state": state, "agentid": corp.agent_id or ""})
    url = f"{oauth_base.rstrip('/')}/connect/oauth2/authorize?{query}#wechat_redirect"
    pending = {"state": state, "corp": corp.platform_corp_id, "next": safe_next(next_path),
               "expires": int((now or time.time()) + STATE_TTL)}
    return OAuthStart(url=url, pending=pending)


def _bad_state(why: str) -> Unauthorized:
    return Unauthorized("登录请求已失效，请重新进入应用 / sign-in request expired or not started here",
                        code="invalid_state", fields={"state": why})


def check_state(session: so.Session, pending: Any, state: str | None, *, now: float | None = None) -> Corp:
    """The corp the round trip was started for; refuses a missing, foreign, expired or reused state."""
    if not state:
        raise _bad_state("required")
    if not isinstance(pending, dict) or not isinstance(pending.get("state"), str):
        raise _bad_state("no sign-in was started in this browser")
    if not hmac.compare_digest(pending["state"].encode(), state.encode()):
        raise _bad_state("mismatch")
    if int(pending.get("expires") or 0) < (now or time.time()):
        raise _bad_state("expired")
    corp = find_wecom_corp(session, pending.get("corp"))
    try:
        with session.begin_nested():
            session.add(ProcessedEvent(corp_id=corp.id, event_id=f"wecom-oauth:{state}"[:128],
                                       event_type="oauth_state"))
            session.flush()
    except sa.exc.IntegrityError:
        raise _bad_state("already used") from None
    return corp


def sign_in_with_wecom(session: so.Session, *, clients: ClientFactory, corp: Corp, code: str) -> SignedIn:
    if not code or len(code) > 512:
        raise ValidationError("缺少或无效的 code / code is missing or invalid", fields={"code": "invalid"})
    client = clients(corp)
    try:
        identity = client.exchange_sign_in_code(code)
    except InvalidCodeError:
        raise Unauthorized("登录 code 无效、已过期或已使用，请重新进入应用 / sign-in code expired or already used",
                           code="invalid_code", fields={"code": "expired or already used"}) from None
    except PermissionDeniedError:
        raise outside_range("code") from None
    except PlatformError as exc:
        raise unavailable(exc) from exc
    # WeCom userids are case-insensitive (§4.2).
    return user_for_identity(session, corp, client, identity, field="code", case_insensitive=True)
