"""Acknowledge first, apply later: the platform-event inbox and its applier.

`record_event` is all a callback does before answering — one INSERT that is also the de-duplication
(unique corp + event id, ON CONFLICT DO NOTHING ... RETURNING: a redelivery inserts nothing and returns
no id; psycopg reports rowcount -1 there, so the RETURNING row is what counts). The row id then goes to
an in-process `EventApplier` thread; `apply_pending_events` picks up whatever a crash or a platform
outage left pending, and the applier sweeps for those itself when idle.

Applying one event: claim the row (a conditional UPDATE with a lease, so two appliers never run the same
event), re-fetch from the platform with no transaction open, then write the change and mark the row
applied in one transaction. A retryable platform failure leaves the row pending with a back-off; any
other failure, or too many attempts, marks it failed with the reason.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import zlib
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so
from sqlalchemy.dialects import postgresql, sqlite

from app.services import org_events
from app.services.platform import ClientFactory, client_factory
from integrations.base import OrgEvent, PlatformError
from models.db import Database
from models.inbox import EventState, PlatformEvent
from models.org import Corp
from models.types import utcnow

log = logging.getLogger(__name__)

CLAIM_SECONDS = 120
MAX_ATTEMPTS = 8
MAX_ERROR = 500


def _insert(session: so.Session, table: sa.Table):
    dialect = session.get_bind().dialect.name
    return (postgresql if dialect == "postgresql" else sqlite).insert(table)


def record_event(session: so.Session, corp_pk: int, event: OrgEvent, *, event_type: str, source: str) -> int | None:
    """Store a verified event; its row id the first time, None for a redelivery."""
    t = PlatformEvent.__table__
    payload = {"kind": event.kind, "user_ids": list(event.user_ids), "dept_ids": list(event.dept_ids),
               "raw": event.raw}
    row = session.execute(
        _insert(session, t)
        .values(corp_id=corp_pk, event_id=event.event_id[:128], event_type=event_type[:64], source=source,
                payload=payload, state=EventState.PENDING, attempts=0, received_at=utcnow())
        .on_conflict_do_nothing(index_elements=["corp_id", "event_id"])
        .returning(t.c.id)
    ).first()
    return None if row is None else row[0]


def _claim(database: Database, event_pk: int) -> tuple[Corp, dict[str, Any], set[str]] | None:
    """Take the event's lease; with it, what applying needs (one short transaction)."""
    t = PlatformEvent.__table__
    now = utcnow()
    with database.session() as s:
        result = s.execute(
            t.update()
            .where(t.c.id == event_pk, t.c.state == EventState.PENDING,
                   sa.or_(t.c.locked_until.is_(None), t.c.locked_until < now))
            .values(locked_until=now + timedelta(seconds=CLAIM_SECONDS))
        )
        if result.rowcount != 1:
            return None
        corp_pk, payload = s.execute(sa.select(t.c.corp_id, t.c.payload).where(t.c.id == event_pk)).one()
        corp = s.get(Corp, corp_pk)
        known = org_events.known_department_ids(s, corp_pk) if payload.get("kind") in org_events.FETCHING else set()
        return corp, dict(payload), known


def _backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(600, 5 * 2 ** max(0, attempts - 1)))


def _finish(database: Database, event_pk: int, *, error: str | None, retry: bool) -> str:
    with database.session() as s:
        ev = s.get(PlatformEvent, event_pk)
        ev.attempts += 1
        ev.error = None if error is None else error[:MAX_ERROR]
        if retry and ev.attempts < MAX_ATTEMPTS:
            ev.locked_until = utcnow() + _backoff(ev.attempts)
        else:
            ev.state = EventState.FAILED
            ev.locked_until = None
        return ev.state


def apply_event(database: Database, event_pk: int, *, clients: ClientFactory) -> str | None:
    """Apply one inbox row if it can be claimed; returns its new state (None: not claimable)."""
    claimed = _claim(database, event_pk)
    if claimed is None:
        return None
    corp, payload, known = claimed
    try:
        if not corp.active:
            raise PlatformError("企业已停用 / corp deactivated", code="corp_inactive")
        change = org_events.fetch_change(clients(corp), payload.get("kind", ""), payload.get("user_ids") or (),
                                         payload.get("dept_ids") or (), known)
        with database.session() as s:
            corp = s.get(Corp, corp.id)
            summary = org_events.apply_change(s, corp, change)
            ev = s.get(PlatformEvent, event_pk)
            ev.state, ev.applied_at, ev.locked_until, ev.error = EventState.APPLIED, utcnow(), None, None
            ev.attempts += 1
        log.info("event %s (%s) applied: %s", event_pk, payload.get("kind"), summary)
        return EventState.APPLIED
    except PlatformError as exc:
        log.warning("event %s not applied: %s", event_pk, exc)
        return _finish(database, event_pk, error=str(exc), retry=exc.retryable)
    except Exception as exc:  # a bug or a database error must park the event, not kill the applier
        log.exception("event %s failed", event_pk)
        return _finish(database, event_pk, error=f"{type(exc).__name__}: {exc}", retry=False)


