"""The delivery worker loop behind `crm worker` (and the embedded worker thread)."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from app.services.delivery import Batch, ClientFactory, Deliverer, StepResult
from models.db import Database
from models.types import utcnow
from scheduler.runner import owner_id

log = logging.getLogger(__name__)


def run_worker(settings: Any, database: Database, *, stop: threading.Event, owner: str | None = None,
               lease_seconds: float = 120, batch: int = 20, idle_seconds: float = 1.0,
               exit_when_idle: bool = False, client_factory: ClientFactory | None = None) -> StepResult:
    """Claim, send, repeat until `stop` (or, with `exit_when_idle`, until nothing is due).

    The next batch is claimed while the last person of the current one is being sent to, so the claim's
    queries never leave the thread without a rate-limit slot in the queue. SQLite has a single writer:
    there the claim waits for the batch instead.
    """
    deliverer = Deliverer(database, settings, owner=owner or owner_id(), lease_seconds=lease_seconds,
                          max_recipients=batch, client_factory=client_factory)
    overlap = database.dialect != "sqlite"
    claimer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="crm-claim") if overlap else None
    ahead: Future[Batch] | None = None

    def claim_ahead() -> None:
        nonlocal ahead
        if claimer is not None and ahead is None and not stop.is_set():
            ahead = claimer.submit(deliverer.claim, utcnow())

    total = StepResult()
    try:
        while not stop.is_set():
            try:
                if ahead is not None:
                    pending, ahead = ahead, None
                    groups = pending.result()
                else:
                    groups = deliverer.claim(utcnow())
                result = deliverer.step(utcnow(), groups, before_last=claim_ahead)
            except Exception:  # a database hiccup must not end the worker; leases protect the rows
                log.exception("delivery step failed")
                stop.wait(idle_seconds)
                continue
            total.add(result)
            if result.claimed == 0:
                if exit_when_idle:
                    break
                stop.wait(idle_seconds)
    finally:
        if ahead is not None:
            try:
                unsent = ahead.result()
                if unsent:
                    deliverer.hand_back(unsent)  # stopping: others need not wait out the lease
            except Exception:
                log.exception("could not hand back a batch claimed ahead; its lease will run out")
        if claimer is not None:
            claimer.shutdown(wait=True)
    return total
