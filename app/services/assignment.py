"""Lead assignment: new or imported customers without an owner get one by the corp's assignment rules.

Rules are tried in order; the first whose region / industry / source lists all match (an empty list matches
anything) decides. A rule names a user, or a team (a department with its sub-departments) served round
robin over its active members. Inactive users are skipped. The reason is recorded in words on the audit
entry, e.g. "assigned to 张三 by rule 华东-制造业, round-robin position 3".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so

from app.errors import Conflict, Forbidden, NotFound, ValidationError
from app.services import audit
from app.services.actor import Actor
from app.services.timeutil import iso
from models.crm import Customer
from models.org import Department, User, UserDepartment
from models.rules import AssignmentRule


@dataclass(frozen=True)
class Assignment:
    owner_id: int
    rule_id: int
    reason: str


def _matches(rule: AssignmentRule, customer: Customer) -> bool:
    return all(not wanted or value in wanted for wanted, value in (
        (rule.regions, customer.region), (rule.industries, customer.industry), (rule.sources, customer.source)))


def _team(session: so.Session, rule: AssignmentRule) -> list[tuple[int, str]]:
    path = session.execute(sa.select(Department.path).where(
        Department.id == rule.department_id, Department.corp_id == rule.corp_id)).scalar()
    if path is None:
        return []
    return [tuple(r) for r in session.execute(
        sa.select(User.id, User.name).join(UserDepartment, UserDepartment.user_id == User.id)
        .join(Department, Department.id == UserDepartment.department_id)
        .where(Department.corp_id == rule.corp_id, Department.path.startswith(path), User.active.is_(True))
        .group_by(User.id, User.name).order_by(User.id)).all()]


def pick(session: so.Session, corp_id: int, customer: Customer) -> Assignment | None:
    """Choose an owner (and advance the rule's rotation); None when no rule applies or nobody is active."""
    rules = session.execute(sa.select(AssignmentRule).where(
        AssignmentRule.corp_id == corp_id, AssignmentRule.enabled.is_(True))
        .order_by(AssignmentRule.sort_order, AssignmentRule.id)).scalars().all()
    for rule in rules:
        if not _matches(rule, customer):
            continue
        if rule.user_id is not None:
            user = session.execute(sa.select(User.id, User.name).where(
                User.id == rule.user_id, User.active.is_(True))).first()
            if user is None:
                continue  # the named user left: try the next rule
            return Assignment(user[0], rule.id, f"由规则「{rule.name}」分配给 {user[1]} / "
                                                f"assigned to {user[1]} by rule {rule.name}")
        members = _team(session, rule)
        if not members:
            continue
        # Take the next slot atomically: concurrent imports never hand out the same position twice.
        position = session.execute(
            sa.update(AssignmentRule).where(AssignmentRule.id == rule.id)
            .values(rr_position=AssignmentRule.rr_position + 1).returning(AssignmentRule.rr_position)
            .execution_options(synchronize_session=False)).scalar_one() - 1
        uid, name = members[position % len(members)]
        slot = position % len(members) + 1
        return Assignment(uid, rule.id, f"由规则「{rule.name}」轮流分配给 {name}（第 {slot} 位）/ assigned to {name} "
                                        f"by rule {rule.name}, round-robin position {slot}")
    return None


def assign_unowned(session: so.Session, actor: Actor, customer: Customer) -> Assignment | None:
    """Give an ownerless customer an owner by rule (no-op when it has one). Call after creating or importing
    a customer; it fires the `customer_assigned` rules when an owner was set."""
    if customer.owner_id is not None:
        return None
    chosen = pick(session, customer.corp_id, customer)
    if chosen is None:
        return None
    customer.owner_id = chosen.owner_id
    customer.in_pool = False
    session.flush()
    audit.record(session, actor, "assign", "customer", customer.id,
                 {"owner_id": {"before": None, "after": chosen.owner_id},
                  "reason": {"before": None, "after": chosen.reason}})
    from app.services import rules

    rules.fire(session, actor, "customer_assigned", customer, reason=chosen.reason)
    return chosen


# ----------------------------------------------------------------------------- admin


def rule_dict(rule: AssignmentRule) -> dict[str, Any]:
    return {"id": rule.id, "name": rule.name, "regions": rule.regions, "industries": rule.industries,
            "sources": rule.sources, "user_id": rule.user_id, "department_id": rule.department_id,
            "rr_position": rule.rr_position, "enabled": rule.enabled, "sort_order": rule.sort_order,
            "updated_at": iso(rule.updated_at)}


def _admin(actor: Actor) -> None:
    if not actor.is_admin:
        raise Forbidden("仅管理员可用 / admins only")


def load_rule(session: so.Session, actor: Actor, rule_id: int) -> AssignmentRule:
    rule = session.execute(sa.select(AssignmentRule).where(
        AssignmentRule.id == rule_id, AssignmentRule.corp_id == actor.corp_id)).scalar()
    if rule is None:
        raise NotFound("分配规则不存在 / assignment rule not found", fields={"assignment_rule_id": "not found"})
    return rule


def _check_target(session: so.Session, corp_id: int, user_id: int | None, department_id: int | None) -> None:
    if (user_id is None) == (department_id is None):
        raise ValidationError("请指定一个用户或一个团队 / name one user or one team",
                              fields={"user_id": "exactly one of user_id, department_id"})
    if user_id is not None and session.execute(sa.select(User.id).where(
            User.id == user_id, User.corp_id == corp_id)).scalar() is None:
        raise ValidationError("用户不存在 / unknown user", fields={"user_id": "unknown user"})
    if department_id is not None and session.execute(sa.select(Department.id).where(
            Department.id == department_id, Department.corp_id == corp_id)).scalar() is None:
        raise ValidationError("部门不存在 / unknown department", fields={"department_id": "unknown department"})


def _unique(session: so.Session, corp_id: int, name: str, exclude: int | None) -> None:
    stmt = sa.select(AssignmentRule.id).where(AssignmentRule.corp_id == corp_id, AssignmentRule.name == name)
    if exclude is not None:
        stmt = stmt.where(AssignmentRule.id != exclude)
    if session.execute(stmt).scalar() is not None:
        raise Conflict("规则名称已存在 / a rule with this name exists", fields={"name": "exists"})


def list_rules(session: so.Session, actor: Actor) -> dict[str, Any]:
    _admin(actor)
    rows = session.execute(sa.select(AssignmentRule).where(AssignmentRule.corp_id == actor.corp_id)
                           .order_by(AssignmentRule.sort_order, AssignmentRule.id)).scalars().all()
    return {"items": [rule_dict(r) for r in rows]}


def create_rule(session: so.Session, actor: Actor, data) -> AssignmentRule:
    _admin(actor)
    raw = data.model_dump()
    _check_target(session, actor.corp_id, raw["user_id"], raw["department_id"])
    _unique(session, actor.corp_id, raw["name"], None)
    rule = AssignmentRule(corp_id=actor.corp_id, rr_position=0, **raw)
    session.add(rule)
    session.flush()
    audit.record(session, actor, "create", "assignment_rule", rule.id, audit.diff({}, rule_dict(rule)))
    return rule


def update_rule(session: so.Session, actor: Actor, rule_id: int, patch) -> AssignmentRule:
    _admin(actor)
    rule = load_rule(session, actor, rule_id)
    raw = patch.model_dump(exclude_unset=True)
    for key in ("name", "enabled", "sort_order", "regions", "industries", "sources"):
        if key in raw and raw[key] is None:
            raise ValidationError(f"{key} 不能为空 / {key} cannot be null", fields={key: "required"})
    if "user_id" in raw or "department_id" in raw:
        _check_target(session, actor.corp_id, raw.get("user_id", rule.user_id),
                      raw.get("department_id", rule.department_id))
    if raw.get("name"):
        _unique(session, actor.corp_id, raw["name"], rule.id)
    before = rule_dict(rule)
    for key, value in raw.items():
        setattr(rule, key, value)
    session.flush()
    changes = audit.diff(before, rule_dict(rule))
    changes.pop("updated_at", None)
    if changes:
        audit.record(session, actor, "update", "assignment_rule", rule.id, changes)
    return rule


def delete_rule(session: so.Session, actor: Actor, rule_id: int) -> None:
    _admin(actor)
    rule = load_rule(session, actor, rule_id)
    audit.record(session, actor, "delete", "assignment_rule", rule.id, audit.diff(rule_dict(rule), {}))
    session.delete(rule)
    session.flush()
