"""Automation rules: trigger → optional condition → actions, per corp, every firing logged.

Services call `fire(session, actor, trigger, subject, **context)` after their own change, in the same
transaction. Loop protection: the outermost `fire` opens a chain; a rule that would fire again on the same
subject inside that chain (an action re-triggering it, directly or through other rules) is stopped and the
stop is logged. Chains are also capped in depth.
"""

from __future__ import annotations

import contextvars
import itertools
import re
import uuid
import weakref
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so

from app.errors import ApiError, Conflict, Forbidden, NotFound, ValidationError
from app.services import approval_routing as routing
from app.services import audit, outbox, pagination
from app.services.actor import Actor
from app.services.approvals import matches
from app.services.corps import corp_setting
from app.services.timeutil import iso
from models.crm import Customer, CustomerTag, FollowUp, Opportunity, OpportunityStage, Tag, Task, TaskStatus
from models.org import Corp, User
from models.rules import AutomationRule, RuleFiring
from models.types import utcnow

TRIGGERS = ("customer_created", "customer_assigned", "stage_changed", "follow_up_written", "amount_crossed",
            "no_follow_up")
MAX_DEPTH = 5
# Core inserts with bound parameters (compiled once): these run on every customer creation, where the ORM
# unit of work and per-call statement building cost more than the rows themselves.
_INSERT_FIRING = sa.insert(RuleFiring.__table__)
_INSERT_TASK = sa.insert(Task.__table__).returning(Task.__table__.c.id)
NOTIFY_PRIORITY = 50  # models.outbox.Priority.REMINDER


@dataclass
class _Chain:
    chain_id: str
    seen: set[tuple[int, str, int]] = field(default_factory=set)
    depth: int = 0


_chain: contextvars.ContextVar[_Chain | None] = contextvars.ContextVar("rule_chain", default=None)


# ----------------------------------------------------------------------------- subjects


@dataclass
class Subject:
    type: str  # customer | opportunity
    id: int
    owner_id: int | None
    customer: Customer
    opportunity: Opportunity | None = None
    stage: OpportunityStage | None = None
    _tags: list[str] | None = None

    def facts(self, session: so.Session) -> dict[str, Any]:
        c = self.customer
        out: dict[str, Any] = {"name": c.name, "grade": c.grade, "status": c.status, "industry": c.industry,
                               "region": c.region, "source": c.source, "owner_id": self.owner_id,
                               "custom": dict(c.custom or {})}
        if self.opportunity is not None:
            o = self.opportunity
            out.update(name=o.name, amount=_money(o.amount), owner_id=o.owner_id, custom=dict(o.custom or {}),
                       stage=self.stage.key if self.stage else None)
        out["tags"] = self.tags(session)
        return out

    def tags(self, session: so.Session) -> list[str]:
        if self._tags is None:
            rows = session.execute(sa.select(Tag.group_name, Tag.name).join(CustomerTag, CustomerTag.tag_id == Tag.id)
                                   .where(CustomerTag.customer_id == self.customer.id)).all()
            self._tags = [n for _, n in rows] + [f"{g}/{n}" for g, n in rows if g]
        return self._tags

    def words(self) -> dict[str, str]:
        """Template placeholders, Chinese and English names."""
        c, o = self.customer, self.opportunity
        values = {"客户名称": c.name, "customer_name": c.name}
        if o is not None:
            stage = self.stage.name if self.stage else ""
            values.update({"商机名称": o.name, "opportunity_name": o.name, "金额": _money(o.amount),
                           "amount": _money(o.amount), "阶段": stage, "stage": stage})
        return values


def _money(value: Any) -> str:
    return str(Decimal(str(value or 0)).quantize(Decimal("0.01")))


def as_subject(session: so.Session, subject: Any) -> Subject:
    if isinstance(subject, Subject):
        return subject
    if isinstance(subject, FollowUp):
        subject = session.get(Customer, subject.customer_id)
    if isinstance(subject, Customer):
        return Subject("customer", subject.id, subject.owner_id, subject)
    if isinstance(subject, Opportunity):
        stage = session.get(OpportunityStage, subject.stage_id)
        customer = session.get(Customer, subject.customer_id)
        return Subject("opportunity", subject.id, subject.owner_id, customer, subject, stage)
    raise TypeError(f"rules cannot fire on {type(subject).__name__}")


