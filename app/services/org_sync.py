"""Org sync: mirror the platform's departments and users into the database.

A full sync is a pipeline of three kinds of work running at once:
- the tree walk lists each department's children (`listsub`), every department a task on its own pool;
- the user listing pages through each department's users with the cursor, on a second pool;
- one applier (the calling thread) writes what arrives, in bulk and in chunks.
The two pools call different APIs, and DingTalk's limit is per API (fact sheet §2.3), so they overlap; the
client's shared rate limiter (one for every process of the corp) decides how fast each API may go, and
the pools only need enough threads to keep it busy. A department's users are listed only after the
department row exists, so memberships always find their department.

Each chunk of users is one transaction that also moves the run's checkpoint (departments whose listing is
complete) and its progress, so another process reads progress from the database and a crashed run
resumes where its last chunk left it. When every department is done, users and departments this run
never saw are deactivated (with handover) or removed.

Nothing holds the whole org in memory: users stream through a bounded queue into chunks; only the
department map (a few thousand small entries) and the set of finished department ids stay resident.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so

from app.services import bulk
from app.services.handover import hand_over
from integrations.base import (
    PlatformClient,
    PlatformDepartment,
    PlatformError,
    PlatformUser,
    RetryableError,
)
from integrations.dingtalk.sqlutil import upsert_insert
from models.db import Database
from models.org import Corp, Department, DepartmentLeader, Role, User, UserDepartment
from models.platform import SyncKind, SyncRun, SyncStatus
from models.types import utcnow

log = logging.getLogger(__name__)
MAX_ERRORS = 50
RESUME_WINDOW = timedelta(hours=24)
# A RUNNING run whose heartbeat is older than this was killed: the next sync takes it over.
STALE_AFTER = timedelta(seconds=60)
HEARTBEAT_EVERY = 5.0
PROGRESS_EVERY = 3.0  # seconds between chunk commits when users trickle in (the console polls progress)
DEPT_BATCH_WAIT = 0.5  # seconds departments may wait to be written together
# User listings written per transaction. Larger chunks spread the per-transaction cost (session, reads of
# who exists, the checkpoint) thinner: 5,000 applied ~10 % faster than 2,000 on PostgreSQL. A sync that
# receives users slower than that commits every PROGRESS_EVERY seconds instead.
CHUNK_USERS = 5000
TRANSIENT_RETRIES = 3  # DingTalk: retry "system busy" at most 3 times (§2.1)
# The listing of people the visible range names one by one (WeCom): it has no department of ours, so
# its sightings write no membership, but it is checkpointed like a department listing.
DIRECT_LISTING = "@direct"


class SyncFailed(RuntimeError):
    pass


class SyncAlreadyRunning(SyncFailed):
    """Another process is running this corp's full sync right now (its heartbeat is fresh)."""


class _Stopped(Exception):
    """Raised inside a worker when the sync is being abandoned; never reported."""


@dataclass
class SyncStats:
    """Figures of one `full_sync` call (this attempt only), for benchmarks and logs."""

    api_calls: int = 0
    users_applied: int = 0  # user sightings written (a person in 3 departments counts 3)
    apply_seconds: float = 0.0  # time spent writing user chunks
    dept_seconds: float = 0.0
    chunks: int = 0
    wall_seconds: float = 0.0
    skipped_departments: int = 0  # finished by an earlier attempt of the same run
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def apply_rate(self) -> float:
        return self.users_applied / self.apply_seconds if self.apply_seconds else 0.0


# ----------------------------------------------------------------------------- applying (events and small batches)


