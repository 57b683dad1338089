"""`dd.config` values for an H5 page: ticket-signed, for our own pages only (fact sheet §4)."""

from __future__ import annotations

import copy
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy.orm as so

from app.errors import ValidationError
from app.services.corps import corp_setting
from app.services.platform import ClientFactory, unavailable
from app.services.sign_in import find_dingtalk_corp
from config.settings import JSAPI_DIGESTS
from integrations.base import PlatformError

MAX_URL = 2048


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def validate_page_url(url: str | None, allowed_origins: tuple[str, ...]) -> str:
    """The page URL as signed: absolute http(s), no #fragment, on one of our own origins (a signed
    config is only useful to a page of ours; signing other sites' pages would lend them our app)."""
    if not url:
        raise ValidationError("缺少页面地址 / url is required", fields={"url": "required"})
    if len(url) > MAX_URL or not url.isprintable() or any(c.isspace() for c in url):
        raise ValidationError("页面地址无效 / invalid url", fields={"url": "invalid"})
    try:
        parts = urlsplit(url)
    except ValueError:
        raise ValidationError("页面地址无效 / invalid url", fields={"url": "invalid"}) from None
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValidationError("页面地址须为 http(s) 绝对地址 / url must be an absolute http(s) URL",
                              fields={"url": "not an absolute http(s) URL"})
    if "#" in url:
        raise ValidationError("页面地址不能包含 # 片段 / url must not contain a #fragment",
                              fields={"url": "has a fragment"})
    if _origin(url) not in {o.lower().rstrip("/") for o in allowed_origins}:
        raise ValidationError("只能为本应用的页面签名 / url is not a page of this app",
                              fields={"url": "foreign origin"})
    return url


def jsapi_config(session: so.Session, *, clients: ClientFactory, corp_id: str, url: str,
                 allowed_origins: tuple[str, ...], default_digest: str = "sha256") -> dict[str, Any]:
    """`{agentId, corpId, timeStamp, nonceStr, signature}` for `dd.config` on the page at `url`."""
    page = validate_page_url(url, allowed_origins)
    corp = find_dingtalk_corp(session, corp_id)
    digest = corp_setting(corp, "jsapi_digest") or default_digest
    if digest not in JSAPI_DIGESTS:
        digest = default_digest
    client = clients(corp)
    if getattr(client, "jsapi_digest", digest) != digest:
        # Clients are shared between requests: sign with a shallow copy (same ticket cache), never
        # by changing the shared one under other threads.
        client = copy.copy(client)
        client.jsapi_digest = digest
    try:
        config = client.js_config(page)
    except PlatformError as exc:
        raise unavailable(exc) from exc
    return {key: config[key] for key in ("agentId", "corpId", "timeStamp", "nonceStr", "signature")}
