"""Who is acting: the signed-in user of one corp, plus request facts the audit log records."""

from __future__ import annotations

from dataclasses import dataclass

from models.org import Role


@dataclass(frozen=True)
class Actor:
    corp_id: int
    user_id: int | None  # None for system jobs (scheduler, sync)
    role: str
    request_id: str | None = None
    ip: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN

    @property
    def is_manager(self) -> bool:
        return self.role == Role.MANAGER

    @classmethod
    def system(cls, corp_id: int) -> Actor:
        return cls(corp_id=corp_id, user_id=None, role=Role.ADMIN, request_id=None, ip=None)
