"""full-sync writes: memberships and leaders lose their corp_id foreign key, users the unused unionid index

Revision ID: g1a0syncfk009
Revises: f7c0deliv008
"""

from collections.abc import Sequence

from alembic import op

revision: str = "g1a0syncfk009"
down_revision: str | None = "f7c0deliv008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A corp's deletion still reaches these rows: corps → users/departments (CASCADE) → pairs (CASCADE).
PAIR_TABLES = ("user_departments", "department_leaders")


def upgrade() -> None:
    for table in PAIR_TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_constraint(op.f(f"fk_{table}_corp_id_corps"), type_="foreignkey")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_index("ix_users_corp_unionid")


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.create_index("ix_users_corp_unionid", ["corp_id", "unionid"], unique=False)
    for table in PAIR_TABLES:
        # Rows whose corp no longer exists cannot exist (see above), so the constraint validates.
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.create_foreign_key(op.f(f"fk_{table}_corp_id_corps"), "corps", ["corp_id"], ["id"],
                                        ondelete="CASCADE")
