"""outbox items, deliveries and scheduler job runs

Revision ID: b2d0outbox03
Revises: a1c0perf0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import models.types

revision: str = "b2d0outbox03"
down_revision: str | None = "a1c0perf0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _ts(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, models.types.UTCDateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "deliveries",
        sa.Column("recipient_user_id", _ID, nullable=False),
        sa.Column("local_day", sa.String(length=10), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("item_count", sa.Integer(), nullable=False),
        sa.Column("platform_task_id", sa.String(length=64), nullable=True),
        sa.Column("verdict", sa.String(length=16), nullable=False),
        sa.Column("verdict_reason", sa.String(length=64), nullable=True),
        sa.Column("worker", sa.String(length=64), nullable=True),
        _ts("sent_at"),
        _ts("polled_at", True),
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("corp_id", _ID, nullable=False),
        sa.ForeignKeyConstraint(["corp_id"], ["corps.id"], name=op.f("fk_deliveries_corp_id_corps"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["recipient_user_id"], ["users.id"],
                                name=op.f("fk_deliveries_recipient_user_id_users"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deliveries")),
    )
    op.create_index("ix_deliveries_recipient_day", "deliveries", ["corp_id", "recipient_user_id", "local_day"])
    op.create_index("ix_deliveries_verdict_sent", "deliveries", ["verdict", "sent_at"])
    op.create_index("ix_deliveries_corp_sent", "deliveries", ["corp_id", "sent_at"])

    op.create_table(
        "outbox_items",
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("recipient_user_id", _ID, nullable=False),
        sa.Column("subject_type", sa.String(length=32), nullable=False),
        sa.Column("subject_id", _ID, nullable=True),
        _ts("due_at"),
        sa.Column("payload", _JSON, nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        _ts("next_attempt_at"),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        _ts("lease_until", True),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("deferred_count", sa.Integer(), nullable=False),
        sa.Column("deferred_reason", sa.String(length=32), nullable=True),
        sa.Column("delivery_id", _ID, nullable=True),
        _ts("created_at"),
        _ts("updated_at"),
        _ts("sent_at", True),
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("corp_id", _ID, nullable=False),
        sa.ForeignKeyConstraint(["corp_id"], ["corps.id"], name=op.f("fk_outbox_items_corp_id_corps"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["recipient_user_id"], ["users.id"],
                                name=op.f("fk_outbox_items_recipient_user_id_users"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["delivery_id"], ["deliveries.id"],
                                name=op.f("fk_outbox_items_delivery_id_deliveries"), ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox_items")),
        sa.UniqueConstraint("corp_id", "idempotency_key", name=op.f("uq_outbox_items_corp_id_idempotency_key")),
    )
    op.create_index("ix_outbox_items_state_next_attempt", "outbox_items", ["state", "next_attempt_at"])
    op.create_index("ix_outbox_items_recipient_state", "outbox_items", ["corp_id", "recipient_user_id", "state"])
    op.create_index("ix_outbox_items_corp_created", "outbox_items", ["corp_id", "created_at", "id"])
    op.create_index("ix_outbox_items_delivery", "outbox_items", ["delivery_id"])

    op.create_table(
        "job_runs",
        sa.Column("job_id", sa.String(length=64), nullable=False),
        sa.Column("tick", sa.String(length=64), nullable=False),
        _ts("tick_at"),
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        _ts("started_at"),
        _ts("finished_at", True),
        sa.Column("detail", sa.String(length=500), nullable=True),
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_runs")),
        sa.UniqueConstraint("job_id", "tick", name=op.f("uq_job_runs_job_id_tick")),
    )
    op.create_index("ix_job_runs_job_tick_at", "job_runs", ["job_id", "tick_at"])


def downgrade() -> None:
    op.drop_table("job_runs")
    op.drop_table("outbox_items")
    op.drop_table("deliveries")
