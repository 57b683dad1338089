"""Address-book events applied to our mirror of the org (incremental sync).

Events carry ids only (fact sheet §6), so applying one is two steps: `fetch_change` asks the platform
for the current state of those ids (network, no database transaction open), then `apply_change` writes
it through the same upserts the full sync uses, in one transaction with the leaver handover.
A leave or a department removal is taken from the event itself; joins and changes are re-fetched, and
someone a join or change names who no longer resolves is treated as gone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so

from app.services.org_sync import apply_departments, apply_users, deactivate_user
from integrations.base import (
    NotFoundError,
    PermissionDeniedError,
    PlatformClient,
    PlatformDepartment,
    PlatformUser,
)
from models.org import Corp, Department, DepartmentLeader, User, UserDepartment

log = logging.getLogger(__name__)

USER_UPSERT, USER_LEAVE, DEPT_UPSERT, DEPT_REMOVE = "user_upsert", "user_leave", "dept_upsert", "dept_remove"
USER_RENAME = "user_rename"  # user_ids = (new userid, old userid)
# A change to the visible range that names people and departments without saying whether they are in it
# now (a WeCom tag gained or lost members): each is asked; people no longer visible leave.
USER_RECHECK = "user_recheck"
KINDS = (USER_UPSERT, USER_LEAVE, USER_RENAME, USER_RECHECK, DEPT_UPSERT, DEPT_REMOVE)
# kinds that ask the platform (and may add departments)
FETCHING = (USER_UPSERT, USER_RENAME, USER_RECHECK, DEPT_UPSERT)
# PermissionDeniedError codes that mean "outside the visible range" (WeCom 60011, 60021), as opposed to
# the app losing an API (48002), which must not make everyone leave.
OUT_OF_RANGE_CODES = frozenset({"60011", "60021"})
MAX_ANCESTORS = 64


@dataclass
class OrgChange:
    """What the platform says now about the ids an event named."""

    users: list[PlatformUser] = field(default_factory=list)
    gone_users: list[str] = field(default_factory=list)
    departments: list[PlatformDepartment] = field(default_factory=list)
    gone_departments: list[str] = field(default_factory=list)
    renames: list[tuple[str, str]] = field(default_factory=list)  # (old userid, new userid)
    # Departments whose members were not listed: the nightly full sync brings them in or out.
    members_deferred: list[str] = field(default_factory=list)


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
        except (NotFoundError, PermissionDeniedError):
            # Gone, or outside the visible range (WeCom 60011 for the parent of a top of the range): the
            # department below it is a top for us.
            continue
        change.departments.append(dept)
        fetched.add(dept_id)
        if dept.parent_id and dept.parent_id not in known and dept.parent_id not in fetched:
            queue.append(dept.parent_id)


def fetch_change(client: PlatformClient, kind: str, user_ids: Iterable[str], dept_ids: Iterable[str],
                 known_depts: set[str]) -> OrgChange:
    change = OrgChange()
    if kind == USER_RENAME:
        new, old = (list(user_ids) + ["", ""])[:2]
        if not (new and old):
            raise ValueError("a user_rename event names the new and the old userid")
        change.renames.append((old, new))
        user_ids = [new]
    if kind in (USER_UPSERT, USER_RENAME):
        for userid in dict.fromkeys(user_ids):
            try:
                change.users.append(client.get_user(userid))
            except NotFoundError:
                change.gone_users.append(userid)
        _with_ancestors(client, [d for u in change.users for d in u.department_ids], known_depts, change)
    elif kind == USER_RECHECK:
        _recheck(client, user_ids, dept_ids, known_depts, change)
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


def _recheck(client: PlatformClient, user_ids: Iterable[str], dept_ids: Iterable[str], known_depts: set[str],
             change: OrgChange) -> None:
    for userid in dict.fromkeys(user_ids):
        try:
            change.users.append(client.get_user(userid))
        except NotFoundError:
            change.gone_users.append(userid)  # left, or out of the range (the sandbox answers 60111)
        except PermissionDeniedError as exc:
            if exc.code not in OUT_OF_RANGE_CODES:
                raise
            change.gone_users.append(userid)
    for dept_id in dict.fromkeys(dept_ids):
        try:
            change.departments.append(client.get_department(dept_id))
        except (NotFoundError, PermissionDeniedError):
            # Out of the range now. Kept: it may still be visible otherwise, and a tag event is no
            # proof it was deleted; the nightly sync settles it.
            pass
        # Members are not listed here: a department's people (and its subtree's) are not among the
        # event's ordering keys, so a read of them could overwrite a later leave of one of them.
        change.members_deferred.append(dept_id)
    _with_ancestors(client, [d.parent_id for d in change.departments if d.parent_id]
                    + [d for u in change.users for d in u.department_ids], known_depts, change)


class _Prefetched:
    """A client whose `get_user`/`get_department` answer from what was fetched up front (the same answer
    or error again), and go to the platform for anything else (ancestors found on the way)."""

    def __init__(self, client: PlatformClient) -> None:
        self.client = client
        self.users: dict[str, PlatformUser | Exception] = {}
        self.depts: dict[str, PlatformDepartment | Exception] = {}

    @staticmethod
    def _answer(cache: dict, key: str, fetch: Callable[[str], Any]) -> Any:
        if key not in cache:
            cache[key] = _attempt(fetch, key)
        hit = cache[key]
        if isinstance(hit, Exception):
            raise hit
        return hit

    def get_user(self, userid: str) -> PlatformUser:
        return self._answer(self.users, userid, self.client.get_user)

    def get_department(self, dept_id: str) -> PlatformDepartment:
        return self._answer(self.depts, dept_id, self.client.get_department)


def _attempt(fetch: Callable[[str], Any], key: str) -> Any:
    try:
        return fetch(key)
    except Exception as exc:  # kept and raised again for each event that needs it
        return exc


def _asks(kind: str, user_ids: Sequence[str], dept_ids: Sequence[str]) -> tuple[list[str], list[str]]:
    """The users and departments an event of `kind` will ask the platform for first."""
    if kind == USER_UPSERT:
        return list(user_ids), []
    if kind == USER_RENAME:
        return list(user_ids[:1]), []
    if kind == USER_RECHECK:
        return list(user_ids), list(dept_ids)
    if kind == DEPT_UPSERT:
        return [], list(dept_ids)
    return [], []


def fetch_changes(client: PlatformClient, events: Sequence[tuple[str, Sequence[str], Sequence[str]]],
                  known_depts: set[str], *, run: Callable = map) -> list[OrgChange | Exception]:
    """`fetch_change` for several events (kind, user ids, department ids) at once: each person and
    department is asked for once however many events name them, and the distinct calls go through
    `run` (a thread pool's `map`) so they overlap instead of queueing one after another: the shared
    rate limiter, not this loop, sets the pace. One result per event, in order: its change, or the
    exception that event would have raised on its own."""
    cache = _Prefetched(client)
    users: dict[str, None] = {}
    depts: dict[str, None] = {}
    for kind, user_ids, dept_ids in events:
        asked_users, asked_depts = _asks(kind, user_ids, dept_ids)
        users.update(dict.fromkeys(asked_users))
        depts.update(dict.fromkeys(asked_depts))
    for userid, answer in zip(users, run(lambda u: _attempt(client.get_user, u), list(users)), strict=True):
        cache.users[userid] = answer
    for dept_id, answer in zip(depts, run(lambda d: _attempt(client.get_department, d), list(depts)), strict=True):
        cache.depts[dept_id] = answer
    results: list[OrgChange | Exception] = []
    for kind, user_ids, dept_ids in events:
        try:
            # A new department two events need is asked for once and written with both (an upsert).
            results.append(fetch_change(cache, kind, user_ids, dept_ids, known_depts))
        except Exception as exc:
            results.append(exc)
    return results


def apply_change(session: so.Session, corp: Corp, change: OrgChange) -> dict[str, Any]:
    """Write one fetched change; the caller owns the transaction (one per event)."""
    summary: dict[str, Any] = {}
    if change.renames:
        summary["renamed"], conflicts = _rename_users(session, corp, change.renames)
        if conflicts:
            summary["rename_conflicts"] = conflicts
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
    if change.members_deferred:
        summary["members_left_to_full_sync"] = list(change.members_deferred)
    session.flush()
    return summary


# Rows that belong to a user record itself rather than to the person's work.
_OWN_ROWS = frozenset({UserDepartment.__table__.name, DepartmentLeader.__table__.name})


def _referenced(session: so.Session, user_pk: int) -> bool:
    """Whether anything besides the person's own memberships points at this user row."""
    users = User.__table__
    for table in users.metadata.sorted_tables:
        if table.name in _OWN_ROWS:
            continue
        for fk in table.foreign_keys:
            if fk.column.table is users and session.execute(
                    sa.select(sa.literal(1)).select_from(table).where(fk.parent == user_pk).limit(1)).first():
                return True
    return False


def _rename_users(session: so.Session, corp: Corp,
                  renames: list[tuple[str, str]]) -> tuple[list[str], list[str]]:
    """A changed userid is the same person: the row keeps its id, so their customers, follow-ups and
    approvals stay theirs. A row already under the new userid that nothing refers to (an event or a sync
    that read the new id before this one) is a duplicate and gives way; one that is in use is left alone
    and reported, since merging two people's records is a decision for an admin."""
    renamed, conflicts = [], []
    for old, new in renames:
        if old == new:
            continue
        rows = {u.platform_userid: u for u in session.execute(
            sa.select(User).where(User.corp_id == corp.id, User.platform_userid.in_([old, new]))).scalars()}
        before, after = rows.get(old), rows.get(new)
        if before is None:
            continue  # never synced, or renamed already (a redelivery): the upsert covers the new id
        if after is not None:
            if _referenced(session, after.id):
                log.warning("corp %s: userid %s renamed to %s, but %s is already in use: both rows kept",
                            corp.id, old, new, new)
                conflicts.append(f"{old}->{new}")
                continue
            for own in (UserDepartment, DepartmentLeader):
                session.execute(sa.delete(own).where(own.user_id == after.id))
            session.delete(after)
            session.flush()
        before.platform_userid = new
        session.flush()
        renamed.append(f"{old}->{new}")
    return renamed, conflicts