def apply_departments(
    session: so.Session,
    corp_id: int,
    depts: Iterable[PlatformDepartment],
    run_id: int | None,
) -> tuple[int, int]:
    """Upsert departments (parents may come in any order) and recompute materialised paths for the corp.

    Another transaction may insert the same new department at the same moment (two event appliers, or an
    event applier and a full sync): new rows go in with INSERT … ON CONFLICT DO NOTHING and are read back,
    so whoever comes second adopts the first one's row instead of failing on the unique key."""
    existing = {
        d.platform_dept_id: d
        for d in session.execute(sa.select(Department).where(Department.corp_id == corp_id)).scalars()
    }
    added = updated = 0
    incoming = list(depts)
    fresh = {pd.dept_id: pd for pd in incoming if pd.dept_id not in existing}
    if fresh:
        now = utcnow()
        t = Department.__table__
        stmt = (upsert_insert(session, t)
                .on_conflict_do_nothing(index_elements=["corp_id", "platform_dept_id"])
                .returning(t.c.platform_dept_id))
        ours = set(session.execute(stmt, [
            {"corp_id": corp_id, "platform_dept_id": pd.dept_id, "name": pd.name[:200], "sort_order": pd.order,
             "path": "/", "depth": 0, "active": True, "last_sync_run_id": run_id, "created_at": now,
             "updated_at": now} for pd in fresh.values()]).scalars())
        added = len(ours)
        for row in session.execute(sa.select(Department).where(
                Department.corp_id == corp_id, Department.platform_dept_id.in_(list(fresh)))).scalars():
            existing[row.platform_dept_id] = row
    for pd in incoming:
        row = existing[pd.dept_id]
        if (row.name, row.sort_order, row.active) != (pd.name[:200], pd.order, True):
            row.name, row.sort_order, row.active = pd.name[:200], pd.order, True
            updated += pd.dept_id not in fresh
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

    def fields_of(pu: PlatformUser) -> dict[str, Any]:
        return {"name": pu.name, "unionid": pu.unionid, "title": pu.title, "mobile": pu.mobile,
                "email": pu.email, "avatar": pu.avatar, "active": pu.active}

    def main_of(pu: PlatformUser) -> int | None:
        main = depts.get(pu.main_department_id) if pu.main_department_id else None
        if main is None and pu.department_ids:
            main = depts.get(pu.department_ids[0])
        return main

    fresh = [userid for userid in batch if userid not in rows]
    ours: set[str] = set()
    if fresh:
        # Another transaction may be adding the same person right now (an event applier and a full sync):
        # ON CONFLICT DO NOTHING waits for it and then adopts its row, instead of failing on the unique key.
        now = utcnow()
        t = User.__table__
        stmt = (upsert_insert(session, t)
                .on_conflict_do_nothing(index_elements=["corp_id", "platform_userid"])
                .returning(t.c.platform_userid))
        ours = set(session.execute(stmt, [
            {"corp_id": corp.id, "platform_userid": userid, **fields_of(batch[userid]),
             "main_department_id": main_of(batch[userid]), "role": Role.SALESPERSON.value,
             "last_sync_run_id": run_id, "created_at": now, "updated_at": now} for userid in fresh]).scalars())
        added = len(ours)
        for row in session.execute(sa.select(User).where(
                User.corp_id == corp.id, User.platform_userid.in_(fresh))).scalars():
            rows[row.platform_userid] = row
    for userid, pu in batch.items():
        row = rows[userid]
        if userid in ours or (run_id is not None and row.last_sync_run_id == run_id):
            continue  # just inserted, or listed again under another of their departments
        fields = fields_of(pu)
        main = main_of(pu)
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
    # The same concurrent applier may be writing these very memberships: the first one's rows stand.
    if memberships:
        session.execute(upsert_insert(session, UserDepartment.__table__)
                        .on_conflict_do_nothing(index_elements=["user_id", "department_id"]), memberships)
    if leaderships:
        session.execute(upsert_insert(session, DepartmentLeader.__table__)
                        .on_conflict_do_nothing(index_elements=["department_id", "user_id"]), leaderships)
    return added, updated


def deactivate_user(session: so.Session, corp: Corp, user: User) -> None:
    if not user.active:
        return
    user.active = False
    user.left_at = utcnow()
    session.execute(sa.delete(DepartmentLeader).where(DepartmentLeader.user_id == user.id))
    hand_over(session, corp, user)


# ----------------------------------------------------------------------------- bulk apply for the full sync


@dataclass
class _DeptInfo:
    id: int
    path: str
    depth: int


def _load_depts(session: so.Session, corp_id: int) -> dict[str, tuple]:
    t = Department.__table__
    rows = session.execute(
        sa.select(t.c.platform_dept_id, t.c.id, t.c.name, t.c.sort_order, t.c.parent_id, t.c.path, t.c.depth,
                  t.c.active).where(t.c.corp_id == corp_id)
    ).all()
    return {r.platform_dept_id: tuple(r) for r in rows}


