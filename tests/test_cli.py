"""The `crm` command as an operator runs it: a real process, real SQLite file, one-line failures."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

CRM = [sys.executable, "-m", "app.cli"]
ROOT = Path(__file__).resolve().parent.parent


def run(env, *args, check=True):
    proc = subprocess.run([*CRM, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture
def env(tmp_path):
    e = {k: v for k, v in os.environ.items() if not k.startswith("CRM_")}
    e["CRM_INSTANCE_PATH"] = str(tmp_path / "instance")
    return e


def test_upgrade_bind_list_and_one_line_errors(env, tmp_path):
    run(env, "db", "upgrade")
    assert (tmp_path / "instance" / "crm.sqlite3").exists()
    out = run(
        env,
        "corp",
        "add",
        "--platform",
        "dingtalk",
        "--corp-id",
        "dingabc",
        "--name",
        "示例科技",
        "--app-key",
        "key1",
        "--app-secret",
        "S3CRET-XYZ",
        "--agent-id",
        "123",
    ).stdout
    assert "dingabc" in out and "S3CRET" not in out
    listed = run(env, "corp", "list").stdout
    assert "dingabc" in listed and "示例科技" in listed and "S3CRET" not in listed
    assert b"S3CRET-XYZ" not in (tmp_path / "instance" / "crm.sqlite3").read_bytes()

    again = run(env, "corp", "add", "--platform", "dingtalk", "--corp-id", "dingabc", check=False)
    assert again.returncode == 1
    assert again.stderr.strip().count("\n") == 0 and "already bound" in again.stderr


def test_unreachable_database_is_one_line(env):
    env["CRM_DATABASE_URL"] = "postgresql://nobody@127.0.0.1:1/none"
    proc = run(env, "corp", "list", check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0 and "database unreachable" in proc.stderr


def test_bad_master_key_is_one_line(env):
    env["CRM_MASTER_KEY"] = "not-a-key"
    proc = run(env, "corp", "list", check=False)
    assert proc.returncode == 1 and "CRM_MASTER_KEY" in proc.stderr and proc.stderr.strip().count("\n") == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_answers_health_and_readiness(env):
    run(env, "db", "upgrade")
    port = _free_port()
    proc = subprocess.Popen(
        [*CRM, "serve", "--port", str(port)], env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                resp = requests.get(f"http://127.0.0.1:{port}/readyz", timeout=1)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, "crm serve did not start"
                time.sleep(0.2)
        assert resp.status_code == 200 and resp.json()["database"] == "ok"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
