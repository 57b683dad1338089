"""Typed settings built from `CRM_*` environment variables.

Embedded mode needs no configuration: the SQLite database, the session key and the master key are
created once under `instance/` and reused, so restarts keep sessions valid and secrets decryptable.
Bad values raise `ConfigError` at start-up instead of being guessed.
"""

from __future__ import annotations

import os
import secrets
import zoneinfo
from dataclasses import dataclass, field, replace
from pathlib import Path

from cryptography.fernet import Fernet

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_INSTANCE = REPO_ROOT / "instance"


class ConfigError(ValueError):
    """A configuration value is missing or malformed."""


@dataclass(frozen=True)
class Settings:
    database_url: str
    secret_key: str
    master_key: str
    public_url: str = "http://127.0.0.1:5000"
    dingtalk_oapi_base: str = "https://oapi.dingtalk.com"
    dingtalk_api_base: str = "https://api.dingtalk.com"
    wecom_api_base: str = "https://qyapi.weixin.qq.com/cgi-bin"
    wecom_oauth_base: str = "https://open.weixin.qq.com"
    timezone: str = "Asia/Shanghai"
    # dd.config digest: SHA-256 per the current docs; older material says SHA-1 (fact sheet §4.2).
    # A corp's own `jsapi_digest` setting wins over this.
    dingtalk_jsapi_digest: str = "sha256"
    # Where `crm serve` starts the in-process sandbox when no real corp is bound.
    sandbox_port: int = 8900
    instance_path: Path = DEFAULT_INSTANCE
    # Development sign-in is only ever enabled by tests or when the app runs beside the sandbox.
    dev_login: bool = False
    sandbox: bool = False
    # CRM_SANDBOX=auto (what `make run` sets): start the sandbox only while no real corp is bound.
    sandbox_auto: bool = False
    testing: bool = False
    extra: dict = field(default_factory=dict)

    def with_overrides(self, **kwargs) -> Settings:
        return replace(self, **kwargs)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def for_corp(self, corp) -> Settings:
        """These settings with the corp's own platform base URLs, when it has them (the sandbox corp
        points at the local sandbox while every other corp keeps the real hosts)."""
        own = {key: (corp.settings or {}).get(key) for key in CORP_BASE_OVERRIDES}
        own = {key: value for key, value in own.items() if isinstance(value, str) and value}
        return replace(self, **own) if own else self


# Per-corp keys in `Corp.settings` that override the process-wide base URLs.
CORP_BASE_OVERRIDES = ("dingtalk_oapi_base", "dingtalk_api_base", "wecom_api_base", "wecom_oauth_base")

JSAPI_DIGESTS = ("sha256", "sha1")


def _read_dotenv(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        values[key.strip()] = value.strip().strip("'\"")
    return values


def _persistent_secret(instance: Path, name: str, factory) -> str:
    """Return a secret stored in `instance/<name>`, creating it (mode 0600) the first time."""
    path = instance / name
    if path.is_file():
        return path.read_text(encoding="utf-8").strip()
    instance.mkdir(parents=True, exist_ok=True)
    value = factory()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(value)
    return value


def _parse_bool(name: str, raw: str | None, default: bool) -> bool:
    if raw is None or raw == "":
        return default
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def _base_url(name: str, value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ConfigError(f"{name} must be an http(s) URL, got {value!r}")
    return value.rstrip("/")


def load_settings(environ: dict[str, str] | None = None, instance_path: Path | None = None) -> Settings:
    """Build settings from `environ` (default: `os.environ` over `.env` in the repo root)."""
    if environ is None:
        env = _read_dotenv(REPO_ROOT / ".env")
        env.update(os.environ)
    else:
        env = dict(environ)
    instance = Path(env.get("CRM_INSTANCE_PATH") or instance_path or DEFAULT_INSTANCE)

    database_url = env.get("CRM_DATABASE_URL") or f"sqlite:///{instance / 'crm.sqlite3'}"
    if database_url.startswith("postgresql://"):
        # psycopg 3 is the driver we ship; a bare postgresql:// URL would ask for psycopg2.
        database_url = "postgresql+psycopg://" + database_url[len("postgresql://") :]
    if database_url.startswith("sqlite:///") and not database_url.startswith("sqlite:///:memory:"):
        Path(database_url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)

    secret_key = env.get("CRM_SECRET_KEY") or _persistent_secret(
        instance, "secret_key", lambda: secrets.token_urlsafe(48)
    )
    master_key = env.get("CRM_MASTER_KEY") or _persistent_secret(
        instance, "master_key", lambda: Fernet.generate_key().decode()
    )
    try:
        Fernet(master_key.encode())
    except ValueError as exc:
        raise ConfigError(
            "CRM_MASTER_KEY must be 32 url-safe base64-encoded bytes (see `crm keygen`)"
        ) from exc

    tz = env.get("CRM_TIMEZONE", "Asia/Shanghai")
    try:
        zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"CRM_TIMEZONE is not a known time zone: {tz!r}") from exc

    raw_sandbox = env.get("CRM_SANDBOX")
    sandbox_auto = (raw_sandbox or "").strip().lower() == "auto"
    sandbox = False if sandbox_auto else _parse_bool("CRM_SANDBOX", raw_sandbox, False)
    digest = env.get("CRM_DINGTALK_JSAPI_DIGEST", "sha256").strip().lower()
    if digest not in JSAPI_DIGESTS:
        raise ConfigError(f"CRM_DINGTALK_JSAPI_DIGEST must be sha256 or sha1, got {digest!r}")
    raw_port = env.get("CRM_SANDBOX_PORT", "8900")
    if not raw_port.isdigit() or not 0 < int(raw_port) < 65536:
        raise ConfigError(f"CRM_SANDBOX_PORT must be a TCP port, got {raw_port!r}")
    return Settings(
        database_url=database_url,
        secret_key=secret_key,
        master_key=master_key,
        public_url=_base_url("CRM_PUBLIC_URL", env.get("CRM_PUBLIC_URL", "http://127.0.0.1:5000")),
        dingtalk_oapi_base=_base_url(
            "CRM_DINGTALK_OAPI_BASE", env.get("CRM_DINGTALK_OAPI_BASE", "https://oapi.dingtalk.com")
        ),
        dingtalk_api_base=_base_url(
            "CRM_DINGTALK_API_BASE", env.get("CRM_DINGTALK_API_BASE", "https://api.dingtalk.com")
        ),
        wecom_api_base=_base_url(
            "CRM_WECOM_API_BASE", env.get("CRM_WECOM_API_BASE", "https://qyapi.weixin.qq.com/cgi-bin")
        ),
        wecom_oauth_base=_base_url(
            "CRM_WECOM_OAUTH_BASE", env.get("CRM_WECOM_OAUTH_BASE", "https://open.weixin.qq.com")
        ),
        timezone=tz,
        dingtalk_jsapi_digest=digest,
        sandbox_port=int(raw_port),
        instance_path=instance,
        sandbox=sandbox,
        sandbox_auto=sandbox_auto,
        dev_login=sandbox,
    )
