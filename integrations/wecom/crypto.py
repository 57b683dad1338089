"""WeCom callback crypto (WXBizMsgCrypt, fact sheet §5.4) on top of wechatpy's `work.crypto`.

wechatpy encrypts and signs correctly (it reproduces the official vector), so encryption goes through it.
Its decrypt path, though, trusts the input: the padding byte is not checked, the length field is not
bounds-checked and the signature is compared with `!=`. Callbacks are attacker-reachable, so decryption
here re-checks everything and raises one of our own errors instead of an IndexError or a garbled string.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import struct
import time
from dataclasses import dataclass

import xmltodict
from wechatpy.crypto.base import WeChatCipher
from wechatpy.work.crypto import WeChatCrypto

BLOCK = 32  # PKCS#7 padded to 32 bytes, not AES's 16 (§5.4)


class CallbackCryptoError(Exception):
    """The request is not a valid WeCom callback."""


class InvalidAesKeyError(CallbackCryptoError):
    pass


class SignatureMismatchError(CallbackCryptoError):
    pass


class MalformedCiphertextError(CallbackCryptoError):
    """Not base64, not whole AES blocks, bad padding, a length running past the end, or not UTF-8."""


class CorpIdMismatchError(CallbackCryptoError):
    """Decrypted fine, but the trailing receiveid is another corp's: a message meant for someone else."""


def sign(token: str, timestamp: str, nonce: str, encrypt: str) -> str:
    parts = sorted([token, str(timestamp), str(nonce), encrypt])
    return hashlib.sha1("".join(parts).encode("utf-8")).hexdigest()


def decode_aes_key(aes_key: str) -> bytes:
    if len(aes_key or "") != 43:
        raise InvalidAesKeyError("EncodingAESKey must be 43 characters")
    try:
        key = base64.b64decode(aes_key + "=", validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidAesKeyError("EncodingAESKey is not base64") from exc
    if len(key) != 32:
        raise InvalidAesKeyError("EncodingAESKey does not decode to 32 bytes")
    return key


@dataclass(frozen=True)
class Envelope:
    """What WeCom POSTs: query parameters plus the XML body."""

    msg_signature: str
    timestamp: str
    nonce: str
    body: str


class WeComCrypto:
    def __init__(self, token: str, aes_key: str, corp_id: str) -> None:
        self.key = decode_aes_key(aes_key)
        self.token = token
        self.corp_id = corp_id
        self._wechatpy = WeChatCrypto(token, aes_key, corp_id)

    # ------------------------------------------------------------------ receiving

    def _check(self, msg_signature: str, timestamp: str, nonce: str, encrypt: str) -> None:
        expected = sign(self.token, timestamp, nonce, encrypt)
        if not hmac.compare_digest(expected, (msg_signature or "").lower()):
            raise SignatureMismatchError("msg_signature does not match")

    def _decrypt(self, encrypt: str) -> str:
        try:
            raw = base64.b64decode(encrypt, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise MalformedCiphertextError("not base64") from exc
        if not raw or len(raw) % 16:
            raise MalformedCiphertextError("not a whole number of AES blocks")
        plain = WeChatCipher(self.key).decrypt(raw)
        n = plain[-1]
        if not 1 <= n <= BLOCK or n > len(plain) or plain[-n:] != bytes([n]) * n:
            raise MalformedCiphertextError("bad padding")
        content = plain[16:-n]
        if len(content) < 4:
            raise MalformedCiphertextError("too short")
        (length,) = struct.unpack(">I", content[:4])
        if length > len(content) - 4:
            raise MalformedCiphertextError("length runs past the end")
        try:
            msg = content[4 : 4 + length].decode("utf-8")
            receiver = content[4 + length :].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedCiphertextError("not UTF-8") from exc
        if not hmac.compare_digest(receiver.encode(), self.corp_id.encode()):
            raise CorpIdMismatchError("receiveid is not this corp")
        return msg

    def verify_url(self, msg_signature: str, timestamp: str, nonce: str, echostr: str) -> str:
        """GET verification: the plaintext to answer with, as the whole body (§5.2)."""
        # Some proxies decode a raw '+' to a space; base64 never contains spaces (§5.2, defensive).
        echostr = (echostr or "").replace(" ", "+")
        self._check(msg_signature, timestamp, nonce, echostr)
        return self._decrypt(echostr)

    def decrypt_body(self, body: str | bytes, msg_signature: str, timestamp: str, nonce: str) -> str:
        """POST: the inner (decrypted) XML of an event."""
        try:
            outer = xmltodict.parse(body)["xml"]
            encrypt = outer["Encrypt"]
        except Exception as exc:  # expat errors, missing keys, a non-dict root: all just "not our XML"
            raise MalformedCiphertextError("body is not a WeCom envelope") from exc
        if not isinstance(encrypt, str):
            raise MalformedCiphertextError("no Encrypt element")
        self._check(msg_signature, timestamp, nonce, encrypt)
        return self._decrypt(encrypt)

    # ------------------------------------------------------------------ sending (sandbox, passive replies)

    def encrypt(self, inner_xml: str, *, nonce: str | None = None, timestamp: str | None = None) -> Envelope:
        """Encrypt `inner_xml` the way WeCom does for a POST to the app."""
        nonce = nonce or str(secrets.randbelow(10**10))
        timestamp = timestamp or str(int(time.time()))
        reply = xmltodict.parse(self._wechatpy.encrypt_message(inner_xml, nonce, timestamp))["xml"]
        body = (f"<xml><ToUserName><![CDATA[{self.corp_id}]]></ToUserName>"
                f"<Encrypt><![CDATA[{reply['Encrypt']}]]></Encrypt></xml>")
        return Envelope(reply["MsgSignature"], timestamp, nonce, body)

    def encrypt_echostr(self, plain: str, *, nonce: str, timestamp: str) -> tuple[str, str]:
        """(echostr, msg_signature) for a URL verification request."""
        reply = xmltodict.parse(self._wechatpy.encrypt_message(plain, nonce, timestamp))["xml"]
        return reply["Encrypt"], reply["MsgSignature"]

    def passive_reply(self, inner_xml: str, *, nonce: str, timestamp: str | None = None) -> str:
        """The encrypted envelope for a passive reply (e.g. an `update_button` to a card click)."""
        return self._wechatpy.encrypt_message(inner_xml, nonce, timestamp or str(int(time.time())))


def parse_event(inner_xml: str) -> dict[str, str]:
    """Decrypted event XML → flat dict. wechatpy's `parse_message` does not know `change_contact` or
    `template_card_event` (sdk notes §5), so we read the fields ourselves."""
    try:
        data = xmltodict.parse(inner_xml)["xml"]
    except Exception as exc:
        raise MalformedCiphertextError("decrypted payload is not XML") from exc
    if not isinstance(data, dict):
        raise MalformedCiphertextError("decrypted payload has no fields")
    return dict(data)
