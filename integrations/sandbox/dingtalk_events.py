"""Firing signed, encrypted address-book events at the app's callback URL, as DingTalk's HTTP push does
(fact sheet §6, §7): `POST <url>?msg_signature=&timestamp=&nonce=` with `{"encrypt": ...}`, then check
that the answer is the encrypted, signed `success` within the time limit."""

from __future__ import annotations

import json
import secrets
import time
import uuid
from typing import Any

import requests

from integrations.dingtalk.crypto import CallbackCrypto, CallbackCryptoError
from integrations.sandbox.corpgen import SandboxCorp

REPLY_TIMEOUT = 2.5  # seconds DingTalk waits for the reply (§7.5)


def event_payload(corp: SandboxCorp, event_type: str, *, user_ids: list[str] | None = None,
                  dept_ids: list[int] | None = None, event_id: str | None = None) -> dict[str, Any]:
    now_ms = int(time.time() * 1000)
    payload: dict[str, Any] = {
        "EventType": event_type,
        "EventTime": now_ms,
        "CorpId": corp.corp_id,
        "BizId": secrets.token_hex(8),
        "eventId": event_id or uuid.uuid4().hex,
        "timeStamp": str(now_ms),
    }
    if user_ids is not None:
        payload["userId"] = list(user_ids)
    if dept_ids is not None:
        payload["deptId"] = [int(d) for d in dept_ids]
    return payload


def crypto_for(corp: SandboxCorp) -> CallbackCrypto:
    # Console subscriptions use the AppKey as the owner key (§7.4).
    return CallbackCrypto(corp.callback_token, corp.callback_aes_key, corp.app_key)


def deliver(corp: SandboxCorp, url: str, payload: dict[str, Any], *, timeout: float = REPLY_TIMEOUT,
            session: requests.Session | None = None) -> dict[str, Any]:
    """POST one event; report whether the reply would satisfy DingTalk."""
    crypto = crypto_for(corp)
    env = crypto.seal(json.dumps(payload, ensure_ascii=False), timestamp=str(int(time.time() * 1000)))
    params = {"msg_signature": env.msg_signature, "timestamp": env.timestamp, "nonce": env.nonce}
    outcome: dict[str, Any] = {"eventId": payload.get("eventId"), "eventType": payload.get("EventType"),
                               "url": url, "accepted": False}
    own = session is None
    http = session or requests.Session()
    http.trust_env = False
    started = time.monotonic()
    try:
        resp = http.post(url, params=params, json={"encrypt": env.encrypt}, timeout=timeout)
    except requests.RequestException as exc:
        outcome["error"] = f"{type(exc).__name__}: no answer within {timeout}s"
        return outcome
    finally:
        if own:
            http.close()
    outcome["status"] = resp.status_code
    outcome["elapsedMs"] = int((time.monotonic() - started) * 1000)
    try:
        reply = resp.json()
        crypto.verify(reply["msg_signature"], str(reply["timeStamp"]), str(reply["nonce"]), reply["encrypt"])
        plain = crypto.decrypt(reply["encrypt"])
    except (ValueError, KeyError, TypeError, CallbackCryptoError) as exc:
        outcome["error"] = f"HTTP请求结果校验返回字段值失败 (reply not a valid encrypted success: {exc})"
        return outcome
    outcome["accepted"] = resp.status_code == 200 and plain == "success"
    if not outcome["accepted"]:
        outcome["error"] = f"reply decrypted to {plain[:40]!r}, expected 'success'"
    return outcome
