"""Lead assignment rules (match, round robin, inactive skipped, reason recorded) and public-pool caps."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from app.errors import Conflict, ValidationError
from app.services import assignment, pool_claims
from models.audit import AuditLog
from models.crm import Customer
from models.rules import AssignmentRule
from models.types import utcnow
from tests import factories as f
from tests.approval_helpers import actor, org_with_defaults


def _rule(session, corp, name, **kwargs):
    row = AssignmentRule(corp_id=corp.id, name=name, regions=kwargs.pop("regions", []),
                         industries=kwargs.pop("industries", []), sources=kwargs.pop("sources", []), **kwargs)
    session.add(row)
    session.flush()
    return row


def test_round_robin_in_a_team_skips_inactive_members_and_records_the_reason(session):
    org = org_with_defaults(session)
    carol = f.user(session, org.corp, "王五", departments=[org.east])
    dave = f.user(session, org.corp, "赵六", departments=[org.east], active=False)
    _rule(session, org.corp, "华南-零售", regions=["华南"], user_id=org.bob.id)
    _rule(session, org.corp, "华东-制造业", regions=["华东"], industries=["制造业"], department_id=org.east.id)
    got = []
    for _ in range(4):
        c = f.customer(session, org.corp, None, region="华东", industry="制造业")
        chosen = assignment.assign_unowned(session, actor(org.admin), c)
        got.append((c.owner_id, c.in_pool, chosen.reason))
    members = [org.east_lead.id, org.alice.id, carol.id]  # 赵六 is inactive
    assert [g[0] for g in got] == members + members[:1]
    assert all(g[1] is False for g in got)
    assert got[2][2].endswith("assigned to 王五 by rule 华东-制造业, round-robin position 3")
    assert dave.id not in [g[0] for g in got]
    reasons = session.execute(sa.select(AuditLog.changes).where(AuditLog.action == "assign")).scalars().all()
    assert len(reasons) == 4 and "round-robin position 1" in reasons[0]["reason"]["after"]


def test_first_matching_rule_wins_and_a_left_user_falls_through(session):
    org = org_with_defaults(session)
    _rule(session, org.corp, "官网线索", sources=["官网"], user_id=org.bob.id, sort_order=1)
    _rule(session, org.corp, "兜底", user_id=org.alice.id, sort_order=2)
    web = f.customer(session, org.corp, None, source="官网")
    other = f.customer(session, org.corp, None, source="展会")
    assert assignment.assign_unowned(session, actor(org.admin), web).owner_id == org.bob.id
    assert assignment.assign_unowned(session, actor(org.admin), other).owner_id == org.alice.id
    org.bob.active = False
    session.flush()
    again = f.customer(session, org.corp, None, source="官网")
    assert assignment.assign_unowned(session, actor(org.admin), again).owner_id == org.alice.id
    owned = f.customer(session, org.corp, org.bob)
    assert assignment.assign_unowned(session, actor(org.admin), owned) is None


def test_no_matching_rule_leaves_the_customer_in_the_pool(session):
    org = org_with_defaults(session)
    _rule(session, org.corp, "华北", regions=["华北"], user_id=org.bob.id)
    c = f.customer(session, org.corp, None, region="西南")
    assert assignment.assign_unowned(session, actor(org.admin), c) is None
    assert c.owner_id is None and c.in_pool


def _pool(session, org, n, **kw):
    return [f.customer(session, org.corp, None, **kw) for _ in range(n)]


def test_holding_cap(session):
    org = org_with_defaults(session)
    org.corp.settings = {**org.corp.settings, "pool_hold_cap": 2, "pool_daily_claims": 0}
    f.customer(session, org.corp, org.alice)
    a, b = _pool(session, org, 2)
    pool_claims.claim(session, actor(org.alice), a.id)
    with pytest.raises(Conflict) as err:
        pool_claims.claim(session, actor(org.alice), b.id)
    assert err.value.code == "hold_cap" and b.in_pool


def test_daily_claim_cap_resets_at_local_midnight(session):
    org = org_with_defaults(session)
    org.corp.settings = {**org.corp.settings, "pool_daily_claims": 2}
    customers = _pool(session, org, 3)
    noon = utcnow().replace(hour=4, minute=0, second=0, microsecond=0)  # 12:00 in Asia/Shanghai
    pool_claims.claim(session, actor(org.alice), customers[0].id, now=noon)
    pool_claims.claim(session, actor(org.alice), customers[1].id, now=noon)
    with pytest.raises(Conflict) as err:
        pool_claims.claim(session, actor(org.alice), customers[2].id, now=noon)
    assert err.value.code == "daily_claim_cap"
    # someone else is not affected; the next local day the cap is fresh
    next_day = noon + timedelta(hours=12, minutes=30)  # 00:30 local
    pool_claims.claim(session, actor(org.alice), customers[2].id, now=next_day)
    assert customers[2].owner_id == org.alice.id


def test_return_needs_a_reason_and_the_previous_owner_may_not_reclaim_for_d_days(session):
    org = org_with_defaults(session)
    org.corp.settings = {**org.corp.settings, "pool_reclaim_ban_days": 7}
    c = f.customer(session, org.corp, org.alice)
    with pytest.raises(ValidationError):
        pool_claims.return_to_pool(session, actor(org.alice), c.id, " ")
    now = utcnow()
    pool_claims.return_to_pool(session, actor(org.alice), c.id, "客户无需求", now=now)
    assert c.in_pool and c.owner_id is None
    with pytest.raises(Conflict) as err:
        pool_claims.claim(session, actor(org.alice), c.id, now=now + timedelta(days=6))
    assert err.value.code == "reclaim_ban"
    pool_claims.claim(session, actor(org.alice), c.id, now=now + timedelta(days=7, minutes=1))
    assert c.owner_id == org.alice.id


def test_claimed_customer_cannot_be_claimed_twice_and_others_cannot_return_it(session):
    org = org_with_defaults(session)
    [c] = _pool(session, org, 1)
    pool_claims.claim(session, actor(org.alice), c.id)
    with pytest.raises(Conflict) as err:
        pool_claims.claim(session, actor(org.bob), c.id)
    assert err.value.code == "already_claimed"
    from app.errors import NotFound

    with pytest.raises(NotFound):
        pool_claims.return_to_pool(session, actor(org.bob), c.id, "不要了")
    pool_claims.return_to_pool(session, actor(org.east_lead), c.id, "组长收回")  # alice's team leader
    assert session.get(Customer, c.id).in_pool


def test_pool_and_assignment_api(client, database):
    with database.session() as s:
        org = org_with_defaults(s)
        org.corp.settings = {**org.corp.settings, "pool_daily_claims": 1}
        a, b = _pool(s, org, 2, region="华东")
    f.login(client, org.alice, org.corp)
    resp = client.post(f"/api/v1/customers/{a.id}/claim")
    assert resp.status_code == 200 and resp.get_json()["owner_id"] == org.alice.id
    resp = client.post(f"/api/v1/customers/{b.id}/claim")
    assert resp.status_code == 409 and resp.get_json()["error"]["code"] == "daily_claim_cap"
    status = client.get("/api/v1/pool/me").get_json()
    assert status["claimed_today"] == 1 and status["pool_daily_claims"] == 1
    resp = client.post(f"/api/v1/customers/{a.id}/return", json={})
    assert resp.status_code == 422 and "reason" in resp.get_json()["error"]["fields"]
    resp = client.post(f"/api/v1/customers/{a.id}/return", json={"reason": "重复客户"})
    assert resp.status_code == 200 and resp.get_json()["in_pool"] is True

    assert client.get("/api/v1/admin/assignment-rules").status_code == 403
    f.login(client, org.admin, org.corp)
    resp = client.post("/api/v1/admin/assignment-rules", json={"name": "华东", "regions": ["华东"],
                                                              "department_id": org.east.id})
    assert resp.status_code == 201, resp.get_json()
    rule_id = resp.get_json()["id"]
    resp = client.post("/api/v1/admin/assignment-rules", json={"name": "坏", "user_id": org.bob.id,
                                                              "department_id": org.east.id})
    assert resp.status_code == 422
    resp = client.post(f"/api/v1/customers/{b.id}/auto-assign")
    assert resp.status_code == 200 and "华东" in resp.get_json()["reason"]
    assert resp.get_json()["owner_id"] in (org.east_lead.id, org.alice.id)
    resp = client.patch(f"/api/v1/admin/assignment-rules/{rule_id}", json={"enabled": False})
    assert resp.status_code == 200 and resp.get_json()["enabled"] is False
    assert client.delete(f"/api/v1/admin/assignment-rules/{rule_id}").status_code == 204