_PLACEHOLDER = re.compile(r"\{([^{}]{1,32})\}")


def render(template: str, values: dict[str, Any]) -> str:
    """`{客户名称}` → the value; unknown placeholders stay as written."""
    return _PLACEHOLDER.sub(lambda m: str(values.get(m.group(1), m.group(0))), template)


# ----------------------------------------------------------------------------- firing


def _trigger_holds(rule: RuleSpec, trigger: str, context: dict[str, Any]) -> bool:
    params = rule.params or {}
    if trigger == "stage_changed" and params.get("stage"):
        return context.get("to_stage") == params["stage"]
    if trigger == "amount_crossed":
        threshold = Decimal(str(params.get("threshold", 0)))
        before = Decimal(str(context.get("before") or 0))
        after = Decimal(str(context.get("after") or 0))
        return before <= threshold < after
    return True


@dataclass(frozen=True)
class RuleSpec:
    """A rule as the engine runs it: plain values, safe to keep across sessions."""

    id: int
    corp_id: int
    name: str
    trigger: str
    params: dict[str, Any]
    condition: list[dict[str, Any]]
    actions: list[dict[str, Any]]


# Enabled rules per corp, kept in-process so that creating a customer does not pay a SELECT for its rules
# (the +20 % budget). The version is the corp row's `updated_at`: every rule write here bumps it in the same
# transaction, and `fire` compares it with the cached one. The corp is already in the session wherever a
# customer is created (no query); elsewhere it is one primary-key read. So every process sees a committed
# change on its next firing, and an uncommitted one (a version no committed row will carry) only in the
# transaction that made it. Keyed by engine (weakly), so a new database (each test has one) starts empty.
_cache: weakref.WeakKeyDictionary[Any, dict[int, tuple[Any, dict[str, list[RuleSpec]]]]] = (
    weakref.WeakKeyDictionary())


@dataclass(frozen=True, slots=True)
class Firing:
    """What one rule did (the row written to `rule_firings`, without its id): cheaper to hand back than a
    transient ORM object on every customer creation."""

    corp_id: int
    rule_id: int | None
    trigger: str
    subject_type: str
    subject_id: int
    chain_id: str
    status: str
    actions: list[dict[str, Any]]
    detail: str | None
    created_at: datetime


def forget(corp_id: int | None = None, session: so.Session | None = None) -> None:
    """Drop cached rules (of one corp, or all). With the session that changed the corp's rules, also bump
    the corp's version there, so that other processes reload once it commits."""
    if session is not None and corp_id is not None:
        corp = session.get(Corp, corp_id)
        if corp is not None:
            now = utcnow()
            # The check is equality, not order: any new value will do, clocks of other hosts do not matter.
            corp.updated_at = now if now != corp.updated_at else now + timedelta(microseconds=1)
    for per_engine in list(_cache.values()):
        if corp_id is None:
            per_engine.clear()
        else:
            per_engine.pop(corp_id, None)


def enabled_rules(session: so.Session, corp_id: int, trigger: str) -> list[RuleSpec]:
    corp = session.get(Corp, corp_id)
    version = corp.updated_at if corp is not None else None
    per_engine = _cache.setdefault(session.get_bind(), {})
    hit = per_engine.get(corp_id)
    if hit is None or hit[0] != version:
        by_trigger: dict[str, list[RuleSpec]] = {}
        for row in session.execute(sa.select(
                AutomationRule.id, AutomationRule.corp_id, AutomationRule.name, AutomationRule.trigger,
                AutomationRule.params, AutomationRule.condition, AutomationRule.actions).where(
                AutomationRule.corp_id == corp_id, AutomationRule.enabled.is_(True))
                .order_by(AutomationRule.sort_order, AutomationRule.id)):
            spec = RuleSpec(*row)
            by_trigger.setdefault(spec.trigger, []).append(spec)
        hit = (version, by_trigger)
        per_engine[corp_id] = hit
    return hit[1].get(trigger, [])


