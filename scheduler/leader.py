"""Exactly one leading scheduler among any number started: a PostgreSQL session-level advisory lock.

The lock lives as long as the leader's database connection: when the leader dies (even kill -9) the server
closes its session and frees the lock, and a standby polling every few seconds takes over. TCP keepalives
on that connection bound how long a vanished host can keep it. SQLite has no such lock; embedded mode runs
one scheduler in one process by construction.
"""

from __future__ import annotations

import logging

import sqlalchemy as sa

from models.db import Database

log = logging.getLogger(__name__)

LOCK_KEY = 0x43524D5F53434844  # "CRM_SCHD"


class LeaderLock:
    def __init__(self, database: Database) -> None:
        self.database = database
        self._engine: sa.Engine | None = None
        self._conn: sa.Connection | None = None

    @property
    def shared(self) -> bool:
        return self.database.dialect == "postgresql"

    def try_acquire(self) -> bool:
        if not self.shared:
            return True
        if self._conn is None:
            if self._engine is None:
                # A private engine: the lock's connection must never go back to a pool or be recycled.
                self._engine = sa.create_engine(
                    self.database.engine.url, poolclass=sa.pool.NullPool,
                    connect_args={"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5,
                                  "keepalives_count": 2, "connect_timeout": 5})
            self._conn = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            got = bool(self._conn.execute(sa.select(sa.func.pg_try_advisory_lock(LOCK_KEY))).scalar())
        except sa.exc.DBAPIError:
            self._drop()
            return False
        return got

    def still_held(self) -> bool:
        if not self.shared:
            return True
        if self._conn is None:
            return False
        try:
            held = self._conn.execute(sa.text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid = pg_backend_pid()"
                " AND objid = :lo AND classid = :hi"), {"lo": LOCK_KEY & 0xFFFFFFFF, "hi": LOCK_KEY >> 32}).scalar()
            return bool(held)
        except sa.exc.DBAPIError:
            self._drop()
            return False

    def release(self) -> None:
        if self._conn is not None:
            try:
                self._conn.execute(sa.select(sa.func.pg_advisory_unlock(LOCK_KEY)))
            except sa.exc.DBAPIError:
                pass
            self._drop()
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # a dead connection may fail to close; it is gone either way
                pass
            self._conn = None