def pending_event_ids(database: Database, *, corp_id: int | None = None, limit: int = 100) -> list[int]:
    t = PlatformEvent.__table__
    now = utcnow()
    query = (sa.select(t.c.id)
             .where(t.c.state == EventState.PENDING, sa.or_(t.c.locked_until.is_(None), t.c.locked_until < now))
             .order_by(t.c.id).limit(limit))
    if corp_id is not None:
        query = query.where(t.c.corp_id == corp_id)
    with database.session() as s:
        return list(s.execute(query).scalars())


def apply_pending_events(database: Database, settings: Any, *, corp_id: int | None = None, limit: int = 100,
                         clients: ClientFactory | None = None) -> int:
    """Apply events left pending (after a crash, or waiting out a back-off); `corp_id` is our corp's
    primary key. Safe to run from several processes at once. Returns how many were applied."""
    clients = clients or client_factory(settings=settings, database=database)
    applied = 0
    for event_pk in pending_event_ids(database, corp_id=corp_id, limit=limit):
        if apply_event(database, event_pk, clients=clients) == EventState.APPLIED:
            applied += 1
    return applied


class EventApplier:
    """Daemon threads applying submitted events; when idle each sweeps the inbox for pending rows (the
    crash and back-off path). Started on the first `submit`.

    Events are sharded by `key` (the first user or department id they name), so events about one person
    apply in arrival order while events about different people overlap their platform calls.
    """

    def __init__(self, database: Database, settings: Any, *, clients: ClientFactory | None = None,
                 workers: int = 4, sweep_seconds: float = 30.0) -> None:
        self.database = database
        self.settings = settings
        self.clients = clients or client_factory(settings=settings, database=database)
        self.sweep_seconds = sweep_seconds
        self._queues: list[queue.Queue[int | None]] = [queue.Queue() for _ in range(max(1, workers))]
        self._threads: list[threading.Thread | None] = [None] * len(self._queues)
        self._lock = threading.Lock()
        self._stopped = False
        self._next = 0

    def submit(self, event_pk: int, key: str | None = None) -> None:
        if key:
            index = zlib.crc32(key.encode("utf-8")) % len(self._queues)
        else:
            index, self._next = self._next, (self._next + 1) % len(self._queues)
        self._ensure_running(index)
        self._queues[index].put(event_pk)

    def _ensure_running(self, index: int) -> None:
        with self._lock:
            if self._stopped:
                raise RuntimeError("event applier stopped")
            thread = self._threads[index]
            if thread is None or not thread.is_alive():
                thread = threading.Thread(target=self._run, args=(self._queues[index], index == 0),
                                          name=f"event-applier-{index}", daemon=True)
                self._threads[index] = thread
                thread.start()

    def _run(self, work: queue.Queue[int | None], sweeps: bool) -> None:
        while True:
            try:
                item = work.get(timeout=self.sweep_seconds)
            except queue.Empty:
                if sweeps:  # one sweeper per process is enough; claims keep it safe across processes
                    self._sweep()
                continue
            if item is None:
                return
            try:
                apply_event(self.database, item, clients=self.clients)
            except Exception:  # the database may be down: the sweep retries later
                log.exception("event applier: event %s", item)
            finally:
                work.task_done()

    def _sweep(self) -> None:
        try:
            apply_pending_events(self.database, self.settings, clients=self.clients)
        except Exception:
            log.exception("event applier: sweep failed")

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until every submitted event has been handled (tests, benchmarks, shutdown)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(q.unfinished_tasks == 0 for q in self._queues):
                return True
            time.sleep(0.01)
        return False

    def stop(self, timeout: float = 5.0) -> None:
        with self._lock:
            self._stopped = True
            running = [(q, t) for q, t in zip(self._queues, self._threads, strict=True) if t and t.is_alive()]
        for work, _thread in running:
            work.put(None)
        for _work, thread in running:
            thread.join(timeout)