def fire(session: so.Session, actor: Actor, trigger: str, subject: Any, **context: Any) -> list[Firing]:
    """Run every enabled rule of `actor.corp_id` for `trigger` on `subject` (a Customer, Opportunity or
    FollowUp). Context: stage_changed → from_stage, to_stage (keys); amount_crossed → before, after."""
    if trigger not in TRIGGERS:
        raise ValueError(f"unknown trigger {trigger}")
    rules = enabled_rules(session, actor.corp_id, trigger)
    if not rules:
        return []
    subj = as_subject(session, subject)
    outer = _chain.get()
    chain = outer or _Chain(uuid.uuid4().hex)
    token = _chain.set(chain) if outer is None else None
    chain.depth += 1
    firings = []
    try:
        facts = None
        for rule in rules:
            if not _trigger_holds(rule, trigger, context):
                continue
            if rule.condition:
                facts = facts or subj.facts(session)
                if not matches(rule.condition, facts):
                    continue
            key = (rule.id, subj.type, subj.id)
            if key in chain.seen or chain.depth > MAX_DEPTH:
                firings.append(_log(session, rule, trigger, subj, chain, "loop_stopped", [],
                                    "同一规则在同一链路中再次触发，已阻止 / rule re-fired in the same chain: stopped"))
                continue
            chain.seen.add(key)
            quick = _task_and_log_in_one_statement(session, rule, trigger, subj, chain)
            if quick is not None:
                firings.append(quick)
                continue
            taken: list[dict[str, Any]] = []
            status, detail = "done", None
            for action in rule.actions:
                try:
                    taken.append(_run(session, actor, rule, action, subj))
                except (ApiError, ValueError) as exc:  # a refused action must not undo the user's own change
                    status, detail = "failed", f"{action.get('type')}: {type(exc).__name__}: {exc}"[:500]
                    taken.append({"type": action.get("type"), "error": detail})
            firings.append(_log(session, rule, trigger, subj, chain, status, taken, detail))
    finally:
        chain.depth -= 1
        if token is not None:
            _chain.reset(token)
    return firings


def _log(session: so.Session, rule: RuleSpec, trigger: str, subj: Subject, chain: _Chain, status: str,
         actions: list[dict[str, Any]], detail: str | None) -> Firing:
    values = {"corp_id": rule.corp_id, "rule_id": rule.id, "trigger": trigger, "subject_type": subj.type,
              "subject_id": subj.id, "chain_id": chain.chain_id, "status": status, "actions": actions,
              "detail": detail, "created_at": utcnow()}
    session.execute(_INSERT_FIRING, values)
    return Firing(**values)


def _firing_with_task_statement() -> sa.Insert:
    """PostgreSQL: the rule's task and its firing log row in ONE round trip (a data-modifying CTE).

    The commonest rule — new customer → task for the owner — runs inside every customer creation, and on
    PostgreSQL each extra statement is a network round trip: two of them alone broke the +20 % budget."""
    from sqlalchemy.dialects import postgresql

    tasks = Task.__table__
    firings = RuleFiring.__table__
    new_task = sa.insert(tasks).values(
        corp_id=sa.bindparam("corp_id"), title=sa.bindparam("title"), assignee_id=sa.bindparam("assignee_id"),
        due_at=sa.bindparam("due_at", type_=tasks.c.due_at.type), customer_id=sa.bindparam("customer_id"),
        opportunity_id=sa.bindparam("opportunity_id"), status=TaskStatus.OPEN.value, source="rule",
        created_at=sa.bindparam("now", type_=tasks.c.created_at.type),
        updated_at=sa.bindparam("now", type_=tasks.c.updated_at.type),
    ).returning(tasks.c.id).cte("new_task")
    actions = sa.func.jsonb_build_array(sa.func.jsonb_build_object(
        "type", "create_task", "task_ids", sa.func.jsonb_build_array(new_task.c.id),
        "assignee_ids", sa.func.jsonb_build_array(sa.bindparam("assignee_id"))))
    row = sa.select(
        sa.bindparam("corp_id"), sa.bindparam("rule_id"), sa.bindparam("trigger"), sa.bindparam("subject_type"),
        sa.bindparam("subject_id"), sa.bindparam("chain_id"), sa.literal("done"),
        sa.cast(actions, postgresql.JSONB), sa.bindparam("now", type_=firings.c.created_at.type),
    ).select_from(new_task)
    return sa.insert(firings).from_select(
        ["corp_id", "rule_id", "trigger", "subject_type", "subject_id", "chain_id", "status", "actions",
         "created_at"], row).returning(firings.c.actions)


