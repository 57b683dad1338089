"""deliveries remember the approval task they carry: WeCom card response code, DingTalk to-do id

Revision ID: f7c0deliv008
Revises: e5a0approv06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "f7c0deliv008"
down_revision: str | None = "e5a0approv06"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("source_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("response_code", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("todo_task_id", sa.String(length=64), nullable=True))
        batch_op.create_index("ix_deliveries_corp_source", ["corp_id", "source_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_deliveries_corp_source")
        batch_op.drop_column("todo_task_id")
        batch_op.drop_column("response_code")
        batch_op.drop_column("source_id")
