"""indexes for the list endpoints' keyset pages and scope clauses

Revision ID: a1c0perf0002
Revises: ebb4239d6702
"""

from collections.abc import Sequence

from alembic import op

revision: str = "a1c0perf0002"
down_revision: str | None = "ebb4239d6702"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("customers") as batch_op:
        batch_op.create_index("ix_customers_corp_created", ["corp_id", "created_at", "id"], unique=False)
        batch_op.create_index("ix_customers_corp_name", ["corp_id", "name", "id"], unique=False)
        batch_op.drop_index("ix_customers_corp_next_contact")
        batch_op.create_index("ix_customers_corp_next_contact", ["corp_id", "next_contact_at", "id"], unique=False)
        batch_op.drop_index("ix_customers_corp_last_contact")
        batch_op.create_index("ix_customers_corp_last_contact", ["corp_id", "last_contact_at", "id"], unique=False)
    with op.batch_alter_table("opportunities") as batch_op:
        batch_op.drop_index("ix_opportunities_corp_updated")
        batch_op.create_index("ix_opportunities_corp_live_updated", ["corp_id", "deleted_at", "updated_at", "id"],
                              unique=False)
    with op.batch_alter_table("tasks") as batch_op:
        batch_op.create_index("ix_tasks_created_by", ["created_by_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("tasks") as batch_op:
        batch_op.drop_index("ix_tasks_created_by")
    with op.batch_alter_table("opportunities") as batch_op:
        batch_op.drop_index("ix_opportunities_corp_live_updated")
        batch_op.create_index("ix_opportunities_corp_updated", ["corp_id", "updated_at", "id"], unique=False)
    with op.batch_alter_table("customers") as batch_op:
        batch_op.drop_index("ix_customers_corp_last_contact")
        batch_op.create_index("ix_customers_corp_last_contact", ["corp_id", "last_contact_at"], unique=False)
        batch_op.drop_index("ix_customers_corp_next_contact")
        batch_op.create_index("ix_customers_corp_next_contact", ["corp_id", "next_contact_at"], unique=False)
        batch_op.drop_index("ix_customers_corp_name")
        batch_op.drop_index("ix_customers_corp_created")
