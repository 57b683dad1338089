"""The notification outbox, the platform sends it turns into, and the scheduler's run ledger.

Services never notify anyone inline: they add `OutboxItem` rows. Workers group the items due for one
person into one `Delivery` (a digest: one platform call), so an item's `delivery_id` is its merged-into
link and the delivery carries the platform's task id and verdict for that recipient. `JobRun` rows make
a scheduler tick run once even when two schedulers believe they lead.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so

from models.base import Base, CorpScoped, IdMixin
from models.types import BigId, JsonDoc, UTCDateTime, utcnow


class OutboxState(enum.StrEnum):
    PENDING = "pending"
    SENDING = "sending"  # claimed by a worker holding the lease
    SENT = "sent"
    FAILED = "failed"  # gave up: needs an admin (retry button)
    DROPPED = "dropped"  # the platform refused the recipient for good (left, outside the visible range)


class Priority(enum.IntEnum):
    """Who goes first when the month's quota is tight."""

    APPROVAL = 90
    REMINDER = 50
    AGENDA = 30
    SWEEP = 20


class DeliveryVerdict(enum.StrEnum):
    PENDING = "pending"  # accepted, result not read yet
    DELIVERED = "delivered"
    DROPPED = "dropped"  # the platform dropped it (cap, duplicate content, invalid user …)
    UNKNOWN = "unknown"  # not polled (budget or the platform's 24 h window)


class OutboxItem(IdMixin, CorpScoped, Base):
    __tablename__ = "outbox_items"
    __table_args__ = (
        sa.UniqueConstraint("corp_id", "idempotency_key"),
        # The claim query: pending rows whose next attempt is due, most urgent first.
        sa.Index("ix_outbox_items_state_next_attempt", "state", "next_attempt_at"),
        sa.Index("ix_outbox_items_recipient_state", "corp_id", "recipient_user_id", "state"),
        sa.Index("ix_outbox_items_corp_created", "corp_id", "created_at", "id"),
        sa.Index("ix_outbox_items_delivery", "delivery_id"),
        # The delivery budget counts today's closed to-dos (each one a counted call): a few rows of many.
        sa.Index("ix_outbox_items_todo_done_sent", "corp_id", "sent_at",
                 postgresql_where=sa.text("kind = 'approval_todo_done'"),
                 sqlite_where=sa.text("kind = 'approval_todo_done'")),
    )

    kind: so.Mapped[str] = so.mapped_column(sa.String(32), nullable=False)
    recipient_user_id: so.Mapped[int] = so.mapped_column(
        BigId, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )
    subject_type: so.Mapped[str] = so.mapped_column(sa.String(32), nullable=False)
    subject_id: so.Mapped[int | None] = so.mapped_column(BigId)
    due_at: so.Mapped[datetime] = so.mapped_column(UTCDateTime, nullable=False)
    payload: so.Mapped[dict[str, Any]] = so.mapped_column(JsonDoc, nullable=False, default=dict)
    priority: so.Mapped[int] = so.mapped_column(sa.Integer, nullable=False, default=Priority.REMINDER)
    idempotency_key: so.Mapped[str] = so.mapped_column(sa.String(255), nullable=False)
    state: so.Mapped[str] = so.mapped_column(sa.String(16), nullable=False, default=OutboxState.PENDING)
    attempts: so.Mapped[int] = so.mapped_column(sa.Integer, nullable=False, default=0)
    next_attempt_at: so.Mapped[datetime] = so.mapped_column(UTCDateTime, nullable=False)
    lease_owner: so.Mapped[str | None] = so.mapped_column(sa.String(64))
    lease_until: so.Mapped[datetime | None] = so.mapped_column(UTCDateTime)
    last_error: so.Mapped[str | None] = so.mapped_column(sa.String(500))
    # Why the item waited instead of going out at its due time (quiet hours, cap, quota), and how often.
    deferred_count: so.Mapped[int] = so.mapped_column(sa.Integer, nullable=False, default=0)
    deferred_reason: so.Mapped[str | None] = so.mapped_column(sa.String(32))
    delivery_id: so.Mapped[int | None] = so.mapped_column(
        BigId, sa.ForeignKey("deliveries.id", ondelete="SET NULL")
    )
    created_at: so.Mapped[datetime] = so.mapped_column(UTCDateTime, nullable=False, default=utcnow)
    updated_at: so.Mapped[datetime] = so.mapped_column(UTCDateTime, nullable=False, default=utcnow, onupdate=utcnow)
    sent_at: so.Mapped[datetime | None] = so.mapped_column(UTCDateTime)


