"""Dialect-specific INSERT ... ON CONFLICT, the one statement SQLite and PostgreSQL both make atomic."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite


def upsert_insert(bind: sa.engine.Connection | sa.orm.Session, table: sa.Table):
    name = bind.get_bind().dialect.name if isinstance(bind, sa.orm.Session) else bind.dialect.name
    if name == "postgresql":
        return postgresql.insert(table)
    if name == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"no upsert for dialect {name}")
