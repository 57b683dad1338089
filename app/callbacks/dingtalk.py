"""`/callbacks/dingtalk/<CorpId>`: DingTalk HTTP push (fact sheet §7).

Verify the signature (constant time), decrypt, check the owner key (the AppKey for console
subscriptions, the CorpId for the legacy register API — both accepted, §7.4), store the event in the
inbox and answer the encrypted `success` at once; an applier thread does the platform calls and writes.
Anything that does not verify is a 4xx and leaves no trace in the database.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from flask import Blueprint, current_app, jsonify, request

from app.db import get_database, get_session
from app.errors import ApiError, Forbidden, NotFound
from app.services.corps import SecretBox
from app.services.event_inbox import EventApplier, event_keys, record_event
from integrations.dingtalk.crypto import (
    CallbackCrypto,
    CallbackCryptoError,
    InvalidAesKeyError,
    OwnerKeyMismatchError,
    SignatureMismatchError,
)
from integrations.dingtalk.events import event_type, parse_event
from models.db import Database
from models.org import Corp, Platform

log = logging.getLogger(__name__)

bp = Blueprint("callbacks_dingtalk", __name__, url_prefix="/callbacks/dingtalk")

_applier_lock = threading.Lock()


class BadCallback(ApiError):
    status = 400
    code = "bad_callback"


def event_applier(app=None) -> EventApplier:
    """This app's applier (one per app object, started by its first event)."""
    app = app or current_app._get_current_object()
    with _applier_lock:
        applier = app.extensions.get("crm.event_applier")
        if applier is None:
            applier = EventApplier(app.extensions["crm.db"], app.config["CRM_SETTINGS"])
            app.extensions["crm.event_applier"] = applier
        return applier


def _corp_crypto(corp_ref: str) -> tuple[Corp, CallbackCrypto]:
    corp = get_session().execute(
        sa.select(Corp).where(Corp.platform == Platform.DINGTALK, Corp.platform_corp_id == corp_ref)
    ).scalar_one_or_none()
    if corp is None or not corp.active:
        raise NotFound("未绑定的企业 / unknown corp", code="unknown_corp", fields={"corp": "unknown"})
    try:
        secrets = SecretBox(current_app.config["CRM_SETTINGS"].master_key).open(corp.secrets_ciphertext)
    except ValueError:
        secrets = {}
    token, aes_key = secrets.get("callback_token"), secrets.get("aes_key")
    if not token or not aes_key:
        raise NotFound("该企业未配置事件回调 / callback token and AES key not set for this corp",
                       code="callback_not_configured", fields={"corp": "no callback settings"})
    try:
        return corp, CallbackCrypto(token, aes_key, [corp.app_key or "", corp.platform_corp_id])
    except InvalidAesKeyError:
        raise NotFound("该企业的回调 AES key 无效 / the corp's callback AES key is invalid",
                       code="callback_not_configured", fields={"corp": "bad aes key"}) from None


@bp.get("/<corp_ref>")
def status(corp_ref: str):
    """A reachability check for admins; DingTalk itself only POSTs."""
    corp, _ = _corp_crypto(corp_ref)
    return jsonify({"ok": True, "corp": corp.platform_corp_id, "method": "POST"})


@bp.post("/<corp_ref>")
def push(corp_ref: str):
    """One encrypted event from DingTalk."""
    corp, crypto = _corp_crypto(corp_ref)
    body = request.get_json(silent=True, force=True)
    try:
        payload, owner = crypto.open_request_with_owner(request.args.to_dict(), body)
    except SignatureMismatchError:
        raise Forbidden("签名校验失败 / signature mismatch", code="bad_signature",
                        fields={"msg_signature": "mismatch"}) from None
    except OwnerKeyMismatchError:
        raise Forbidden("密文不属于本应用 / message sealed for another app", code="wrong_owner_key",
                        fields={"encrypt": "owner key mismatch"}) from None
    except CallbackCryptoError as exc:
        raise BadCallback("回调内容无法解析 / malformed callback body", fields={"encrypt": str(exc)[:100]}) from None
    kind = event_type(payload)
    if not isinstance(kind, str) or not kind:
        raise BadCallback("回调缺少事件类型 / event has no EventType", fields={"EventType": "missing"})
    accept_payload(get_database(), corp.id, payload, source="http", submit=event_applier().submit)
    return jsonify(crypto.success_reply(owner_key=owner))


def accept_payload(database: Database, corp_pk: int, payload: dict[str, Any], *, source: str,
                   submit: Callable[[int, tuple[str, ...]], None]) -> int | None:
    """Store one verified DingTalk event (HTTP push or Stream) and hand it to the applier; the inbox
    row id, or None for a redelivery, `check_url` or an event type we do not handle."""
    kind = event_type(payload)
    event = parse_event(payload)
    if event is None:
        if kind != "check_url":
            log.debug("dingtalk event %s for corp %s acknowledged, not handled", kind, corp_pk)
        return None
    with database.session() as s:
        event_pk = record_event(s, corp_pk, event, event_type=str(kind), source=source)
    if event_pk is not None:
        submit(event_pk, event_keys(event.user_ids, event.dept_ids))
    return event_pk
