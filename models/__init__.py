"""SQLAlchemy 2.x typed models, engine/session setup and Alembic migrations.

Importing this package registers every table on `Base.metadata` (Alembic and tests rely on it).
"""

from models import (  # noqa: F401  (importing the modules registers their tables)
    approvals,
    audit,
    crm,
    inbox,
    org,
    outbox,
    platform,
    rules,
)
from models.audit import AuditLog
from models.base import Base
from models.crm import (
    Contact,
    Customer,
    CustomerCollaborator,
    CustomerTag,
    FieldDefinition,
    FollowUp,
    Opportunity,
    OpportunityStage,
    Tag,
    Task,
)
from models.db import Database
from models.org import Corp, Department, DepartmentLeader, Platform, Role, User, UserDepartment

__all__ = [
    "AuditLog",
    "Base",
    "Contact",
    "Corp",
    "Customer",
    "CustomerCollaborator",
    "CustomerTag",
    "Database",
    "Department",
    "DepartmentLeader",
    "FieldDefinition",
    "FollowUp",
    "Opportunity",
    "OpportunityStage",
    "Platform",
    "Role",
    "Tag",
    "Task",
    "User",
    "UserDepartment",
]
