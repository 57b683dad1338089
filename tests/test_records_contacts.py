"""Contacts API: CRUD under a customer, phone duplicate check, single primary, scope, audit, bad input."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from models.audit import AuditLog
from models.crm import Contact, CustomerCollaborator, FieldDefinition
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
        s.add(Contact(corp_id=org.corp.id, customer_id=theirs.id, name="钱七", mobile="13900001111"))
    return org, mine, theirs


def test_contact_round_trip_with_normalised_phone_and_audit(client, database, world):
    org, mine, _ = world
    f.login(client, org.alice, org.corp)
    resp = client.post(
        f"/api/v1/customers/{mine.id}/contacts",
        json={"name": "赵六", "mobile": "+86 138-0013-8000", "title": "采购经理"},
    )
    assert resp.status_code == 201, resp.get_json()
    contact = resp.get_json()
    assert contact["mobile"] == "13800138000" and contact["customer_id"] == mine.id

    resp = client.patch(f"/api/v1/contacts/{contact['id']}", json={"title": "采购总监", "phone": "021-5555 1234"})
    assert resp.status_code == 200
    assert resp.get_json()["title"] == "采购总监" and resp.get_json()["phone"] == "02155551234"
    assert client.get(f"/api/v1/contacts/{contact['id']}").get_json()["title"] == "采购总监"
    listed = client.get(f"/api/v1/customers/{mine.id}/contacts").get_json()["items"]
    assert [c["id"] for c in listed] == [contact["id"]]

    assert client.delete(f"/api/v1/contacts/{contact['id']}").status_code == 204
    assert client.get(f"/api/v1/contacts/{contact['id']}").status_code == 404
    assert client.get(f"/api/v1/customers/{mine.id}/contacts").get_json()["items"] == []
    with database.session() as s:
        assert s.get(Contact, contact["id"]).deleted_at is not None
        entries = (
            s.execute(
                sa.select(AuditLog)
                .where(AuditLog.entity_type == "contact", AuditLog.entity_id == contact["id"])
                .order_by(AuditLog.id)
            )
            .scalars()
            .all()
        )
        assert [e.action for e in entries] == ["create", "update", "delete"]
        assert entries[1].changes["title"] == {"before": "采购经理", "after": "采购总监"}
        assert entries[1].actor_id == org.alice.id


def test_phone_of_another_customers_contact_is_409_and_override_is_for_managers(client, database, world):
    org, mine, theirs = world
    f.login(client, org.alice, org.corp)
    resp = client.post(f"/api/v1/customers/{mine.id}/contacts", json={"name": "重复", "mobile": "0086 139 0000 1111"})
    assert resp.status_code == 409
    err = resp.get_json()["error"]
    assert err["code"] == "duplicate" and err["match"]["id"] == theirs.id and err["match"]["matched_on"] == "phone"
    assert err["fields"] == {"mobile": "duplicate"}
    resp = client.post(
        f"/api/v1/customers/{mine.id}/contacts", json={"name": "重复", "mobile": "13900001111", "allow_duplicate": True}
    )
    assert resp.status_code == 403 and "allow_duplicate" in resp.get_json()["error"]["fields"]
    # Changing an existing contact's phone to a taken one is caught too.
    ok = client.post(f"/api/v1/customers/{mine.id}/contacts", json={"name": "甲", "mobile": "13700000000"})
    assert ok.status_code == 201
    resp = client.patch(f"/api/v1/contacts/{ok.get_json()['id']}", json={"phone": "13900001111"})
    assert resp.status_code == 409 and resp.get_json()["error"]["fields"] == {"phone": "duplicate"}
    assert _count(database, Contact, Contact.customer_id == mine.id) == 1

    f.login(client, org.manager, org.corp)
    resp = client.post(
        f"/api/v1/customers/{mine.id}/contacts", json={"name": "重复", "mobile": "13900001111", "allow_duplicate": True}
    )
    assert resp.status_code == 201
    with database.session() as s:
        actions = s.execute(
            sa.select(AuditLog.action).where(
                AuditLog.entity_type == "contact", AuditLog.entity_id == resp.get_json()["id"]
            )
        ).scalars()
        assert set(actions) == {"create", "duplicate_override"}


def test_a_second_contact_of_the_same_customer_may_share_a_phone(client, database, world):
    org, mine, _ = world
    f.login(client, org.alice, org.corp)
    url = f"/api/v1/customers/{mine.id}/contacts"
    assert client.post(url, json={"name": "前台", "phone": "0571-8888"}).status_code == 201
    assert client.post(url, json={"name": "总机", "phone": "05718888"}).status_code == 201


def test_only_one_primary_per_customer(client, database, world):
    org, mine, _ = world
    f.login(client, org.alice, org.corp)
    first = client.post(f"/api/v1/customers/{mine.id}/contacts", json={"name": "一", "is_primary": True}).get_json()
    second = client.post(f"/api/v1/customers/{mine.id}/contacts", json={"name": "二", "is_primary": True}).get_json()
    third = client.post(f"/api/v1/customers/{mine.id}/contacts", json={"name": "三"}).get_json()
    with database.session() as s:
        primaries = (
            s.execute(sa.select(Contact.id).where(Contact.customer_id == mine.id, Contact.is_primary.is_(True)))
            .scalars()
            .all()
        )
        assert primaries == [second["id"]]
    assert client.patch(f"/api/v1/contacts/{third['id']}", json={"is_primary": True}).status_code == 200
    items = client.get(f"/api/v1/customers/{mine.id}/contacts").get_json()["items"]
    assert [(c["id"], c["is_primary"]) for c in items] == [
        (third["id"], True),
        (first["id"], False),
        (second["id"], False),
    ]
    with database.session() as s:
        unset = (
            s.execute(
                sa.select(AuditLog.changes).where(
                    AuditLog.entity_type == "contact", AuditLog.entity_id == second["id"], AuditLog.action == "update"
                )
            )
            .scalars()
            .all()
        )
        assert unset == [{"is_primary": {"before": True, "after": False}}]


def test_scope_bob_cannot_reach_alices_contacts_but_manager_and_collaborator_can(client, database, world):
    org, mine, _ = world
    with database.session() as s:
        contact = Contact(corp_id=org.corp.id, customer_id=mine.id, name="孙八", mobile="13600000000")
        s.add(contact)
        s.flush()
        contact_id = contact.id
    f.login(client, org.bob, org.corp)
    assert client.get(f"/api/v1/customers/{mine.id}/contacts").status_code == 404
    assert client.post(f"/api/v1/customers/{mine.id}/contacts", json={"name": "x"}).status_code == 404
    assert client.get(f"/api/v1/contacts/{contact_id}").status_code == 404
    assert client.patch(f"/api/v1/contacts/{contact_id}", json={"name": "改"}).status_code == 404
    assert client.delete(f"/api/v1/contacts/{contact_id}").status_code == 404
    assert _count(database, AuditLog) == 0

    f.login(client, org.manager, org.corp)
    assert client.get(f"/api/v1/contacts/{contact_id}").status_code == 200
    assert client.patch(f"/api/v1/contacts/{contact_id}", json={"name": "改"}).status_code == 200

    with database.session() as s:
        s.add(CustomerCollaborator(corp_id=org.corp.id, customer_id=mine.id, user_id=org.bob.id))
    f.login(client, org.bob, org.corp)
    assert client.get(f"/api/v1/contacts/{contact_id}").get_json()["name"] == "改"


def test_cross_tenant_contact_ids_are_404(client, database, world):
    org, mine, _ = world
    with database.session() as s:
        other = f.org(s, name="乙公司")
        contact = Contact(corp_id=org.corp.id, customer_id=mine.id, name="孙八")
        s.add(contact)
        s.flush()
        contact_id = contact.id
    f.login(client, other.admin, other.corp)
    assert client.get(f"/api/v1/customers/{mine.id}/contacts").status_code == 404
    assert client.get(f"/api/v1/contacts/{contact_id}").status_code == 404
    assert client.patch(f"/api/v1/contacts/{contact_id}", json={"name": "x"}).status_code == 404
    assert client.delete(f"/api/v1/contacts/{contact_id}").status_code == 404
    assert client.post(f"/api/v1/customers/{mine.id}/contacts", json={"name": "x"}).status_code == 404
    assert _count(database, Contact, Contact.customer_id == mine.id) == 1


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "name"),
        ({"name": ""}, "name"),
        ({"name": "乙", "mobile": "abc"}, "mobile"),
        ({"name": "乙", "email": "nope"}, "email"),
        ({"name": "乙", "decision_role": "boss"}, "decision_role"),
        ({"name": "乙", "custom": {"nope": 1}}, "custom.nope"),
        ({"name": "乙", "custom": {"level": "x"}}, "custom.level"),
        ({"name": "乙", "extra": 1}, "extra"),
    ],
)
def test_bad_contact_input_names_the_field_and_writes_nothing(client, database, world, payload, field):
    org, mine, _ = world
    with database.session() as s:
        s.add(FieldDefinition(corp_id=org.corp.id, entity="contact", key="level", label="级别", field_type="number"))
    f.login(client, org.alice, org.corp)
    before = _count(database, Contact), _count(database, AuditLog)
    resp = client.post(f"/api/v1/customers/{mine.id}/contacts", json=payload)
    assert resp.status_code == 422
    assert field in resp.get_json()["error"]["fields"]
    assert (_count(database, Contact), _count(database, AuditLog)) == before


def test_patch_nulls_are_rejected(client, database, world):
    org, mine, _ = world
    f.login(client, org.alice, org.corp)
    cid = client.post(f"/api/v1/customers/{mine.id}/contacts", json={"name": "一"}).get_json()["id"]
    for field in ("name", "is_primary"):
        resp = client.patch(f"/api/v1/contacts/{cid}", json={field: None})
        assert resp.status_code == 422 and field in resp.get_json()["error"]["fields"]
    assert _count(database, AuditLog, AuditLog.action == "update") == 0