def apply_department_batch(
    session: so.Session,
    corp_id: int,
    depts: list[PlatformDepartment],
    run_id: int,
    existing: dict[str, tuple],
    known: dict[str, _DeptInfo],
) -> tuple[int, int]:
    """Upsert departments that arrive parents first (a breadth-first walk), computing each path from its
    parent's: `known` holds what this run has applied so far, `existing` what the database had before."""
    t = Department.__table__
    fresh = [d for d in depts if d.dept_id not in existing and d.dept_id not in known]
    now = utcnow()
    ids: dict[str, int] = {}
    if fresh:
        rows = [{"corp_id": corp_id, "platform_dept_id": d.dept_id, "name": d.name[:200], "sort_order": d.order,
                 "path": "/", "depth": 0, "active": True, "last_sync_run_id": run_id, "created_at": now,
                 "updated_at": now} for d in {d.dept_id: d for d in fresh}.values()]
        ids = {pid: pk for pk, pid in bulk.insert_rows(session, t, rows, returning=("id", "platform_dept_id"),
                                                        conflict=("corp_id", "platform_dept_id"))}
        inserted = len(ids)
        taken = [r["platform_dept_id"] for r in rows if r["platform_dept_id"] not in ids]
        if taken:  # an event applier inserted them a moment ago: adopt its rows (updated below)
            ids.update(session.execute(sa.select(t.c.platform_dept_id, t.c.id).where(
                t.c.corp_id == corp_id, t.c.platform_dept_id.in_(taken))).all())
    updates = []
    updated = 0
    for d in depts:
        parent = known.get(d.parent_id) if d.parent_id else None
        if d.dept_id in ids:
            pk = ids[d.dept_id]
            before = None
        else:
            before = existing.get(d.dept_id)
            pk = before[1] if before else known[d.dept_id].id
        path = f"{parent.path}{pk}/" if parent else f"/{pk}/"
        depth = parent.depth + 1 if parent else 0
        known[d.dept_id] = _DeptInfo(pk, path, depth)
        values = {"name": d.name[:200], "sort_order": d.order, "parent_id": parent.id if parent else None,
                  "path": path, "depth": depth, "active": True}
        if before is not None:
            old = dict(zip(("name", "sort_order", "parent_id", "path", "depth", "active"), before[2:], strict=True))
            if (old["name"], old["sort_order"], old["parent_id"], bool(old["active"])) != (
                    values["name"], values["sort_order"], values["parent_id"], True):
                updated += 1
        updates.append({"id": pk, **values, "last_sync_run_id": run_id, "updated_at": now})
    bulk.update_rows(session, t, list({u["id"]: u for u in updates}.values()))
    return (inserted if fresh else 0), updated


_USER_FIELDS = ("name", "unionid", "title", "mobile", "email", "avatar", "active")


def _user_values(pu: PlatformUser) -> dict[str, Any]:
    """The user's columns, clipped to their sizes (PostgreSQL rejects a longer value; None stays None)."""
    return {"name": (pu.name or "")[:100], "unionid": pu.unionid and pu.unionid[:64],
            "title": pu.title and pu.title[:100], "mobile": pu.mobile and pu.mobile[:32],
            "email": pu.email and pu.email[:200], "avatar": pu.avatar and pu.avatar[:500], "active": pu.active}


