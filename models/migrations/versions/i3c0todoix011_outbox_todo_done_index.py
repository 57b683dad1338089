"""delivery budget: a partial index for today's closed to-dos

`budget()` counted `approval_todo_done` items sent today by walking the corp's last seven days of outbox rows
(`ix_outbox_items_corp_created`); the partial index holds only those items, by (corp_id, sent_at).

Revision ID: i3c0todoix011
Revises: h2b0dashix010
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "i3c0todoix011"
down_revision: str | None = "h2b0dashix010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_DONE = sa.text("kind = 'approval_todo_done'")


def upgrade() -> None:
    with op.batch_alter_table("outbox_items") as batch_op:
        batch_op.create_index("ix_outbox_items_todo_done_sent", ["corp_id", "sent_at"], unique=False,
                              postgresql_where=_DONE, sqlite_where=_DONE)


def downgrade() -> None:
    with op.batch_alter_table("outbox_items") as batch_op:
        batch_op.drop_index("ix_outbox_items_todo_done_sent")