class Delivery(IdMixin, CorpScoped, Base):
    """One platform call to one person carrying one or more outbox items."""

    __tablename__ = "deliveries"
    __table_args__ = (
        # Per-user daily cap and same-content checks read today's deliveries of one person.
        sa.Index("ix_deliveries_recipient_day", "corp_id", "recipient_user_id", "local_day"),
        sa.Index("ix_deliveries_verdict_sent", "verdict", "sent_at"),
        sa.Index("ix_deliveries_corp_sent", "corp_id", "sent_at"),
        # Closing an approval task's to-do / card finds the deliveries that carried it.
        sa.Index("ix_deliveries_corp_source", "corp_id", "source_id"),
    )

    recipient_user_id: so.Mapped[int] = so.mapped_column(
        BigId, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )
    # The recipient's calendar day in the corp's time zone ('YYYY-MM-DD'): the platform's caps reset daily.
    local_day: so.Mapped[str] = so.mapped_column(sa.String(10), nullable=False)
    title: so.Mapped[str] = so.mapped_column(sa.String(200), nullable=False)
    content_hash: so.Mapped[str] = so.mapped_column(sa.String(64), nullable=False)
    item_count: so.Mapped[int] = so.mapped_column(sa.Integer, nullable=False, default=1)
    platform_task_id: so.Mapped[str | None] = so.mapped_column(sa.String(64))
    verdict: so.Mapped[str] = so.mapped_column(sa.String(16), nullable=False, default=DeliveryVerdict.PENDING)
    verdict_reason: so.Mapped[str | None] = so.mapped_column(sa.String(64))
    worker: so.Mapped[str | None] = so.mapped_column(sa.String(64))
    sent_at: so.Mapped[datetime] = so.mapped_column(UTCDateTime, nullable=False, default=utcnow)
    polled_at: so.Mapped[datetime | None] = so.mapped_column(UTCDateTime)
    # An approval request's own message: the approval task's source id it carries, and what closing it later
    # needs — WeCom's one-shot `response_code` of the card, DingTalk's to-do task id (saves a lookup call).
    source_id: so.Mapped[str | None] = so.mapped_column(sa.String(64))
    response_code: so.Mapped[str | None] = so.mapped_column(sa.String(255))
    todo_task_id: so.Mapped[str | None] = so.mapped_column(sa.String(64))


class JobRun(IdMixin, Base):
    """One run of one scheduler job for one tick; the unique key is the run-once guarantee."""

    __tablename__ = "job_runs"
    __table_args__ = (
        sa.UniqueConstraint("job_id", "tick"),
        sa.Index("ix_job_runs_job_tick_at", "job_id", "tick_at"),
    )

    job_id: so.Mapped[str] = so.mapped_column(sa.String(64), nullable=False)
    tick: so.Mapped[str] = so.mapped_column(sa.String(64), nullable=False)
    tick_at: so.Mapped[datetime] = so.mapped_column(UTCDateTime, nullable=False)
    owner: so.Mapped[str] = so.mapped_column(sa.String(64), nullable=False)
    status: so.Mapped[str] = so.mapped_column(sa.String(16), nullable=False, default="running")
    started_at: so.Mapped[datetime] = so.mapped_column(UTCDateTime, nullable=False, default=utcnow)
    finished_at: so.Mapped[datetime | None] = so.mapped_column(UTCDateTime)
    detail: so.Mapped[str | None] = so.mapped_column(sa.String(500))
