"""Customers and everything salespeople write about them."""

from __future__ import annotations

import enum
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so

from models.base import Base, CorpScoped, IdMixin, Timestamps
from models.types import BigId, JsonDoc, UTCDateTime


class Grade(enum.StrEnum):
    A = "A"
    B = "B"
    C = "C"


class CustomerStatus(enum.StrEnum):
    LEAD = "lead"  # 线索
    PROSPECT = "prospect"  # 意向
    CUSTOMER = "customer"  # 成交
    LOST = "lost"  # 流失


class FollowUpKind(enum.StrEnum):
    CALL = "call"  # 电话
    VISIT = "visit"  # 拜访
    MEETING = "meeting"  # 会议
    WECHAT = "wechat"  # 微信
    OTHER = "other"  # 其他


class DecisionRole(enum.StrEnum):
    DECISION_MAKER = "decision_maker"  # 决策人
    INFLUENCER = "influencer"  # 影响人
    USER = "user"  # 使用人
    PURCHASER = "purchaser"  # 采购
    OTHER = "other"  # 其他


class TaskStatus(enum.StrEnum):
    OPEN = "open"
    DONE = "done"
    CANCELLED = "cancelled"


class FieldEntity(enum.StrEnum):
    CUSTOMER = "customer"
    CONTACT = "contact"
    OPPORTUNITY = "opportunity"


class FieldType(enum.StrEnum):
    TEXT = "text"
    NUMBER = "number"
    DATE = "date"
    SELECT = "select"
    MULTISELECT = "multiselect"


class Customer(IdMixin, CorpScoped, Timestamps, Base):
    __tablename__ = "customers"
    __table_args__ = (
        sa.Index("ix_customers_corp_owner_updated", "corp_id", "owner_id", "updated_at"),
        # Keyset pages: (corp, sort column, id) lets an admin's list walk the index and stop at the page.
        sa.Index("ix_customers_corp_updated", "corp_id", "updated_at", "id"),
        sa.Index("ix_customers_corp_created", "corp_id", "created_at", "id"),
        sa.Index("ix_customers_corp_name", "corp_id", "name", "id"),
        sa.Index("ix_customers_corp_name_norm", "corp_id", "name_norm"),
        sa.Index("ix_customers_corp_next_contact", "corp_id", "next_contact_at", "id"),
        sa.Index("ix_customers_corp_last_contact", "corp_id", "last_contact_at", "id"),
        sa.Index(
            "ix_customers_name_trgm",
            "name",
            postgresql_using="gin",
            postgresql_ops={"name": "gin_trgm_ops"},
        ),
    )

    name: so.Mapped[str] = so.mapped_column(sa.String(200), nullable=False)
    # Lower-cased, without spaces, punctuation and legal-form suffixes: the key of the duplicate check.
    name_norm: so.Mapped[str] = so.mapped_column(sa.String(200), nullable=False)
    industry: so.Mapped[str | None] = so.mapped_column(sa.String(64))
    company_size: so.Mapped[str | None] = so.mapped_column(sa.String(32))
    source: so.Mapped[str | None] = so.mapped_column(sa.String(64))
    grade: so.Mapped[str | None] = so.mapped_column(sa.String(1))
    region: so.Mapped[str | None] = so.mapped_column(sa.String(64))
    address: so.Mapped[str | None] = so.mapped_column(sa.String(500))
    status: so.Mapped[str] = so.mapped_column(sa.String(16), nullable=False, default=CustomerStatus.LEAD)
    owner_id: so.Mapped[int | None] = so.mapped_column(BigId, sa.ForeignKey("users.id"))
    in_pool: so.Mapped[bool] = so.mapped_column(sa.Boolean, nullable=False, default=False)
    custom: so.Mapped[dict[str, Any]] = so.mapped_column(JsonDoc, nullable=False, default=dict)
    last_contact_at: so.Mapped[datetime | None] = so.mapped_column(UTCDateTime)
    next_contact_at: so.Mapped[datetime | None] = so.mapped_column(UTCDateTime)
    created_by_id: so.Mapped[int | None] = so.mapped_column(BigId, sa.ForeignKey("users.id"))
    updated_by_id: so.Mapped[int | None] = so.mapped_column(BigId, sa.ForeignKey("users.id"))
    deleted_at: so.Mapped[datetime | None] = so.mapped_column(UTCDateTime)


