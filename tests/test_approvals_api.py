"""Approvals over HTTP: submit → inboxes → decide/withdraw, error shapes, flows admin, tenant isolation."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from models.approvals import ApprovalFlow
from models.audit import AuditLog
from tests import factories as f
from tests.approval_helpers import opportunity, org_with_defaults


@pytest.fixture
def world(database):
    with database.session() as s:
        org = org_with_defaults(s)
        opp = opportunity(s, org.corp, org.alice, amount="100000")
    return org, opp


def _submit(client, opp_id, **extra):
    body = {"kind": "discount", "subject_type": "opportunity", "subject_id": opp_id,
            "outcome": {"discount_rate": "0.15", "amount": "85000"}, "reason": "客户要求折扣", **extra}
    return client.post("/api/v1/approvals", json=body)


def test_submit_decide_and_the_three_inboxes(client, world, database):
    org, opp = world
    f.login(client, org.alice, org.corp)
    resp = _submit(client, opp.id)
    assert resp.status_code == 201, resp.get_json()
    detail = resp.get_json()
    approval_id = detail["id"]
    assert detail["state"] == "pending" and detail["can_withdraw"] and not detail["can_decide"]
    assert detail["subject_facts"]["amount"] == "100000.00" and detail["subject_facts"]["stage"] == "initial"
    assert detail["steps"][0]["tasks"][0]["approver"]["name"] == "东组长"
    assert [i["id"] for i in client.get("/api/v1/approvals?box=submitted").get_json()["items"]] == [approval_id]
    assert client.get("/api/v1/approvals?box=waiting").get_json()["items"] == []

    f.login(client, org.east_lead, org.corp)
    waiting = client.get("/api/v1/approvals").get_json()["items"]
    assert [i["id"] for i in waiting] == [approval_id]
    mine = client.get(f"/api/v1/approvals/{approval_id}").get_json()
    assert mine["can_decide"] and mine["my_task_id"]
    resp = client.post(f"/api/v1/approvals/{approval_id}/decision", json={"decision": "reject"})
    assert resp.status_code == 422 and resp.get_json()["error"]["fields"] == {"comment": "required"}
    resp = client.post(f"/api/v1/approvals/{approval_id}/decision",
                       json={"decision": "approve", "comment": "同意", "task_id": mine["my_task_id"]})
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["state"] == "approved"
    assert client.get("/api/v1/approvals?box=waiting").get_json()["items"] == []
    assert [i["id"] for i in client.get("/api/v1/approvals?box=done").get_json()["items"]] == [approval_id]

    resp = client.post(f"/api/v1/approvals/{approval_id}/decision", json={"decision": "approve"})
    assert resp.status_code == 409
    err = resp.get_json()["error"]
    assert err["code"] == "approval_finished" and err["state"] == "approved" and "已通过" in err["message"]
    with database.session() as s:
        actions = s.execute(sa.select(AuditLog.action).where(AuditLog.entity_type == "approval",
                                                             AuditLog.entity_id == approval_id)
                            .order_by(AuditLog.id)).scalars().all()
    assert actions == ["submit", "step_start", "approve", "approve_final"]


def test_withdraw_and_visibility(client, world):
    org, opp = world
    f.login(client, org.alice, org.corp)
    approval_id = _submit(client, opp.id).get_json()["id"]
    f.login(client, org.bob, org.corp)  # neither applicant nor approver
    assert client.get(f"/api/v1/approvals/{approval_id}").status_code == 404
    assert client.post(f"/api/v1/approvals/{approval_id}/withdraw").status_code == 404
    f.login(client, org.alice, org.corp)
    resp = client.post(f"/api/v1/approvals/{approval_id}/withdraw")
    assert resp.status_code == 200 and resp.get_json()["state"] == "withdrawn"
    assert client.post(f"/api/v1/approvals/{approval_id}/withdraw").status_code == 409


def test_submit_validation_names_the_field(client, world):
    org, opp = world
    f.login(client, org.alice, org.corp)
    cases = [
        ({"subject_type": "opportunity", "subject_id": opp.id}, "body"),
        ({"kind": "discount", "subject_type": "opportunity", "subject_id": opp.id,
          "outcome": {"discount_rate": "1.5"}}, "outcome.discount_rate"),
        ({"kind": "discount", "subject_type": "planet", "subject_id": opp.id}, "subject_type"),
        ({"kind": "discount", "subject_type": "opportunity", "subject_id": 2**63}, "subject_id"),
    ]
    for payload, field in cases:
        resp = client.post("/api/v1/approvals", json=payload)
        assert resp.status_code == 422, (payload, resp.get_json())
        assert field in resp.get_json()["error"]["fields"], resp.get_json()
    resp = _submit(client, opp.id + 1000)
    assert resp.status_code == 404
    for query in ("box=nope", "cursor=!!!", "limit=0", "extra=1"):
        assert client.get(f"/api/v1/approvals?{query}").status_code == 422, query
    assert client.get(f"/api/v1/approvals/{2**63 + 5}").status_code == 404


def test_inbox_pages_with_a_cursor(client, world, database):
    org, _ = world
    with database.session() as s:
        opps = [opportunity(s, org.corp, org.alice, name=f"商机{i}") for i in range(5)]
    f.login(client, org.alice, org.corp)
    ids = [_submit(client, o.id).get_json()["id"] for o in opps]
    f.login(client, org.east_lead, org.corp)
    seen, cursor = [], None
    while True:
        page = client.get("/api/v1/approvals", query_string={"limit": 2, **({"cursor": cursor} if cursor else {})})
        body = page.get_json()
        seen += [i["id"] for i in body["items"]]
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert seen == sorted(ids, reverse=True)


def test_flows_admin_crud(client, world, database):
    org, _ = world
    f.login(client, org.alice, org.corp)
    assert client.get("/api/v1/admin/approval-flows").status_code == 403
    f.login(client, org.admin, org.corp)
    kinds = sorted(i["kind"] for i in client.get("/api/v1/admin/approval-flows").get_json()["items"])
    assert kinds == ["contract", "discount", "large_opportunity"]
    flow = {"name": "华南特批", "kind": "custom", "steps": [
        {"name": "华南负责人", "approvers": [{"type": "dept_leader", "department_id": org.south.id}], "mode": "any",
         "condition": [{"field": "amount", "op": "gt", "value": 1000}]}], "cc": [{"type": "role", "role": "admin"}],
        "locked_fields": ["amount", "stage"]}
    resp = client.post("/api/v1/admin/approval-flows", json=flow)
    assert resp.status_code == 201, resp.get_json()
    flow_id = resp.get_json()["id"]
    assert client.post("/api/v1/admin/approval-flows", json=flow).status_code == 409
    bad = {**flow, "name": "x", "steps": [{"name": "s", "approvers": [{"type": "users", "user_ids": [999999]}]}]}
    resp = client.post("/api/v1/admin/approval-flows", json=bad)
    assert resp.status_code == 422 and "steps.0.approvers" in resp.get_json()["error"]["fields"]
    resp = client.post("/api/v1/admin/approval-flows", json={**flow, "name": "y", "locked_fields": ["password"]})
    assert resp.status_code == 422 and "locked_fields" in resp.get_json()["error"]["fields"]
    resp = client.post("/api/v1/admin/approval-flows", json={**flow, "name": "z", "steps": [
        {"name": "s", "approvers": [{"type": "nth_leader", "n": 0}]}]})
    assert resp.status_code == 422
    resp = client.patch(f"/api/v1/admin/approval-flows/{flow_id}", json={"active": False})
    assert resp.status_code == 200 and resp.get_json()["active"] is False
    assert client.delete(f"/api/v1/admin/approval-flows/{flow_id}").status_code == 204
    assert client.get(f"/api/v1/admin/approval-flows/{flow_id}").status_code == 404
    with database.session() as s:
        actions = s.execute(sa.select(AuditLog.action).where(AuditLog.entity_type == "approval_flow",
                                                             AuditLog.entity_id == flow_id)
                            .order_by(AuditLog.id)).scalars().all()
        assert actions == ["create", "update", "delete"]
        assert s.get(ApprovalFlow, flow_id) is None


def test_corp_b_approvals_flows_and_rules_are_404(client, database):
    with database.session() as s:
        a = org_with_defaults(s)
        b = org_with_defaults(s)
        opp_b = opportunity(s, b.corp, b.alice)
        from app.schemas_approvals import SubmitIn
        from app.services import approvals
        from tests.approval_helpers import actor

        inst_b = approvals.submit(s, actor(b.alice), SubmitIn(kind="discount", subject_type="opportunity",
                                                              subject_id=opp_b.id))
        flow_b = s.execute(sa.select(ApprovalFlow.id).where(ApprovalFlow.corp_id == b.corp.id)).scalars().first()
        from models.rules import AutomationRule

        rule_b = s.execute(sa.select(AutomationRule.id).where(AutomationRule.corp_id == b.corp.id)).scalars().first()
    f.login(client, a.admin, a.corp)
    assert client.get(f"/api/v1/approvals/{inst_b.id}").status_code == 404
    assert client.post(f"/api/v1/approvals/{inst_b.id}/withdraw").status_code == 404
    assert client.post(f"/api/v1/approvals/{inst_b.id}/decision", json={"decision": "approve"}).status_code == 404
    assert _submit(client, opp_b.id).status_code == 404
    assert client.get(f"/api/v1/admin/approval-flows/{flow_b}").status_code == 404
    assert client.patch(f"/api/v1/admin/approval-flows/{flow_b}", json={"active": False}).status_code == 404
    assert client.delete(f"/api/v1/admin/approval-flows/{flow_b}").status_code == 404
    assert client.get(f"/api/v1/admin/rules/{rule_b}").status_code == 404
    assert client.patch(f"/api/v1/admin/rules/{rule_b}", json={"enabled": False}).status_code == 404
    assert client.get(f"/api/v1/admin/rule-firings?rule_id={rule_b}").status_code == 404
    flows = client.get("/api/v1/admin/approval-flows").get_json()["items"]
    assert flow_b not in [x["id"] for x in flows]


def test_hostile_input_is_a_4xx_never_a_500(client, world):
    org, opp = world
    f.login(client, org.alice, org.corp)
    bad = [
        {"kind": "discount", "subject_type": "opportunity", "subject_id": opp.id, "reason": "a\x00b"},
        {"kind": "discount", "subject_type": "opportunity", "subject_id": opp.id, "outcome": {"note": "\x00"}},
        {"kind": "discount", "subject_type": "opportunity", "subject_id": opp.id, "outcome": {"amount": "1e30"}},
        {"kind": "discount", "subject_type": "opportunity", "subject_id": True},
        {"kind": "discount", "subject_type": "opportunity", "subject_id": opp.id, "title": "x" * 201},
    ]
    for payload in bad:
        resp = client.post("/api/v1/approvals", json=payload)
        assert resp.status_code == 422, (payload, resp.get_json())
    approval_id = _submit(client, opp.id).get_json()["id"]
    f.login(client, org.east_lead, org.corp)
    for payload in ({"decision": "maybe"}, {"decision": "reject", "comment": "\x00"}, {"decision": "approve",
                                                                                         "task_id": "zz"},
                    {"decision": "approve", "step": -1}):
        resp = client.post(f"/api/v1/approvals/{approval_id}/decision", json=payload)
        assert resp.status_code == 422, (payload, resp.get_json())
    resp = client.post(f"/api/v1/approvals/{approval_id}/decision", data="nope", content_type="text/plain")
    assert resp.status_code == 400
    f.login(client, org.admin, org.corp)
    resp = client.post("/api/v1/admin/rules", json={"name": "n\x00", "trigger": "customer_created",
                                                    "actions": [{"type": "notify", "to": ["owner"], "message": "x"}]})
    assert resp.status_code == 422
    resp = client.post("/api/v1/admin/approval-flows", json={"name": "f", "kind": "custom", "steps": [
        {"name": "s", "approvers": [{"type": "users", "user_ids": [2**63]}]}]})
    assert resp.status_code == 422
