"""Automation rules (trigger → condition → actions) and the log of every firing."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so

from models.base import Base, CorpScoped, IdMixin, Timestamps
from models.types import BigId, JsonDoc, UTCDateTime, utcnow


class AutomationRule(IdMixin, CorpScoped, Timestamps, Base):
    __tablename__ = "automation_rules"
    __table_args__ = (
        sa.UniqueConstraint("corp_id", "name"),
        sa.Index("ix_automation_rules_corp_trigger", "corp_id", "trigger", "enabled"),
    )

    name: so.Mapped[str] = so.mapped_column(sa.String(100), nullable=False)
    trigger: so.Mapped[str] = so.mapped_column(sa.String(32), nullable=False)
    # Trigger parameters: {"stage": "needs"}, {"threshold": "500000"}, {"days": 30}.
    params: so.Mapped[dict[str, Any]] = so.mapped_column(JsonDoc, nullable=False, default=dict)
    # [{"field", "op", "value"}, …], all must hold (app.schemas_approvals.Condition).
    condition: so.Mapped[list[dict[str, Any]]] = so.mapped_column(JsonDoc, nullable=False, default=list)
    actions: so.Mapped[list[dict[str, Any]]] = so.mapped_column(JsonDoc, nullable=False, default=list)
    enabled: so.Mapped[bool] = so.mapped_column(sa.Boolean, nullable=False, default=True)
    # Which shipped default this row started as (None for admin-made rules).
    default_key: so.Mapped[str | None] = so.mapped_column(sa.String(32))
    sort_order: so.Mapped[int] = so.mapped_column(sa.Integer, nullable=False, default=0)


class RuleFiring(IdMixin, CorpScoped, Base):
    __tablename__ = "rule_firings"
    __table_args__ = (
        sa.Index("ix_rule_firings_rule_subject", "rule_id", "subject_type", "subject_id", "created_at"),
        sa.Index("ix_rule_firings_corp_created", "corp_id", "created_at"),
    )

    rule_id: so.Mapped[int | None] = so.mapped_column(
        BigId, sa.ForeignKey("automation_rules.id", ondelete="SET NULL")
    )
    trigger: so.Mapped[str] = so.mapped_column(sa.String(32), nullable=False)
    subject_type: so.Mapped[str] = so.mapped_column(sa.String(32), nullable=False)
    subject_id: so.Mapped[int] = so.mapped_column(BigId, nullable=False)
    # One id per outermost fire() call: a rule firing inside the same chain twice is a loop.
    chain_id: so.Mapped[str] = so.mapped_column(sa.String(32), nullable=False)
    status: so.Mapped[str] = so.mapped_column(sa.String(16), nullable=False)  # done | loop_stopped | failed
    # [{"type": "create_task", "task_id": 7}, {"type": "notify", "user_ids": [3]}, …]
    actions: so.Mapped[list[dict[str, Any]]] = so.mapped_column(JsonDoc, nullable=False, default=list)
    detail: so.Mapped[str | None] = so.mapped_column(sa.String(500))
    created_at: so.Mapped[datetime] = so.mapped_column(UTCDateTime, nullable=False, default=utcnow)


class AssignmentRule(IdMixin, CorpScoped, Timestamps, Base):
    """Lead assignment: customers without an owner matching region / industry / source (empty = any) go to
    a user, or round robin to the active members of a team (a department, sub-departments included)."""

    __tablename__ = "assignment_rules"
    __table_args__ = (
        sa.UniqueConstraint("corp_id", "name"),
        sa.Index("ix_assignment_rules_corp_enabled", "corp_id", "enabled", "sort_order"),
    )

    name: so.Mapped[str] = so.mapped_column(sa.String(100), nullable=False)
    regions: so.Mapped[list[str]] = so.mapped_column(JsonDoc, nullable=False, default=list)
    industries: so.Mapped[list[str]] = so.mapped_column(JsonDoc, nullable=False, default=list)
    sources: so.Mapped[list[str]] = so.mapped_column(JsonDoc, nullable=False, default=list)
    user_id: so.Mapped[int | None] = so.mapped_column(BigId, sa.ForeignKey("users.id", ondelete="SET NULL"))
    department_id: so.Mapped[int | None] = so.mapped_column(
        BigId, sa.ForeignKey("departments.id", ondelete="SET NULL")
    )
    # How many customers the team rotation has handed out: the next one goes to member (position % size).
    rr_position: so.Mapped[int] = so.mapped_column(sa.BigInteger, nullable=False, default=0)
    enabled: so.Mapped[bool] = so.mapped_column(sa.Boolean, nullable=False, default=True)
    sort_order: so.Mapped[int] = so.mapped_column(sa.Integer, nullable=False, default=0)


class PoolEvent(IdMixin, CorpScoped, Base):
    """Claims from and returns to the public pool (公海): the daily claim cap and the reclaim ban read these."""

    __tablename__ = "pool_events"
    __table_args__ = (
        sa.Index("ix_pool_events_user_action_created", "corp_id", "user_id", "action", "created_at"),
        sa.Index("ix_pool_events_customer_created", "customer_id", "created_at"),
    )

    customer_id: so.Mapped[int] = so.mapped_column(
        BigId, sa.ForeignKey("customers.id", ondelete="CASCADE"), nullable=False
    )
    # claim: the claimer; return / reclaim: the owner who lost the customer.
    user_id: so.Mapped[int | None] = so.mapped_column(BigId, sa.ForeignKey("users.id", ondelete="SET NULL"))
    action: so.Mapped[str] = so.mapped_column(sa.String(16), nullable=False)  # claim | return | reclaim
    reason: so.Mapped[str | None] = so.mapped_column(sa.String(500))
    created_at: so.Mapped[datetime] = so.mapped_column(UTCDateTime, nullable=False, default=utcnow)