_FIRING_WITH_TASK: sa.Insert | None = None


def _task_and_log_in_one_statement(session: so.Session, rule: RuleSpec, trigger: str, subj: Subject,
                                   chain: _Chain) -> Firing | None:
    """The fast path for a rule whose only action creates one task for the owner; None: take the general one."""
    global _FIRING_WITH_TASK
    if len(rule.actions) != 1 or rule.actions[0]["type"] != "create_task" or not subj.owner_id:
        return None
    action = rule.actions[0]
    if action.get("assignee", "owner") != "owner" or session.get_bind().dialect.name != "postgresql":
        return None
    if _FIRING_WITH_TASK is None:
        _FIRING_WITH_TASK = _firing_with_task_statement()
    now = utcnow()
    params = {"corp_id": rule.corp_id, "rule_id": rule.id, "trigger": trigger, "subject_type": subj.type,
              "subject_id": subj.id, "chain_id": chain.chain_id, "now": now,
              "title": render(action["title"], subj.words())[:200], "assignee_id": subj.owner_id,
              "due_at": now + timedelta(days=action.get("due_in_days", 0), hours=action.get("due_in_hours", 0)),
              "customer_id": subj.customer.id, "opportunity_id": subj.opportunity.id if subj.opportunity else None}
    actions = session.execute(_FIRING_WITH_TASK, params).scalar_one()
    return Firing(rule.corp_id, rule.id, trigger, subj.type, subj.id, chain.chain_id, "done", actions, None, now)


# ----------------------------------------------------------------------------- actions


def _recipients(session: so.Session, corp_id: int, subj: Subject, specs: list[str]) -> list[int]:
    out: list[int] = []
    for spec in specs:
        if spec == "owner":
            ids = [subj.owner_id] if subj.owner_id else []
        elif spec == "owner_leader":
            ids = routing.leader_of(session, subj.owner_id) if subj.owner_id else []
        elif spec.startswith("role:"):
            ids = list(session.execute(sa.select(User.id).where(
                User.corp_id == corp_id, User.role == spec[5:], User.active.is_(True)).order_by(User.id)).scalars())
        else:
            uid = int(spec[5:])
            ids = list(session.execute(sa.select(User.id).where(
                User.id == uid, User.corp_id == corp_id, User.active.is_(True))).scalars())
        out.extend(i for i in ids if i not in out)
    return out


