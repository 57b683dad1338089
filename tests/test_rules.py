"""Automation rules: the four shipped defaults, conditions, tags, round robin, loop protection, admin API."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from app.schemas import CustomerIn
from app.schemas_approvals import RulePatch
from app.services import customers, rules
from models.approvals import ApprovalInstance
from models.crm import CustomerTag, Opportunity, OpportunityStage, Task
from models.rules import AutomationRule, RuleFiring
from models.types import utcnow
from tests import factories as f
from tests.approval_helpers import actor, opportunity, org_with_defaults, outbox


def _rule(session, corp, **spec):
    row = AutomationRule(corp_id=corp.id, enabled=True, params=spec.pop("params", {}),
                         condition=spec.pop("condition", []), **spec)
    session.add(row)
    session.flush()
    rules.forget(corp.id, session)  # written behind the service's back: drop its cache, bump the version
    return row


def _firings(session, rule_id=None):
    stmt = sa.select(RuleFiring).order_by(RuleFiring.id)
    if rule_id:
        stmt = stmt.where(RuleFiring.rule_id == rule_id)
    return session.execute(stmt).scalars().all()


def test_every_corp_gets_the_four_defaults_once(session):
    org = org_with_defaults(session)
    from app.services.approval_defaults import install_defaults

    install_defaults(session, org.corp.id)  # idempotent
    keys = session.execute(sa.select(AutomationRule.default_key).where(AutomationRule.corp_id == org.corp.id)
                           .order_by(AutomationRule.sort_order)).scalars().all()
    assert keys == ["new_customer_task", "stale_30_days", "needs_presales", "large_opportunity"]


def test_new_customer_gets_a_follow_up_task_for_the_owner_due_in_three_days(session):
    org = org_with_defaults(session)
    customer = f.customer(session, org.corp, org.alice, name="华为技术有限公司")
    before = utcnow()
    [firing] = rules.fire(session, actor(org.alice), "customer_created", customer)
    task = session.execute(sa.select(Task).where(Task.customer_id == customer.id)).scalar_one()
    assert task.title == "【新客户跟进】华为技术有限公司"
    assert task.assignee_id == org.alice.id and task.source == "rule"
    assert timedelta(days=3) <= task.due_at - before < timedelta(days=3, minutes=5)
    assert firing.status == "done" and firing.actions == [
        {"type": "create_task", "task_ids": [task.id], "assignee_ids": [org.alice.id]}]


def test_disabled_rule_does_not_fire(session):
    org = org_with_defaults(session)
    session.execute(sa.update(AutomationRule).where(AutomationRule.default_key == "new_customer_task")
                    .values(enabled=False))
    rules.forget(org.corp.id)
    customer = f.customer(session, org.corp, org.alice)
    assert rules.fire(session, actor(org.alice), "customer_created", customer) == []
    assert session.execute(sa.select(Task)).first() is None


def test_no_follow_up_for_30_days_reminds_the_owner_and_their_leader_once(session):
    org = org_with_defaults(session)
    now = utcnow()
    stale = f.customer(session, org.corp, org.alice, name="久未联系公司", last_contact_at=now - timedelta(days=31))
    f.customer(session, org.corp, org.alice, name="刚联系公司", last_contact_at=now - timedelta(days=3))
    assert rules.run_no_follow_up(session, org.corp.id, now) == 1
    items = outbox(session, kind="rule_notify")
    assert {i.recipient_user_id for i in items} == {org.alice.id, org.east_lead.id}
    assert all(i.subject_id == stale.id and "久未联系公司 已 30 天未跟进" in i.payload["text"] for i in items)
    assert rules.run_no_follow_up(session, org.corp.id, now + timedelta(hours=1)) == 0
    # a new contact, then 30 more silent days: reminded again (and the other customer is now stale too)
    stale.last_contact_at = now + timedelta(hours=2)
    session.flush()
    assert rules.run_no_follow_up(session, org.corp.id, now + timedelta(days=25)) == 0
    assert rules.run_no_follow_up(session, org.corp.id, now + timedelta(days=33)) == 2


def test_stage_moving_to_needs_creates_a_task_for_presales(session):
    org = org_with_defaults(session)
    presales = f.user(session, org.corp, "售前小王", role="presales", departments=[org.sales])
    opp = opportunity(session, org.corp, org.alice, stage_key="needs", name="ERP项目")
    assert rules.fire(session, actor(org.alice), "stage_changed", opp, from_stage="initial", to_stage="proposal") == []
    [firing] = rules.fire(session, actor(org.alice), "stage_changed", opp, from_stage="initial", to_stage="needs")
    task = session.execute(sa.select(Task).where(Task.opportunity_id == opp.id)).scalar_one()
    assert task.assignee_id == presales.id and task.title.startswith("【售前支持】ERP项目")
    assert firing.actions[0]["assignee_ids"] == [presales.id]


def test_presales_task_falls_back_to_the_owner_when_nobody_has_the_role(session):
    org = org_with_defaults(session)
    opp = opportunity(session, org.corp, org.alice, stage_key="needs")
    [firing] = rules.fire(session, actor(org.alice), "stage_changed", opp, to_stage="needs")
    assert firing.actions[0]["assignee_ids"] == [org.alice.id] and "note" in firing.actions[0]


def test_amount_crossing_500k_starts_the_large_opportunity_approval(session):
    org = org_with_defaults(session)
    opp = opportunity(session, org.corp, org.alice, amount="600000")
    assert rules.fire(session, actor(org.alice), "amount_crossed", opp, before="600000", after="700000") == []
    [firing] = rules.fire(session, actor(org.alice), "amount_crossed", opp, before="400000", after="600000")
    inst = session.execute(sa.select(ApprovalInstance).where(ApprovalInstance.subject_id == opp.id)).scalar_one()
    assert inst.kind == "large_opportunity" and inst.applicant_id == org.alice.id and inst.state == "pending"
    assert firing.actions == [{"type": "start_approval", "approval_id": inst.id}]
    assert outbox(session, kind="approval_request", recipient=org.east_lead)
    # crossing again while that approval is pending: the action is refused, the firing says why
    [again] = rules.fire(session, actor(org.alice), "amount_crossed", opp, before="0", after="900000")
    assert again.status == "failed" and "Conflict" in again.detail


def test_conditions_on_grade_and_tags(session):
    org = org_with_defaults(session)
    vip = f.tag(session, org.corp, "重点客户")
    followed = f.tag(session, org.corp, "已分配")
    rule = _rule(session, org.corp, name="A级重点", trigger="customer_created",
                 condition=[{"field": "grade", "op": "eq", "value": "A"},
                            {"field": "tags", "op": "contains", "value": "重点客户"}],
                 actions=[{"type": "add_tag", "tag_id": followed.id}, {"type": "remove_tag", "tag_id": vip.id}])
    plain = f.customer(session, org.corp, org.alice, grade="A")
    rules.fire(session, actor(org.alice), "customer_created", plain)
    assert _firings(session, rule.id) == []
    star = f.customer(session, org.corp, org.alice, grade="A")
    session.add(f.CustomerTagRow(star, vip))
    session.flush()
    rules.fire(session, actor(org.alice), "customer_created", star)
    [firing] = _firings(session, rule.id)
    tags = set(session.execute(sa.select(CustomerTag.tag_id).where(CustomerTag.customer_id == star.id)).scalars())
    assert tags == {followed.id}
    assert [a["changed"] for a in firing.actions] == [True, True]


def test_round_robin_assignment_skips_inactive_users(session):
    org = org_with_defaults(session)
    org.bob.active = False
    session.flush()
    rule = _rule(session, org.corp, name="线索分配", trigger="customer_created",
                 actions=[{"type": "assign_owner", "user_ids": [org.alice.id, org.bob.id, org.east_lead.id]}])
    owners = []
    for _ in range(3):
        c = f.customer(session, org.corp, None)
        rules.fire(session, actor(org.admin), "customer_created", c)
        owners.append((c.owner_id, _firings(session, rule.id)[-1].actions[0]["position"]))
        assert c.in_pool is False
    assert owners == [(org.alice.id, 1), (org.east_lead.id, 2), (org.alice.id, 1)]


def test_a_rule_refiring_itself_in_the_same_chain_is_stopped_and_logged(session):
    org = org_with_defaults(session)
    rule = _rule(session, org.corp, name="分配后再分配", trigger="customer_assigned",
                 actions=[{"type": "assign_owner", "user_ids": [org.bob.id, org.alice.id]}])
    customer = f.customer(session, org.corp, org.alice)
    rules.fire(session, actor(org.admin), "customer_assigned", customer)
    statuses = [(r.status, r.subject_id) for r in _firings(session, rule.id)]
    # the assignment fired customer_assigned again on the same customer: stopped, not recursed
    assert sorted(statuses) == [("done", customer.id), ("loop_stopped", customer.id)]
    stopped = [r for r in _firings(session, rule.id) if r.status == "loop_stopped"][0]
    assert "阻止" in stopped.detail
    assert len({r.chain_id for r in _firings(session, rule.id)}) == 1
    # a new, separate event may fire it again
    rules.fire(session, actor(org.admin), "customer_assigned", customer)
    assert len(_firings(session, rule.id)) == 4


def test_unknown_trigger_is_a_programming_error(session):
    org = org_with_defaults(session)
    with pytest.raises(ValueError):
        rules.fire(session, actor(org.admin), "customer_exploded", f.customer(session, org.corp, org.alice))


def test_rules_admin_api(client, database):
    with database.session() as s:
        org = org_with_defaults(s)
        tag = f.tag(s, org.corp, "华东")
    f.login(client, org.alice, org.corp)
    assert client.get("/api/v1/admin/rules").status_code == 403
    f.login(client, org.admin, org.corp)
    listed = client.get("/api/v1/admin/rules").get_json()
    assert len(listed["items"]) == 4 and "no_follow_up" in listed["triggers"]
    new = {"name": "华东打标签", "trigger": "customer_created",
           "condition": [{"field": "region", "op": "eq", "value": "华东"}],
           "actions": [{"type": "add_tag", "tag_id": tag.id},
                       {"type": "notify", "to": ["owner_leader"], "message": "新客户 {客户名称}"}]}
    resp = client.post("/api/v1/admin/rules", json=new)
    assert resp.status_code == 201, resp.get_json()
    rule_id = resp.get_json()["id"]
    for bad, field in (({**new, "name": "a", "trigger": "amount_crossed"}, "body"),
                       ({**new, "name": "b", "actions": [{"type": "add_tag", "tag_id": 999999}]}, "actions.0.tag_id"),
                       ({**new, "name": "c", "actions": [{"type": "notify", "to": ["everyone"], "message": "x"}]},
                        "actions.0.notify.to.0"),
                       ({**new, "name": "d", "condition": [{"field": "amount", "op": "gt", "value": "lots"}]},
                        "condition.0")):
        resp = client.post("/api/v1/admin/rules", json=bad)
        assert resp.status_code == 422, (bad, resp.get_json())
        assert field in resp.get_json()["error"]["fields"], resp.get_json()
    resp = client.patch(f"/api/v1/admin/rules/{rule_id}", json={"enabled": False})
    assert resp.status_code == 200 and resp.get_json()["enabled"] is False
    resp = client.get("/api/v1/admin/rule-firings", query_string={"rule_id": rule_id})
    assert resp.status_code == 200 and resp.get_json()["items"] == []
    assert client.delete(f"/api/v1/admin/rules/{rule_id}").status_code == 204
    assert client.get(f"/api/v1/admin/rules/{rule_id}").status_code == 404


def test_firing_log_is_listed_for_admins(client, database):
    with database.session() as s:
        org = org_with_defaults(s)
        customer = f.customer(s, org.corp, org.alice)
        rules.fire(s, actor(org.alice), "customer_created", customer)
    f.login(client, org.admin, org.corp)
    [item] = client.get("/api/v1/admin/rule-firings").get_json()["items"]
    assert item["subject"] == {"type": "customer", "id": customer.id} and item["status"] == "done"
    assert item["actions"][0]["type"] == "create_task"


def test_opportunity_facts_feed_conditions(session):
    org = org_with_defaults(session)
    rule = _rule(session, org.corp, name="大单提醒", trigger="stage_changed",
                 condition=[{"field": "amount", "op": "gte", "value": 100000},
                            {"field": "stage", "op": "in", "value": ["proposal", "negotiation"]}],
                 actions=[{"type": "notify", "to": ["owner_leader"], "message": "{商机名称} 金额 {金额}"}])
    small = opportunity(session, org.corp, org.alice, amount="5000", stage_key="proposal")
    big = opportunity(session, org.corp, org.alice, amount="150000", stage_key="proposal", name="大单")
    for opp in (small, big):
        rules.fire(session, actor(org.alice), "stage_changed", opp, to_stage="proposal")
    [firing] = _firings(session, rule.id)
    assert firing.subject_id == big.id
    [item] = outbox(session, kind="rule_notify")
    assert item.recipient_user_id == org.east_lead.id and item.payload["text"] == "大单 金额 150000.00"
    assert session.get(Opportunity, big.id).stage_id == session.execute(sa.select(OpportunityStage.id).where(
        OpportunityStage.corp_id == org.corp.id, OpportunityStage.key == "proposal")).scalar()


def _statements(engine, fn):
    seen = []

    def listener(conn, cursor, statement, params, context, executemany):
        seen.append(" ".join(statement.split()))

    sa.event.listen(engine, "before_cursor_execute", listener)
    try:
        fn()
    finally:
        sa.event.remove(engine, "before_cursor_execute", listener)
    return seen


def test_creating_a_customer_through_the_service_fires_the_default_rule_once(database):
    with database.session() as s:
        org = org_with_defaults(s)
        rule_id = s.execute(sa.select(AutomationRule.id).where(
            AutomationRule.default_key == "new_customer_task")).scalar_one()
        alice = actor(org.alice)
    created = []

    def create(name):
        with database.session() as s:
            created.append(customers.create_customer(s, alice, CustomerIn(name=name)).id)

    create("首个客户有限公司")  # fills the rule cache
    before = utcnow()
    statements = _statements(database.engine, lambda: create("深圳市腾讯计算机系统有限公司"))
    # warm cache: the rules are not read again, and the rule costs one statement (PostgreSQL: task and
    # firing in one CTE) or two (SQLite)
    assert not [q for q in statements if "automation_rules" in q]
    rule_statements = [q for q in statements if "INSERT INTO tasks" in q or "INSERT INTO rule_firings" in q]
    assert len(rule_statements) == (1 if database.dialect == "postgresql" else 2)
    with database.session() as s:
        [task] = s.execute(sa.select(Task).where(Task.customer_id == created[1])).scalars().all()
        assert task.title == "【新客户跟进】深圳市腾讯计算机系统有限公司"
        assert task.assignee_id == org.alice.id and task.source == "rule" and task.status == "open"
        assert task.created_by_id is None and task.opportunity_id is None
        assert timedelta(days=3) <= task.due_at - before < timedelta(days=3, minutes=5)
        [firing] = s.execute(sa.select(RuleFiring).where(RuleFiring.subject_id == created[1])).scalars().all()
        assert (firing.rule_id, firing.corp_id, firing.trigger, firing.subject_type, firing.status) == (
            rule_id, org.corp.id, "customer_created", "customer", "done")
        assert firing.actions == [{"type": "create_task", "task_ids": [task.id], "assignee_ids": [org.alice.id]}]
        assert len(firing.chain_id) == 32 and firing.detail is None
        assert s.execute(sa.select(sa.func.count()).select_from(Task)).scalar() == 2


_SET_ENABLED_ELSEWHERE = """
import sys
from app.schemas_approvals import RulePatch
from app.services import rules
from app.services.actor import Actor
from models.db import Database

