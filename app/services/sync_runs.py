"""Org sync runs for admins: list and read them, and start a full sync in the background.

The sync itself runs in a thread of the web process (embedded mode has no separate worker for it) and
writes its progress to the `sync_runs` row as it goes, so any process can poll it. The run row is opened
before the thread starts: a second start while one is alive is refused at once (409), not later.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so

from app.errors import Conflict, NotFound
from app.services import org_sync
from app.services.timeutil import iso
from integrations.base import PlatformClient
from models.db import Database
from models.platform import SyncRun

log = logging.getLogger(__name__)
_threads: dict[int, threading.Thread] = {}  # run id → the thread syncing it, for tests and shutdown


def run_json(run: SyncRun) -> dict[str, Any]:
    end = run.finished_at or run.heartbeat_at
    return {
        "id": run.id,
        "kind": run.kind,
        "status": run.status,
        "startedAt": iso(run.started_at),
        "finishedAt": iso(run.finished_at),
        "heartbeatAt": iso(run.heartbeat_at),
        "durationSeconds": round((end - run.started_at).total_seconds(), 3) if end and run.started_at else None,
        "callsMade": run.calls_made,
        "added": run.added,
        "updated": run.updated,
        "deactivated": run.deactivated,
        "removed": run.removed,
        "progress": {"done": run.done, "total": run.total},
        "errors": run.errors,
    }


def list_runs(session: so.Session, corp_id: int, limit: int = 20) -> list[dict[str, Any]]:
    runs = session.execute(
        sa.select(SyncRun).where(SyncRun.corp_id == corp_id).order_by(SyncRun.id.desc()).limit(limit)
    ).scalars()
    return [run_json(r) for r in runs]


def get_run(session: so.Session, corp_id: int, run_id: int) -> dict[str, Any]:
    run = session.get(SyncRun, run_id)
    if run is None or run.corp_id != corp_id:  # another corp's run does not exist for this caller
        raise NotFound("同步记录不存在 / no such sync run", fields={"run_id": "not found"})
    return run_json(run)


def start_full_sync(database: Database, corp_id: int, client_factory: Callable[[], PlatformClient],
                    **sync_kwargs: Any) -> dict[str, Any]:
    """Open (or resume) the corp's run and sync it in a background thread; returns the run as it starts."""
    try:
        run = org_sync.open_run(database, corp_id)
    except org_sync.SyncAlreadyRunning as exc:
        raise Conflict(str(exc), code="sync_running") from None

    def work() -> None:
        try:
            org_sync.full_sync(database, corp_id, client_factory(), run_id=run.id, **sync_kwargs)
        except Exception:  # recorded on the run by full_sync; nothing to answer here
            log.warning("background org sync run %s failed", run.id, exc_info=True)
        finally:
            _threads.pop(run.id, None)

    thread = threading.Thread(target=work, name=f"org-sync-{run.id}", daemon=True)
    _threads[run.id] = thread
    thread.start()
    return run_json(run)


def wait(run_id: int, timeout: float | None = None) -> None:
    """Block until a background run started here has ended (tests, graceful shutdown)."""
    thread = _threads.get(run_id)
    if thread is not None:
        thread.join(timeout)
