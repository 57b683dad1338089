"""Engine and session factory for SQLite (embedded) and PostgreSQL (production)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
import sqlalchemy.orm as so

OLTP_OPTIONS = "-c jit=off -c max_parallel_workers_per_gather=0"


def make_engine(url: str, **kwargs) -> sa.Engine:
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs)

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):
            cur = dbapi_conn.cursor()
            # WAL lets the web process read while the in-process worker writes.
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    # Short OLTP queries: JIT compilation and parallel plans cost more than they save here (JIT added
    # 100–400 ms to list queries of a few ms, and a Gather takes the core another web worker needs).
    # Set per connection so it holds without touching the server's configuration.
    # Added to options already in the URL (e.g. a search_path), which connect_args would replace.
    parsed = sa.engine.make_url(url)
    given = parsed.query.get("options", "")
    given = " ".join(given) if isinstance(given, tuple) else given
    parsed = parsed.update_query_dict({"options": f"{OLTP_OPTIONS} {given}".strip()})
    # Never server-side prepared: psycopg prepares a statement after five runs, and PostgreSQL may then
    # switch it to a generic plan, which turned the manager's customer list from 10 ms to 70+ ms (a
    # corp's share of rows is far from the average). Unnamed statements are planned for their values
    # every time. The server's plan cache stays on `auto` for what it caches itself: foreign-key checks
    # re-planned per row (`force_custom_plan`) cost 20 µs instead of 4 µs, two thirds of an org sync's
    # server time.
    kwargs.setdefault("connect_args", {}).setdefault("prepare_threshold", None)
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    return sa.create_engine(parsed, **kwargs)


class Database:
    """One engine and its session factory; the app, CLI, scheduler and workers each own one."""

    def __init__(self, url: str, **engine_kwargs) -> None:
        self.url = url
        self.engine = make_engine(url, **engine_kwargs)
        self.sessionmaker = so.sessionmaker(self.engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def session(self) -> Iterator[so.Session]:
        """A session whose work commits on success and rolls back on any exception."""
        session = self.sessionmaker()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))

    def dispose(self) -> None:
        self.engine.dispose()
