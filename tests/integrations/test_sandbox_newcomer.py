"""The newcomer path: `crm serve` beside a sandbox corp, and the H5 employee picker that signs in
through the real DingTalk code exchange."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from app import create_app
from app.services.sandbox_corp import sandbox_corps, sandbox_wanted, start_sandbox_mode
from integrations.sandbox import DingTalkWorld, SandboxServer
from models.org import Corp, User
from tests import factories
from tests.integrations.sandbox_binding import bind

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_sandbox_is_wanted_only_when_asked_or_auto_without_real_corps(session, settings):
    session.execute(sa.delete(Corp))  # this directory's database fixture binds one
    assert not sandbox_wanted(session, settings)
    assert sandbox_wanted(session, settings.with_overrides(sandbox=True))
    auto = settings.with_overrides(sandbox_auto=True)
    assert sandbox_wanted(session, auto)
    factories.corp(session, corp_id="dingreal")
    session.flush()
    assert not sandbox_wanted(session, auto)
    assert sandbox_wanted(session, settings.with_overrides(sandbox=True))


def test_start_sandbox_mode_binds_syncs_and_routes_events(database, settings):
    settings = settings.with_overrides(sandbox_port=_free_port())
    mode = start_sandbox_mode(database, settings, app_url="http://127.0.0.1:5999", users=25)
    try:
        assert mode.server is not None and mode.url.endswith(f":{settings.sandbox_port}")
        world = mode.server.world
        sbx = next(iter(world.corps.values()))
        assert mode.corp_ids == [sbx.corp_id]
        assert sbx.callback_url == f"http://127.0.0.1:5999/callbacks/dingtalk/{sbx.corp_id}"
        with database.session() as s:
            [corp] = sandbox_corps(s)
            assert corp.platform_corp_id == sbx.corp_id and corp.app_key == sbx.app_key
            assert corp.settings["dingtalk_oapi_base"] == mode.url == corp.settings["dingtalk_api_base"]
            synced = s.scalar(sa.select(sa.func.count()).select_from(User).where(User.corp_id == corp.id))
            assert synced == len(sbx.users)
        # Restarting (here: with the sandbox still up on that port) re-points the same corp, no duplicate.
        again = start_sandbox_mode(database, settings, app_url="http://127.0.0.1:5999", sync=False)
        assert again.server is None and again.corp_ids == [sbx.corp_id]
        with database.session() as s:
            assert (
                s.scalar(sa.select(sa.func.count()).select_from(Corp).where(Corp.platform_corp_id == sbx.corp_id)) == 1
            )
    finally:
        mode.stop()


# ---------------------------------------------------------------- the picker


@pytest.fixture(scope="module")
def server():
    with SandboxServer(DingTalkWorld(seed=31, users=20)) as srv:
        yield srv


@pytest.fixture
def sbx(server):
    return next(iter(server.world.corps.values()))


@pytest.fixture
def picker(database, settings, server, sbx):
    bind(database, settings, server, sbx)
    return create_app(settings.with_overrides(sandbox=True), database=database).test_client()


def test_picker_lists_sandbox_employees_and_filters(picker, sbx):
    everyone = picker.get("/api/v1/auth/sandbox/employees").get_json()
    assert everyone["corpId"] == sbx.corp_id and len(everyone["items"]) == len(sbx.users)
    someone = sbx.users["user0004"]
    found = picker.get("/api/v1/auth/sandbox/employees", query_string={"q": someone.name}).get_json()["items"]
    assert [p["userid"] for p in found] == ["user0004"] and found[0]["departments"]


def test_picker_sign_in_uses_the_real_code_exchange(picker, database, server, sbx):
    before = sum(1 for _t, _a, p in server.world.calls if p == "/topapi/v2/user/getuserinfo")
    resp = picker.post("/api/v1/auth/sandbox/sign-in", json={"userid": "user0006"})
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["user"]["userid"] == "user0006" and resp.get_json()["created"] is True
    assert sum(1 for _t, _a, p in server.world.calls if p == "/topapi/v2/user/getuserinfo") == before + 1
    assert picker.get("/api/v1/me").get_json()["user"]["name"] == sbx.users["user0006"].name


def test_picker_unknown_employee_is_404(picker):
    resp = picker.post("/api/v1/auth/sandbox/sign-in", json={"userid": "nobody"})
    assert resp.status_code == 404 and resp.get_json()["error"]["fields"] == {"userid": "unknown"}
    assert picker.get("/api/v1/me").status_code == 401


def test_picker_is_404_without_the_sandbox(client, database, settings, server, sbx):
    bind(database, settings, server, sbx)
    assert client.get("/api/v1/auth/sandbox/employees").status_code == 404
    assert client.post("/api/v1/auth/sandbox/sign-in", json={"userid": "user0002"}).status_code == 404


# ---------------------------------------------------------------- CLI failures are one line


def _crm(tmp_path, *args):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_")}
    env["CRM_INSTANCE_PATH"] = str(tmp_path / "instance")
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )


def test_crm_sandbox_on_a_busy_port_fails_in_one_line(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        proc = _crm(tmp_path, "sandbox", "--port", str(busy.getsockname()[1]), "--users", "5")
    assert proc.returncode == 1 and proc.stderr.strip().count("\n") == 0 and "error" in proc.stderr


def test_crm_stream_without_a_dingtalk_corp_fails_in_one_line(tmp_path):
    assert _crm(tmp_path, "db", "upgrade").returncode == 0
    proc = _crm(tmp_path, "stream")
    assert proc.returncode == 1 and proc.stderr.strip().count("\n") == 0 and "DingTalk" in proc.stderr
