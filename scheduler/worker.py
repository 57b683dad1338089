"""The delivery worker loop behind `crm worker` (and the embedded worker thread)."""

from __future__ import annotations

import logging
import threading
from typing import Any

from app.services.delivery import ClientFactory, Deliverer, StepResult
from models.db import Database
from models.types import utcnow
from scheduler.runner import owner_id

log = logging.getLogger(__name__)


def run_worker(settings: Any, database: Database, *, stop: threading.Event, owner: str | None = None,
               lease_seconds: float = 120, batch: int = 20, idle_seconds: float = 1.0,
               exit_when_idle: bool = False, client_factory: ClientFactory | None = None) -> StepResult:
    """Claim, send, repeat until `stop` (or, with `exit_when_idle`, until nothing is due)."""
    deliverer = Deliverer(database, settings, owner=owner or owner_id(), lease_seconds=lease_seconds,
                          max_recipients=batch, client_factory=client_factory)
    total = StepResult()
    while not stop.is_set():
        try:
            result = deliverer.step(utcnow())
        except Exception:  # a database hiccup must not end the worker; leases protect the rows
            log.exception("delivery step failed")
            stop.wait(idle_seconds)
            continue
        total.add(result)
        if result.claimed == 0:
            if exit_when_idle:
                break
            stop.wait(idle_seconds)
    return total
