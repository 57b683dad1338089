"""Address-book events applied to our mirror of the org (incremental sync).

Events carry ids only (fact sheet §6), so applying one is two steps: `fetch_change` asks the platform
for the current state of those ids (network, no database transaction open), then `apply_change` writes
it through the same upserts the full sync uses, in one transaction with the leaver handover.
A leave or a department removal is taken from the event itself; joins and changes are re-fetched, and
someone a join or change names who no longer resolves is treated as gone.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so

from app.services.org_sync import apply_departments, apply_users, deactivate_user
from integrations.base import NotFoundError, PlatformClient, PlatformDepartment, PlatformUser
from models.org import Corp, Department, User

USER_UPSERT, USER_LEAVE, DEPT_UPSERT, DEPT_REMOVE = "user_upsert", "user_leave", "dept_upsert", "dept_remove"
KINDS = (USER_UPSERT, USER_LEAVE, DEPT_UPSERT, DEPT_REMOVE)
FETCHING = (USER_UPSERT, DEPT_UPSERT)  # kinds that ask the platform (and may add departments)
MAX_ANCESTORS = 64


@dataclass
class OrgChange:
    """What the platform says now about the ids an event named."""

    users: list[PlatformUser] = field(default_factory=list)
    gone_users: list[str] = field(default_factory=list)
    departments: list[PlatformDepartment] = field(default_factory=list)
    gone_departments: list[str] = field(default_factory=list)


def known_department_ids(session: so.Session, corp_pk: int) -> set[str]:
    return set(session.execute(sa.select(Department.platform_dept_id).where(Department.corp_id == corp_pk)).scalars())


def _with_ancestors(client: PlatformClient, dept_ids: Iterable[str], known: set[str],
                    change: OrgChange) -> None:
    """Fetch departments we do not know yet, and their unknown parents, so paths stay whole."""
    fetched = {d.dept_id for d in change.departments}
    queue = [d for d in dict.fromkeys(dept_ids) if d not in known and d not in fetched]
    steps = 0
    while queue and steps < MAX_ANCESTORS * 4:
        steps += 1
        dept_id = queue.pop(0)
        if dept_id in known or dept_id in fetched:
            continue
        try:
            dept = client.get_department(dept_id)
        except NotFoundError:
            continue
        change.departments.append(dept)
        fetched.add(dept_id)
        if dept.parent_id and dept.parent_id not in known and dept.parent_id not in fetched:
            queue.append(dept.parent_id)


def fetch_change(client: PlatformClient, kind: str, user_ids: Iterable[str], dept_ids: Iterable[str],
                 known_depts: set[str]) -> OrgChange:
    change = OrgChange()
    if kind == USER_UPSERT:
        for userid in dict.fromkeys(user_ids):
            try:
                change.users.append(client.get_user(userid))
            except NotFoundError:
                change.gone_users.append(userid)
        _with_ancestors(client, [d for u in change.users for d in u.department_ids], known_depts, change)
    elif kind == USER_LEAVE:
        change.gone_users.extend(dict.fromkeys(user_ids))
    elif kind == DEPT_UPSERT:
        for dept_id in dict.fromkeys(dept_ids):
            try:
                change.departments.append(client.get_department(dept_id))
            except NotFoundError:
                change.gone_departments.append(dept_id)
        _with_ancestors(client, [d.parent_id for d in change.departments if d.parent_id], known_depts, change)
    elif kind == DEPT_REMOVE:
        change.gone_departments.extend(dict.fromkeys(dept_ids))
    else:
        raise ValueError(f"unknown org event kind {kind!r}")
    return change


def apply_change(session: so.Session, corp: Corp, change: OrgChange) -> dict[str, Any]:
    """Write one fetched change; the caller owns the transaction (one per event)."""
    summary: dict[str, Any] = {}
    if change.departments:
        added, updated = apply_departments(session, corp.id, change.departments, None)
        summary["departments"] = {"added": added, "updated": updated}
    if change.users:
        added, updated = apply_users(session, corp, change.users, None)
        summary["users"] = {"added": added, "updated": updated}
    if change.gone_users:
        leavers = session.execute(
            sa.select(User).where(User.corp_id == corp.id, User.platform_userid.in_(change.gone_users))
        ).scalars().all()
        for user in leavers:
            # Deactivates, drops their leaderships and hands their customers over (corp policy).
            deactivate_user(session, corp, user)
        summary["deactivated"] = [u.platform_userid for u in leavers]
    if change.gone_departments:
        gone = session.execute(
            sa.select(Department).where(Department.corp_id == corp.id,
                                        Department.platform_dept_id.in_(change.gone_departments))
        ).scalars().all()
        for dept in gone:
            session.delete(dept)
        session.flush()
        if gone:
            apply_departments(session, corp.id, [], None)  # children of a removed department: new paths
        summary["removed_departments"] = [d.platform_dept_id for d in gone]
    session.flush()
    return summary
