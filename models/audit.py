"""Append-only audit trail."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so

from models.base import Base, CorpScoped, IdMixin
from models.types import BigId, JsonDoc, UTCDateTime, utcnow


class AuditLog(IdMixin, CorpScoped, Base):
    __tablename__ = "audit_logs"
    __table_args__ = (
        sa.Index("ix_audit_logs_corp_created", "corp_id", "created_at"),
        sa.Index("ix_audit_logs_entity", "corp_id", "entity_type", "entity_id"),
    )

    actor_id: so.Mapped[int | None] = so.mapped_column(BigId, sa.ForeignKey("users.id"))
    action: so.Mapped[str] = so.mapped_column(sa.String(32), nullable=False)
    entity_type: so.Mapped[str] = so.mapped_column(sa.String(32), nullable=False)
    entity_id: so.Mapped[int | None] = so.mapped_column(BigId)
    # {"field": {"before": …, "after": …}} for the fields that changed.
    changes: so.Mapped[dict[str, Any]] = so.mapped_column(JsonDoc, nullable=False, default=dict)
    request_id: so.Mapped[str | None] = so.mapped_column(sa.String(64))
    ip: so.Mapped[str | None] = so.mapped_column(sa.String(64))
    created_at: so.Mapped[datetime] = so.mapped_column(UTCDateTime, nullable=False, default=utcnow)


class AppendOnlyError(RuntimeError):
    pass


@sa.event.listens_for(AuditLog, "before_update")
def _no_update(mapper, connection, target):
    raise AppendOnlyError("audit log rows are never updated")


@sa.event.listens_for(AuditLog, "before_delete")
def _no_delete(mapper, connection, target):
    raise AppendOnlyError("audit log rows are never deleted")