def _run(session: so.Session, actor: Actor, rule: RuleSpec, action: dict[str, Any],
         subj: Subject) -> dict[str, Any]:
    kind = action["type"]
    corp_id = rule.corp_id
    if kind == "create_task":
        assignees = _recipients(session, corp_id, subj, [action.get("assignee", "owner")])
        note = None
        if not assignees and subj.owner_id:
            assignees, note = [subj.owner_id], f"{action.get('assignee')} 无人，交给负责人 / nobody there: owner"
        if not assignees:
            return {"type": kind, "skipped": "no assignee"}
        now = utcnow()
        due = now + timedelta(days=action.get("due_in_days", 0), hours=action.get("due_in_hours", 0))
        title = render(action["title"], subj.words())[:200]
        task_ids = [session.execute(_INSERT_TASK, {
            "corp_id": corp_id, "title": title, "assignee_id": uid, "due_at": due, "customer_id": subj.customer.id,
            "opportunity_id": subj.opportunity.id if subj.opportunity else None, "status": TaskStatus.OPEN,
            "source": "rule", "created_by_id": None, "created_at": now, "updated_at": now}).scalar_one()
            for uid in assignees[:20]]
        return {"type": kind, "task_ids": task_ids, "assignee_ids": assignees[:20],
                **({"note": note} if note else {})}
    if kind == "notify":
        ids = _recipients(session, corp_id, subj, action["to"])
        text = render(action["message"], subj.words())
        now = utcnow()
        for uid in ids:
            outbox.enqueue(session, corp_id=corp_id, kind="rule_notify", recipient_user_id=uid,
                           subject_type=subj.type, subject_id=subj.id, due_at=now, priority=NOTIFY_PRIORITY,
                           payload={"text": text, "rule_id": rule.id, "path": _url(subj)},
                           idempotency_key=f"rule:{rule.id}:{subj.type}:{subj.id}:{uid}:{now.date().isoformat()}")
        return {"type": kind, "user_ids": ids}
    if kind == "assign_owner":
        return _assign(session, actor, rule, action, subj)
    if kind in {"add_tag", "remove_tag"}:
        tag = session.execute(sa.select(Tag.id).where(Tag.id == action["tag_id"], Tag.corp_id == corp_id)).scalar()
        if tag is None:
            return {"type": kind, "skipped": "tag not found"}
        exists = session.execute(sa.select(CustomerTag.tag_id).where(
            CustomerTag.customer_id == subj.customer.id, CustomerTag.tag_id == tag)).scalar()
        if kind == "add_tag" and exists is None:
            session.add(CustomerTag(corp_id=corp_id, customer_id=subj.customer.id, tag_id=tag))
        elif kind == "remove_tag" and exists is not None:
            session.execute(sa.delete(CustomerTag).where(CustomerTag.customer_id == subj.customer.id,
                                                         CustomerTag.tag_id == tag))
        session.flush()
        subj._tags = None
        return {"type": kind, "tag_id": tag, "changed": (exists is None) == (kind == "add_tag")}
    if kind == "start_approval":
        from app.schemas_approvals import SubmitIn
        from app.services import approvals

        if subj.owner_id is None:
            return {"type": kind, "skipped": "no owner to apply"}
        inst = approvals.start(session, corp_id, subj.owner_id,
                               SubmitIn(kind=action["kind"], subject_type=subj.type, subject_id=subj.id,
                                        reason=f"自动规则：{rule.name} / rule"))
        return {"type": kind, "approval_id": inst.id}
    raise ValueError(f"unknown action {kind}")


def _url(subj: Subject) -> str:
    return f"/h5/#/customers/{subj.customer.id}" if subj.type == "customer" else f"/h5/#/opportunities/{subj.id}"


def _assign(session: so.Session, actor: Actor, rule: RuleSpec, action: dict[str, Any],
            subj: Subject) -> dict[str, Any]:
    """Round robin over the listed users, skipping inactive ones; position = how often this rule assigned."""
    ids = [int(u) for u in action["user_ids"]]
    active = set(session.execute(sa.select(User.id).where(
        User.corp_id == rule.corp_id, User.id.in_(ids), User.active.is_(True))).scalars())
    candidates = [u for u in ids if u in active]
    if not candidates:
        return {"type": "assign_owner", "skipped": "no active user"}
    done = session.execute(sa.select(sa.func.count()).where(
        RuleFiring.rule_id == rule.id, RuleFiring.status == "done")).scalar() or 0
    position = done % len(candidates)
    owner_id = candidates[position]
    record = subj.opportunity if subj.type == "opportunity" else subj.customer
    before = record.owner_id
    if before != owner_id:
        record.owner_id = owner_id
        if subj.type == "customer":
            record.in_pool = False
        subj.owner_id = owner_id
        session.flush()
        audit.record(session, Actor.system(rule.corp_id), "assign", subj.type, subj.id,
                     {"owner_id": {"before": before, "after": owner_id},
                      "rule": {"before": None, "after": f"{rule.name} #{position + 1}"}})
        # Assigning is itself a trigger: rules on it run in this chain (so a loop is caught).
        if subj.type == "customer":
            fire(session, actor, "customer_assigned", subj)
    return {"type": "assign_owner", "owner_id": owner_id, "position": position + 1}


# ----------------------------------------------------------------------------- time-based trigger


