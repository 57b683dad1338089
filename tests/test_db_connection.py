"""PostgreSQL connection settings: what every statement of the app runs with."""

from __future__ import annotations

import sqlalchemy as sa


def test_statements_are_never_server_prepared_and_cached_plans_stay_auto(pg_database):
    with pg_database.engine.connect() as conn:
        for i in range(12):  # psycopg would prepare from the 5th run of the same statement
            conn.execute(sa.text("SELECT count(*) FROM users WHERE corp_id = :c"), {"c": i})
        prepared = conn.execute(sa.text("SELECT count(*) FROM pg_prepared_statements")).scalar()
        settings = dict(conn.execute(sa.text(
            "SELECT name, setting FROM pg_settings WHERE name IN "
            "('plan_cache_mode', 'jit', 'max_parallel_workers_per_gather')")).all())
    # A prepared statement may switch to a generic plan (the manager's list went from 10 ms to 70+ ms);
    # the server's own cached plans (foreign-key checks) must not be re-planned per row.
    assert prepared == 0
    assert settings == {"plan_cache_mode": "auto", "jit": "off", "max_parallel_workers_per_gather": "0"}
