"""WeCom callback crypto: the official WXBizMsgCrypt vector, Chinese round trips and rejection cases."""

from __future__ import annotations

import base64
import struct

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from integrations.wecom.crypto import (
    CorpIdMismatchError,
    InvalidAesKeyError,
    MalformedCiphertextError,
    SignatureMismatchError,
    WeComCrypto,
    parse_event,
    sign,
)

TOKEN = "QDG6eK"
AES_KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
CORP = "wx5823bf96d3bd56c7"


@pytest.fixture
def crypto():
    return WeComCrypto(TOKEN, AES_KEY, CORP)


def test_official_url_verification_vector(crypto):
    echostr = "P9nAzCzyDtyTWESHep1vC5X9xho/qYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp+4RPcs8TgAE7OaBO+FZXvnaqQ=="
    plain = crypto.verify_url("5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3", "1409659589", "263014780", echostr)
    assert plain == "1616140317555161061"
    # A proxy that turned '+' into ' ' must not break verification.
    assert crypto.verify_url("5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3", "1409659589", "263014780",
                             echostr.replace("+", " ")) == plain


def test_chinese_event_round_trip(crypto):
    inner = ("<xml><ToUserName><![CDATA[wx5823bf96d3bd56c7]]></ToUserName><Event><![CDATA[change_contact]]></Event>"
             "<ChangeType><![CDATA[update_user]]></ChangeType><UserID><![CDATA[zhangsan]]></UserID>"
             "<Name><![CDATA[张三·销售部（华东）]]></Name></xml>")
    env = crypto.encrypt(inner, nonce="12345", timestamp="1700000000")
    assert env.msg_signature == sign(TOKEN, "1700000000", "12345", env.body.split("CDATA[")[2].split("]]")[0])
    out = crypto.decrypt_body(env.body, env.msg_signature, env.timestamp, env.nonce)
    assert out == inner
    assert parse_event(out)["Name"] == "张三·销售部（华东）"


def test_echostr_round_trip(crypto):
    echostr, signature = crypto.encrypt_echostr("随机字符串123", nonce="n", timestamp="1")
    assert crypto.verify_url(signature, "1", "n", echostr) == "随机字符串123"


def test_wrong_signature_is_rejected(crypto):
    env = crypto.encrypt("<xml><A>1</A></xml>")
    with pytest.raises(SignatureMismatchError):
        crypto.decrypt_body(env.body, "0" * 40, env.timestamp, env.nonce)
    with pytest.raises(SignatureMismatchError):
        crypto.decrypt_body(env.body, env.msg_signature, str(int(env.timestamp) + 1), env.nonce)


def test_other_corps_message_is_rejected(crypto):
    other = WeComCrypto(TOKEN, AES_KEY, "wwsomeoneelse")
    env = other.encrypt("<xml><A>1</A></xml>")
    with pytest.raises(CorpIdMismatchError):
        crypto.decrypt_body(env.body, env.msg_signature, env.timestamp, env.nonce)


def _envelope(encrypt: str, timestamp: str = "1", nonce: str = "n") -> tuple[str, str]:
    body = f"<xml><ToUserName><![CDATA[{CORP}]]></ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"
    return body, sign(TOKEN, timestamp, nonce, encrypt)


def _raw_encrypt(plain: bytes) -> str:
    key = base64.b64decode(AES_KEY + "=")
    enc = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    return base64.b64encode(enc.update(plain) + enc.finalize()).decode()


@pytest.mark.parametrize(
    "encrypt",
    [
        "not base64 !!",
        base64.b64encode(b"short").decode(),  # not whole AES blocks
        _raw_encrypt(b"\x00" * 32),  # padding byte 0
        _raw_encrypt(b"r" * 16 + struct.pack(">I", 9999) + b"<xml/>" + b"\x06" * 6),  # length past the end
        _raw_encrypt(b"r" * 16 + struct.pack(">I", 2) + b"\xff\xfe" + CORP.encode() + b"\x08" * 8),  # not UTF-8
    ],
)
def test_malformed_ciphertext_is_rejected(crypto, encrypt):
    body, signature = _envelope(encrypt)
    with pytest.raises(MalformedCiphertextError):
        crypto.decrypt_body(body, signature, "1", "n")


def test_non_xml_body_is_rejected(crypto):
    with pytest.raises(MalformedCiphertextError):
        crypto.decrypt_body("{json: true}", "x", "1", "n")


@pytest.mark.parametrize("key", ["short", "!" * 43, ""])
def test_bad_aes_key(key):
    with pytest.raises(InvalidAesKeyError):
        WeComCrypto(TOKEN, key, CORP)
