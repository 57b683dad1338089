"""Follow-ups API: timeline, the customer's last/next contact times, future-time and contact checks, delete rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from models.audit import AuditLog
from models.crm import Contact, Customer, FollowUp
from tests import factories as f

SHANGHAI = ZoneInfo("Asia/Shanghai")


def _local(dt: datetime) -> str:
    """A naive local (Asia/Shanghai) time string, as a phone would send it."""
    return dt.astimezone(SHANGHAI).replace(tzinfo=None, microsecond=0).isoformat()


def _count(database, model, *where) -> int:
    with database.session() as s:
        return s.execute(sa.select(sa.func.count()).select_from(model).where(*where)).scalar()


@pytest.fixture
def world(database):
    with database.session() as s:
        org = f.org(s)
        mine = f.customer(s, org.corp, org.alice, name="张三的客户")
        theirs = f.customer(s, org.corp, org.bob, name="李四的客户")
        contact = Contact(corp_id=org.corp.id, customer_id=mine.id, name="赵六")
        other_contact = Contact(corp_id=org.corp.id, customer_id=theirs.id, name="钱七")
        s.add_all([contact, other_contact])
        s.flush()
        ids = {"contact": contact.id, "other_contact": other_contact.id}
    return org, mine, theirs, ids


def test_follow_up_moves_customer_last_and_next_contact(client, database, world):
    org, mine, _, ids = world
    now = datetime.now(UTC).replace(microsecond=0)
    occurred, upcoming = now - timedelta(days=1), now + timedelta(days=3)
    f.login(client, org.alice, org.corp)
    resp = client.post(
        f"/api/v1/customers/{mine.id}/follow-ups",
        json={
            "kind": "visit",
            "content": "上门拜访，确认需求",
            "occurred_at": _local(occurred),
            "contact_id": ids["contact"],
            "next_contact_at": _local(upcoming),
            "location": "杭州",
            "latitude": 30.27,
            "longitude": 120.15,
        },
    )
    assert resp.status_code == 201, resp.get_json()
    body = resp.get_json()
    assert body["author"]["id"] == org.alice.id and body["contact_id"] == ids["contact"]
    # Naive times are the corp's local time: stored and shown in UTC.
    assert body["occurred_at"] == occurred.isoformat().replace("+00:00", "Z")
    with database.session() as s:
        c = s.get(Customer, mine.id)
        assert c.last_contact_at == occurred and c.next_contact_at == upcoming

    # An older follow-up without a next time moves neither.
    resp = client.post(
        f"/api/v1/customers/{mine.id}/follow-ups",
        json={"kind": "call", "content": "补记上周电话", "occurred_at": (now - timedelta(days=7)).isoformat()},
    )
    assert resp.status_code == 201
    with database.session() as s:
        c = s.get(Customer, mine.id)
        assert c.last_contact_at == occurred and c.next_contact_at == upcoming

    # Without occurred_at it is "now".
    resp = client.post(f"/api/v1/customers/{mine.id}/follow-ups", json={"kind": "wechat", "content": "微信沟通"})
    assert resp.status_code == 201
    with database.session() as s:
        c = s.get(Customer, mine.id)
        assert abs(c.last_contact_at - datetime.now(UTC)) < timedelta(minutes=1)
        assert c.next_contact_at == upcoming
        customer_audits = (
            s.execute(
                sa.select(AuditLog.changes)
                .where(AuditLog.entity_type == "customer", AuditLog.entity_id == mine.id)
                .order_by(AuditLog.id)
            )
            .scalars()
            .all()
        )
        assert len(customer_audits) == 2 and "next_contact_at" in customer_audits[0]
        assert _count(database, AuditLog, AuditLog.entity_type == "follow_up", AuditLog.action == "create") == 3


def test_timeline_is_newest_first_and_cursor_paged(client, database, world):
    org, mine, _, _ = world
    base = datetime.now(UTC) - timedelta(days=30)
    with database.session() as s:
        for i in range(7):
            at = base + timedelta(days=i // 2)  # pairs share a time: the id breaks the tie
            s.add(
                FollowUp(
                    corp_id=org.corp.id,
                    customer_id=mine.id,
                    author_id=org.alice.id,
                    kind="call",
                    content=f"第{i}次",
                    occurred_at=at,
                    created_at=at,
                )
            )
    f.login(client, org.alice, org.corp)
    seen, cursor = [], None
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = client.get(f"/api/v1/customers/{mine.id}/follow-ups", query_string=params).get_json()
        seen += page["items"]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert len(seen) == 7 and len({x["id"] for x in seen}) == 7
    keys = [(x["occurred_at"], x["id"]) for x in seen]
    assert keys == sorted(keys, reverse=True)
    bad = client.get(f"/api/v1/customers/{mine.id}/follow-ups", query_string={"cursor": "garbage!!"})
    assert bad.status_code == 422 and "cursor" in bad.get_json()["error"]["fields"]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"kind": "call", "content": "x", "occurred_at": "FUTURE"}, "occurred_at"),
        ({"kind": "call", "content": "x", "contact_id": "OTHER"}, "contact_id"),
        ({"kind": "call", "content": "x", "contact_id": 987654}, "contact_id"),
        ({"kind": "fax", "content": "x"}, "kind"),
        ({"kind": "call", "content": ""}, "content"),
        ({"content": "x"}, "kind"),
        ({"kind": "call", "content": "x", "latitude": 91}, "latitude"),
        ({"kind": "call", "content": "x", "occurred_at": "昨天"}, "occurred_at"),
        ({"kind": "call", "content": "x", "author_id": 1}, "author_id"),
    ],
)
def test_bad_follow_up_names_the_field_and_writes_nothing(client, database, world, payload, field):
    org, mine, _, ids = world
    if payload.get("occurred_at") == "FUTURE":
        payload["occurred_at"] = (datetime.now(UTC) + timedelta(minutes=30)).isoformat()
    if payload.get("contact_id") == "OTHER":
        payload["contact_id"] = ids["other_contact"]
    f.login(client, org.alice, org.corp)
    resp = client.post(f"/api/v1/customers/{mine.id}/follow-ups", json=payload)
    assert resp.status_code == 422
    assert field in resp.get_json()["error"]["fields"]
    assert _count(database, FollowUp) == 0 and _count(database, AuditLog) == 0
    with database.session() as s:
        assert s.get(Customer, mine.id).last_contact_at is None


def test_a_few_minutes_of_clock_drift_is_accepted(client, database, world):
    org, mine, _, _ = world
    f.login(client, org.alice, org.corp)
    at = (datetime.now(UTC) + timedelta(minutes=2)).isoformat()
    resp = client.post(
        f"/api/v1/customers/{mine.id}/follow-ups", json={"kind": "call", "content": "x", "occurred_at": at}
    )
    assert resp.status_code == 201


def test_scope_and_tenant_isolation(client, database, world):
    org, mine, _, _ = world
    now = datetime.now(UTC)
    with database.session() as s:
        fu = FollowUp(
            corp_id=org.corp.id,
            customer_id=mine.id,
            author_id=org.alice.id,
            kind="call",
            content="秘密",
            occurred_at=now,
            created_at=now,
        )
        s.add(fu)
        s.flush()
        fu_id = fu.id
        other = f.org(s, name="乙公司")
    f.login(client, org.bob, org.corp)
    assert client.get(f"/api/v1/customers/{mine.id}/follow-ups").status_code == 404
    assert (
        client.post(f"/api/v1/customers/{mine.id}/follow-ups", json={"kind": "call", "content": "x"}).status_code == 404
    )
    assert client.get(f"/api/v1/follow-ups/{fu_id}").status_code == 404
    assert client.delete(f"/api/v1/follow-ups/{fu_id}").status_code == 404

    f.login(client, other.admin, other.corp)
    assert client.get(f"/api/v1/customers/{mine.id}/follow-ups").status_code == 404
    assert client.get(f"/api/v1/follow-ups/{fu_id}").status_code == 404
    assert client.delete(f"/api/v1/follow-ups/{fu_id}").status_code == 404
    assert _count(database, FollowUp) == 1 and _count(database, AuditLog) == 0

    f.login(client, org.manager, org.corp)
    items = client.get(f"/api/v1/customers/{mine.id}/follow-ups").get_json()["items"]
    assert [x["id"] for x in items] == [fu_id]
    assert client.get(f"/api/v1/follow-ups/{fu_id}").get_json()["content"] == "秘密"


def test_delete_rules_audit_and_last_contact_fallback(client, database, world):
    org, mine, _, _ = world
    now = datetime.now(UTC).replace(microsecond=0)
    f.login(client, org.alice, org.corp)
    older = client.post(
        f"/api/v1/customers/{mine.id}/follow-ups",
        json={"kind": "call", "content": "早", "occurred_at": (now - timedelta(days=2)).isoformat()},
    )
    newer = client.post(
        f"/api/v1/customers/{mine.id}/follow-ups",
        json={"kind": "call", "content": "晚", "occurred_at": (now - timedelta(days=1)).isoformat()},
    )
    older_id, newer_id = older.get_json()["id"], newer.get_json()["id"]

    # A collaborator who did not write it may see it but not delete it; the manager may.
    with database.session() as s:
        from models.crm import CustomerCollaborator

        s.add(CustomerCollaborator(corp_id=org.corp.id, customer_id=mine.id, user_id=org.bob.id))
    f.login(client, org.bob, org.corp)
    assert client.get(f"/api/v1/follow-ups/{newer_id}").status_code == 200
    assert client.delete(f"/api/v1/follow-ups/{newer_id}").status_code == 403

    f.login(client, org.manager, org.corp)
    assert client.delete(f"/api/v1/follow-ups/{newer_id}").status_code == 204
    with database.session() as s:
        assert s.get(FollowUp, newer_id) is None
        assert s.get(Customer, mine.id).last_contact_at == now - timedelta(days=2)
        entry = s.execute(
            sa.select(AuditLog).where(AuditLog.entity_type == "follow_up", AuditLog.action == "delete")
        ).scalar_one()
        assert entry.entity_id == newer_id and entry.actor_id == org.manager.id
        assert entry.changes["content"] == {"before": "晚", "after": None}

    f.login(client, org.alice, org.corp)
    assert client.delete(f"/api/v1/follow-ups/{older_id}").status_code == 204
    with database.session() as s:
        assert s.get(Customer, mine.id).last_contact_at is None