def apply_listings(
    session: so.Session,
    corp_id: int,
    sightings: Iterable[tuple[str, PlatformUser]],
    run_id: int,
    dept_ids: dict[str, int],
) -> tuple[int, int, int]:
    """Write a chunk of `(listed department, user)` sightings from department listings, in bulk.

    One person listed under several departments is written once, from their last sighting; each listing
    is the authority on that one membership (its sort order, whether they lead it), and the person's
    `department_ids` on which memberships still exist. `dept_ids` maps platform department ids to ours.
    Returns (added, updated, rows written)."""
    merged: dict[str, PlatformUser] = {}
    listed: dict[str, dict[str, tuple[int, bool]]] = {}
    for dept, pu in sightings:
        merged[pu.userid] = pu
        listed.setdefault(pu.userid, {})[dept] = (int(pu.department_orders.get(dept, 0)), dept in pu.leader_of)
    if not merged:
        return 0, 0, 0
    if session.get_bind().dialect.name == "postgresql":
        # Not waiting for the WAL flush at commit (this transaction only): a crash may lose the last chunks
        # committed, never half of one, and losing them is harmless: the checkpoint commits after its data, so it
        # is lost with it, and the resumed run lists those departments again; the upserts absorb the repeat.
        session.execute(sa.text("SET LOCAL synchronous_commit = off"))
    u = User.__table__
    existing = {
        r.platform_userid: r
        for r in session.execute(
            sa.select(u.c.id, u.c.platform_userid, u.c.main_department_id, u.c.left_at, u.c.last_sync_run_id,
                      *[u.c[k] for k in _USER_FIELDS])
            .where(u.c.corp_id == corp_id, bulk.any_of(session, u.c.platform_userid, merged))
        ).all()
    }
    now = utcnow()
    inserts, updates, touch = [], [], []
    added = updated = 0
    for userid, pu in merged.items():
        values = _user_values(pu)
        row = existing.get(userid)
        main = dept_ids.get(pu.main_department_id) if pu.main_department_id else None
        if main is None and row is not None and row.main_department_id is not None:
            main = row.main_department_id
        if main is None:
            main = next((dept_ids[d] for d in listed[userid] if d in dept_ids), None)
        if row is None:
            inserts.append({"platform_userid": userid, **values, "main_department_id": main})
            continue
        # Row columns 5… are _USER_FIELDS, the order _user_values gives too (an unchanged re-sync test
        # counts zero updates, so a mismatch would not go unnoticed).
        same = tuple(row)[5:] == tuple(values.values()) and row.main_department_id == main
        rehired = row.left_at is not None and pu.active
        if same and not rehired:
            if row.last_sync_run_id != run_id:
                touch.append(row.id)
            continue
        if row.last_sync_run_id != run_id:  # a second sighting in this run completes it, it is no change
            updated += 1
        updates.append({"id": row.id, **values, "main_department_id": main,
                        "left_at": None if rehired else row.left_at, "last_sync_run_id": run_id, "updated_at": now})
    ids = {userid: row.id for userid, row in existing.items()}
    if inserts:
        for pk, userid in bulk.insert_rows(
                session, u, inserts, returning=("id", "platform_userid"), conflict=("corp_id", "platform_userid"),
                const={"corp_id": corp_id, "last_sync_run_id": run_id, "role": Role.SALESPERSON.value,
                       "created_at": now, "updated_at": now}):
            ids[userid] = pk
        added = sum(1 for r in inserts if r["platform_userid"] in ids)
        taken = {r["platform_userid"]: r for r in inserts if r["platform_userid"] not in ids}
        if taken:
            # An event applier inserted these people a moment ago: adopt its rows and write this listing.
            for pk, userid in session.execute(sa.select(u.c.id, u.c.platform_userid).where(
                    u.c.corp_id == corp_id, u.c.platform_userid.in_(list(taken)))).all():
                ids[userid] = pk
                row = taken[userid]
                updates.append({"id": pk, **_user_values(merged[userid]),
                                "main_department_id": row["main_department_id"], "left_at": None,
                                "last_sync_run_id": run_id, "updated_at": now})
    bulk.update_rows(session, u, updates)
    if touch:
        # Only the run stamp, by which `_finish` tells who is gone; nothing about these people changed, so
        # `updated_at` keeps its value (naming it stops the column's onupdate default).
        session.execute(u.update().where(bulk.any_of(session, u.c.id, touch))
                        .values(last_sync_run_id=run_id, updated_at=u.c.updated_at))

    # Memberships and leadership: one row per listing. Known people's current rows are read first, so only
    # new or moved memberships and new leaderships are sent; an unchanged org writes none of them.
    ud, dl = UserDepartment.__table__, DepartmentLeader.__table__
    old_people = [ids[userid] for userid in merged if userid in existing]
    have: dict[tuple[int, int], int] = {}
    led: set[tuple[int, int]] = set()
    if old_people:
        have = {(a, b): order for a, b, order in session.execute(
            sa.select(ud.c.user_id, ud.c.department_id, ud.c.sort_order)
            .where(bulk.any_of(session, ud.c.user_id, old_people))).all()}
        led = {(a, b) for a, b in session.execute(sa.select(dl.c.user_id, dl.c.department_id)
                                                  .where(bulk.any_of(session, dl.c.user_id, old_people))).all()}
    members, leads, unlead = [], [], []
    for userid, where in listed.items():
        uid = ids[userid]
        for dept, (order, leader) in where.items():
            did = dept_ids.get(dept)
            if did is None:
                continue
            if have.get((uid, did)) != order:
                members.append({"user_id": uid, "department_id": did, "sort_order": order})
            if not leader:
                unlead.append((uid, did))
            elif (uid, did) not in led:
                leads.append((uid, did))
    # Upserts still: a concurrent event applier may be writing the same rows; the first one's rows stand.
    bulk.insert_rows(session, ud, members, conflict=("user_id", "department_id"), update=("sort_order",),
                     const={"corp_id": corp_id})
    bulk.insert_rows(session, dl, [{"user_id": a, "department_id": b} for a, b in leads],
                     conflict=("department_id", "user_id"), const={"corp_id": corp_id})
    # Departments a known person no longer belongs to, and leaderships they gave up. New people have none.
    if old_people:
        by_pk = {pk: pid for pid, pk in dept_ids.items()}
        belongs = {ids[userid]: set(pu.department_ids) for userid, pu in merged.items() if pu.department_ids}
        olds = set(old_people)
        rows_now = have.keys() | {(m["user_id"], m["department_id"]) for m in members if m["user_id"] in olds}
        stale = {(a, b) for a, b in rows_now
                 if a in belongs and by_pk.get(b) is not None and by_pk[b] not in belongs[a]}
        dropped = set(unlead) | stale
        gone_leads = [p for p in led | {p for p in leads if p[0] in olds} if p in dropped]
        bulk.delete_pairs(session, ud, "user_id", "department_id", stale)
        bulk.delete_pairs(session, dl, "user_id", "department_id", gone_leads)
    return added, updated, len(members) + len(inserts) + len(updates)


