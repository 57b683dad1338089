"""Test harness: every database test runs on real SQLite and real PostgreSQL.

PostgreSQL comes from CRM_TEST_DATABASE_URL (default: the local server, database `test`). Each test run
migrates a private schema once and truncates between tests. In CI (CI=true) or when the variable is set,
an unreachable server is a failure, never a skip.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet

import models
from app import create_app
from config import Settings
from models.db import Database
from models.migrate import upgrade_engine

PG_URL = os.environ.get("CRM_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
if PG_URL.startswith("postgresql://"):
    PG_URL = "postgresql+psycopg://" + PG_URL[len("postgresql://") :]
PG_REQUIRED = os.environ.get("CI", "").lower() == "true" or "CRM_TEST_DATABASE_URL" in os.environ


def _pg_reachable() -> str | None:
    try:
        engine = sa.create_engine(PG_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        engine.dispose()
        return None
    except Exception as exc:  # any failure to connect means "no server here"
        return f"{type(exc).__name__}: {exc}".splitlines()[0]


def with_search_path(url: str, schema: str) -> str:
    sep = "&" if "?" in url else "?"
    # public stays on the path: pg_trgm may already be installed there by an earlier run.
    return f"{url}{sep}options=-csearch_path%3D{schema},public"


def _trgm_in_public(conn) -> None:
    """Every test schema keeps public on its path, so pg_trgm must live there and nowhere else:
    an extension created inside a private schema would vanish with it, or be invisible to the next."""
    current = conn.execute(
        sa.text(
            "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace"
            " WHERE extname = 'pg_trgm'"
        )
    ).scalar()
    if current is None:
        conn.execute(sa.text("CREATE EXTENSION pg_trgm SCHEMA public"))
    elif current != "public":
        conn.execute(sa.text("ALTER EXTENSION pg_trgm SET SCHEMA public"))


@pytest.fixture(scope="session")
def postgres_url():
    problem = _pg_reachable()
    if problem:
        if PG_REQUIRED:
            pytest.fail(f"PostgreSQL is required here but unreachable at {PG_URL}: {problem}")
        pytest.skip(f"no PostgreSQL server: {problem}")
    schema = f"crm_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_URL)
    with admin.begin() as conn:
        _trgm_in_public(conn)
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    url = with_search_path(PG_URL, schema)
    engine = sa.create_engine(url)
    upgrade_engine(engine)
    engine.dispose()
    yield url
    with admin.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory):
    path = tmp_path_factory.mktemp("sqlite") / "crm.sqlite3"
    url = f"sqlite:///{path}"
    engine = sa.create_engine(url)
    upgrade_engine(engine)
    engine.dispose()
    return url


def _empty(database: Database) -> None:
    tables = [t.name for t in reversed(models.Base.metadata.sorted_tables)]
    with database.engine.begin() as conn:
        if database.dialect == "postgresql":
            conn.execute(sa.text("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                conn.execute(sa.text(f'DELETE FROM "{table}"'))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(request):
    url = request.getfixturevalue(f"{request.param}_url")
    db = Database(url)
    _empty(db)
    yield db
    db.dispose()


@pytest.fixture
def pg_database(postgres_url):
    """For behaviour only PostgreSQL has (row locks, SKIP LOCKED): runs there only, never a skip on SQLite."""
    db = Database(postgres_url)
    _empty(db)
    yield db
    db.dispose()


@pytest.fixture
def settings(database, tmp_path) -> Settings:
    return Settings(
        database_url=database.url,
        secret_key="test-secret-key",
        master_key=Fernet.generate_key().decode(),
        instance_path=Path(tmp_path),
        dev_login=True,
        testing=True,
    )


@pytest.fixture
def app(settings, database):
    return create_app(settings, database=database)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def session(database):
    with database.session() as s:
        yield s
