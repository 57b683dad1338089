"""Platform-side state: cached tokens, sync runs, API usage, event de-duplication, rate-limit windows.

Filled in by the platform integrations (DingTalk, WeCom); kept here so every model is in `models/`.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so

from models.base import Base, CorpScoped, IdMixin, Timestamps
from models.types import JsonDoc, UTCDateTime, utcnow


class TokenKind(enum.StrEnum):
    ACCESS_TOKEN = "access_token"
    JSAPI_TICKET = "jsapi_ticket"


class PlatformToken(IdMixin, CorpScoped, Base):
    """A short-lived platform credential shared by every process of the app.

    `value_ciphertext` is Fernet-encrypted with the master key: a token is as good as the secret for two
    hours. `refreshing_until` is a lease: the one caller that sets it (atomically) fetches a new value
    while the others keep using the old one until it expires.
    """

    __tablename__ = "platform_tokens"
    __table_args__ = (sa.UniqueConstraint("corp_id", "kind"),)

    kind: so.Mapped[str] = so.mapped_column(sa.String(32), nullable=False)
    value_ciphertext: so.Mapped[str | None] = so.mapped_column(sa.Text)
    expires_at: so.Mapped[datetime | None] = so.mapped_column(UTCDateTime)
    refreshing_until: so.Mapped[datetime | None] = so.mapped_column(UTCDateTime)
    # Random id of the lease holder, so only it may clear the lease.
    lease_owner: so.Mapped[str | None] = so.mapped_column(sa.String(64))
    updated_at: so.Mapped[datetime] = so.mapped_column(
        UTCDateTime, nullable=False, default=utcnow, onupdate=utcnow
    )

    def __repr__(self) -> str:  # never include the value
        return f"<PlatformToken corp={self.corp_id} {self.kind} expires={self.expires_at}>"


class QuotaFamily(enum.StrEnum):
    WORK_NOTIFICATION = "work_notification"
    TODO = "todo"
    APPROVAL = "approval"
    # Token, sign-in and contacts calls: exempt from DingTalk's monthly quota, counted for visibility.
    OTHER = "other"


class ApiUsage(IdMixin, CorpScoped, Base):
    """Platform calls made per corp, calendar month ('YYYY-MM', business time zone) and quota family."""

    __tablename__ = "api_usage"
    __table_args__ = (sa.UniqueConstraint("corp_id", "month", "family"),)

    month: so.Mapped[str] = so.mapped_column(sa.String(7), nullable=False)
    family: so.Mapped[str] = so.mapped_column(sa.String(32), nullable=False)
    count: so.Mapped[int] = so.mapped_column(sa.Integer, nullable=False, default=0)
    updated_at: so.Mapped[datetime] = so.mapped_column(
        UTCDateTime, nullable=False, default=utcnow, onupdate=utcnow
    )


class SyncKind(enum.StrEnum):
    FULL = "full"
    EVENT = "event"


class SyncStatus(enum.StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    PARTIAL = "partial"  # finished, but some departments or users could not be read


class SyncRun(IdMixin, CorpScoped, Timestamps, Base):
    """One org sync: progress for the admin console and a checkpoint so an interrupted run resumes."""

    __tablename__ = "sync_runs"
    __table_args__ = (sa.Index("ix_sync_runs_corp_started", "corp_id", "started_at"),)

    kind: so.Mapped[str] = so.mapped_column(sa.String(16), nullable=False, default=SyncKind.FULL)
    status: so.Mapped[str] = so.mapped_column(sa.String(16), nullable=False, default=SyncStatus.RUNNING)
    started_at: so.Mapped[datetime] = so.mapped_column(UTCDateTime, nullable=False, default=utcnow)
    finished_at: so.Mapped[datetime | None] = so.mapped_column(UTCDateTime)
    heartbeat_at: so.Mapped[datetime | None] = so.mapped_column(UTCDateTime)
    calls_made: so.Mapped[int] = so.mapped_column(sa.Integer, nullable=False, default=0)
    added: so.Mapped[int] = so.mapped_column(sa.Integer, nullable=False, default=0)
    updated: so.Mapped[int] = so.mapped_column(sa.Integer, nullable=False, default=0)
    deactivated: so.Mapped[int] = so.mapped_column(sa.Integer, nullable=False, default=0)
    removed: so.Mapped[int] = so.mapped_column(sa.Integer, nullable=False, default=0)
    done: so.Mapped[int] = so.mapped_column(sa.Integer, nullable=False, default=0)
    total: so.Mapped[int | None] = so.mapped_column(sa.Integer)
    # [{"at": iso, "where": "dept 42", "code": "60011", "cause": "..."}], capped by the writer.
    errors: so.Mapped[list[dict[str, Any]]] = so.mapped_column(JsonDoc, nullable=False, default=list)
    # Opaque resume point, e.g. {"queue": [...], "dept": "42", "cursor": 200, "seen": n}.
    checkpoint: so.Mapped[dict[str, Any]] = so.mapped_column(JsonDoc, nullable=False, default=dict)


class ProcessedEvent(IdMixin, CorpScoped, Base):
    """Platform events already handled: inserting the row is the atomic claim (unique per corp)."""

    __tablename__ = "processed_events"
    __table_args__ = (
        sa.UniqueConstraint("corp_id", "event_id"),
        sa.Index("ix_processed_events_received", "received_at"),
    )

    event_id: so.Mapped[str] = so.mapped_column(sa.String(128), nullable=False)
    event_type: so.Mapped[str | None] = so.mapped_column(sa.String(64))
    received_at: so.Mapped[datetime] = so.mapped_column(UTCDateTime, nullable=False, default=utcnow)


class RateWindow(CorpScoped, Base):
    """Calls started in one second for one (corp, API): the shared rate limiter's counter.

    A composite primary key, so an upsert-increment is atomic on SQLite and PostgreSQL alike.
    """

    __tablename__ = "rate_windows"
    __table_args__ = (sa.PrimaryKeyConstraint("corp_id", "api", "window"),)

    api: so.Mapped[str] = so.mapped_column(sa.String(128), nullable=False)
    # Unix second the window starts at.
    window: so.Mapped[int] = so.mapped_column(sa.BigInteger, nullable=False)
    count: so.Mapped[int] = so.mapped_column(sa.Integer, nullable=False, default=0)