def write_listings(
    database: Database,
    corp_id: int,
    sightings: list[tuple[str, PlatformUser]],
    run_id: int,
    dept_ids: dict[str, int],
    *,
    writers: int = 1,
    pool: ThreadPoolExecutor | None = None,
) -> tuple[int, int]:
    """`apply_listings` for one chunk, split by person over `writers` transactions running at once.

    PostgreSQL spends most of a chunk on per-row foreign-key checks and index updates in one backend, so
    a second connection roughly doubles what the database applies on two cores. Each person lands in
    exactly one part (all of their listings together), so parts never touch the same rows; a crash between
    the parts' commits only means the next run writes some rows again, which upserts absorb."""
    if writers <= 1 or pool is None or database.dialect != "postgresql" or len(sightings) < 2 * writers:
        with database.session() as s:
            added, updated, _ = apply_listings(s, corp_id, sightings, run_id, dept_ids)
        return added, updated
    parts: list[list[tuple[str, PlatformUser]]] = [[] for _ in range(writers)]
    for dept, pu in sightings:
        parts[hash(pu.userid) % writers].append((dept, pu))

    def write(part: list[tuple[str, PlatformUser]]) -> tuple[int, int]:
        with database.session() as s:
            added, updated, _ = apply_listings(s, corp_id, part, run_id, dept_ids)
        return added, updated

    results = list(pool.map(write, [p for p in parts if p]))
    return sum(a for a, _ in results), sum(u for _, u in results)


# ----------------------------------------------------------------------------- the full sync


def open_run(database: Database, corp_id: int) -> SyncRun:
    """The corp's full-sync run to work on: a crashed or failed recent one is continued, not restarted;
    one that is alive in another process (fresh heartbeat) makes this raise `SyncAlreadyRunning`."""
    with database.session() as s:
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
            .with_for_update()
        ).scalar()
        if run is not None and run.status == SyncStatus.RUNNING:
            beat = run.heartbeat_at or run.started_at
            if beat > utcnow() - STALE_AFTER:
                raise SyncAlreadyRunning(
                    f"组织同步正在进行（运行 #{run.id}）/ an org sync is already running (run #{run.id})")
        if run is not None:
            run.status, run.finished_at, run.heartbeat_at = SyncStatus.RUNNING, None, utcnow()
        else:
            run = SyncRun(corp_id=corp_id, kind=SyncKind.FULL, status=SyncStatus.RUNNING, checkpoint={},
                          heartbeat_at=utcnow())
            s.add(run)
            s.flush()
        return run