class CustomerCollaborator(CorpScoped, Base):
    __tablename__ = "customer_collaborators"
    __table_args__ = (sa.Index("ix_customer_collaborators_user", "user_id", "customer_id"),)

    customer_id: so.Mapped[int] = so.mapped_column(
        BigId, sa.ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: so.Mapped[int] = so.mapped_column(
        BigId, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )


class Tag(IdMixin, CorpScoped, Timestamps, Base):
    """A label in a group, e.g. 行业/制造业, 区域/华东, 意向/高."""

    __tablename__ = "tags"
    __table_args__ = (sa.UniqueConstraint("corp_id", "group_name", "name"),)

    group_name: so.Mapped[str] = so.mapped_column(sa.String(32), nullable=False, default="")
    name: so.Mapped[str] = so.mapped_column(sa.String(32), nullable=False)
    color: so.Mapped[str | None] = so.mapped_column(sa.String(16))


class CustomerTag(CorpScoped, Base):
    __tablename__ = "customer_tags"
    __table_args__ = (sa.Index("ix_customer_tags_tag", "tag_id", "customer_id"),)

    customer_id: so.Mapped[int] = so.mapped_column(
        BigId, sa.ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True
    )
    tag_id: so.Mapped[int] = so.mapped_column(
        BigId, sa.ForeignKey("tags.id", ondelete="CASCADE"), primary_key=True
    )


class Contact(IdMixin, CorpScoped, Timestamps, Base):
    __tablename__ = "contacts"
    __table_args__ = (
        sa.Index("ix_contacts_customer", "customer_id"),
        # Pattern ops: phone search is a prefix LIKE, which a plain btree under a non-C collation can't serve.
        sa.Index("ix_contacts_corp_mobile", "corp_id", "mobile", postgresql_ops={"mobile": "text_pattern_ops"}),
        sa.Index("ix_contacts_corp_phone", "corp_id", "phone", postgresql_ops={"phone": "text_pattern_ops"}),
        sa.Index(
            "ix_contacts_name_trgm",
            "name",
            postgresql_using="gin",
            postgresql_ops={"name": "gin_trgm_ops"},
        ),
    )

    customer_id: so.Mapped[int] = so.mapped_column(
        BigId, sa.ForeignKey("customers.id", ondelete="CASCADE"), nullable=False
    )
    name: so.Mapped[str] = so.mapped_column(sa.String(100), nullable=False)
    title: so.Mapped[str | None] = so.mapped_column(sa.String(100))
    # Digits only (a leading + kept), so the duplicate check and search compare like with like.
    mobile: so.Mapped[str | None] = so.mapped_column(sa.String(32))
    phone: so.Mapped[str | None] = so.mapped_column(sa.String(32))
    email: so.Mapped[str | None] = so.mapped_column(sa.String(200))
    wechat: so.Mapped[str | None] = so.mapped_column(sa.String(64))
    decision_role: so.Mapped[str | None] = so.mapped_column(sa.String(32))
    is_primary: so.Mapped[bool] = so.mapped_column(sa.Boolean, nullable=False, default=False)
    custom: so.Mapped[dict[str, Any]] = so.mapped_column(JsonDoc, nullable=False, default=dict)
    deleted_at: so.Mapped[datetime | None] = so.mapped_column(UTCDateTime)


class FollowUp(IdMixin, CorpScoped, Base):
    __tablename__ = "follow_ups"
    __table_args__ = (
        sa.Index("ix_follow_ups_customer_occurred", "customer_id", "occurred_at"),
        sa.Index("ix_follow_ups_corp_next_contact", "corp_id", "next_contact_at"),
        sa.Index("ix_follow_ups_author_occurred", "author_id", "occurred_at"),
        # The dashboard leaderboard: a whole corp's follow-ups in a month (admins, large teams).
        sa.Index("ix_follow_ups_corp_occurred", "corp_id", "occurred_at"),
    )

    customer_id: so.Mapped[int] = so.mapped_column(
        BigId, sa.ForeignKey("customers.id", ondelete="CASCADE"), nullable=False
    )
    contact_id: so.Mapped[int | None] = so.mapped_column(
        BigId, sa.ForeignKey("contacts.id", ondelete="SET NULL")
    )
    author_id: so.Mapped[int] = so.mapped_column(BigId, sa.ForeignKey("users.id"), nullable=False)
    kind: so.Mapped[str] = so.mapped_column(sa.String(16), nullable=False)
    content: so.Mapped[str] = so.mapped_column(sa.Text, nullable=False)
    occurred_at: so.Mapped[datetime] = so.mapped_column(UTCDateTime, nullable=False)
    location: so.Mapped[str | None] = so.mapped_column(sa.String(300))
    latitude: so.Mapped[float | None] = so.mapped_column(sa.Float)
    longitude: so.Mapped[float | None] = so.mapped_column(sa.Float)
    next_contact_at: so.Mapped[datetime | None] = so.mapped_column(UTCDateTime)
    created_at: so.Mapped[datetime] = so.mapped_column(UTCDateTime, nullable=False)


class OpportunityStage(IdMixin, CorpScoped, Base):
    """Per-corp stage list; exactly one won and one lost stage close an opportunity."""

    __tablename__ = "opportunity_stages"
    __table_args__ = (sa.UniqueConstraint("corp_id", "key"),)

    key: so.Mapped[str] = so.mapped_column(sa.String(32), nullable=False)
    name: so.Mapped[str] = so.mapped_column(sa.String(64), nullable=False)
    probability: so.Mapped[int] = so.mapped_column(sa.Integer, nullable=False, default=0)
    sort_order: so.Mapped[int] = so.mapped_column(sa.Integer, nullable=False, default=0)
    is_won: so.Mapped[bool] = so.mapped_column(sa.Boolean, nullable=False, default=False)
    is_lost: so.Mapped[bool] = so.mapped_column(sa.Boolean, nullable=False, default=False)
    active: so.Mapped[bool] = so.mapped_column(sa.Boolean, nullable=False, default=True)


class Opportunity(IdMixin, CorpScoped, Timestamps, Base):
    __tablename__ = "opportunities"
    __table_args__ = (
        sa.Index("ix_opportunities_customer", "customer_id"),
        sa.Index("ix_opportunities_corp_owner_stage", "corp_id", "owner_id", "stage_id"),
        # `deleted_at IS NULL` pins the second column, so the list's ORDER BY updated_at, id is index order.
        sa.Index("ix_opportunities_corp_live_updated", "corp_id", "deleted_at", "updated_at", "id"),
        # The dashboard leaderboard: deals won (closed) in a month across a corp.
        sa.Index("ix_opportunities_corp_closed", "corp_id", "closed_at"),
    )

    customer_id: so.Mapped[int] = so.mapped_column(
        BigId, sa.ForeignKey("customers.id", ondelete="CASCADE"), nullable=False
    )
    name: so.Mapped[str] = so.mapped_column(sa.String(200), nullable=False)
    amount: so.Mapped[Decimal] = so.mapped_column(sa.Numeric(16, 2), nullable=False, default=Decimal(0))
    stage_id: so.Mapped[int] = so.mapped_column(
        BigId, sa.ForeignKey("opportunity_stages.id"), nullable=False
    )
    expected_close_date: so.Mapped[date | None] = so.mapped_column(sa.Date)
    owner_id: so.Mapped[int | None] = so.mapped_column(BigId, sa.ForeignKey("users.id"))
    lost_reason: so.Mapped[str | None] = so.mapped_column(sa.String(500))
    closed_at: so.Mapped[datetime | None] = so.mapped_column(UTCDateTime)
    custom: so.Mapped[dict[str, Any]] = so.mapped_column(JsonDoc, nullable=False, default=dict)
    created_by_id: so.Mapped[int | None] = so.mapped_column(BigId, sa.ForeignKey("users.id"))
    deleted_at: so.Mapped[datetime | None] = so.mapped_column(UTCDateTime)


class Task(IdMixin, CorpScoped, Timestamps, Base):
    __tablename__ = "tasks"
    __table_args__ = (
        sa.Index("ix_tasks_assignee_status_due", "assignee_id", "status", "due_at"),
        sa.Index("ix_tasks_customer", "customer_id"),
        sa.Index("ix_tasks_created_by", "created_by_id"),
    )

    title: so.Mapped[str] = so.mapped_column(sa.String(200), nullable=False)
    description: so.Mapped[str | None] = so.mapped_column(sa.Text)
    assignee_id: so.Mapped[int] = so.mapped_column(BigId, sa.ForeignKey("users.id"), nullable=False)
    due_at: so.Mapped[datetime | None] = so.mapped_column(UTCDateTime)
    customer_id: so.Mapped[int | None] = so.mapped_column(
        BigId, sa.ForeignKey("customers.id", ondelete="CASCADE")
    )
    opportunity_id: so.Mapped[int | None] = so.mapped_column(
        BigId, sa.ForeignKey("opportunities.id", ondelete="CASCADE")
    )
    status: so.Mapped[str] = so.mapped_column(sa.String(16), nullable=False, default=TaskStatus.OPEN)
    # manual | rule | approval | system: who created it, so automation can find its own tasks.
    source: so.Mapped[str] = so.mapped_column(sa.String(16), nullable=False, default="manual")
    created_by_id: so.Mapped[int | None] = so.mapped_column(BigId, sa.ForeignKey("users.id"))
    completed_at: so.Mapped[datetime | None] = so.mapped_column(UTCDateTime)


class FieldDefinition(IdMixin, CorpScoped, Timestamps, Base):
    """A corp's custom field on customers, contacts or opportunities."""

    __tablename__ = "field_definitions"
    __table_args__ = (sa.UniqueConstraint("corp_id", "entity", "key"),)

    entity: so.Mapped[str] = so.mapped_column(sa.String(16), nullable=False)
    key: so.Mapped[str] = so.mapped_column(sa.String(64), nullable=False)
    label: so.Mapped[str] = so.mapped_column(sa.String(64), nullable=False)
    field_type: so.Mapped[str] = so.mapped_column(sa.String(16), nullable=False)
    required: so.Mapped[bool] = so.mapped_column(sa.Boolean, nullable=False, default=False)
    options: so.Mapped[list[str]] = so.mapped_column(JsonDoc, nullable=False, default=list)
    min_value: so.Mapped[float | None] = so.mapped_column(sa.Float)
    max_value: so.Mapped[float | None] = so.mapped_column(sa.Float)
    max_length: so.Mapped[int | None] = so.mapped_column(sa.Integer)
    sort_order: so.Mapped[int] = so.mapped_column(sa.Integer, nullable=False, default=0)
    active: so.Mapped[bool] = so.mapped_column(sa.Boolean, nullable=False, default=True)
