"""Firing encrypted WeCom callbacks at the app, as WeCom does (fact sheet §5): URL verification (GET with
`echostr`, the plaintext expected back within 1 s) and events (POST of the encrypted envelope; any HTTP
200 is "received", an empty body means "no passive reply"; no answer within 5 s → retried, 3 tries in all).
"""

from __future__ import annotations

import secrets
import time
from typing import Any
from xml.sax.saxutils import escape

import requests

from integrations.sandbox.wecom_state import WeComApp
from integrations.wecom.crypto import CallbackCryptoError, WeComCrypto, parse_event

EVENT_TIMEOUT = 5.0
VERIFY_TIMEOUT = 1.0
TRIES = 3


def crypto_for(app: WeComApp) -> WeComCrypto:
    # For a self-built app the receiveid is the CorpID (§5.1).
    return WeComCrypto(app.corp.callback_token, app.corp.callback_aes_key, app.corp.corp_id)


def event_xml(fields: dict[str, Any]) -> str:
    parts = []
    for key, value in fields.items():
        text = str(value)
        if isinstance(value, int) or key in {"CreateTime", "AgentID"}:
            parts.append(f"<{key}>{escape(text)}</{key}>")
        else:
            parts.append(f"<{key}><![CDATA[{text.replace(']]>', ']]]]><![CDATA[>')}]]></{key}>")
    return "<xml>" + "".join(parts) + "</xml>"


def change_contact(app: WeComApp, change_type: str, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"ToUserName": app.corp.corp_id, "FromUserName": "sys",
                            "CreateTime": int(time.time()), "MsgType": "event", "Event": "change_contact",
                            "ChangeType": change_type}
    return {**base, **{k: v for k, v in fields.items() if v is not None}}


def _session(session: requests.Session | None) -> tuple[requests.Session, bool]:
    if session is not None:
        return session, False
    http = requests.Session()
    http.trust_env = False
    return http, True


def verify_url(app: WeComApp, url: str, *, session: requests.Session | None = None) -> dict[str, Any]:
    """What the admin console does when the callback URL is saved: the app must echo the plaintext."""
    crypto = crypto_for(app)
    plain = str(secrets.randbelow(10**19))
    nonce, timestamp = str(secrets.randbelow(10**9)), str(int(time.time()))
    echostr, signature = crypto.encrypt_echostr(plain, nonce=nonce, timestamp=timestamp)
    http, own = _session(session)
    outcome: dict[str, Any] = {"url": url, "ok": False}
    started = time.monotonic()
    try:
        resp = http.get(url, params={"msg_signature": signature, "timestamp": timestamp, "nonce": nonce,
                                     "echostr": echostr}, timeout=VERIFY_TIMEOUT)
    except requests.RequestException as exc:
        outcome["error"] = f"{type(exc).__name__}: no answer within {VERIFY_TIMEOUT}s"
        return outcome
    finally:
        if own:
            http.close()
    outcome.update(status=resp.status_code, elapsedMs=int((time.monotonic() - started) * 1000))
    # The body must be exactly the plaintext: no quotes, BOM or newline (§5.2).
    outcome["ok"] = resp.status_code == 200 and resp.content == plain.encode()
    if not outcome["ok"]:
        outcome["error"] = f"echo mismatch: got {resp.content[:40]!r}"
    return outcome


def deliver(app: WeComApp, url: str, fields: dict[str, Any], *, session: requests.Session | None = None,
            timeout: float = EVENT_TIMEOUT, tries: int = TRIES) -> dict[str, Any]:
    """POST one encrypted event, retrying like WeCom; decrypt a passive reply if there is one."""
    crypto = crypto_for(app)
    inner = event_xml(fields)
    outcome: dict[str, Any] = {"event": fields.get("Event"), "changeType": fields.get("ChangeType"),
                               "url": url, "accepted": False, "attempts": 0}
    http, own = _session(session)
    try:
        for _ in range(tries):
            outcome["attempts"] += 1
            env = crypto.encrypt(inner)
            params = {"msg_signature": env.msg_signature, "timestamp": env.timestamp, "nonce": env.nonce}
            started = time.monotonic()
            try:
                resp = http.post(url, params=params, data=env.body.encode(), timeout=timeout,
                                 headers={"Content-Type": "text/xml; charset=utf-8"})
            except requests.RequestException as exc:
                outcome["error"] = f"{type(exc).__name__}: no answer within {timeout}s"
                continue
            outcome.update(status=resp.status_code, elapsedMs=int((time.monotonic() - started) * 1000))
            if resp.status_code != 200:
                outcome["error"] = f"HTTP {resp.status_code}"
                continue
            outcome["accepted"] = True
            outcome.pop("error", None)
            if resp.content.strip():
                outcome["reply"] = _read_reply(crypto, resp.content)
            break
    finally:
        if own:
            http.close()
    return outcome


def _read_reply(crypto: WeComCrypto, content: bytes) -> dict[str, Any]:
    try:
        reply = parse_event(content.decode("utf-8"))
        inner = crypto.decrypt_body(
            f"<xml><Encrypt><![CDATA[{reply['Encrypt']}]]></Encrypt></xml>",
            reply["MsgSignature"], reply["TimeStamp"], reply["Nonce"])
        return parse_event(inner)
    except (KeyError, UnicodeDecodeError, CallbackCryptoError) as exc:
        return {"error": f"passive reply not a valid encrypted envelope: {exc}"}