def _record_error(database: Database, run_id: int, where: str, exc: BaseException) -> None:
    code = exc.code if isinstance(exc, PlatformError) else type(exc).__name__
    cause = exc.cause if isinstance(exc, PlatformError) else (str(exc).splitlines() or [""])[0][:300]
    with database.session() as s:
        run = s.get(SyncRun, run_id)
        if len(run.errors) < MAX_ERRORS:
            run.errors = [*run.errors, {"at": datetime.now(UTC).isoformat(), "where": where, "code": code,
                                        "cause": cause}]


class _FullSync:
    def __init__(self, database: Database, corp_id: int, client: PlatformClient, run: SyncRun, *, threads: int,
                 chunk_users: int, stats: SyncStats, sleep: Callable[[float], None],
                 progress_every: float = PROGRESS_EVERY, writers: int = 1) -> None:
        self.db = database
        self.corp_id = corp_id
        self.client = client
        self.run_id = run.id
        self.threads = max(1, threads)
        self.chunk_users = chunk_users
        self.progress_every = progress_every
        self.stats = stats
        self._sleep = sleep
        self.stop = threading.Event()
        # Bounded: a slow database makes the listing threads wait instead of piling users up in memory.
        self.q: queue.Queue = queue.Queue(maxsize=max(64, 4 * self.threads))
        self._lock = threading.Lock()
        self.calls = 0
        self.walk_pending = 0
        self.done: set[str] = set(run.checkpoint.get("done", []))
        self.previously_done = frozenset(self.done)
        self.walked: set[str] = set()
        self.listing: set[str] = set()
        self.writers = writers if database.dialect == "postgresql" else 1  # SQLite has one writer anyway
        self.write_pool = (ThreadPoolExecutor(self.writers, thread_name_prefix="org-sync-write")
                           if self.writers > 1 else None)
        self.dept_pool = ThreadPoolExecutor(self.threads, thread_name_prefix="org-sync-depts")
        self.user_pool = ThreadPoolExecutor(self.threads, thread_name_prefix="org-sync-users")

    # -- worker side

    def call(self, fn: Callable, *args, counted: bool = True):
        """One counted API call; transient failures (timeouts, 5xx, "system busy") are retried a few times.
        `counted=False` for client methods that make a platform-dependent number of calls (none, or
        several): the run's call count stays the count of listing calls it can vouch for."""
        attempt = 0
        while True:
            if self.stop.is_set():
                raise _Stopped
            with self._lock:
                self.calls += 1 if counted else 0
            try:
                return fn(*args)
            except RetryableError as exc:
                if attempt >= TRANSIENT_RETRIES or self.stop.is_set():
                    raise
                attempt += 1
                self._sleep(min(8.0, exc.retry_after or 0.5 * 2 ** attempt))

    def put(self, item: tuple) -> None:
        while not self.stop.is_set():
            try:
                self.q.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def walk(self, dept_id: str) -> None:
        try:
            kids = self.call(self.client.list_sub_departments, dept_id)
            # The applier writes these departments before any user chunk that follows them in the queue,
            # so their listing may start at once, without waiting for the database.
            self.put(("depts", kids))
            for kid in kids:
                self.submit_walk(kid.dept_id)
                self.submit_listing(kid.dept_id)
        except _Stopped:
            pass
        except BaseException as exc:  # reported to the applier, which fails the run
            self.put(("error", f"dept {dept_id} children", exc))
        finally:
            self.walk_done()

    def walk_done(self) -> None:
        """One pending walk ended; the last one tells the applier the tree is complete."""
        with self._lock:
            self.walk_pending -= 1
            finished = self.walk_pending == 0
        if finished:
            self.put(("walked",))

    def submit_walk(self, dept_id: str) -> None:
        with self._lock:
            # A department seen twice (moved while we walk) is walked once: no loops, no double counts.
            if dept_id in self.walked:
                return
            self.walked.add(dept_id)
            self.walk_pending += 1
        self.dept_pool.submit(self.walk, dept_id)

    def submit_listing(self, dept_id: str) -> None:
        with self._lock:
            if dept_id in self.previously_done:
                self.stats.skipped_departments += 1
                return
            if dept_id in self.listing:
                return
            self.listing.add(dept_id)
        self.user_pool.submit(self.list_users, dept_id)

    def list_users(self, dept_id: str) -> None:
        cursor = None
        try:
            if dept_id == DIRECT_LISTING:
                self.put(("users", dept_id, self.call(self.client.list_direct_users, counted=False), True))
                return
            while True:
                page = self.call(self.client.list_department_users, dept_id, cursor)
                last = page.next_cursor is None
                self.put(("users", dept_id, page.users, last))
                if last:
                    return
                cursor = page.next_cursor
        except _Stopped:
            pass
        except BaseException as exc:
            self.put(("error", f"users of dept {dept_id}", exc))

    # -- applier side

    def run(self) -> None:
        with self.db.session() as s:
            existing = _load_depts(s, self.corp_id)
        known: dict[str, _DeptInfo] = {}
        dept_ids: dict[str, int] = {}
        pending_depts: list[PlatformDepartment] = []
        buffer: list[tuple[str, PlatformUser]] = []
        finishing: list[str] = []  # departments whose last page is in `buffer`
        listed: set[str] = set()
        walked = False
        last_commit = last_beat = depts_since = time.monotonic()

        def flush_depts() -> None:
            if not pending_depts:
                return
            t0 = time.perf_counter()
            with self.db.session() as s:
                added, updated = apply_department_batch(s, self.corp_id, pending_depts, self.run_id, existing, known)
                run = s.get(SyncRun, self.run_id)
                run.added += added
                run.updated += updated
                run.total = len(known)
                run.heartbeat_at = utcnow()
            self.stats.dept_seconds += time.perf_counter() - t0
            for d in pending_depts:
                dept_ids[d.dept_id] = known[d.dept_id].id
            pending_depts.clear()

        def flush_users() -> None:
            nonlocal last_commit
            flush_depts()  # every user's listed department must exist first
            t0 = time.perf_counter()
            if self.writers > 1:
                # Parts commit on their own; the checkpoint below follows them (a crash in between
                # re-lists those departments next time, and the upserts absorb the repeat).
                added, updated = write_listings(self.db, self.corp_id, buffer, self.run_id, dept_ids,
                                                writers=self.writers, pool=self.write_pool)
            with self.db.session() as s:
                if self.writers <= 1:  # data and checkpoint in one transaction
                    added, updated, _rows = apply_listings(s, self.corp_id, buffer, self.run_id, dept_ids)
                self.done.update(finishing)
                run = s.get(SyncRun, self.run_id)
                run.added += added
                run.updated += updated
                run.done = len(self.done & known.keys())
                run.total = len(known)
                with self._lock:
                    run.calls_made += self.calls
                    self.stats.api_calls += self.calls
                    self.calls = 0
                run.heartbeat_at = utcnow()
                run.checkpoint = {**run.checkpoint, "done": sorted(self.done)}
            self.stats.apply_seconds += time.perf_counter() - t0
            self.stats.users_applied += len(buffer)
            self.stats.chunks += 1
            buffer.clear()
            finishing.clear()
            last_commit = time.monotonic()

        try:
            # A visible range of several disjoint subtrees has several tops: each is walked. The start
            # holds one pending walk of its own until every root is queued, so a first root walked in full
            # before the next is queued cannot report the whole walk finished.
            roots = [self.call(self.client.get_department, r)
                     for r in dict.fromkeys(self.call(self.client.root_department_ids, counted=False))]
            pending_depts.extend(roots)
            flush_depts()
            with self._lock:
                self.walk_pending += 1
            try:
                for root in roots:
                    self.submit_walk(root.dept_id)
                    self.submit_listing(root.dept_id)
                if self.client.range_names_people:
                    self.submit_listing(DIRECT_LISTING)
            finally:
                self.walk_done()
            while True:
                try:
                    item = self.q.get(timeout=DEPT_BATCH_WAIT)
                except queue.Empty:
                    item = None
                if item is not None:
                    kind = item[0]
                    if kind == "error":
                        raise _WorkerFailed(item[1], item[2])
                    if kind == "depts":
                        if not pending_depts:
                            depts_since = time.monotonic()
                        pending_depts.extend(item[1])
                    elif kind == "walked":
                        walked = True
                    elif kind == "users":
                        _, dept, users, last = item
                        buffer.extend((dept, u) for u in users)
                        if last:
                            finishing.append(dept)
                            listed.add(dept)
                now = time.monotonic()
                if pending_depts and (len(pending_depts) >= 500 or now - depts_since >= DEPT_BATCH_WAIT):
                    flush_depts()  # keeps progress totals moving; users flush them anyway
                due = (buffer or finishing) and now - last_commit >= self.progress_every
                if len(buffer) >= self.chunk_users or due:
                    flush_users()
                with self._lock:
                    complete = walked and len(listed) >= len(self.listing)
                if complete and self.q.empty():
                    flush_depts()
                    if buffer or finishing:
                        flush_users()
                    break
                if now - last_beat >= HEARTBEAT_EVERY:
                    last_beat = now
                    with self.db.session() as s:
                        s.get(SyncRun, self.run_id).heartbeat_at = utcnow()
        except BaseException:
            self.stop.set()
            # Keep what is complete: pages already received are written, so a rerun skips their departments.
            try:
                if buffer:
                    flush_users()
            except Exception:  # the database itself may be what failed
                log.warning("org sync run %s: could not save the last chunk", self.run_id, exc_info=True)
            raise
        finally:
            self.dept_pool.shutdown(wait=True, cancel_futures=True)
            self.user_pool.shutdown(wait=True, cancel_futures=True)
            if self.write_pool is not None:
                self.write_pool.shutdown(wait=True)
        with self._lock:
            leftover, self.calls = self.calls, 0
        self.stats.api_calls += leftover
        with self.db.session() as s:
            s.get(SyncRun, self.run_id).calls_made += leftover


