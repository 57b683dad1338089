"""dashboard leaderboard at scale: follow-ups by (corp, occurred_at), opportunities by (corp, closed_at)

The month's follow-ups and won deals of a whole corp (an admin's leaderboard, and a large team's) were read by
sequential scans; EXPLAIN at 100k customers / 300k follow-ups shows both new indexes taken.

Revision ID: h2b0dashix010
Revises: g1a0syncfk009
"""

from collections.abc import Sequence

from alembic import op

revision: str = "h2b0dashix010"
down_revision: str | None = "g1a0syncfk009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("follow_ups") as batch_op:
        batch_op.create_index("ix_follow_ups_corp_occurred", ["corp_id", "occurred_at"], unique=False)
    with op.batch_alter_table("opportunities") as batch_op:
        batch_op.create_index("ix_opportunities_corp_closed", ["corp_id", "closed_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("opportunities") as batch_op:
        batch_op.drop_index("ix_opportunities_corp_closed")
    with op.batch_alter_table("follow_ups") as batch_op:
        batch_op.drop_index("ix_follow_ups_corp_occurred")
