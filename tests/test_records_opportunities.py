"""Opportunities API: stages, won/lost rules, stage-change audit, list filters and pages, scope, tenants."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from models.audit import AuditLog
from models.crm import Opportunity, OpportunityStage
from tests import factories as f


def _count(database, model, *where) -> int:
    with database.session() as s:
        return s.execute(sa.select(sa.func.count()).select_from(model).where(*where)).scalar()


@pytest.fixture
def world(database):
    with database.session() as s:
        org = f.org(s)
        mine = f.customer(s, org.corp, org.alice, name="张三的客户")
        theirs = f.customer(s, org.corp, org.bob, name="李四的客户")
    return org, mine, theirs


def _create(client, customer_id, **extra):
    resp = client.post("/api/v1/opportunities", json={"customer_id": customer_id, "name": "年度采购", **extra})
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()


def test_stages_are_listed_in_order(client, world):
    org, _, _ = world
    f.login(client, org.alice, org.corp)
    items = client.get("/api/v1/opportunity-stages").get_json()["items"]
    assert [s["key"] for s in items] == ["initial", "needs", "proposal", "negotiation", "won", "lost"]
    assert [s["is_won"] for s in items].count(True) == 1 and items[-1]["is_lost"]


def test_create_defaults_and_round_trip(client, database, world):
    org, mine, _ = world
    f.login(client, org.alice, org.corp)
    opp = _create(client, mine.id, amount="12000.5", expected_close_date="2027-01-31")
    assert opp["stage"]["key"] == "initial" and opp["owner"]["id"] == org.alice.id
    assert opp["amount"] == "12000.50" and opp["customer"] == {"id": mine.id, "name": "张三的客户"}
    assert opp["closed_at"] is None
    got = client.get(f"/api/v1/opportunities/{opp['id']}").get_json()
    assert got["expected_close_date"] == "2027-01-31"
    # Same amount spelled differently is not a change.
    resp = client.patch(f"/api/v1/opportunities/{opp['id']}", json={"amount": 12000.50, "name": "年度采购（二期）"})
    assert resp.status_code == 200 and resp.get_json()["name"] == "年度采购（二期）"
    with database.session() as s:
        entries = (
            s.execute(sa.select(AuditLog).where(AuditLog.entity_type == "opportunity").order_by(AuditLog.id))
            .scalars()
            .all()
        )
        assert [e.action for e in entries] == ["create", "update"]
        assert set(entries[1].changes) == {"name"}

    assert client.delete(f"/api/v1/opportunities/{opp['id']}").status_code == 204
    assert client.get(f"/api/v1/opportunities/{opp['id']}").status_code == 404
    with database.session() as s:
        assert s.get(Opportunity, opp["id"]).deleted_at is not None
    assert _count(database, AuditLog, AuditLog.action == "delete", AuditLog.entity_type == "opportunity") == 1


def test_won_and_lost_rules(client, database, world):
    org, mine, _ = world
    f.login(client, org.alice, org.corp)
    opp = _create(client, mine.id, stage_key="proposal")
    url = f"/api/v1/opportunities/{opp['id']}"

    resp = client.patch(url, json={"stage_key": "lost"})
    assert resp.status_code == 422 and "lost_reason" in resp.get_json()["error"]["fields"]
    resp = client.patch(url, json={"stage_key": "lost", "lost_reason": "   "})
    assert resp.status_code == 422 and "lost_reason" in resp.get_json()["error"]["fields"]
    resp = client.patch(url, json={"stage_key": "negotiation", "lost_reason": "太贵"})
    assert resp.status_code == 422 and "lost_reason" in resp.get_json()["error"]["fields"]
    resp = client.patch(url, json={"stage_key": "nope"})
    assert resp.status_code == 422 and "stage_key" in resp.get_json()["error"]["fields"]
    resp = client.patch(url, json={"stage_key": None})
    assert resp.status_code == 422 and "stage_key" in resp.get_json()["error"]["fields"]
    with database.session() as s:
        row = s.get(Opportunity, opp["id"])
        assert s.get(OpportunityStage, row.stage_id).key == "proposal" and row.closed_at is None
    assert _count(database, AuditLog, AuditLog.action != "create") == 0

    lost = client.patch(url, json={"stage_key": "lost", "lost_reason": "预算取消"}).get_json()
    assert lost["stage"]["key"] == "lost" and lost["lost_reason"] == "预算取消" and lost["closed_at"]

    reopened = client.patch(url, json={"stage_key": "negotiation"}).get_json()
    assert reopened["closed_at"] is None and reopened["lost_reason"] is None

    won = client.patch(url, json={"stage_key": "won"}).get_json()
    assert won["stage"]["is_won"] and won["closed_at"] and won["lost_reason"] is None

    with database.session() as s:
        changes = (
            s.execute(
                sa.select(AuditLog.changes)
                .where(AuditLog.entity_id == opp["id"], AuditLog.action == "stage_change")
                .order_by(AuditLog.id)
            )
            .scalars()
            .all()
        )
        assert [c["stage"] for c in changes] == [
            {"before": "proposal", "after": "lost"},
            {"before": "lost", "after": "negotiation"},
            {"before": "negotiation", "after": "won"},
        ]
        assert changes[0]["lost_reason"] == {"before": None, "after": "预算取消"}
        updates = s.execute(
            sa.select(sa.func.count())
            .select_from(AuditLog)
            .where(AuditLog.entity_id == opp["id"], AuditLog.action == "update")
        ).scalar()
        assert updates == 3


def test_creating_straight_into_lost_needs_a_reason(client, database, world):
    org, mine, _ = world
    f.login(client, org.alice, org.corp)
    resp = client.post("/api/v1/opportunities", json={"customer_id": mine.id, "name": "x", "stage_key": "lost"})
    assert resp.status_code == 422 and "lost_reason" in resp.get_json()["error"]["fields"]
    assert _count(database, Opportunity) == 0
    opp = _create(client, mine.id, stage_key="lost", lost_reason="对手低价")
    assert opp["closed_at"] and opp["lost_reason"] == "对手低价"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"name": "x"}, "customer_id"),
        ({"customer_id": "MINE"}, "name"),
        ({"customer_id": "MINE", "name": "x", "stage_key": "closed"}, "stage_key"),
        ({"customer_id": "MINE", "name": "x", "amount": -1}, "amount"),
        ({"customer_id": "MINE", "name": "x", "amount": "1.001"}, "amount"),
        ({"customer_id": "MINE", "name": "x", "expected_close_date": "下月"}, "expected_close_date"),
        ({"customer_id": "MINE", "name": "x", "owner_id": 999999}, "owner_id"),
        ({"customer_id": "MINE", "name": "x", "owner_id": "BOB"}, "owner_id"),
        ({"customer_id": "MINE", "name": "x", "custom": {"nope": 1}}, "custom.nope"),
        ({"customer_id": "THEIRS", "name": "x"}, "customer_id"),
    ],
)
def test_bad_opportunity_input_names_the_field_and_writes_nothing(client, database, world, payload, field):
    org, mine, theirs = world
    subs = {"MINE": mine.id, "THEIRS": theirs.id, "BOB": org.bob.id}
    payload = {k: subs.get(v, v) if isinstance(v, str) else v for k, v in payload.items()}
    f.login(client, org.alice, org.corp)
    resp = client.post("/api/v1/opportunities", json=payload)
    assert 400 <= resp.status_code < 500
    assert field in resp.get_json()["error"]["fields"], resp.get_json()
    assert _count(database, Opportunity) == 0 and _count(database, AuditLog) == 0


def test_list_filters_scope_and_pages(client, database, world):
    org, mine, theirs = world
    f.login(client, org.alice, org.corp)
    alice_ids = [
        _create(client, mine.id, name=f"甲{i}", stage_key="needs" if i % 2 else "initial")["id"] for i in range(5)
    ]
    f.login(client, org.bob, org.corp)
    bob_id = _create(client, theirs.id, name="乙")["id"]

    # Bob sees only his own; alice's are 404 to him.
    items = client.get("/api/v1/opportunities").get_json()["items"]
    assert [o["id"] for o in items] == [bob_id]
    assert client.get(f"/api/v1/opportunities/{alice_ids[0]}").status_code == 404
    assert client.patch(f"/api/v1/opportunities/{alice_ids[0]}", json={"name": "改"}).status_code == 404
    assert client.delete(f"/api/v1/opportunities/{alice_ids[0]}").status_code == 404
    assert client.get("/api/v1/opportunities", query_string={"customer_id": mine.id}).status_code == 404
    assert client.get("/api/v1/opportunities", query_string={"owner_id": org.alice.id}).get_json()["items"] == []

    # The manager of both groups sees all, filters by stage/owner/customer, and pages.
    f.login(client, org.manager, org.corp)
    seen, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get("/api/v1/opportunities", query_string=params).get_json()
        seen += [o["id"] for o in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert sorted(seen) == sorted([*alice_ids, bob_id]) and len(seen) == len(set(seen))
    needs = client.get("/api/v1/opportunities", query_string={"stage_key": "needs"}).get_json()["items"]
    assert sorted(o["id"] for o in needs) == sorted(alice_ids[1::2])
    by_owner = client.get("/api/v1/opportunities", query_string={"owner_id": org.bob.id}).get_json()["items"]
    assert [o["id"] for o in by_owner] == [bob_id]
    by_customer = client.get("/api/v1/opportunities", query_string={"customer_id": mine.id}).get_json()["items"]
    assert sorted(o["id"] for o in by_customer) == sorted(alice_ids)
    bad = client.get("/api/v1/opportunities", query_string={"stage_key": "nope"})
    assert bad.status_code == 422 and "stage_key" in bad.get_json()["error"]["fields"]

    # The east group lead sees alice's but not bob's.
    f.login(client, org.east_lead, org.corp)
    items = client.get("/api/v1/opportunities", query_string={"limit": 100}).get_json()["items"]
    assert sorted(o["id"] for o in items) == sorted(alice_ids)


def test_other_tenant_cannot_reach_opportunities(client, database, world):
    org, mine, _ = world
    f.login(client, org.alice, org.corp)
    opp_id = _create(client, mine.id)["id"]
    with database.session() as s:
        other = f.org(s, name="乙公司")
    f.login(client, other.admin, other.corp)
    assert client.get("/api/v1/opportunities").get_json()["items"] == []
    assert client.get(f"/api/v1/opportunities/{opp_id}").status_code == 404
    assert client.patch(f"/api/v1/opportunities/{opp_id}", json={"stage_key": "won"}).status_code == 404
    assert client.delete(f"/api/v1/opportunities/{opp_id}").status_code == 404
    resp = client.post("/api/v1/opportunities", json={"customer_id": mine.id, "name": "x"})
    assert resp.status_code == 404
    assert _count(database, Opportunity) == 1
    # Stage keys resolve within the caller's corp only.
    stages = client.get("/api/v1/opportunity-stages").get_json()["items"]
    with database.session() as s:
        own = set(s.execute(sa.select(OpportunityStage.id).where(OpportunityStage.corp_id == other.corp.id)).scalars())
    assert {st["id"] for st in stages} == own
