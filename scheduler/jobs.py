"""The one table of scheduled jobs. Each job picks what is due and calls one service, per corp.

Ids are stable (they key the run-once ledger and the admin console). Times of day (agenda, nightly sync) are
per-corp settings in the corp's own time zone, so those jobs tick often and act once per local day.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from app.services import agenda, delivery, outbox, pool, reminders, rules
from app.services.corps import corp_setting
from models.db import Database
from models.org import Corp
from scheduler.runs import last_done_tick, run_once

log = logging.getLogger(__name__)


@dataclass
class JobContext:
    database: Database
    settings: Any
    owner: str
    client_factory: Callable[[Corp], Any] | None = None
    _clients: dict[int, Any] = field(default_factory=dict)

    def client(self, corp: Corp) -> Any:
        if self.client_factory is not None:
            return self.client_factory(corp)
        from integrations.registry import client_for

        return client_for(corp, settings=self.settings, database=self.database)


def _corps(ctx: JobContext) -> list[Corp]:
    with ctx.database.session() as s:
        return list(s.execute(sa.select(Corp).where(Corp.active.is_(True)).order_by(Corp.id)).scalars())


def _per_corp(ctx: JobContext, work: Callable[[sa.orm.Session, Corp], Any]) -> str:
    """Each corp in its own transaction: one corp's failure neither blocks nor rolls back the others."""
    done, failed = [], []
    for corp in _corps(ctx):
        try:
            with ctx.database.session() as s:
                done.append(f"{corp.id}:{work(s, s.get(Corp, corp.id))}")
        except Exception as exc:
            log.exception("job failed for corp %s", corp.id)
            failed.append(f"{corp.id}:{type(exc).__name__}")
    return ("partial " if failed else "") + " ".join(done + failed)


# --------------------------------------------------------------------------- the jobs (a few lines each)


def due_reminders(ctx: JobContext, now: datetime) -> str:
    since = last_done_tick(ctx.database, "due_reminders")
    return _per_corp(ctx, lambda s, corp: reminders.enqueue_due(s, corp, since, now))


def daily_agenda(ctx: JobContext, now: datetime) -> str:
    return _per_corp(ctx, lambda s, corp: agenda.enqueue_agendas(s, corp, now))


def stale_customers(ctx: JobContext, now: datetime) -> str:
    # Stale customers are the default `no_follow_up` automation rule (N = the corp's `stale_days`), so an
    # admin can edit or disable it like any rule and owners are never reminded twice for one spell.
    return _per_corp(ctx, lambda s, corp: rules.run_no_follow_up(s, corp.id, now))


def pool_reclaim(ctx: JobContext, now: datetime) -> str:
    return _per_corp(ctx, lambda s, corp: pool.sweep(s, corp, now))


def approval_escalation(ctx: JobContext, now: datetime) -> str:
    from app.services import approvals

    return _per_corp(ctx, lambda s, corp: approvals.escalate_due(s, corp.id, now))


def nightly_org_sync(ctx: JobContext, now: datetime) -> str:
    from app.services.org_sync import full_sync

    ran = []
    for corp in _corps(ctx):
        local = delivery.local_now(corp, now)
        if local.time() < delivery._hm(corp_setting(corp, "org_sync_time") or "02:00"):
            continue
        tick = f"{corp.id}:{local.date().isoformat()}"
        if run_once(ctx.database, "org_sync_corp", tick, now, ctx.owner,
                    lambda corp=corp: str(full_sync(ctx.database, corp.id, ctx.client(corp)).status)):
            ran.append(str(corp.id))
    return " ".join(ran)


def poll_results(ctx: JobContext, now: datetime) -> str:
    return str(delivery.poll_results(ctx.database, now, ctx.client))


def quota_check(ctx: JobContext, now: datetime) -> str:
    return _per_corp(ctx, lambda s, corp: delivery.warn_quota(s, corp, now))


def outbox_cleanup(ctx: JobContext, now: datetime) -> str:
    with ctx.database.session() as s:
        return str(outbox.cleanup(s, now))


@dataclass(frozen=True)
class Job:
    id: str
    every: int  # seconds; ticks are aligned to multiples of it since the epoch
    run: Callable[[JobContext, datetime], str | None]


JOBS: tuple[Job, ...] = (
    Job("due_reminders", 60, due_reminders),
    Job("daily_agenda", 60, daily_agenda),
    Job("stale_customers", 3600, stale_customers),
    Job("pool_reclaim", 3600, pool_reclaim),
    Job("approval_escalation", 300, approval_escalation),
    Job("nightly_org_sync", 600, nightly_org_sync),
    Job("poll_results", 120, poll_results),
    Job("quota_check", 600, quota_check),
    Job("outbox_cleanup", 86400, outbox_cleanup),
)


def tick_of(job: Job, now: datetime, every: float | None = None) -> str:
    return str(int(now.timestamp() // (every or job.every)))


def run_job(ctx: JobContext, job: Job, now: datetime, *, every: float | None = None) -> bool:
    """Run `job` for the tick containing `now`, unless some scheduler already did."""
    return run_once(ctx.database, job.id, tick_of(job, now, every), now, ctx.owner, lambda: job.run(ctx, now))
