"""The durable inbox of platform events: acknowledged at once, applied later, each exactly once.

A callback (HTTP push or Stream) only inserts a row here and answers; an applier claims pending rows
and applies them. The unique (corp, event_id) key is the de-duplication: a redelivery inserts nothing.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so

from models.base import Base, CorpScoped, IdMixin
from models.types import JsonDoc, UTCDateTime, utcnow


class EventState(enum.StrEnum):
    PENDING = "pending"
    APPLIED = "applied"
    FAILED = "failed"


class PlatformEvent(IdMixin, CorpScoped, Base):
    __tablename__ = "platform_events"
    __table_args__ = (
        sa.UniqueConstraint("corp_id", "event_id"),
        # The applier's scan: pending rows, oldest first.
        sa.Index("ix_platform_events_state_id", "state", "id"),
    )

    event_id: so.Mapped[str] = so.mapped_column(sa.String(128), nullable=False)
    event_type: so.Mapped[str] = so.mapped_column(sa.String(64), nullable=False)
    source: so.Mapped[str] = so.mapped_column(sa.String(16), nullable=False, default="http")  # http | stream
    payload: so.Mapped[dict[str, Any]] = so.mapped_column(JsonDoc, nullable=False, default=dict)
    state: so.Mapped[str] = so.mapped_column(sa.String(16), nullable=False, default=EventState.PENDING)
    attempts: so.Mapped[int] = so.mapped_column(sa.Integer, nullable=False, default=0)
    error: so.Mapped[str | None] = so.mapped_column(sa.Text)
    # A claim lease: an applier that dies mid-way leaves the row pending, claimable again after this.
    locked_until: so.Mapped[datetime | None] = so.mapped_column(UTCDateTime)
    received_at: so.Mapped[datetime] = so.mapped_column(UTCDateTime, nullable=False, default=utcnow)
    applied_at: so.Mapped[datetime | None] = so.mapped_column(UTCDateTime)

    def __repr__(self) -> str:
        return f"<PlatformEvent {self.id} corp={self.corp_id} {self.event_type} {self.state}>"
