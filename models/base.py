"""Declarative base and the mixins every table shares."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
import sqlalchemy.orm as so

from models.types import BigId, UTCDateTime, utcnow

# Stable constraint names so Alembic migrations are identical on SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(so.DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


class IdMixin:
    id: so.Mapped[int] = so.mapped_column(BigId, primary_key=True, autoincrement=True)


class CorpScoped:
    """Every business row belongs to exactly one corp (tenant)."""

    corp_id: so.Mapped[int] = so.mapped_column(
        BigId, sa.ForeignKey("corps.id", ondelete="CASCADE"), nullable=False
    )


class Timestamps:
    created_at: so.Mapped[datetime] = so.mapped_column(UTCDateTime, default=utcnow, nullable=False)
    updated_at: so.Mapped[datetime] = so.mapped_column(
        UTCDateTime, default=utcnow, onupdate=utcnow, nullable=False
    )