class _WorkerFailed(Exception):
    def __init__(self, where: str, exc: BaseException) -> None:
        super().__init__(where)
        self.where = where
        self.exc = exc


def full_sync(
    database: Database,
    corp_id: int,
    client: PlatformClient,
    *,
    threads: int = 8,
    chunk_users: int = CHUNK_USERS,
    stats: SyncStats | None = None,
    run_id: int | None = None,
    sleep: Callable[[float], None] = time.sleep,
    progress_every: float | None = None,
    writers: int = 2,
) -> SyncRun:
    """Run (or resume) the corp's full sync; returns the finished SyncRun.

    `threads` is per pool (tree walk, user listing); `writers` is how many database connections write a
    chunk at once on PostgreSQL; `run_id` continues a run already opened with `open_run` (the admin API
    opens it in the request, then syncs in the background)."""
    stats = stats if stats is not None else SyncStats()
    if run_id is None:
        run = open_run(database, corp_id)
    else:
        with database.session() as s:
            run = s.get(SyncRun, run_id)
    started = time.monotonic()
    job = _FullSync(database, corp_id, client, run, threads=threads, chunk_users=chunk_users, stats=stats,
                    sleep=sleep, progress_every=PROGRESS_EVERY if progress_every is None else progress_every,
                    writers=writers)
    try:
        job.run()
        _finish(database, corp_id, run.id)
    except BaseException as exc:
        where, cause = ("full sync", exc)
        if isinstance(exc, _WorkerFailed):
            where, cause = exc.where, exc.exc
        _record_error(database, run.id, where, cause)
        with job._lock:
            leftover, job.calls = job.calls, 0
        with database.session() as s:
            row = s.get(SyncRun, run.id)
            row.status, row.finished_at, row.heartbeat_at = SyncStatus.FAILED, utcnow(), utcnow()
            row.calls_made += leftover
        stats.wall_seconds = time.monotonic() - started
        if isinstance(cause, PlatformError):
            raise SyncFailed(cause.cause) from cause
        if isinstance(cause, Exception) and cause is not exc:
            raise SyncFailed(str(cause)) from cause
        raise
    stats.wall_seconds = time.monotonic() - started
    log.info("org sync corp=%s run=%s: %d calls in %.1fs, %d users written at %.0f/s", corp_id, run.id,
             stats.api_calls, stats.wall_seconds, stats.users_applied, stats.apply_rate)
    with database.session() as s:
        return s.get(SyncRun, run.id)


def _finish(database: Database, corp_id: int, run_id: int) -> None:
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
        run.done = run.total or run.done
        run.status = SyncStatus.SUCCEEDED
        run.finished_at = utcnow()
        run.heartbeat_at = run.finished_at
