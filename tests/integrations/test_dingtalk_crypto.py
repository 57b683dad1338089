"""Callback crypto against the official vector (fact sheet §7.6) and against hostile input."""

from __future__ import annotations

import base64
import json

import pytest

from integrations.dingtalk.crypto import (
    CallbackCrypto,
    CallbackCryptoError,
    InvalidAesKeyError,
    MalformedCiphertextError,
    OwnerKeyMismatchError,
    SignatureMismatchError,
    sign,
)

TOKEN = "123456"
AES_KEY = "1234567890123456789012345678901234567890123"
OWNER = "dingsnotzck6pm5veliw"
TS = "1614767836"
NONCE = "A7Co0cJLMzIDtMMI"
ENCRYPT = "YvkvaGe4hQxd3VxRmEty0dVlnCOAqwf56xwTRHDHoOURqhalbmBJQk5FNcRk42Gl5T0YQXZNwpwWSm1xAFJ5ZA=="
SIGNATURE = "9a95a004dd16f5c307e849b994173f76aa26e5eb"


@pytest.fixture
def crypto() -> CallbackCrypto:
    return CallbackCrypto(TOKEN, AES_KEY, OWNER)


def test_official_vector_signature():
    assert sign(TOKEN, TS, NONCE, ENCRYPT) == SIGNATURE


def test_official_vector_decrypts_to_success(crypto):
    crypto.verify(SIGNATURE, TS, NONCE, ENCRYPT)
    assert crypto.decrypt(ENCRYPT) == "success"


def test_encrypt_reproduces_official_ciphertext_given_its_random_prefix(crypto):
    # The first 16 plaintext bytes are random; recover them from the vector and re-encrypt.
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    key = base64.b64decode(AES_KEY + "=")
    dec = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
    plain = dec.update(base64.b64decode(ENCRYPT)) + dec.finalize()
    assert plain[-1] == 17  # the vector's padding length
    assert crypto.encrypt("success", random16=plain[:16]) == ENCRYPT


@pytest.mark.parametrize(
    "payload",
    [
        {"EventType": "user_add_org", "userId": ["manager7"], "CorpId": "ding123", "备注": "销售部·华东区"},
        {"EventType": "check_url"},
        {"text": "长" * 1000},
        {"emoji": "客户 🚀 跟进"},
    ],
)
def test_round_trip_with_chinese_payloads(crypto, payload):
    text = json.dumps(payload, ensure_ascii=False)
    env = crypto.seal(text)
    query = {"msg_signature": env.msg_signature, "timestamp": env.timestamp, "nonce": env.nonce}
    assert crypto.open_request(query, {"encrypt": env.encrypt}) == payload


def test_length_is_counted_in_bytes_not_characters(crypto):
    import struct

    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    enc = crypto.encrypt("中文")
    key = base64.b64decode(AES_KEY + "=")
    dec = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
    plain = dec.update(base64.b64decode(enc)) + dec.finalize()
    assert struct.unpack(">I", plain[16:20])[0] == 6
    assert "\n" not in enc


@pytest.mark.parametrize("size", [11, 12, 43])
def test_padding_always_adds_at_least_one_byte_up_to_32(crypto, size):
    # 16 random + 4 length + msg + owner(20): size 12 makes exactly 64 bytes → a full 32-byte pad block.
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    enc = crypto.encrypt("x" * size)
    key = base64.b64decode(AES_KEY + "=")
    dec = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
    plain = dec.update(base64.b64decode(enc)) + dec.finalize()
    pad = plain[-1]
    assert 1 <= pad <= 32
    assert (16 + 4 + size + len(OWNER) + pad) % 32 == 0
    assert crypto.decrypt(enc) == "x" * size


def test_signature_param_fallbacks(crypto):
    env = crypto.seal('{"EventType":"check_url"}', timestamp="1700000000000", nonce="n1")
    query = {"signature": env.msg_signature, "timeStamp": env.timestamp, "nonce": env.nonce}
    assert crypto.open_request(query, {"encrypt": env.encrypt}) == {"EventType": "check_url"}


def test_bad_signature_rejected(crypto):
    env = crypto.seal('{"EventType":"check_url"}')
    query = {"msg_signature": "0" * 40, "timestamp": env.timestamp, "nonce": env.nonce}
    with pytest.raises(SignatureMismatchError):
        crypto.open_request(query, {"encrypt": env.encrypt})
    with pytest.raises(SignatureMismatchError):
        crypto.open_request({"timestamp": env.timestamp, "nonce": env.nonce}, {"encrypt": env.encrypt})


def test_tampered_timestamp_breaks_signature(crypto):
    env = crypto.seal('{"EventType":"check_url"}')
    query = {"msg_signature": env.msg_signature, "timestamp": env.timestamp + "1", "nonce": env.nonce}
    with pytest.raises(SignatureMismatchError):
        crypto.open_request(query, {"encrypt": env.encrypt})


def test_wrong_owner_key_rejected():
    sender = CallbackCrypto(TOKEN, AES_KEY, "dingSOMEOTHERAPPKEY")
    receiver = CallbackCrypto(TOKEN, AES_KEY, OWNER)
    with pytest.raises(OwnerKeyMismatchError):
        receiver.decrypt(sender.encrypt("success"))


def test_either_owner_key_accepted_when_configured():
    by_corp = CallbackCrypto(TOKEN, AES_KEY, "dingcorpid")
    receiver = CallbackCrypto(TOKEN, AES_KEY, ["dingappkey", "dingcorpid"])
    assert receiver.decrypt(by_corp.encrypt("hello")) == "hello"


@pytest.mark.parametrize(
    "body",
    [
        ENCRYPT[:-8] + "==",  # truncated, not a block multiple
        base64.b64encode(base64.b64decode(ENCRYPT)[:32]).decode(),  # truncated on a block boundary
        "not base64 at all!!",
        base64.b64encode(b"\x00" * 48).decode(),  # decrypts to garbage padding
        "",
    ],
)
def test_truncated_and_garbage_bodies_raise_clean_errors(crypto, body):
    with pytest.raises(MalformedCiphertextError):
        crypto.decrypt(body)


def test_random_blocks_never_crash(crypto):
    import os

    for _ in range(200):
        blob = base64.b64encode(os.urandom(16 * (1 + os.urandom(1)[0] % 6))).decode()
        with pytest.raises(CallbackCryptoError):
            crypto.decrypt(blob)


@pytest.mark.parametrize("body", [None, [], {"encrypt": 5}, {"nope": "x"}])
def test_request_without_encrypt_field(crypto, body):
    with pytest.raises(MalformedCiphertextError):
        crypto.open_request({"msg_signature": "x", "timestamp": "1", "nonce": "n"}, body)


def test_non_json_plaintext_rejected(crypto):
    env = crypto.seal("success")
    query = {"msg_signature": env.msg_signature, "timestamp": env.timestamp, "nonce": env.nonce}
    with pytest.raises(MalformedCiphertextError):
        crypto.open_request(query, {"encrypt": env.encrypt})


@pytest.mark.parametrize("key", ["short", "!" * 43, "A" * 44])
def test_invalid_aes_key(key):
    with pytest.raises(InvalidAesKeyError):
        CallbackCrypto(TOKEN, key, OWNER)


def test_success_reply_is_verifiable(crypto):
    reply = crypto.success_reply()
    assert set(reply) == {"msg_signature", "timeStamp", "nonce", "encrypt"}
    assert sign(TOKEN, reply["timeStamp"], reply["nonce"], reply["encrypt"]) == reply["msg_signature"]
    assert crypto.decrypt(reply["encrypt"]) == "success"
