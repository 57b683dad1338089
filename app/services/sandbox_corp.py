"""The sandbox corp: bound like a real one, but pointed at the local sandbox server.

Only this corp's base URLs change (in its own settings), so a real corp bound later in the same process
still talks to DingTalk. Credentials come from the sandbox's `/sandbox/dingtalk/corps` listing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so

from app.services.corps import SecretBox, create_corp
from integrations.base import PlatformError
from models.org import Corp, Platform


def is_sandbox_corp(corp: Corp) -> bool:
    return bool((corp.settings or {}).get("sandbox"))


def real_corp_count(session: so.Session) -> int:
    """Bound corps that are not sandbox corps."""
    return sum(1 for c in session.execute(sa.select(Corp)).scalars() if not is_sandbox_corp(c))


def sandbox_corps(session: so.Session) -> list[Corp]:
    corps = session.execute(sa.select(Corp).where(Corp.platform == Platform.DINGTALK).order_by(Corp.id)).scalars()
    return [c for c in corps if is_sandbox_corp(c) and c.active]


def bind_sandbox_corp(session: so.Session, box: SecretBox, *, credentials: dict[str, Any], base_url: str) -> Corp:
    """Bind (or re-point, after a restart on another port) the sandbox corp described by `credentials`."""
    secrets = {"app_secret": credentials["appSecret"], "callback_token": credentials["callbackToken"],
               "aes_key": credentials["callbackAesKey"]}
    base = base_url.rstrip("/")
    corp = session.execute(
        sa.select(Corp).where(Corp.platform == Platform.DINGTALK, Corp.platform_corp_id == credentials["corpId"])
    ).scalar_one_or_none()
    if corp is None:
        name = f"{credentials.get('name') or '沙箱企业'}（沙箱）"
        corp = create_corp(session, box, platform=Platform.DINGTALK, platform_corp_id=credentials["corpId"],
                           name=name, agent_id=str(credentials["agentId"]), app_key=credentials["appKey"],
                           secrets=secrets)
    else:
        corp.app_key, corp.agent_id = credentials["appKey"], str(credentials["agentId"])
        corp.secrets_ciphertext = box.seal(secrets)
    corp.settings = {**(corp.settings or {}), "sandbox": True, "dingtalk_oapi_base": base, "dingtalk_api_base": base}
    session.flush()
    return corp


# ----------------------------------------------------------------------------- the newcomer path


@dataclass
class SandboxMode:
    """What `crm serve` started when no real corp is bound."""

    url: str
    corp_ids: list[str]
    server: Any = None  # the in-process SandboxServer; None when an already running sandbox was reused
    synced: dict[str, str] = field(default_factory=dict)  # CorpId → one line about its first sync

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()


def sandbox_wanted(session: so.Session, settings: Any) -> bool:
    """CRM_SANDBOX=1; or CRM_SANDBOX=auto (`make run`) while nothing but sandbox corps is bound. Never
    by default, so a production server without corps yet does not bind a sandbox corp."""
    if settings.sandbox:
        return True
    return bool(getattr(settings, "sandbox_auto", False)) and real_corp_count(session) == 0


def _start_or_reuse(host: str, port: int, *, users: int, seed: int) -> tuple[str, Any]:
    from integrations.sandbox.control import SandboxControl
    from integrations.sandbox.server import port_is_free, serve

    url = f"http://{host}:{port}"
    if port_is_free(host, port):
        return url, serve(host, port, seed=seed, users=users, block=False)
    # Something holds the port: a `crm sandbox` the newcomer started in another terminal is fine.
    try:
        SandboxControl(url).corps()
    except PlatformError:
        raise PlatformError(f"沙箱端口 {port} 已被占用 / sandbox port {port} is busy: set CRM_SANDBOX_PORT",
                            code="port_busy", platform="sandbox") from None
    return url, None


def start_sandbox_mode(database: Any, settings: Any, *, app_url: str, users: int = 60, seed: int = 1,
                       sync: bool = True) -> SandboxMode:
    """Start (or reuse) the sandbox on `settings.sandbox_port`, bind its corps pointed at it, route its
    events to this app's callback URL and run a first full org sync, so the app works at once."""
    from app.services.org_sync import SyncFailed, full_sync
    from app.services.platform import platform_client
    from integrations.sandbox.control import SandboxControl

    url, server = _start_or_reuse("127.0.0.1", settings.sandbox_port, users=users, seed=seed)
    control = SandboxControl(url)
    mode = SandboxMode(url=url, corp_ids=[], server=server)
    box = SecretBox(settings.master_key)
    for creds in control.corps():
        with database.session() as s:
            corp = bind_sandbox_corp(s, box, credentials=creds, base_url=url)
            corp_pk = corp.id
        control.set_callback(creds["corpId"], f"{app_url.rstrip('/')}/callbacks/dingtalk/{creds['corpId']}")
        mode.corp_ids.append(creds["corpId"])
        if not sync:
            continue
        try:
            run = full_sync(database, corp_pk, platform_client(corp, settings=settings, database=database), threads=4)
            mode.synced[creds["corpId"]] = f"+{run.added} ~{run.updated} -{run.deactivated}"
        except (SyncFailed, PlatformError) as exc:
            mode.synced[creds["corpId"]] = f"sync failed: {exc}"
    return mode
