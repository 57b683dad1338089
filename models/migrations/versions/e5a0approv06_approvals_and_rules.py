"""approvals, automation rules, lead assignment rules and public-pool events

Revision ID: e5a0approv06
Revises: c3e0events04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import models.types

revision: str = "e5a0approv06"
down_revision: str | None = "c3e0events04"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON_DOC = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table('approval_flows',
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('description', sa.String(length=500), nullable=True),
    sa.Column('subject_type', sa.String(length=32), nullable=False),
    sa.Column('steps', JSON_DOC, nullable=False),
    sa.Column('cc', JSON_DOC, nullable=False),
    sa.Column('locked_fields', JSON_DOC, nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('is_default', sa.Boolean(), nullable=False),
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('corp_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('created_at', models.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', models.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['corp_id'], ['corps.id'], name=op.f('fk_approval_flows_corp_id_corps'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_approval_flows')),
    sa.UniqueConstraint('corp_id', 'name', name=op.f('uq_approval_flows_corp_id_name'))
    )
    with op.batch_alter_table('approval_flows', schema=None) as batch_op:
        batch_op.create_index('ix_approval_flows_corp_kind', ['corp_id', 'kind'], unique=False)

    op.create_table('automation_rules',
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('trigger', sa.String(length=32), nullable=False),
    sa.Column('params', JSON_DOC, nullable=False),
    sa.Column('condition', JSON_DOC, nullable=False),
    sa.Column('actions', JSON_DOC, nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('default_key', sa.String(length=32), nullable=True),
    sa.Column('sort_order', sa.Integer(), nullable=False),
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('corp_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('created_at', models.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', models.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['corp_id'], ['corps.id'], name=op.f('fk_automation_rules_corp_id_corps'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_automation_rules')),
    sa.UniqueConstraint('corp_id', 'name', name=op.f('uq_automation_rules_corp_id_name'))
    )
    with op.batch_alter_table('automation_rules', schema=None) as batch_op:
        batch_op.create_index('ix_automation_rules_corp_trigger', ['corp_id', 'trigger', 'enabled'], unique=False)

    op.create_table('rule_firings',
    sa.Column('rule_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('trigger', sa.String(length=32), nullable=False),
    sa.Column('subject_type', sa.String(length=32), nullable=False),
    sa.Column('subject_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('chain_id', sa.String(length=32), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('actions', JSON_DOC, nullable=False),
    sa.Column('detail', sa.String(length=500), nullable=True),
    sa.Column('created_at', models.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('corp_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.ForeignKeyConstraint(['corp_id'], ['corps.id'], name=op.f('fk_rule_firings_corp_id_corps'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['rule_id'], ['automation_rules.id'], name=op.f('fk_rule_firings_rule_id_automation_rules'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_rule_firings'))
    )
    with op.batch_alter_table('rule_firings', schema=None) as batch_op:
        batch_op.create_index('ix_rule_firings_corp_created', ['corp_id', 'created_at'], unique=False)
        batch_op.create_index('ix_rule_firings_rule_subject', ['rule_id', 'subject_type', 'subject_id', 'created_at'], unique=False)

    op.create_table('approval_instances',
    sa.Column('flow_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('subject_type', sa.String(length=32), nullable=False),
    sa.Column('subject_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('applicant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('flow_snapshot', JSON_DOC, nullable=False),
    sa.Column('subject_facts', JSON_DOC, nullable=False),
    sa.Column('outcome', JSON_DOC, nullable=False),
    sa.Column('current_step', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('step_started_at', models.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('reminded_at', models.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('escalations', sa.Integer(), nullable=False),
    sa.Column('finished_at', models.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('applied_at', models.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('corp_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('created_at', models.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', models.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['applicant_id'], ['users.id'], name=op.f('fk_approval_instances_applicant_id_users')),
    sa.ForeignKeyConstraint(['corp_id'], ['corps.id'], name=op.f('fk_approval_instances_corp_id_corps'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['flow_id'], ['approval_flows.id'], name=op.f('fk_approval_instances_flow_id_approval_flows'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_approval_instances'))
    )
    with op.batch_alter_table('approval_instances', schema=None) as batch_op:
        batch_op.create_index('ix_approval_instances_applicant', ['corp_id', 'applicant_id', 'created_at'], unique=False)
        batch_op.create_index('ix_approval_instances_corp_state_step', ['corp_id', 'state', 'step_started_at'], unique=False)
        batch_op.create_index('ix_approval_instances_subject', ['subject_type', 'subject_id', 'state'], unique=False)

    op.create_table('assignment_rules',
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('regions', JSON_DOC, nullable=False),
    sa.Column('industries', JSON_DOC, nullable=False),
    sa.Column('sources', JSON_DOC, nullable=False),
    sa.Column('user_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('department_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('rr_position', sa.BigInteger(), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('sort_order', sa.Integer(), nullable=False),
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('corp_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('created_at', models.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', models.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['corp_id'], ['corps.id'], name=op.f('fk_assignment_rules_corp_id_corps'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['department_id'], ['departments.id'], name=op.f('fk_assignment_rules_department_id_departments'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_assignment_rules_user_id_users'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_assignment_rules')),
    sa.UniqueConstraint('corp_id', 'name', name=op.f('uq_assignment_rules_corp_id_name'))
    )
    with op.batch_alter_table('assignment_rules', schema=None) as batch_op:
        batch_op.create_index('ix_assignment_rules_corp_enabled', ['corp_id', 'enabled', 'sort_order'], unique=False)

    op.create_table('approval_tasks',
    sa.Column('instance_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('step_index', sa.Integer(), nullable=False),
    sa.Column('approver_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('source_id', sa.String(length=64), nullable=False),
    sa.Column('comment', sa.Text(), nullable=True),
    sa.Column('note', sa.String(length=300), nullable=True),
    sa.Column('replaces_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('decided_at', models.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', models.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('corp_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.ForeignKeyConstraint(['approver_id'], ['users.id'], name=op.f('fk_approval_tasks_approver_id_users')),
    sa.ForeignKeyConstraint(['corp_id'], ['corps.id'], name=op.f('fk_approval_tasks_corp_id_corps'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['instance_id'], ['approval_instances.id'], name=op.f('fk_approval_tasks_instance_id_approval_instances'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_approval_tasks')),
    sa.UniqueConstraint('source_id', name=op.f('uq_approval_tasks_source_id'))
    )
    with op.batch_alter_table('approval_tasks', schema=None) as batch_op:
        batch_op.create_index('ix_approval_tasks_approver_state', ['approver_id', 'state', 'instance_id'], unique=False)
        batch_op.create_index('ix_approval_tasks_instance_step', ['instance_id', 'step_index'], unique=False)

    op.create_table('pool_events',
    sa.Column('customer_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('user_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('action', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.String(length=500), nullable=True),
    sa.Column('created_at', models.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('corp_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.ForeignKeyConstraint(['corp_id'], ['corps.id'], name=op.f('fk_pool_events_corp_id_corps'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_pool_events_customer_id_customers'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_pool_events_user_id_users'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_pool_events'))
    )
    with op.batch_alter_table('pool_events', schema=None) as batch_op:
        batch_op.create_index('ix_pool_events_customer_created', ['customer_id', 'created_at'], unique=False)
        batch_op.create_index('ix_pool_events_user_action_created', ['corp_id', 'user_id', 'action', 'created_at'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('pool_events', schema=None) as batch_op:
        batch_op.drop_index('ix_pool_events_user_action_created')
        batch_op.drop_index('ix_pool_events_customer_created')

    op.drop_table('pool_events')
    with op.batch_alter_table('approval_tasks', schema=None) as batch_op:
        batch_op.drop_index('ix_approval_tasks_instance_step')
        batch_op.drop_index('ix_approval_tasks_approver_state')

    op.drop_table('approval_tasks')
    with op.batch_alter_table('assignment_rules', schema=None) as batch_op:
        batch_op.drop_index('ix_assignment_rules_corp_enabled')

    op.drop_table('assignment_rules')
    with op.batch_alter_table('approval_instances', schema=None) as batch_op:
        batch_op.drop_index('ix_approval_instances_subject')
        batch_op.drop_index('ix_approval_instances_corp_state_step')
        batch_op.drop_index('ix_approval_instances_applicant')

    op.drop_table('approval_instances')
    with op.batch_alter_table('rule_firings', schema=None) as batch_op:
        batch_op.drop_index('ix_rule_firings_rule_subject')
        batch_op.drop_index('ix_rule_firings_corp_created')

    op.drop_table('rule_firings')
    with op.batch_alter_table('automation_rules', schema=None) as batch_op:
        batch_op.drop_index('ix_automation_rules_corp_trigger')

    op.drop_table('automation_rules')
    with op.batch_alter_table('approval_flows', schema=None) as batch_op:
        batch_op.drop_index('ix_approval_flows_corp_kind')

    op.drop_table('approval_flows')
