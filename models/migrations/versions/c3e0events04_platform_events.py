"""platform events inbox

Revision ID: c3e0events04
Revises: b2d0outbox03
Create Date: 2026-11-30 04:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.types
from sqlalchemy.dialects import postgresql

revision: str = 'c3e0events04'
down_revision: str | None = 'b2d0outbox03'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('platform_events',
    sa.Column('event_id', sa.String(length=128), nullable=False),
    sa.Column('event_type', sa.String(length=64), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('payload', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('locked_until', models.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('received_at', models.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('applied_at', models.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('corp_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.ForeignKeyConstraint(['corp_id'], ['corps.id'], name=op.f('fk_platform_events_corp_id_corps'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_platform_events')),
    sa.UniqueConstraint('corp_id', 'event_id', name=op.f('uq_platform_events_corp_id_event_id'))
    )
    with op.batch_alter_table('platform_events', schema=None) as batch_op:
        batch_op.create_index('ix_platform_events_state_id', ['state', 'id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('platform_events', schema=None) as batch_op:
        batch_op.drop_index('ix_platform_events_state_id')

    op.drop_table('platform_events')
