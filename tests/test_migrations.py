"""Migrations build the whole schema from empty, and it matches the models exactly."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

import models
from models.migrate import current_revision, upgrade_engine
from tests.conftest import PG_URL, with_search_path


def _diff(engine: sa.Engine) -> list:
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": True})
        return compare_metadata(ctx, models.Base.metadata)


def _check_empty_to_head(engine: sa.Engine) -> None:
    assert sa.inspect(engine).get_table_names() == []
    upgrade_engine(engine)
    assert current_revision(engine) is not None
    tables = set(sa.inspect(engine).get_table_names()) - {"alembic_version"}
    assert tables == set(models.Base.metadata.tables)
    assert _diff(engine) == []


def test_sqlite_upgrade_from_empty_matches_models(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'fresh.sqlite3'}")
    _check_empty_to_head(engine)
    engine.dispose()


@pytest.mark.postgres
def test_postgres_upgrade_from_empty_matches_models(postgres_url):
    schema = f"crm_mig_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    engine = sa.create_engine(with_search_path(PG_URL, schema))
    try:
        with engine.connect() as conn:
            names = sa.inspect(conn).get_table_names(schema=schema)
        assert names == []
        upgrade_engine(engine)
        with engine.connect() as conn:
            tables = set(sa.inspect(conn).get_table_names(schema=schema)) - {"alembic_version"}
        assert tables == set(models.Base.metadata.tables)
        assert _diff(engine) == []
        # The trigram indexes that keep substring search off a sequential scan exist.
        with engine.connect() as conn:
            index_defs = (
                conn.execute(
                    sa.text("SELECT indexdef FROM pg_indexes WHERE schemaname = :s AND indexname LIKE '%trgm%'"),
                    {"s": schema},
                )
                .scalars()
                .all()
            )
        assert len(index_defs) == 2 and all("gin_trgm_ops" in d for d in index_defs)
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