def run_no_follow_up(session: so.Session, corp_id: int, now: datetime, *, batch: int = 500) -> int:
    """For each enabled `no_follow_up` rule: customers whose last contact (or creation) is older than its
    `days`, and on which the rule has not fired since that last contact. Returns the firings made. The
    scheduler calls this (idempotent: a second run the same day finds nothing new)."""
    fired = 0
    actor = Actor.system(corp_id)
    rules = enabled_rules(session, corp_id, "no_follow_up")
    corp = session.get(Corp, corp_id) if rules else None
    for rule in rules:
        # A rule without its own `days` follows the corp's `stale_days` setting (the default rule does).
        days = int((rule.params or {}).get("days") or corp_setting(corp, "stale_days") or 30)
        since = sa.func.coalesce(Customer.last_contact_at, Customer.created_at)
        already = sa.exists().where(RuleFiring.rule_id == rule.id, RuleFiring.subject_type == "customer",
                                    RuleFiring.subject_id == Customer.id, RuleFiring.created_at >= since)
        customers = session.execute(sa.select(Customer).where(
            Customer.corp_id == corp_id, Customer.deleted_at.is_(None), Customer.in_pool.is_(False),
            Customer.owner_id.is_not(None), since <= now - timedelta(days=days), ~already)
            .order_by(Customer.id).limit(batch)).scalars().all()
        for customer in customers:
            subj = Subject("customer", customer.id, customer.owner_id, customer)
            fired += len(_fire_one(session, actor, rule, subj, days))
    return fired


def _fire_one(session: so.Session, actor: Actor, rule: RuleSpec, subj: Subject, days: int) -> list[Firing]:
    if rule.condition and not matches(rule.condition, subj.facts(session)):
        return []
    chain = _Chain(uuid.uuid4().hex, {(rule.id, subj.type, subj.id)}, 1)
    token = _chain.set(chain)
    try:
        words = {**subj.words(), "天数": str(days), "days": str(days)}
        taken = []
        for action in rule.actions:
            if action["type"] == "notify":
                action = {**action, "message": render(action["message"], words)}
            taken.append(_run(session, actor, rule, action, subj))
        row = _log(session, rule, "no_follow_up", subj, chain, "done", taken, None)
    finally:
        _chain.reset(token)
    session.flush()
    return [row]


# ----------------------------------------------------------------------------- defaults

DEFAULT_RULES: tuple[dict[str, Any], ...] = (
    {"default_key": "new_customer_task", "name": "新客户跟进任务 / new customer follow-up",
     "trigger": "customer_created", "params": {}, "condition": [],
     "actions": [{"type": "create_task", "title": "【新客户跟进】{客户名称}", "due_in_days": 3, "assignee": "owner"}]},
    {"default_key": "stale_30_days", "name": "久未跟进提醒 / no follow-up for N days (setting stale_days, 30)",
     "trigger": "no_follow_up", "params": {}, "condition": [],
     "actions": [{"type": "notify", "to": ["owner", "owner_leader"],
                  "message": "【跟进提醒】{客户名称} 已 {天数} 天未跟进 / no follow-up for {days} days"}]},
    {"default_key": "needs_presales", "name": "需求确认转售前 / needs confirmed: pre-sales", "trigger": "stage_changed",
     "params": {"stage": "needs"}, "condition": [],
     "actions": [{"type": "create_task", "title": "【售前支持】{商机名称}（{客户名称}）", "due_in_days": 2,
                  "assignee": "role:presales"}]},
    {"default_key": "large_opportunity", "name": "大额商机审批 / large opportunity approval",
     "trigger": "amount_crossed", "params": {"threshold": "500000"}, "condition": [],
     "actions": [{"type": "start_approval", "kind": "large_opportunity"}]},
)


def install_default_rules(session: so.Session, corp_id: int) -> list[AutomationRule]:
    have = set(session.execute(sa.select(AutomationRule.default_key).where(
        AutomationRule.corp_id == corp_id, AutomationRule.default_key.is_not(None))).scalars())
    rows = [AutomationRule(corp_id=corp_id, enabled=True, sort_order=order, **spec)
            for order, spec in zip(itertools.count(10, 10), DEFAULT_RULES) if spec["default_key"] not in have]
    session.add_all(rows)
    session.flush()
    forget(corp_id, session)
    return rows


