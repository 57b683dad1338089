"""Settings added for DingTalk sign-in and the sandbox: parsed strictly, per-corp base URLs."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from cryptography.fernet import Fernet

from config.settings import ConfigError, load_settings


def _env(tmp_path, **extra):
    return {
        "CRM_SECRET_KEY": "k",
        "CRM_MASTER_KEY": Fernet.generate_key().decode(),
        "CRM_INSTANCE_PATH": str(tmp_path),
        **extra,
    }


def test_defaults(tmp_path):
    s = load_settings(_env(tmp_path))
    assert (s.dingtalk_jsapi_digest, s.sandbox_port, s.sandbox, s.sandbox_auto) == ("sha256", 8900, False, False)


@pytest.mark.parametrize(
    "raw, sandbox, auto", [("1", True, False), ("auto", False, True), ("AUTO", False, True), ("0", False, False)]
)
def test_sandbox_modes(tmp_path, raw, sandbox, auto):
    s = load_settings(_env(tmp_path, CRM_SANDBOX=raw))
    assert (s.sandbox, s.sandbox_auto, s.dev_login) == (sandbox, auto, sandbox)


@pytest.mark.parametrize(
    "name, value",
    [
        ("CRM_DINGTALK_JSAPI_DIGEST", "md5"),
        ("CRM_SANDBOX_PORT", "99999"),
        ("CRM_SANDBOX_PORT", "x"),
        ("CRM_SANDBOX", "maybe"),
    ],
)
def test_bad_values_are_config_errors(tmp_path, name, value):
    with pytest.raises(ConfigError, match=name):
        load_settings(_env(tmp_path, **{name: value}))


def test_for_corp_overrides_only_that_corps_bases(tmp_path):
    s = load_settings(_env(tmp_path, CRM_DINGTALK_JSAPI_DIGEST="sha1"))
    sandbox_corp = SimpleNamespace(
        settings={
            "dingtalk_oapi_base": "http://127.0.0.1:8900",
            "dingtalk_api_base": "http://127.0.0.1:8900",
            "other": "x",
        }
    )
    own = s.for_corp(sandbox_corp)
    assert own.dingtalk_oapi_base == own.dingtalk_api_base == "http://127.0.0.1:8900"
    assert own.dingtalk_jsapi_digest == "sha1" and s.dingtalk_oapi_base == "https://oapi.dingtalk.com"
    assert s.for_corp(SimpleNamespace(settings={})) is s
    assert s.for_corp(SimpleNamespace(settings={"dingtalk_oapi_base": ""})) is s
