"""DingTalk HTTP-push callback crypto (fact sheet §7.3–7.5).

Written from the documented layout rather than copied from `DingCallbackCrypto3.py`, which measures the
message length in characters and base64-encodes with newlines (§7.6 pitfall): both break Chinese payloads.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
import struct
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

BLOCK = 32  # PKCS#7 with a 32-byte block, not AES's 16 (§7.4)


class CallbackCryptoError(Exception):
    """Base class: the request is not a valid DingTalk push. `code` is DingTalk's own 9000xx number."""

    code = 900000


class InvalidAesKeyError(CallbackCryptoError):
    code = 900004


class SignatureMismatchError(CallbackCryptoError):
    code = 900005


class MalformedCiphertextError(CallbackCryptoError):
    """Not base64, not a whole number of AES blocks, bad padding or a length that runs past the end."""

    code = 900007


class OwnerKeyMismatchError(CallbackCryptoError):
    code = 900010


def sign(token: str, timestamp: str, nonce: str, encrypt: str) -> str:
    parts = sorted([token, str(timestamp), nonce, encrypt])
    return hashlib.sha1("".join(parts).encode("utf-8")).hexdigest()


def _pad(data: bytes) -> bytes:
    n = BLOCK - len(data) % BLOCK
    return data + bytes([n]) * n


def _unpad(data: bytes) -> bytes:
    if not data:
        raise MalformedCiphertextError("empty plaintext")
    n = data[-1]
    if not 1 <= n <= BLOCK or n > len(data) or data[-n:] != bytes([n]) * n:
        raise MalformedCiphertextError("bad padding")
    return data[:-n]


