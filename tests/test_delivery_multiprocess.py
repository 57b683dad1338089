"""On PostgreSQL with real processes: `crm worker` × 4 delivering 10,000 items exactly once within the rate
limit; a worker killed with SIGKILL mid-batch loses nothing; `crm scheduler` × 2 run each tick once and the
standby takes over when the leader dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from app.services import outbox
from integrations.sandbox import DingTalkWorld, SandboxServer
from models.db import Database
from models.outbox import Delivery, JobRun, OutboxItem, OutboxState
from tests.conftest import _empty
from tests.delivery_support import bind_sandbox_corp, inbox, marker_counts, sandbox_settings

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


@pytest.fixture
def pg(postgres_url):
    db = Database(postgres_url)
    _empty(db)
    yield db
    db.dispose()


@pytest.fixture
def settings(pg, tmp_path):
    """PostgreSQL only (these tests are about several processes sharing one server)."""
    from cryptography.fernet import Fernet

    from config import Settings

    return Settings(database_url=pg.url, secret_key="test-secret-key", master_key=Fernet.generate_key().decode(),
                    instance_path=tmp_path, testing=True)


def _env(cfg, url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_")}
    env.update(CRM_DATABASE_URL=url, CRM_SECRET_KEY=cfg.secret_key, CRM_MASTER_KEY=cfg.master_key,
               CRM_INSTANCE_PATH=str(cfg.instance_path), CRM_PUBLIC_URL=cfg.public_url,
               CRM_DINGTALK_OAPI_BASE=cfg.dingtalk_oapi_base, CRM_DINGTALK_API_BASE=cfg.dingtalk_api_base)
    return env


def _crm(env, *args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "app.cli", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _fill(pg, cfg, world, *, people: int, per_person: int):
    with pg.session() as s:
        corp, users = bind_sandbox_corp(s, cfg, next(iter(world.corps.values())), users=people,
                                        corp_settings={"quiet_hours": []})
        now = datetime.now(UTC)
        rows = [{"corp_id": corp.id, "kind": "follow_up_due", "recipient_user_id": u.id, "subject_type": "customer",
                 "subject_id": n * 100_000 + i, "due_at": now, "payload": {"line": f"item-{n * per_person + i}-x"}}
                for n, u in enumerate(users) for i in range(per_person)]
        assert outbox.enqueue_many(s, rows) == people * per_person
    return corp


def _rejections(world) -> int:
    """Calls beyond the per-app per-API limit in any one second, as the sandbox counted them."""
    per_second = Counter((app, path, int(t)) for t, app, path in world.calls)
    return sum(max(0, n - world.qps_limit) for n in per_second.values())


def _state_counts(pg) -> dict[str, int]:
    with pg.session() as s:
        return dict(s.execute(sa.select(OutboxItem.state, sa.func.count()).group_by(OutboxItem.state)).all())


def test_four_workers_deliver_10000_items_exactly_once_without_rate_limit_rejections(pg, postgres_url, settings):
    with SandboxServer(DingTalkWorld(seed=21, users=200)) as server:
        cfg = sandbox_settings(settings, server)
        _fill(pg, cfg, server.world, people=200, per_person=50)
        env = _env(cfg, postgres_url)
        workers = [_crm(env, "worker", "--threads", "2", "--exit-when-idle", "--idle", "0.2") for _ in range(4)]
        outputs = [w.communicate(timeout=600) for w in workers]
        assert [w.returncode for w in workers] == [0] * 4, [o[1][-500:] for o in outputs]
        assert _state_counts(pg) == {OutboxState.SENT: 10_000}
        messages = inbox(server)
        counts = marker_counts(messages)
        assert len(counts) == 10_000 and set(counts.values()) == {1}
        assert all(m["dropped"] == {} for m in messages)
        assert len(messages) == 200  # one digest per recipient
        assert _rejections(server.world) == 0
        with pg.session() as s:
            by_worker = dict(s.execute(sa.select(Delivery.worker, sa.func.count()).group_by(Delivery.worker)).all())
        assert len({w.rsplit(":", 1)[0] for w in by_worker}) >= 2  # the work really was shared


def test_worker_killed_mid_batch_loses_nothing_and_duplicates_are_counted(pg, postgres_url, settings, capsys):
    with SandboxServer(DingTalkWorld(seed=22, users=200)) as server:
        server.world.latency = 0.05
        cfg = sandbox_settings(settings, server)
        _fill(pg, cfg, server.world, people=200, per_person=10)
        env = _env(cfg, postgres_url)
        victim = _crm(env, "worker", "--threads", "2", "--lease", "5", "--batch", "10")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with pg.session() as s:
                if s.execute(sa.select(sa.func.count()).select_from(Delivery)).scalar_one() >= 30:
                    break
            time.sleep(0.05)
        victim.send_signal(signal.SIGKILL)
        victim.communicate()
        with pg.session() as s:
            stranded = s.execute(sa.select(sa.func.count()).select_from(OutboxItem)
                                 .where(OutboxItem.state == OutboxState.SENDING)).scalar_one()
        rescuer = _crm(env, "worker", "--threads", "2", "--lease", "5", "--idle", "0.2")
        try:
            deadline = time.monotonic() + 300
            while _state_counts(pg) != {OutboxState.SENT: 2000} and time.monotonic() < deadline:
                time.sleep(0.5)
        finally:
            rescuer.send_signal(signal.SIGTERM)
            rescuer.communicate(timeout=60)
        assert _state_counts(pg) == {OutboxState.SENT: 2000}
        counts = marker_counts(inbox(server))
        assert len(counts) == 2000  # nothing lost
        duplicates = sum(n - 1 for n in counts.values())
        with capsys.disabled():
            sys.stderr.write(f"\n[kill -9] items stranded in 'sending': {stranded}, delivered twice: {duplicates}\n")
        # Only items in flight between the platform's answer and our commit can arrive twice: at most the
        # victim's two in-flight digests (one per thread) of 10 items each.
        assert duplicates <= 2 * 10


def _job_runs(pg, job_id: str) -> list[tuple[str, str]]:
    with pg.session() as s:
        return s.execute(sa.select(JobRun.tick, JobRun.owner).where(JobRun.job_id == job_id)
                         .order_by(JobRun.tick)).all()


def _wait(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def test_two_schedulers_run_each_tick_once_and_the_standby_takes_over(pg, postgres_url, settings, capsys):
    env = _env(settings, postgres_url)
    # --speed 20: the every-minute jobs tick every 3 s.
    first = _crm(env, "scheduler", "--speed", "20", "--poll", "1")
    second = _crm(env, "scheduler", "--speed", "20", "--poll", "1")
    procs = {first.pid: first, second.pid: second}
    try:
        assert _wait(lambda: len(_job_runs(pg, "due_reminders")) >= 4, 60)
        runs = _job_runs(pg, "due_reminders")
        owners = {owner.rsplit(":", 1)[1] for _, owner in runs}
        assert len(owners) == 1  # one leader ran every tick
        assert len({tick for tick, _ in runs}) == len(runs)
        leader_pid = int(owners.pop())
        standby_pid = next(pid for pid in procs if pid != leader_pid)
        procs[leader_pid].send_signal(signal.SIGKILL)
        procs[leader_pid].communicate()
        killed_at = time.monotonic()

        def standby_ran():
            return any(owner.endswith(f":{standby_pid}") for _, owner in _job_runs(pg, "due_reminders"))

        assert _wait(standby_ran, 30 + 3)
        took = time.monotonic() - killed_at
        runs = _job_runs(pg, "due_reminders")
        assert len({tick for tick, _ in runs}) == len(runs)
        with capsys.disabled():
            sys.stderr.write(f"\n[scheduler] standby took over {took:.1f}s after the leader was killed\n")
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                p.communicate(timeout=30)
