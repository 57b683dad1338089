"""Run-once ledger: a job's tick runs only where inserting its (job id, tick) row succeeds."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

import sqlalchemy as sa

from integrations.dingtalk.sqlutil import upsert_insert
from models.db import Database
from models.outbox import JobRun
from models.types import utcnow

log = logging.getLogger(__name__)


def claim_tick(database: Database, job_id: str, tick: str, tick_at: datetime, owner: str) -> int | None:
    table = JobRun.__table__
    with database.session() as s:
        return s.execute(
            upsert_insert(s, table)
            .values(job_id=job_id, tick=tick, tick_at=tick_at, owner=owner, status="running", started_at=utcnow())
            .on_conflict_do_nothing(index_elements=["job_id", "tick"])
            .returning(table.c.id)
        ).scalar_one_or_none()


def finish(database: Database, run_id: int, status: str, detail: str | None) -> None:
    with database.session() as s:
        s.execute(sa.update(JobRun).where(JobRun.id == run_id)
                  .values(status=status, finished_at=utcnow(), detail=(detail or "")[:500] or None))


def run_once(database: Database, job_id: str, tick: str, tick_at: datetime, owner: str,
             fn: Callable[[], str | None]) -> bool:
    """Run `fn` if nobody ran this tick yet; False when it was already taken. Failures are recorded, not raised,
    so one broken job never stops the scheduler."""
    run_id = claim_tick(database, job_id, tick, tick_at, owner)
    if run_id is None:
        return False
    try:
        detail = fn()
    except Exception as exc:
        log.exception("job %s tick %s failed", job_id, tick)
        finish(database, run_id, "failed", f"{type(exc).__name__}: {exc}")
        return True
    finish(database, run_id, "partial" if detail and detail.startswith("partial") else "done", detail)
    return True


def last_done_tick(database: Database, job_id: str) -> datetime | None:
    with database.session() as s:
        return s.execute(
            sa.select(sa.func.max(JobRun.tick_at)).where(JobRun.job_id == job_id, JobRun.status == "done")
        ).scalar_one()