# ----------------------------------------------------------------------------- admin


def rule_dict(rule: AutomationRule) -> dict[str, Any]:
    return {"id": rule.id, "name": rule.name, "trigger": rule.trigger, "params": rule.params,
            "condition": rule.condition, "actions": rule.actions, "enabled": rule.enabled,
            "default_key": rule.default_key, "sort_order": rule.sort_order, "updated_at": iso(rule.updated_at)}


def firing_dict(row: RuleFiring) -> dict[str, Any]:
    return {"id": row.id, "rule_id": row.rule_id, "trigger": row.trigger,
            "subject": {"type": row.subject_type, "id": row.subject_id}, "chain_id": row.chain_id,
            "status": row.status, "actions": row.actions, "detail": row.detail, "created_at": iso(row.created_at)}


def _admin(actor: Actor) -> None:
    if not actor.is_admin:
        raise Forbidden("仅管理员可用 / admins only")


def load_rule(session: so.Session, actor: Actor, rule_id: int) -> AutomationRule:
    rule = session.execute(sa.select(AutomationRule).where(
        AutomationRule.id == rule_id, AutomationRule.corp_id == actor.corp_id)).scalar()
    if rule is None:
        raise NotFound("规则不存在 / rule not found", fields={"rule_id": "not found"})
    return rule


def _check_rule_refs(session: so.Session, corp_id: int, actions: list[dict[str, Any]]) -> None:
    for i, action in enumerate(actions or []):
        if action["type"] in {"add_tag", "remove_tag"}:
            if session.execute(sa.select(Tag.id).where(Tag.id == action["tag_id"], Tag.corp_id == corp_id)).scalar() \
                    is None:
                raise ValidationError("标签不存在 / unknown tag", fields={f"actions.{i}.tag_id": "unknown tag"})
        named = ([("assignee", action.get("assignee", "owner"))] if action["type"] == "create_task" else
                 [(f"to.{k}", r) for k, r in enumerate(action["to"])] if action["type"] == "notify" else [])
        for where, spec in named:
            # A named person must be this corp's: otherwise the task or notice silently goes nowhere.
            if spec.startswith("user:") and session.execute(sa.select(User.id).where(
                    User.id == int(spec[5:]), User.corp_id == corp_id)).scalar() is None:
                raise ValidationError("用户不存在 / unknown user", fields={f"actions.{i}.{where}": "unknown user"})
        if action["type"] == "assign_owner":
            ids = set(action["user_ids"])
            found = set(session.execute(sa.select(User.id).where(User.corp_id == corp_id, User.id.in_(ids))).scalars())
            if ids - found:
                raise ValidationError("用户不存在 / unknown user", fields={f"actions.{i}.user_ids": "unknown user"})


def _check_stage(session: so.Session, corp_id: int, trigger: str, params: dict[str, Any]) -> None:
    """A stage_changed rule names a stage of this corp: an unknown key would never fire, silently."""
    key = params.get("stage")
    if trigger != "stage_changed" or not key:
        return
    known = session.execute(sa.select(OpportunityStage.id).where(
        OpportunityStage.corp_id == corp_id, OpportunityStage.key == key)).scalar()
    if known is None:
        raise ValidationError(f"商机阶段不存在：{key} / unknown opportunity stage: {key}",
                              fields={"params.stage": "unknown stage"})


def _unique_rule_name(session: so.Session, corp_id: int, name: str, exclude: int | None) -> None:
    stmt = sa.select(AutomationRule.id).where(AutomationRule.corp_id == corp_id, AutomationRule.name == name)
    if exclude is not None:
        stmt = stmt.where(AutomationRule.id != exclude)
    if session.execute(stmt).scalar() is not None:
        raise Conflict("规则名称已存在 / a rule with this name exists", fields={"name": "exists"})


def list_rules(session: so.Session, actor: Actor) -> dict[str, Any]:
    _admin(actor)
    rows = session.execute(sa.select(AutomationRule).where(AutomationRule.corp_id == actor.corp_id)
                           .order_by(AutomationRule.sort_order, AutomationRule.id)).scalars().all()
    return {"items": [rule_dict(r) for r in rows], "triggers": list(TRIGGERS)}


