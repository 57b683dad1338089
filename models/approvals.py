"""Approvals: per-corp flow definitions, the instances submitted against a subject, and one approver task
per (step, approver)."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so

from models.base import Base, CorpScoped, IdMixin, Timestamps
from models.types import BigId, JsonDoc, UTCDateTime, utcnow


class FlowKind(enum.StrEnum):
    DISCOUNT = "discount"  # 折扣
    CONTRACT = "contract"  # 合同
    LARGE_OPPORTUNITY = "large_opportunity"  # 大额商机
    CUSTOM = "custom"  # 自定义


class ApprovalState(enum.StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"


class TaskState(enum.StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    SKIPPED = "skipped"  # the applicant was the approver, or the step's condition did not hold
    CANCELLED = "cancelled"  # another approver settled an any-one step, or the approval ended
    REASSIGNED = "reassigned"  # the approver left / was escalated past; a new task replaced this one


class ApprovalFlow(IdMixin, CorpScoped, Timestamps, Base):
    __tablename__ = "approval_flows"
    __table_args__ = (
        sa.UniqueConstraint("corp_id", "name"),
        sa.Index("ix_approval_flows_corp_kind", "corp_id", "kind"),
    )

    kind: so.Mapped[str] = so.mapped_column(sa.String(32), nullable=False)
    name: so.Mapped[str] = so.mapped_column(sa.String(100), nullable=False)
    description: so.Mapped[str | None] = so.mapped_column(sa.String(500))
    subject_type: so.Mapped[str] = so.mapped_column(sa.String(32), nullable=False, default="opportunity")
    # Validated by app.schemas_approvals.FlowSteps: [{name, approvers: [...], mode, condition}, …]
    steps: so.Mapped[list[dict[str, Any]]] = so.mapped_column(JsonDoc, nullable=False, default=list)
    cc: so.Mapped[list[dict[str, Any]]] = so.mapped_column(JsonDoc, nullable=False, default=list)
    # Subject fields nobody may edit while an approval of this flow is pending.
    locked_fields: so.Mapped[list[str]] = so.mapped_column(JsonDoc, nullable=False, default=list)
    active: so.Mapped[bool] = so.mapped_column(sa.Boolean, nullable=False, default=True)
    is_default: so.Mapped[bool] = so.mapped_column(sa.Boolean, nullable=False, default=False)


class ApprovalInstance(IdMixin, CorpScoped, Timestamps, Base):
    __tablename__ = "approval_instances"
    __table_args__ = (
        sa.Index("ix_approval_instances_applicant", "corp_id", "applicant_id", "created_at"),
        sa.Index("ix_approval_instances_subject", "subject_type", "subject_id", "state"),
        sa.Index("ix_approval_instances_corp_state_step", "corp_id", "state", "step_started_at"),
    )

    flow_id: so.Mapped[int | None] = so.mapped_column(
        BigId, sa.ForeignKey("approval_flows.id", ondelete="SET NULL")
    )
    kind: so.Mapped[str] = so.mapped_column(sa.String(32), nullable=False)
    title: so.Mapped[str] = so.mapped_column(sa.String(200), nullable=False)
    subject_type: so.Mapped[str] = so.mapped_column(sa.String(32), nullable=False)
    subject_id: so.Mapped[int] = so.mapped_column(BigId, nullable=False)
    applicant_id: so.Mapped[int] = so.mapped_column(BigId, sa.ForeignKey("users.id"), nullable=False)
    reason: so.Mapped[str | None] = so.mapped_column(sa.Text)
    # The flow as it was at submission (later edits of the flow do not move running approvals), with each
    # step's condition already evaluated: {"name", "steps": [{…, "applies": bool}], "cc", "locked_fields"}.
    flow_snapshot: so.Mapped[dict[str, Any]] = so.mapped_column(JsonDoc, nullable=False, default=dict)
    # Key facts of the subject at submission, shown to approvers.
    subject_facts: so.Mapped[dict[str, Any]] = so.mapped_column(JsonDoc, nullable=False, default=dict)
    # What becomes effective when approved, e.g. {"discount_rate": 0.15, "amount": "850000.00"}.
    outcome: so.Mapped[dict[str, Any]] = so.mapped_column(JsonDoc, nullable=False, default=dict)
    current_step: so.Mapped[int] = so.mapped_column(sa.Integer, nullable=False, default=0)
    state: so.Mapped[str] = so.mapped_column(sa.String(16), nullable=False, default=ApprovalState.PENDING)
    # Bumped by every decision: the conditional UPDATE on it is what makes concurrent decisions safe.
    version: so.Mapped[int] = so.mapped_column(sa.Integer, nullable=False, default=0)
    step_started_at: so.Mapped[datetime | None] = so.mapped_column(UTCDateTime)
    reminded_at: so.Mapped[datetime | None] = so.mapped_column(UTCDateTime)
    escalations: so.Mapped[int] = so.mapped_column(sa.Integer, nullable=False, default=0)
    finished_at: so.Mapped[datetime | None] = so.mapped_column(UTCDateTime)
    applied_at: so.Mapped[datetime | None] = so.mapped_column(UTCDateTime)


class ApprovalTask(IdMixin, CorpScoped, Base):
    """One approver's part in one step. `source_id` is the stable id cards and platform to-dos carry."""

    __tablename__ = "approval_tasks"
    __table_args__ = (
        sa.UniqueConstraint("source_id"),
        sa.Index("ix_approval_tasks_approver_state", "approver_id", "state", "instance_id"),
        sa.Index("ix_approval_tasks_instance_step", "instance_id", "step_index"),
    )

    instance_id: so.Mapped[int] = so.mapped_column(
        BigId, sa.ForeignKey("approval_instances.id", ondelete="CASCADE"), nullable=False
    )
    step_index: so.Mapped[int] = so.mapped_column(sa.Integer, nullable=False)
    approver_id: so.Mapped[int | None] = so.mapped_column(BigId, sa.ForeignKey("users.id"))
    state: so.Mapped[str] = so.mapped_column(sa.String(16), nullable=False, default=TaskState.PENDING)
    source_id: so.Mapped[str] = so.mapped_column(sa.String(64), nullable=False)
    comment: so.Mapped[str | None] = so.mapped_column(sa.Text)
    # Why the task is skipped / reassigned, in words the detail page shows.
    note: so.Mapped[str | None] = so.mapped_column(sa.String(300))
    replaces_id: so.Mapped[int | None] = so.mapped_column(BigId)
    decided_at: so.Mapped[datetime | None] = so.mapped_column(UTCDateTime)
    created_at: so.Mapped[datetime] = so.mapped_column(UTCDateTime, nullable=False, default=utcnow)