def decode_aes_key(aes_key: str) -> bytes:
    if len(aes_key) != 43:
        raise InvalidAesKeyError("aes_key must be 43 characters")
    try:
        key = base64.b64decode(aes_key + "=", validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidAesKeyError("aes_key is not base64") from exc
    if len(key) != 32:
        raise InvalidAesKeyError("aes_key does not decode to 32 bytes")
    return key


@dataclass(frozen=True)
class SignedEnvelope:
    """What travels on the wire: the query parameters plus the `encrypt` body field."""

    msg_signature: str
    timestamp: str
    nonce: str
    encrypt: str

    def reply_json(self) -> dict[str, str]:
        # The reply uses `timeStamp` (camel case) while the request query uses `timestamp` (§7.5).
        return {
            "msg_signature": self.msg_signature,
            "timeStamp": self.timestamp,
            "nonce": self.nonce,
            "encrypt": self.encrypt,
        }


class CallbackCrypto:
    """Verify/decrypt incoming pushes and build encrypted replies for one app's callback settings.

    `owner_keys`: the AppKey for console subscriptions, the CorpId for the legacy register API (§7.4).
    Decryption accepts any of them; encryption uses the first.
    """

    def __init__(self, token: str, aes_key: str, owner_keys: str | Iterable[str]):
        self.token = token
        self._key = decode_aes_key(aes_key)
        keys = [owner_keys] if isinstance(owner_keys, str) else [k for k in owner_keys if k]
        if not keys:
            raise ValueError("at least one owner key is required")
        self.owner_keys = tuple(keys)

    # ------------------------------------------------------------------ primitives

    def _cipher(self) -> Cipher:
        return Cipher(algorithms.AES(self._key), modes.CBC(self._key[:16]))

    def encrypt(self, plaintext: str, *, owner_key: str | None = None, random16: bytes | None = None) -> str:
        msg = plaintext.encode("utf-8")
        owner = (owner_key or self.owner_keys[0]).encode("utf-8")
        rnd = random16 if random16 is not None else os.urandom(16)
        buf = _pad(rnd + struct.pack(">I", len(msg)) + msg + owner)
        enc = self._cipher().encryptor()
        return base64.b64encode(enc.update(buf) + enc.finalize()).decode("ascii")

    def decrypt(self, encrypt: str) -> str:
        """Return the plaintext; raise a `CallbackCryptoError` subclass for anything not well-formed."""
        return self.decrypt_with_owner(encrypt)[0]

    def decrypt_with_owner(self, encrypt: str) -> tuple[str, str]:
        """The plaintext and which of `owner_keys` it carried (the reply must be sealed with that one)."""
        if not isinstance(encrypt, str) or not encrypt:
            raise MalformedCiphertextError("missing encrypt")
        try:
            raw = base64.b64decode(encrypt, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise MalformedCiphertextError("encrypt is not base64") from exc
        if not raw or len(raw) % 16:
            raise MalformedCiphertextError("ciphertext is not a whole number of AES blocks")
        dec = self._cipher().decryptor()
        buf = _unpad(dec.update(raw) + dec.finalize())
        if len(buf) < 20:
            raise MalformedCiphertextError("plaintext too short")
        (length,) = struct.unpack(">I", buf[16:20])
        if 20 + length > len(buf):
            raise MalformedCiphertextError("length field runs past the end")
        msg, owner = buf[20 : 20 + length], buf[20 + length :]
        # Compare against every key (no early exit), so timing does not tell which one was close.
        matches = [k for k in self.owner_keys if hmac.compare_digest(owner, k.encode("utf-8"))]
        if not matches:
            raise OwnerKeyMismatchError("owner key does not match this app")
        try:
            return msg.decode("utf-8"), matches[0]
        except UnicodeDecodeError as exc:
            raise MalformedCiphertextError("message is not UTF-8") from exc

    # ------------------------------------------------------------------ whole requests

    def verify(self, signature: str | None, timestamp: str, nonce: str, encrypt: str) -> None:
        expected = sign(self.token, timestamp, nonce, encrypt)
        if not signature or not hmac.compare_digest(expected, signature.lower()):
            raise SignatureMismatchError("signature mismatch")

    def open_request(self, query: dict[str, Any], body: Any) -> dict[str, Any]:
        """Verify and decrypt one push: `query` is the URL parameters, `body` the parsed JSON body.

        Reads `msg_signature`, falling back to `signature`, and `timestamp` falling back to `timeStamp`,
        as the official crypto README does (§7.2).
        """
        return self.open_request_with_owner(query, body)[0]

    def open_request_with_owner(self, query: dict[str, Any], body: Any) -> tuple[dict[str, Any], str]:
        """`open_request`, plus the owner key the push was sealed with."""
        signature = query.get("msg_signature") or query.get("signature")
        timestamp = query.get("timestamp") or query.get("timeStamp") or ""
        nonce = query.get("nonce") or ""
        encrypt = body.get("encrypt") if isinstance(body, dict) else None
        if not isinstance(encrypt, str) or not encrypt:
            raise MalformedCiphertextError("body has no encrypt field")
        self.verify(signature, str(timestamp), str(nonce), encrypt)
        text, owner = self.decrypt_with_owner(encrypt)
        try:
            payload = json.loads(text)
        except ValueError as exc:
            raise MalformedCiphertextError("decrypted message is not JSON") from exc
        if not isinstance(payload, dict):
            raise MalformedCiphertextError("decrypted message is not a JSON object")
        return payload, owner

    def seal(self, plaintext: str, *, timestamp: str | None = None, nonce: str | None = None,
             owner_key: str | None = None) -> SignedEnvelope:
        ts = timestamp or str(int(time.time() * 1000))
        nc = nonce or secrets.token_hex(8)
        encrypt = self.encrypt(plaintext, owner_key=owner_key)
        return SignedEnvelope(sign(self.token, ts, nc, encrypt), ts, nc, encrypt)

    def success_reply(self, owner_key: str | None = None) -> dict[str, str]:
        """The JSON body DingTalk expects back within 2.5 s (§7.5), sealed with `owner_key` (default:
        the first configured one)."""
        return self.seal("success", owner_key=owner_key).reply_json()