def create_rule(session: so.Session, actor: Actor, data) -> AutomationRule:
    _admin(actor)
    raw = data.model_dump(mode="json", exclude_none=False)
    raw["params"] = {k: v for k, v in raw["params"].items() if v is not None}
    _check_rule_refs(session, actor.corp_id, raw["actions"])
    _check_stage(session, actor.corp_id, raw["trigger"], raw["params"])
    _unique_rule_name(session, actor.corp_id, data.name, None)
    top = session.execute(sa.select(sa.func.max(AutomationRule.sort_order)).where(
        AutomationRule.corp_id == actor.corp_id)).scalar() or 0
    rule = AutomationRule(corp_id=actor.corp_id, sort_order=top + 10, **raw)
    session.add(rule)
    session.flush()
    forget(actor.corp_id, session)
    audit.record(session, actor, "create", "automation_rule", rule.id, audit.diff({}, rule_dict(rule)))
    return rule


def update_rule(session: so.Session, actor: Actor, rule_id: int, patch) -> AutomationRule:
    _admin(actor)
    rule = load_rule(session, actor, rule_id)
    raw = patch.model_dump(mode="json", exclude_unset=True)
    for key in ("name", "trigger", "actions", "enabled", "params", "condition"):
        if key in raw and raw[key] is None:
            raise ValidationError(f"{key} 不能为空 / {key} cannot be null", fields={key: "required"})
    if "params" in raw:
        raw["params"] = {k: v for k, v in raw["params"].items() if v is not None}
    if "params" in raw or "trigger" in raw:
        # A new trigger is checked against the parameters it will run with: the new ones, else those stored.
        trigger, params = raw.get("trigger", rule.trigger), raw.get("params", rule.params or {})
        if trigger == "amount_crossed" and params.get("threshold") is None:
            raise ValidationError("需要金额阈值 / threshold required", fields={"params.threshold": "required"})
        if trigger == "no_follow_up" and params.get("days") is None:
            raise ValidationError("需要天数 / days required", fields={"params.days": "required"})
        _check_stage(session, actor.corp_id, trigger, params)
    _check_rule_refs(session, actor.corp_id, raw.get("actions") or [])
    if raw.get("name"):
        _unique_rule_name(session, actor.corp_id, raw["name"], rule.id)
    before = rule_dict(rule)
    for key, value in raw.items():
        setattr(rule, key, value)
    session.flush()
    forget(actor.corp_id, session)
    changes = audit.diff(before, rule_dict(rule))
    changes.pop("updated_at", None)
    if changes:
        audit.record(session, actor, "update", "automation_rule", rule.id, changes)
    return rule


def delete_rule(session: so.Session, actor: Actor, rule_id: int) -> None:
    _admin(actor)
    rule = load_rule(session, actor, rule_id)
    audit.record(session, actor, "delete", "automation_rule", rule.id, audit.diff(rule_dict(rule), {}))
    session.delete(rule)
    session.flush()
    forget(actor.corp_id, session)


def list_firings(session: so.Session, actor: Actor, *, rule_id: int | None, cursor: str | None,
                 limit: int) -> dict[str, Any]:
    _admin(actor)
    conditions = [RuleFiring.corp_id == actor.corp_id]
    if rule_id is not None:
        load_rule(session, actor, rule_id)
        conditions.append(RuleFiring.rule_id == rule_id)
    key = pagination.SortKey(RuleFiring.created_at, True, "datetime")
    if cursor:
        value, row_id = pagination.decode_cursor(cursor, "datetime")
        conditions.append(pagination.after(key, RuleFiring.id, value, row_id))
    rows = session.execute(sa.select(RuleFiring).where(*conditions)
                           .order_by(*pagination.order_by(key, RuleFiring.id)).limit(limit + 1)).scalars().all()
    more = len(rows) > limit
    rows = rows[:limit]
    return {"items": [firing_dict(r) for r in rows],
            "next_cursor": pagination.encode_cursor(rows[-1].created_at, rows[-1].id) if more and rows else None}
