"""Org sync: mirror the platform's departments and users into the database.

A full sync walks the tree from the root (one level at a time, the children of a level fetched in
parallel), then pages every department's users with the cursor, departments in parallel. The client's
shared rate limiter decides how fast calls may go; the thread count only has to be enough to keep it busy.
Results are applied by one thread, a department at a time, each in its own transaction, and the run's
checkpoint records which departments are done, so a crash resumes instead of starting again. When every
department is done, users and departments that this run never saw are deactivated (with handover) or
removed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
import sqlalchemy.orm as so

from app.services.handover import hand_over
from integrations.base import PlatformClient, PlatformDepartment, PlatformError, PlatformUser
from models.db import Database
from models.org import Corp, Department, DepartmentLeader, User, UserDepartment
from models.platform import SyncKind, SyncRun, SyncStatus
from models.types import utcnow

log = logging.getLogger(__name__)
MAX_ERRORS = 50
RESUME_WINDOW = timedelta(hours=24)


class SyncFailed(RuntimeError):
    pass


class _Counter:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls = 0

    def wrap(self, fn: Callable, *args):
        with self._lock:
            self.calls += 1
        return fn(*args)


# ----------------------------------------------------------------------------- applying


def apply_departments(
    session: so.Session,
    corp_id: int,
    depts: Iterable[PlatformDepartment],
    run_id: int | None,
) -> tuple[int, int]:
    """Upsert departments (parents may come in any order) and recompute materialised paths for the corp."""
    existing = {
        d.platform_dept_id: d
        for d in session.execute(sa.select(Department).where(Department.corp_id == corp_id)).scalars()
    }
    added = updated = 0
    incoming = list(depts)
    for pd in incoming:
        row = existing.get(pd.dept_id)
        if row is None:
            row = Department(
                corp_id=corp_id, platform_dept_id=pd.dept_id, name=pd.name, sort_order=pd.order, path="/", depth=0
            )
            session.add(row)
            existing[pd.dept_id] = row
            added += 1
        elif (row.name, row.sort_order, row.active) != (pd.name, pd.order, True):
            row.name, row.sort_order, row.active = pd.name, pd.order, True
            updated += 1
        row.last_sync_run_id = run_id if run_id is not None else row.last_sync_run_id
    session.flush()
    for pd in incoming:
        parent = existing.get(pd.parent_id) if pd.parent_id else None
        existing[pd.dept_id].parent_id = parent.id if parent else None
    _recompute_paths(existing.values())
    session.flush()
    return added, updated


def _recompute_paths(depts: Iterable[Department]) -> None:
    by_id = {d.id: d for d in depts}
    resolved: dict[int, tuple[str, int]] = {}

    def path_of(dept: Department, guard: int = 0) -> tuple[str, int]:
        if dept.id in resolved:
            return resolved[dept.id]
        parent = by_id.get(dept.parent_id) if dept.parent_id else None
        if parent is None or guard > 64:  # a cycle from a half-applied move must not hang the sync
            result = (f"/{dept.id}/", 0)
        else:
            ppath, pdepth = path_of(parent, guard + 1)
            result = (f"{ppath}{dept.id}/", pdepth + 1)
        resolved[dept.id] = result
        return result

    for dept in by_id.values():
        path, depth = path_of(dept)
        if dept.path != path or dept.depth != depth:
            dept.path, dept.depth = path, depth


def apply_users(
    session: so.Session,
    corp: Corp,
    users: Iterable[PlatformUser],
    run_id: int | None,
) -> tuple[int, int]:
    """Upsert users, their memberships (several departments) and the departments they lead."""
    batch = {u.userid: u for u in users}
    if not batch:
        return 0, 0
    depts = dict(
        session.execute(
            sa.select(Department.platform_dept_id, Department.id).where(Department.corp_id == corp.id)
        ).all()
    )
    rows = {
        u.platform_userid: u
        for u in session.execute(
            sa.select(User).where(User.corp_id == corp.id, User.platform_userid.in_(list(batch)))
        ).scalars()
    }
    added = updated = 0
    for userid, pu in batch.items():
        row = rows.get(userid)
        if row is not None and run_id is not None and row.last_sync_run_id == run_id:
            continue  # listed again under another of their departments
        fields = {
            "name": pu.name,
            "unionid": pu.unionid,
            "title": pu.title,
            "mobile": pu.mobile,
            "email": pu.email,
            "avatar": pu.avatar,
            "active": pu.active,
        }
        main = depts.get(pu.main_department_id) if pu.main_department_id else None
        if main is None and pu.department_ids:
            main = depts.get(pu.department_ids[0])
        if row is None:
            row = User(corp_id=corp.id, platform_userid=userid, main_department_id=main, **fields)
            session.add(row)
            rows[userid] = row
            added += 1
        else:
            before = {k: getattr(row, k) for k in fields} | {"main": row.main_department_id}
            for key, value in fields.items():
                setattr(row, key, value)
            row.main_department_id = main
            if row.left_at is not None and pu.active:
                row.left_at = None  # re-hired: same userid, same row
            if before != {k: getattr(row, k) for k in fields} | {"main": row.main_department_id}:
                updated += 1
        row.last_sync_run_id = run_id if run_id is not None else row.last_sync_run_id
    session.flush()
    ids = [rows[u].id for u in batch]
    session.execute(sa.delete(UserDepartment).where(UserDepartment.user_id.in_(ids)))
    session.execute(sa.delete(DepartmentLeader).where(DepartmentLeader.user_id.in_(ids)))
    memberships, leaderships = [], []
    for userid, pu in batch.items():
        uid = rows[userid].id
        for dept_id in dict.fromkeys(pu.department_ids):
            if dept_id in depts:
                memberships.append(
                    {
                        "corp_id": corp.id,
                        "user_id": uid,
                        "department_id": depts[dept_id],
                        "sort_order": pu.department_orders.get(dept_id, 0),
                    }
                )
        for dept_id in dict.fromkeys(pu.leader_of):
            if dept_id in depts:
                leaderships.append({"corp_id": corp.id, "user_id": uid, "department_id": depts[dept_id]})
    if memberships:
        session.execute(sa.insert(UserDepartment), memberships)
    if leaderships:
        session.execute(sa.insert(DepartmentLeader), leaderships)
    return added, updated


def deactivate_user(session: so.Session, corp: Corp, user: User) -> None:
    if not user.active:
        return
    user.active = False
    user.left_at = utcnow()
    session.execute(sa.delete(DepartmentLeader).where(DepartmentLeader.user_id == user.id))
    hand_over(session, corp, user)


# ----------------------------------------------------------------------------- the full sync


def _open_run(database: Database, corp_id: int) -> SyncRun:
    with database.session() as s:
        # A run that crashed (still "running") or failed recently is continued, not restarted.
        run = s.execute(
            sa.select(SyncRun)
            .where(
                SyncRun.corp_id == corp_id,
                SyncRun.kind == SyncKind.FULL,
                SyncRun.status.in_([SyncStatus.RUNNING, SyncStatus.FAILED]),
                SyncRun.started_at > utcnow() - RESUME_WINDOW,
            )
            .order_by(SyncRun.id.desc())
            .limit(1)
        ).scalar()
        if run is not None:
            run.status, run.finished_at = SyncStatus.RUNNING, None
        else:
            run = SyncRun(corp_id=corp_id, kind=SyncKind.FULL, status=SyncStatus.RUNNING, checkpoint={})
            s.add(run)
            s.flush()
        return run


def _save(database: Database, run_id: int, **values) -> None:
    with database.session() as s:
        run = s.get(SyncRun, run_id)
        for key, value in values.items():
            if key in {"added", "updated", "deactivated", "removed", "calls_made", "done"}:
                setattr(run, key, getattr(run, key) + value)
            else:
                setattr(run, key, value)
        run.heartbeat_at = utcnow()


def _record_error(database: Database, run_id: int, where: str, exc: PlatformError) -> None:
    with database.session() as s:
        run = s.get(SyncRun, run_id)
        if len(run.errors) < MAX_ERRORS:
            run.errors = [
                *run.errors,
                {"at": datetime.now(UTC).isoformat(), "where": where, "code": exc.code, "cause": exc.cause},
            ]


def _walk_tree(client: PlatformClient, counter: _Counter, pool: ThreadPoolExecutor) -> list[PlatformDepartment]:
    root = counter.wrap(client.get_department, client.root_department_id())
    found = [root]
    level = [root.dept_id]
    while level:
        children = list(pool.map(lambda d: counter.wrap(client.list_sub_departments, d), level))
        level = []
        for kids in children:
            found.extend(kids)
            level.extend(k.dept_id for k in kids)
    return found


def _dept_users(client: PlatformClient, counter: _Counter, dept_id: str) -> list[PlatformUser]:
    users, cursor = [], None
    while True:
        page = counter.wrap(client.list_department_users, dept_id, cursor)
        users.extend(page.users)
        if page.next_cursor is None:
            return users
        cursor = page.next_cursor


def full_sync(database: Database, corp_id: int, client: PlatformClient, *, threads: int = 8) -> SyncRun:
    """Run (or resume) the corp's full sync; returns the finished SyncRun."""
    run = _open_run(database, corp_id)
    started = time.monotonic()
    counter = _Counter()
    done_depts: set[str] = set(run.checkpoint.get("done", []))
    try:
        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="org-sync") as pool:
            tree = _walk_tree(client, counter, pool)
            with database.session() as s:
                added, updated = apply_departments(s, corp_id, tree, run.id)
            _save(database, run.id, added=added, updated=updated, total=len(tree), calls_made=counter.calls)
            counter.calls = 0
            todo = [d.dept_id for d in tree if d.dept_id not in done_depts]
            for dept_id, users in zip(todo, pool.map(lambda d: _dept_users(client, counter, d), todo), strict=True):
                with database.session() as s:
                    corp = s.get(Corp, corp_id)
                    added, updated = apply_users(s, corp, users, run.id)
                    done_depts.add(dept_id)
                    run_row = s.get(SyncRun, run.id)
                    run_row.added += added
                    run_row.updated += updated
                    run_row.done = len(done_depts)
                    run_row.calls_made += counter.calls
                    counter.calls = 0
                    run_row.heartbeat_at = utcnow()
                    run_row.checkpoint = {"done": sorted(done_depts)}
        _finish(database, corp_id, run.id, started)
    except PlatformError as exc:
        _record_error(database, run.id, "full sync", exc)
        _save(database, run.id, status=SyncStatus.FAILED, finished_at=utcnow(), calls_made=counter.calls)
        raise SyncFailed(exc.cause) from exc
    with database.session() as s:
        return s.get(SyncRun, run.id)


def _finish(database: Database, corp_id: int, run_id: int, started: float) -> None:
    """Everything was seen: what this run did not see is gone."""
    with database.session() as s:
        corp = s.get(Corp, corp_id)
        gone_users = (
            s.execute(
                sa.select(User).where(
                    User.corp_id == corp_id,
                    User.active.is_(True),
                    sa.or_(User.last_sync_run_id.is_(None), User.last_sync_run_id != run_id),
                )
            )
            .scalars()
            .all()
        )
        for user in gone_users:
            deactivate_user(s, corp, user)
        gone_depts = (
            s.execute(
                sa.select(Department).where(
                    Department.corp_id == corp_id,
                    sa.or_(Department.last_sync_run_id.is_(None), Department.last_sync_run_id != run_id),
                )
            )
            .scalars()
            .all()
        )
        for dept in gone_depts:
            s.delete(dept)
        run = s.get(SyncRun, run_id)
        run.deactivated += len(gone_users)
        run.removed += len(gone_depts)
        run.status = SyncStatus.SUCCEEDED
        run.finished_at = utcnow()
        run.heartbeat_at = run.finished_at
        log.info("org sync corp=%s run=%s done in %.1fs", corp_id, run_id, time.monotonic() - started)
