"""Tenants and the org structure mirrored from the platform."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so

from models.base import Base, CorpScoped, IdMixin, Timestamps
from models.types import BigId, JsonDoc, UTCDateTime


class Platform(enum.StrEnum):
    DINGTALK = "dingtalk"
    WECOM = "wecom"


class Role(enum.StrEnum):
    SALESPERSON = "salesperson"
    MANAGER = "manager"
    ADMIN = "admin"
    # Pre-sales engineers receive the tasks the default "stage moved to 需求确认" rule creates.
    PRESALES = "presales"


class Corp(IdMixin, Timestamps, Base):
    """A bound company on one platform. Secrets live only in `secrets_ciphertext` (Fernet)."""

    __tablename__ = "corps"
    __table_args__ = (sa.UniqueConstraint("platform", "platform_corp_id"),)

    platform: so.Mapped[str] = so.mapped_column(sa.String(16), nullable=False)
    platform_corp_id: so.Mapped[str] = so.mapped_column(sa.String(64), nullable=False)
    name: so.Mapped[str] = so.mapped_column(sa.String(200), nullable=False)
    agent_id: so.Mapped[str | None] = so.mapped_column(sa.String(64))
    # AppKey / WeCom has none: public identifiers, shown to admins; the secrets are encrypted.
    app_key: so.Mapped[str | None] = so.mapped_column(sa.String(128))
    secrets_ciphertext: so.Mapped[str | None] = so.mapped_column(sa.Text)
    timezone: so.Mapped[str] = so.mapped_column(sa.String(64), nullable=False, default="Asia/Shanghai")
    settings: so.Mapped[dict[str, Any]] = so.mapped_column(JsonDoc, nullable=False, default=dict)
    active: so.Mapped[bool] = so.mapped_column(sa.Boolean, nullable=False, default=True)

    def __repr__(self) -> str:  # never include secrets
        return f"<Corp {self.id} {self.platform}:{self.platform_corp_id}>"


class Department(IdMixin, CorpScoped, Timestamps, Base):
    """A node of the org tree. `path` is a materialised path of our ids, e.g. `/1/7/42/`, so a subtree
    is one indexed prefix range scan."""

    __tablename__ = "departments"
    __table_args__ = (
        sa.UniqueConstraint("corp_id", "platform_dept_id"),
        sa.Index("ix_departments_corp_path", "corp_id", "path", postgresql_ops={"path": "text_pattern_ops"}),
    )

    platform_dept_id: so.Mapped[str] = so.mapped_column(sa.String(64), nullable=False)
    parent_id: so.Mapped[int | None] = so.mapped_column(
        BigId, sa.ForeignKey("departments.id", ondelete="SET NULL")
    )
    name: so.Mapped[str] = so.mapped_column(sa.String(200), nullable=False)
    sort_order: so.Mapped[int] = so.mapped_column(sa.BigInteger, nullable=False, default=0)
    path: so.Mapped[str] = so.mapped_column(sa.String(1024), nullable=False, default="/")
    depth: so.Mapped[int] = so.mapped_column(sa.Integer, nullable=False, default=0)
    active: so.Mapped[bool] = so.mapped_column(sa.Boolean, nullable=False, default=True)
    # The full sync that last saw this department; anything older after a complete run is gone.
    last_sync_run_id: so.Mapped[int | None] = so.mapped_column(BigId)

    leaders: so.Mapped[list[User]] = so.relationship(
        secondary="department_leaders", viewonly=True, order_by="User.id"
    )


class User(IdMixin, CorpScoped, Timestamps, Base):
    """An employee as the platform knows them, plus their CRM role."""

    __tablename__ = "users"
    # No index on unionid: nothing looks people up by it (sign-in and events go by userid), and its random
    # keys were a fifth of the server time of a full sync's user inserts.
    __table_args__ = (
        sa.UniqueConstraint("corp_id", "platform_userid"),
        sa.Index("ix_users_corp_name", "corp_id", "name"),
    )

    platform_userid: so.Mapped[str] = so.mapped_column(sa.String(64), nullable=False)
    unionid: so.Mapped[str | None] = so.mapped_column(sa.String(64))
    name: so.Mapped[str] = so.mapped_column(sa.String(100), nullable=False)
    title: so.Mapped[str | None] = so.mapped_column(sa.String(100))
    mobile: so.Mapped[str | None] = so.mapped_column(sa.String(32))
    email: so.Mapped[str | None] = so.mapped_column(sa.String(200))
    avatar: so.Mapped[str | None] = so.mapped_column(sa.String(500))
    active: so.Mapped[bool] = so.mapped_column(sa.Boolean, nullable=False, default=True)
    role: so.Mapped[str] = so.mapped_column(sa.String(16), nullable=False, default=Role.SALESPERSON)
    main_department_id: so.Mapped[int | None] = so.mapped_column(
        BigId, sa.ForeignKey("departments.id", ondelete="SET NULL")
    )
    left_at: so.Mapped[datetime | None] = so.mapped_column(UTCDateTime)
    last_sync_run_id: so.Mapped[int | None] = so.mapped_column(BigId)

    departments: so.Mapped[list[Department]] = so.relationship(
        secondary="user_departments", viewonly=True, order_by="Department.id"
    )


def _corp_of_pair() -> so.MappedColumn[int]:
    """`corp_id` of a person–department pair, without a foreign key of its own: the user and department it
    references both carry the corp, and deleting a corp cascades through them to the pair. A third
    per-row check would be the one that guards nothing, and it was a third of a full sync's membership
    writes (EXPLAIN ANALYZE: one FK trigger ≈ 10–20 µs per row)."""
    return so.mapped_column(BigId, nullable=False)


class UserDepartment(Base):
    """Membership: a person may belong to several departments."""

    __tablename__ = "user_departments"
    __table_args__ = (sa.Index("ix_user_departments_department", "department_id", "user_id"),)

    corp_id: so.Mapped[int] = _corp_of_pair()

    user_id: so.Mapped[int] = so.mapped_column(
        BigId, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    department_id: so.Mapped[int] = so.mapped_column(
        BigId, sa.ForeignKey("departments.id", ondelete="CASCADE"), primary_key=True
    )
    sort_order: so.Mapped[int] = so.mapped_column(sa.BigInteger, nullable=False, default=0)


class DepartmentLeader(Base):
    __tablename__ = "department_leaders"
    __table_args__ = (sa.Index("ix_department_leaders_user", "user_id", "department_id"),)

    corp_id: so.Mapped[int] = _corp_of_pair()

    department_id: so.Mapped[int] = so.mapped_column(
        BigId, sa.ForeignKey("departments.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: so.Mapped[int] = so.mapped_column(
        BigId, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
