"""dd.config signature (fact sheet §4.2)."""

from __future__ import annotations

import hashlib
from urllib.parse import unquote, urlsplit


def normalise_url(url: str) -> str:
    """Drop the #fragment and URL-decode the query, as the official sample does: iOS hands the page
    URL over encoded, Android raw, and both must sign the same string."""
    base = url.split("#", 1)[0]
    parts = urlsplit(base)
    if not parts.query:
        return base
    head = base[: len(base) - len(parts.query) - 1]
    return f"{head}?{unquote(parts.query)}"


def jsapi_signature(ticket: str, nonce: str, timestamp: int | str, url: str, digest: str = "sha256") -> str:
    plain = f"jsapi_ticket={ticket}&noncestr={nonce}&timestamp={timestamp}&url={normalise_url(url)}"
    return hashlib.new(digest, plain.encode("utf-8")).hexdigest()
