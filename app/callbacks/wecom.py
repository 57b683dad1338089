"""`/callbacks/wecom/<CorpID>`: the app's WeCom callback URL (fact sheet §5).

GET is the URL verification: answer the decrypted `echostr` as the whole body, at once (WeCom allows
1 s). POST is an event: verify (constant time), decrypt, check the receiveid is this corp, store, and
answer an empty 200 straight away (WeCom waits 5 s, then retries up to 3 times). `change_contact` goes to
the shared event inbox and its applier (the same tables and thread as DingTalk); a card click is claimed
once and decided on a background thread. Anything that does not verify is a 4xx and leaves no trace.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor

import sqlalchemy as sa
from flask import Blueprint, Response, current_app, request

from app.callbacks.dingtalk import BadCallback, event_applier
from app.db import get_database, get_session
from app.errors import Forbidden, NotFound
from app.services.card_decisions import decide_from_card
from app.services.corps import SecretBox
from app.services.event_inbox import event_keys, record_event
from app.services.platform import client_factory
from integrations.wecom.crypto import (
    CallbackCryptoError,
    CorpIdMismatchError,
    InvalidAesKeyError,
    SignatureMismatchError,
    WeComCrypto,
    parse_event,
)
from integrations.wecom.events import card_click, org_event
from models.org import Corp, Platform
from models.platform import ProcessedEvent

log = logging.getLogger(__name__)

bp = Blueprint("callbacks_wecom", __name__, url_prefix="/callbacks/wecom")

_pool_lock = threading.Lock()


def card_pool(app=None) -> ThreadPoolExecutor:
    """This app's worker for card decisions (platform calls must not hold up the 5 s acknowledgement);
    one thread, so clicks are decided in arrival order."""
    app = app or current_app._get_current_object()
    with _pool_lock:
        pool = app.extensions.get("crm.wecom_cards")
        if pool is None:
            pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wecom-cards")
            app.extensions["crm.wecom_cards"] = pool
        return pool


def _corp_crypto(corp_ref: str) -> tuple[Corp, WeComCrypto]:
    corp = get_session().execute(
        sa.select(Corp).where(Corp.platform == Platform.WECOM, Corp.platform_corp_id == corp_ref)
    ).scalar_one_or_none()
    if corp is None or not corp.active:
        raise NotFound("未绑定的企业 / unknown corp", code="unknown_corp", fields={"corp": "unknown"})
    try:
        secrets = SecretBox(current_app.config["CRM_SETTINGS"].master_key).open(corp.secrets_ciphertext)
    except ValueError:
        secrets = {}
    token, aes_key = secrets.get("callback_token"), secrets.get("aes_key")
    if not token or not aes_key:
        raise NotFound("该企业未配置回调 Token/EncodingAESKey / callback token and AES key not set for this corp",
                       code="callback_not_configured", fields={"corp": "no callback settings"})
    try:
        return corp, WeComCrypto(token, aes_key, corp.platform_corp_id)
    except InvalidAesKeyError:
        raise NotFound("该企业的 EncodingAESKey 无效 / the corp's EncodingAESKey is invalid",
                       code="callback_not_configured", fields={"corp": "bad aes key"}) from None


def _params() -> tuple[str, str, str]:
    args = request.args
    missing = [k for k in ("msg_signature", "timestamp", "nonce") if not args.get(k)]
    if missing:
        raise BadCallback("回调缺少签名参数 / signature parameters missing", fields=dict.fromkeys(missing, "required"))
    return args["msg_signature"], args["timestamp"], args["nonce"]


def _crypto_error(exc: CallbackCryptoError):
    if isinstance(exc, SignatureMismatchError):
        return Forbidden("签名校验失败 / signature mismatch", code="bad_signature",
                         fields={"msg_signature": "mismatch"})
    if isinstance(exc, CorpIdMismatchError):
        return Forbidden("密文不属于本企业 / message sealed for another corp", code="wrong_receiver",
                         fields={"Encrypt": "receiveid mismatch"})
    return BadCallback("回调内容无法解析 / malformed callback body", fields={"Encrypt": str(exc)[:100]})


@bp.get("/<corp_ref>")
def verify(corp_ref: str):
    corp, crypto = _corp_crypto(corp_ref)
    signature, timestamp, nonce = _params()
    try:
        plain = crypto.verify_url(signature, timestamp, nonce, request.args.get("echostr", ""))
    except CallbackCryptoError as exc:
        raise _crypto_error(exc) from None
    # Exactly the plaintext: no quotes, BOM or newline (§5.2).
    return Response(plain, mimetype="text/plain")


@bp.post("/<corp_ref>")
def receive(corp_ref: str):
    corp, crypto = _corp_crypto(corp_ref)
    signature, timestamp, nonce = _params()
    try:
        fields = parse_event(crypto.decrypt_body(request.get_data(), signature, timestamp, nonce))
    except CallbackCryptoError as exc:
        raise _crypto_error(exc) from None
    database = get_database()
    event = org_event(fields)
    if event is not None:
        with database.session() as s:
            event_pk = record_event(s, corp.id, event, event_type=str(fields.get("ChangeType")), source="http")
        if event_pk is not None:
            # Keyed like DingTalk's: a join and a leave of one person must not overtake each other.
            event_applier().submit(event_pk, event_keys(event.user_ids, event.dept_ids))
        return Response("", status=200)
    click = card_click(fields)
    if click is not None and _claim_click(database, corp.id, click.event_id):
        settings = current_app.config["CRM_SETTINGS"]
        clients = client_factory(settings=settings, database=database)
        future = card_pool().submit(decide_from_card, database, corp.id, click, clients=clients)
        future.add_done_callback(_log_failure)
        return Response("", status=200)
    # Anything else (messages, enter_agent, tag changes, a repeated click): received, nothing to do.
    log.debug("wecom event %s/%s for corp %s acknowledged, not handled", fields.get("Event"),
              fields.get("ChangeType"), corp.id)
    return Response("", status=200)


def _claim_click(database, corp_pk: int, event_id: str) -> bool:
    """Insert-as-claim: a redelivered click (WeCom retries, a double tap) inserts nothing."""
    try:
        with database.session() as s:
            s.add(ProcessedEvent(corp_id=corp_pk, event_id=event_id, event_type="template_card_event"))
            s.flush()
        return True
    except sa.exc.IntegrityError:
        return False


def _log_failure(future) -> None:
    exc = future.exception()
    if exc is not None:
        log.error("wecom card decision failed: %s", exc, exc_info=exc)
