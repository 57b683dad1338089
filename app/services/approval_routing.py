"""Who approves a step: approver specs resolved against the org tree.

The chain of departments above a person comes from the materialised path in ONE query (every ancestor of
the main department is a department whose path is a prefix of its path), joined to their leaders, so a
10-level-deep tree costs the same as a flat one. The corp admin, the fallback when no leader exists
anywhere up the tree, is a second query only when needed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so

from models.org import Department, DepartmentLeader, Role, User


@dataclass
class Chain:
    """A person's department chain, nearest first: [(department_id, [(leader_id, active), …]), …]."""

    user_id: int
    corp_id: int
    levels: list[tuple[int, list[tuple[int, bool]]]]

    def leads(self, department_index: int) -> bool:
        return any(uid == self.user_id for uid, _ in self.levels[department_index][1])

    def leader_levels(self, start: int = 0, exclude: int | None = None) -> list[list[int]]:
        """Active leaders per department from `start` upward, departments without one left out."""
        out = []
        for _, leaders in self.levels[start:]:
            active = [uid for uid, ok in leaders if ok and uid != exclude]
            if active:
                out.append(active)
        return out


@dataclass
class Resolution:
    approver_ids: list[int] = field(default_factory=list)
    # approver id → why they are the approver when it is not the obvious one (walked up, fallback, …)
    notes: dict[int, str] = field(default_factory=dict)
    skipped_applicant: bool = False


def load_chain(session: so.Session, user_id: int) -> Chain | None:
    """One query: the user, their main department's ancestors (itself included) and those leaders."""
    applicant = so.aliased(User)
    main = so.aliased(Department)
    anc = so.aliased(Department)
    leader = so.aliased(User)
    rows = session.execute(
        sa.select(applicant.corp_id, anc.id, anc.depth, DepartmentLeader.user_id, leader.active)
        .select_from(applicant)
        .outerjoin(main, main.id == applicant.main_department_id)
        .outerjoin(anc, sa.and_(anc.corp_id == applicant.corp_id, main.path.like(anc.path.concat("%"))))
        .outerjoin(DepartmentLeader, DepartmentLeader.department_id == anc.id)
        .outerjoin(leader, leader.id == DepartmentLeader.user_id)
        .where(applicant.id == user_id)
        .order_by(anc.depth.desc(), DepartmentLeader.user_id)
    ).all()
    if not rows:
        return None
    levels: dict[int, list[tuple[int, bool]]] = {}
    for _corp_id, dept_id, _depth, leader_id, active in rows:
        if dept_id is None:
            continue
        levels.setdefault(dept_id, [])
        if leader_id is not None:
            levels[dept_id].append((leader_id, bool(active)))
    return Chain(user_id=user_id, corp_id=rows[0][0], levels=list(levels.items()))


def corp_admins(session: so.Session, corp_id: int) -> list[int]:
    return list(session.execute(
        sa.select(User.id).where(User.corp_id == corp_id, User.role == Role.ADMIN, User.active.is_(True))
        .order_by(User.id).limit(1)).scalars())


def leader_of(session: so.Session, user_id: int, *, levels_up: int = 1) -> list[int]:
    """The active leaders `levels_up` levels above a person (1 = the nearest department with a leader that
    is not the person); the corp admin when the tree has none. Used for leavers, deactivated approvers
    and escalation."""
    chain = load_chain(session, user_id)
    if chain is None:
        return []
    found = chain.leader_levels(0, exclude=user_id)
    if found:
        return found[min(levels_up, len(found)) - 1]
    return [a for a in corp_admins(session, chain.corp_id) if a != user_id]


def _direct_start(chain: Chain) -> int:
    """Direct leader = leader of the main department, or the parent's when the applicant leads it."""
    return 1 if chain.levels and chain.leads(0) else 0


def resolve(session: so.Session, corp_id: int, applicant_id: int, specs: list[dict[str, Any]],
            chain: Chain | None = None) -> Resolution:
    """Approvers for one step (the union over its specs, in order, without repeats).

    The applicant never approves their own request: they are removed and `skipped_applicant` records it.
    A deactivated named approver is replaced by their own leader. With nobody left anywhere, the corp admin.
    """
    out = Resolution()

    def add(uid: int, note: str | None = None) -> None:
        if uid == applicant_id:
            out.skipped_applicant = True
            return
        if uid not in out.approver_ids:
            out.approver_ids.append(uid)
            if note:
                out.notes[uid] = note

    need_admin = False
    for spec in specs:
        kind = spec["type"]
        if kind in {"direct_leader", "nth_leader"}:
            if chain is None:
                chain = load_chain(session, applicant_id)
            n = 1 if kind == "direct_leader" else int(spec["n"])
            levels = chain.leader_levels(_direct_start(chain)) if chain else []
            if not levels:
                need_admin = True
                continue
            picked = levels[min(n, len(levels)) - 1]
            note = None if n <= len(levels) else f"上级不足 {n} 级，取最高一级 / fewer than {n} levels: topmost"
            for uid in picked:
                add(uid, note)
        elif kind == "dept_leader":
            _dept_leaders(session, corp_id, int(spec["department_id"]), add, out)
            if not out.approver_ids and not out.skipped_applicant:
                need_admin = True
        elif kind == "users":
            ids = [int(u) for u in spec["user_ids"]]
            rows = dict(session.execute(sa.select(User.id, User.active).where(
                User.corp_id == corp_id, User.id.in_(ids))).all())
            for uid in ids:
                if uid not in rows:
                    continue
                if rows[uid]:
                    add(uid)
                else:
                    for sub in leader_of(session, uid):
                        add(sub, "原审批人已停用，转其上级 / approver inactive: their leader")
        elif kind == "role":
            ids = session.execute(sa.select(User.id).where(
                User.corp_id == corp_id, User.role == spec["role"], User.active.is_(True)).order_by(User.id)).scalars()
            before = len(out.approver_ids)
            for uid in ids:
                add(uid)
            if len(out.approver_ids) == before and not out.skipped_applicant:
                need_admin = True
    if not out.approver_ids and need_admin and not out.skipped_applicant:
        for uid in corp_admins(session, corp_id):
            add(uid, "组织中无可用上级，由管理员审批 / no leader found: corp admin")
    return out


def _dept_leaders(session: so.Session, corp_id: int, department_id: int, add, out: Resolution) -> None:
    """Leaders of a named department, walking up (by path) when it has no active one."""
    path = session.execute(sa.select(Department.path).where(
        Department.id == department_id, Department.corp_id == corp_id)).scalar_one_or_none()
    if path is None:
        return
    anc_ids = [int(p) for p in path.strip("/").split("/") if p]
    rows = session.execute(
        sa.select(DepartmentLeader.department_id, User.id)
        .join(User, User.id == DepartmentLeader.user_id)
        .where(DepartmentLeader.department_id.in_(anc_ids), User.active.is_(True), User.corp_id == corp_id)
        .order_by(User.id)).all()
    by_dept: dict[int, list[int]] = {}
    for dept_id, uid in rows:
        by_dept.setdefault(dept_id, []).append(uid)
    for depth, dept_id in enumerate(reversed(anc_ids)):
        if by_dept.get(dept_id):
            note = None if depth == 0 else "该部门无负责人，向上查找 / no leader there: walked up"
            for uid in by_dept[dept_id]:
                add(uid, note)
            return
