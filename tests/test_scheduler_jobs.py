"""Every scheduled job and every setting it reads, with the clock under test control (time-machine)."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta

import pytest
import sqlalchemy as sa
import time_machine

from app.services import reminders
from models.crm import Customer, Task
from models.org import Corp
from models.outbox import JobRun, OutboxItem, OutboxState
from models.types import utcnow
from scheduler.jobs import JOBS, JobContext, run_job
from tests import factories as f
from tests.delivery_support import local

TZ = "Asia/Shanghai"
JOB = {j.id: j for j in JOBS}


@pytest.fixture
def org(database):
    with database.session() as s:
        return f.org(s)


@pytest.fixture
def ctx(database, settings):
    return JobContext(database=database, settings=settings, owner="test")


def _items(database, **where):
    with database.session() as s:
        return s.execute(sa.select(OutboxItem).filter_by(**where).order_by(OutboxItem.id)).scalars().all()


def _set(database, corp, **values):
    with database.session() as s:
        row = s.get(Corp, corp.id)
        row.settings = {**row.settings, **values}


def _run(ctx, job_id, at):
    with time_machine.travel(at, tick=False):
        return run_job(ctx, JOB[job_id], utcnow())


def test_job_table_has_stable_unique_ids():
    ids = [j.id for j in JOBS]
    assert len(ids) == len(set(ids))
    assert {"due_reminders", "daily_agenda", "stale_customers", "pool_reclaim", "approval_escalation",
            "nightly_org_sync", "poll_results", "outbox_cleanup"} <= set(ids)


def test_due_reminders_due_and_not_yet_due_and_each_tick_runs_once(database, ctx, org):
    now = local(TZ, 2026, 11, 10, 10, 0, 30)
    with database.session() as s:
        due = f.customer(s, org.corp, org.alice, name="到期客户", next_contact_at=now - timedelta(seconds=20))
        f.customer(s, org.corp, org.alice, name="未到期客户", next_contact_at=now + timedelta(minutes=5))
        f.customer(s, org.corp, None, name="公海客户", next_contact_at=now - timedelta(seconds=10))
    with database.session() as s:
        assert reminders.enqueue_due(s, s.get(Corp, org.corp.id), now - timedelta(minutes=1), now) == 1
        s.rollback()
    assert _run(ctx, "due_reminders", now) is True
    assert _run(ctx, "due_reminders", now + timedelta(seconds=10)) is False  # same tick: not again
    (item,) = _items(database)
    assert (item.kind, item.subject_id, item.recipient_user_id) == ("follow_up_due", due.id, org.alice.id)
    assert item.next_attempt_at == item.due_at
    assert item.payload["line"].startswith("10:00 跟进「到期客户」") and item.payload["title"] == "跟进提醒：到期客户"
    from app.services import outbox

    with database.session() as s:  # a service enqueueing the same reminder meets the scan's row
        assert outbox.enqueue(s, corp_id=org.corp.id, kind="follow_up_due", recipient_user_id=org.alice.id,
                              subject_type="customer", subject_id=due.id, due_at=item.due_at, payload={}) is None

    assert _run(ctx, "due_reminders", now + timedelta(minutes=6)) is True  # next ticks reach the later one
    assert [i.payload["line"].split("「")[1][:5] for i in _items(database)] == ["到期客户」", "未到期客户"]
    with database.session() as s:
        runs = s.execute(sa.select(JobRun.status).where(JobRun.job_id == "due_reminders")).scalars().all()
    assert runs == ["done", "done"]


def test_daily_agenda_at_the_corps_agenda_time_once_a_day(database, ctx, org):
    today = local(TZ, 2026, 11, 10, 0, 0)
    with database.session() as s:
        f.customer(s, org.corp, org.alice, next_contact_at=today + timedelta(hours=15))
        f.customer(s, org.corp, org.alice, next_contact_at=today - timedelta(days=2))
        s.add(Task(corp_id=org.corp.id, title="报价", assignee_id=org.bob.id, due_at=today + timedelta(hours=12)))
    _run(ctx, "daily_agenda", today.replace(hour=8, minute=59))
    assert _items(database) == []
    _run(ctx, "daily_agenda", today.replace(hour=9, minute=0, second=5))
    _run(ctx, "daily_agenda", today.replace(hour=9, minute=1, second=5))
    items = {i.recipient_user_id: i for i in _items(database, kind="agenda")}
    assert set(items) == {org.alice.id, org.bob.id}
    assert (items[org.alice.id].payload["today"], items[org.alice.id].payload["overdue"]) == (1, 1)
    assert items[org.bob.id].payload["tasks"] == 1

    _set(database, org.corp, agenda_time="10:30")
    tomorrow = today + timedelta(days=1)
    _run(ctx, "daily_agenda", tomorrow.replace(hour=9, minute=0, second=5))
    assert len(_items(database, kind="agenda")) == 2
    _run(ctx, "daily_agenda", tomorrow.replace(hour=10, minute=30, second=5))
    # alice still has an overdue follow-up and bob an overdue task: one agenda each on the new day
    assert len(_items(database, kind="agenda")) == 4
    assert len({i.idempotency_key for i in _items(database, kind="agenda")}) == 4


def test_stale_customers_remind_owner_and_cc_department_leader_once(database, ctx, org):
    now = local(TZ, 2026, 11, 10, 10, 0)
    with database.session() as s:
        stale = f.customer(s, org.corp, org.alice, name="老客户", last_contact_at=now - timedelta(days=31))
        f.customer(s, org.corp, org.alice, name="新客户", last_contact_at=now - timedelta(days=29))
        fresh = s.execute(sa.select(Customer).where(Customer.name == "新客户")).scalar_one()
    _run(ctx, "stale_customers", now)
    _run(ctx, "stale_customers", now + timedelta(hours=1))
    items = _items(database, kind="rule_notify")
    assert {(i.subject_id, i.recipient_user_id) for i in items} == {(stale.id, org.alice.id),
                                                                     (stale.id, org.east_lead.id)}
    assert all("已 30 天未跟进" in i.payload["text"] for i in items)
    # N is the corp setting: lowering it reaches the 29-day customer, and the stale one is not told twice.
    _set(database, org.corp, stale_days=20)
    _run(ctx, "stale_customers", now + timedelta(hours=2))
    items = _items(database, kind="rule_notify")
    assert len(items) == 4 and {i.subject_id for i in items} == {stale.id, fresh.id}


def test_pool_reclaim_warns_k_days_before_then_reclaims(database, ctx, org):
    start = local(TZ, 2026, 11, 1, 10, 0)
    _set(database, org.corp, pool_reclaim_days=30, pool_warn_days=5)
    with database.session() as s:
        c = f.customer(s, org.corp, org.bob, name="将回公海", last_contact_at=start)
    _run(ctx, "pool_reclaim", start + timedelta(days=24))
    assert _items(database) == []
    _run(ctx, "pool_reclaim", start + timedelta(days=25, hours=1))
    _run(ctx, "pool_reclaim", start + timedelta(days=25, hours=2))
    (warning,) = _items(database, kind="pool_warning")
    assert warning.recipient_user_id == org.bob.id and "2026-12-01" in warning.payload["line"]
    with database.session() as s:
        assert s.get(Customer, c.id).owner_id == org.bob.id
    _run(ctx, "pool_reclaim", start + timedelta(days=30, hours=1))
    with database.session() as s:
        row = s.get(Customer, c.id)
        assert (row.owner_id, row.in_pool) == (None, True)
    (told,) = _items(database, kind="pool_reclaimed")
    assert told.recipient_user_id == org.bob.id


def test_outbox_cleanup_forgets_old_finished_rows_only(database, ctx, org):
    from app.services import outbox

    then = local(TZ, 2026, 10, 1, 10, 0)
    with database.session() as s:
        old = outbox.enqueue(s, corp_id=org.corp.id, kind="x", recipient_user_id=org.alice.id, subject_type="t",
                             subject_id=1, due_at=then, payload={})
        waiting = outbox.enqueue(s, corp_id=org.corp.id, kind="x", recipient_user_id=org.alice.id,
                                 subject_type="t", subject_id=2, due_at=then, payload={})
        old.state, old.updated_at = OutboxState.SENT, then
        waiting.updated_at = then
    _run(ctx, "outbox_cleanup", then + timedelta(days=31))
    assert [i.id for i in _items(database)] == [waiting.id]


def test_a_failing_corp_does_not_stop_the_others(database, ctx, org):
    now = local(TZ, 2026, 11, 10, 10, 0, 30)
    with database.session() as s:
        f.customer(s, org.corp, org.alice, next_contact_at=now - timedelta(seconds=5))
        broken = f.corp(s)
        broken.settings = {**broken.settings, "stale_days": "not a number"}
    _run(ctx, "stale_customers", now)
    with database.session() as s:
        run = s.execute(sa.select(JobRun).where(JobRun.job_id == "stale_customers")).scalar_one()
    assert run.status == "partial" and "ValueError" in run.detail


def test_importing_the_app_or_a_gunicorn_worker_never_starts_a_scheduler(tmp_path):
    code = (
        "import threading, app, app.wsgi, scheduler, scheduler.jobs, app.cli\n"
        "import apscheduler.schedulers.base as b\n"
        "names = sorted(t.name for t in threading.enumerate())\n"
        "assert names == ['MainThread'], names\n"
        "print('ok')\n"
    )
    from cryptography.fernet import Fernet

    env = {"CRM_DATABASE_URL": f"sqlite:///{tmp_path}/x.sqlite3", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
           "CRM_SECRET_KEY": "k" * 32, "CRM_MASTER_KEY": Fernet.generate_key().decode(),
           "CRM_INSTANCE_PATH": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_nightly_org_sync_once_per_local_day_after_the_sync_time(database, settings):
    from integrations.sandbox import DingTalkWorld, SandboxServer
    from models.platform import SyncRun
    from tests.delivery_support import bind_sandbox_corp, sandbox_settings

    with SandboxServer(DingTalkWorld(seed=3, users=8)) as server:
        cfg = sandbox_settings(settings, server)
        with database.session() as s:
            bind_sandbox_corp(s, cfg, next(iter(server.world.corps.values())), users=0)
        ctx = JobContext(database=database, settings=cfg, owner="test")

        def syncs():
            with database.session() as s:
                return s.execute(sa.select(sa.func.count()).select_from(SyncRun)).scalar_one()

        night = local(TZ, 2026, 11, 10, 1, 55)
        with time_machine.travel(night, tick=True):
            run_job(ctx, JOB["nightly_org_sync"], utcnow())
        assert syncs() == 0
        with time_machine.travel(night + timedelta(minutes=10), tick=True):
            run_job(ctx, JOB["nightly_org_sync"], utcnow())
        assert syncs() == 1
        with time_machine.travel(night + timedelta(minutes=20), tick=True):
            run_job(ctx, JOB["nightly_org_sync"], utcnow())
        assert syncs() == 1  # once per local day
        with database.session() as s:
            assert s.execute(sa.select(sa.func.count()).select_from(f.User)).scalar_one() == 8


def test_approval_escalation_and_quota_check_jobs_call_their_services(database, ctx, org):
    from models.platform import ApiUsage

    now = local(TZ, 2026, 11, 10, 10, 0)
    assert _run(ctx, "approval_escalation", now) is True
    with database.session() as s:
        run = s.execute(sa.select(JobRun).where(JobRun.job_id == "approval_escalation")).scalar_one()
        assert run.status == "done" and "reminded" in run.detail
        s.add(ApiUsage(corp_id=org.corp.id, month="2026-11", family="todo", count=4000))
    _run(ctx, "quota_check", now)
    (warning,) = _items(database, kind="quota_warning")
    assert warning.recipient_user_id == org.admin.id and "4000/5000" in warning.payload["line"]


def test_embedded_mode_runs_a_worker_and_a_scheduler_until_stopped(database, settings, org):
    import threading
    import time

    from app.services import outbox
    from scheduler import start_embedded

    with database.session() as s:
        item = outbox.enqueue(s, corp_id=org.corp.id, kind="follow_up_due", recipient_user_id=org.alice.id,
                              subject_type="customer", subject_id=1, due_at=utcnow(), payload={"line": "x"})
    handle = start_embedded(settings, database)
    try:
        assert {t.name for t in handle.threads} == {"crm-scheduler", "crm-worker"}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and _items(database)[0].state in (OutboxState.PENDING,
                                                                             OutboxState.SENDING):
            time.sleep(0.1)
        # The corp has no AppSecret bound: the embedded worker claimed the item and recorded why it failed.
        (row,) = _items(database)
        assert row.id == item.id and row.state == OutboxState.FAILED and "AppSecret" in row.last_error
    finally:
        handle.stop()
    assert not any(t.is_alive() for t in handle.threads)
    assert {t.name for t in threading.enumerate()} & {"crm-scheduler", "crm-worker"} == set()