url, corp_id, admin_id, rule_id, enabled = sys.argv[1:]
db = Database(url)
with db.session() as s:
    rules.update_rule(s, Actor(corp_id=int(corp_id), user_id=int(admin_id), role="admin"), int(rule_id),
                      RulePatch(enabled=enabled == "on"))
db.dispose()
"""


def test_a_rule_changed_by_another_process_takes_effect_here_at_once(database):
    with database.session() as s:
        org = org_with_defaults(s)
        rule_id = s.execute(sa.select(AutomationRule.id).where(
            AutomationRule.default_key == "new_customer_task")).scalar_one()
    alice = actor(org.alice)

    def tasks_after_creating(name):
        with database.session() as s:
            customer = customers.create_customer(s, alice, CustomerIn(name=name))
            return s.execute(sa.select(sa.func.count()).select_from(Task).where(
                Task.customer_id == customer.id)).scalar()

    def elsewhere(enabled):
        subprocess.run([sys.executable, "-c", _SET_ENABLED_ELSEWHERE, database.url, str(org.corp.id),
                        str(org.admin.id), str(rule_id), enabled], check=True, cwd=Path(__file__).parent.parent)

    assert tasks_after_creating("甲公司") == 1  # the rule is now cached in this process
    elsewhere("off")
    assert tasks_after_creating("乙公司") == 0
    elsewhere("on")
    assert tasks_after_creating("丙公司") == 1


def test_a_rolled_back_rule_change_never_reaches_the_cache(database):
    with database.session() as s:
        org = org_with_defaults(s)
        rule_id = s.execute(sa.select(AutomationRule.id).where(
            AutomationRule.default_key == "new_customer_task")).scalar_one()
        customer = f.customer(s, org.corp, org.alice)
        rules.fire(s, actor(org.alice), "customer_created", customer)  # cached: enabled
    s = database.sessionmaker()
    try:
        rules.update_rule(s, actor(org.admin), rule_id, RulePatch(enabled=False))
        # the changing transaction sees its own change
        assert rules.fire(s, actor(org.alice), "customer_created", f.customer(s, org.corp, org.alice)) == []
    finally:
        s.rollback()
        s.close()
    with database.session() as s:
        [firing] = rules.fire(s, actor(org.alice), "customer_created", f.customer(s, org.corp, org.alice))
        assert firing.rule_id == rule_id and firing.status == "done"
