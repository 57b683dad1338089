"""APScheduler wiring: the leader loop behind `crm scheduler`, and the embedded mode behind `crm serve`.

Nothing here runs on import; a scheduler exists only when one of these functions is called.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from models.db import Database
from scheduler.jobs import JOBS, Job, JobContext, run_job
from scheduler.leader import LeaderLock

log = logging.getLogger(__name__)

STANDBY_POLL_SECONDS = 5.0  # a standby takes over within this (plus the server noticing the dead leader)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def owner_id() -> str:
    return f"{socket.gethostname()[:40]}:{os.getpid()}"


def build_scheduler(ctx: JobContext, *, speed: float = 1.0, jobs: tuple[Job, ...] = JOBS) -> BackgroundScheduler:
    """One APScheduler job per table row, firing on epoch-aligned multiples of its period (divided by `speed`,
    a testing aid)."""
    sched = BackgroundScheduler(timezone=UTC, job_defaults={"coalesce": True, "max_instances": 1,
                                                            "misfire_grace_time": 30})
    for job in jobs:
        every = max(1.0, job.every / speed)
        sched.add_job(_fire, IntervalTrigger(seconds=every, start_date=EPOCH, timezone=UTC), id=job.id,
                      args=(ctx, job, every), name=job.id, replace_existing=True)
    return sched


def _fire(ctx: JobContext, job: Job, every: float) -> None:
    run_job(ctx, job, datetime.now(UTC), every=every)


def lead_or_stand_by(ctx: JobContext, stop: threading.Event, *, speed: float = 1.0,
                     poll: float = STANDBY_POLL_SECONDS, jobs: tuple[Job, ...] = JOBS) -> None:
    """Block until `stop`: lead while holding the lock, otherwise poll for it."""
    lock = LeaderLock(ctx.database)
    try:
        while not stop.is_set():
            if not lock.try_acquire():
                stop.wait(poll)
                continue
            log.info("scheduler %s leads", ctx.owner)
            sched = build_scheduler(ctx, speed=speed, jobs=jobs)
            sched.start()
            try:
                while not stop.wait(poll):
                    if not lock.still_held():
                        log.warning("scheduler %s lost the leader lock; standing by", ctx.owner)
                        break
            finally:
                sched.shutdown(wait=True)
    finally:
        lock.release()


@dataclass
class Embedded:
    """Handle of the in-process scheduler and delivery worker started by `start_embedded`."""

    stop_event: threading.Event
    threads: list[threading.Thread]

    def stop(self, timeout: float = 10.0) -> None:
        self.stop_event.set()
        for t in self.threads:
            t.join(timeout)


def start_embedded(settings: Any, database: Database, *, worker: bool = True) -> Embedded:
    """Embedded mode (`crm serve`): one scheduler and one delivery worker as daemon threads of this process."""
    from scheduler.worker import run_worker

    stop = threading.Event()
    ctx = JobContext(database=database, settings=settings, owner=owner_id())
    threads = [threading.Thread(target=lead_or_stand_by, args=(ctx, stop), name="crm-scheduler", daemon=True)]
    if worker:
        threads.append(threading.Thread(target=run_worker, args=(settings, database),
                                        kwargs={"stop": stop}, name="crm-worker", daemon=True))
    for t in threads:
        t.start()
    return Embedded(stop, threads)
