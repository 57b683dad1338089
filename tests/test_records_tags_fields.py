"""Tags and custom field definitions: who may manage them, duplicates, shape rules, deactivation, tenants."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from models.audit import AuditLog
from models.crm import CustomerTag, FieldDefinition, Tag
from tests import factories as f


def _count(database, model, *where) -> int:
    with database.session() as s:
        return s.execute(sa.select(sa.func.count()).select_from(model).where(*where)).scalar()


@pytest.fixture
def org(database):
    with database.session() as s:
        return f.org(s)


# ----------------------------------------------------------------------------- tags


def test_tags_grouped_listing_and_management_rights(client, database, org):
    f.login(client, org.alice, org.corp)
    resp = client.post("/api/v1/tags", json={"group_name": "意向", "name": "高"})
    assert resp.status_code == 403 and _count(database, Tag) == 0

    f.login(client, org.manager, org.corp)
    high = client.post("/api/v1/tags", json={"group_name": "意向", "name": "高", "color": "#ff0000"})
    assert high.status_code == 201
    assert client.post("/api/v1/tags", json={"group_name": "意向", "name": "低"}).status_code == 201
    assert client.post("/api/v1/tags", json={"group_name": "行业", "name": "制造业"}).status_code == 201
    dup = client.post("/api/v1/tags", json={"group_name": "意向", "name": " 高 "})
    assert dup.status_code == 409 and dup.get_json()["error"]["fields"] == {"name": "duplicate"}
    # Same name in another group is fine.
    assert client.post("/api/v1/tags", json={"group_name": "行业", "name": "高"}).status_code == 201
    tag_id = high.get_json()["id"]
    assert client.patch(f"/api/v1/tags/{tag_id}", json={"color": "#00ff00"}).status_code == 403
    assert client.delete(f"/api/v1/tags/{tag_id}").status_code == 403

    f.login(client, org.alice, org.corp)
    groups = client.get("/api/v1/tags").get_json()["groups"]
    assert [(g["name"], [t["name"] for t in g["tags"]]) for g in groups] == [
        ("意向", ["低", "高"]),
        ("行业", ["制造业", "高"]),
    ]
    assert _count(database, AuditLog, AuditLog.entity_type == "tag", AuditLog.action == "create") == 4


def test_admin_renames_and_deletes_tags(client, database, org):
    with database.session() as s:
        high, low = f.tag(s, org.corp, "高"), f.tag(s, org.corp, "低")
        customer = f.customer(s, org.corp, org.alice)
        s.add(f.CustomerTagRow(customer, high))
    f.login(client, org.admin, org.corp)
    resp = client.patch(f"/api/v1/tags/{low.id}", json={"name": "高"})
    assert resp.status_code == 409 and "name" in resp.get_json()["error"]["fields"]
    resp = client.patch(f"/api/v1/tags/{high.id}", json={"name": "很高", "color": "#123456"})
    assert resp.status_code == 200 and resp.get_json() == {
        "id": high.id,
        "group": "意向",
        "name": "很高",
        "color": "#123456",
    }
    resp = client.patch(f"/api/v1/tags/{high.id}", json={"name": None})
    assert resp.status_code == 422 and "name" in resp.get_json()["error"]["fields"]

    assert client.delete(f"/api/v1/tags/{high.id}").status_code == 204
    assert _count(database, Tag) == 1 and _count(database, CustomerTag) == 0
    with database.session() as s:
        actions = s.execute(
            sa.select(AuditLog.action, AuditLog.changes)
            .where(AuditLog.entity_type == "tag", AuditLog.entity_id == high.id)
            .order_by(AuditLog.id)
        ).all()
        assert [a for a, _ in actions] == ["update", "delete"]
        assert actions[0][1]["name"] == {"before": "高", "after": "很高"}
        assert actions[1][1]["customer_count"] == {"before": 1, "after": 0}


@pytest.mark.parametrize(
    ("payload", "field"),
    [({}, "name"), ({"name": ""}, "name"), ({"name": "x" * 33}, "name"), ({"name": "x", "color": "red"}, "color")],
)
def test_bad_tag_input(client, database, org, payload, field):
    f.login(client, org.admin, org.corp)
    resp = client.post("/api/v1/tags", json=payload)
    assert resp.status_code == 422 and field in resp.get_json()["error"]["fields"]
    assert _count(database, Tag) == 0 and _count(database, AuditLog) == 0


def test_tags_are_per_tenant(client, database, org):
    with database.session() as s:
        secret = f.tag(s, org.corp, "乙方机密标签")
        other = f.org(s, name="乙公司")
    f.login(client, other.admin, other.corp)
    assert "乙方机密标签" not in client.get("/api/v1/tags").get_data(as_text=True)
    assert client.patch(f"/api/v1/tags/{secret.id}", json={"name": "x"}).status_code == 404
    assert client.delete(f"/api/v1/tags/{secret.id}").status_code == 404
    # The same name is free in another corp.
    assert client.post("/api/v1/tags", json={"name": "乙方机密标签"}).status_code == 201
    assert _count(database, Tag, Tag.corp_id == org.corp.id) == 1


# ----------------------------------------------------------------------------- custom field definitions


def test_field_definitions_lifecycle(client, database, org):
    f.login(client, org.admin, org.corp)
    resp = client.post(
        "/api/v1/fields",
        json={
            "entity": "customer",
            "key": "channel",
            "label": "渠道",
            "field_type": "select",
            "options": ["直销", "代理"],
        },
    )
    assert resp.status_code == 201, resp.get_json()
    channel = resp.get_json()
    resp = client.post(
        "/api/v1/fields",
        json={
            "entity": "customer",
            "key": "budget",
            "label": "预算",
            "field_type": "number",
            "min_value": 0,
            "max_value": 1e9,
        },
    )
    assert resp.status_code == 201
    dup = client.post(
        "/api/v1/fields", json={"entity": "customer", "key": "channel", "label": "x", "field_type": "text"}
    )
    assert dup.status_code == 409 and "key" in dup.get_json()["error"]["fields"]
    # The same key on another entity is a different field.
    assert (
        client.post(
            "/api/v1/fields", json={"entity": "contact", "key": "channel", "label": "x", "field_type": "text"}
        ).status_code
        == 201
    )

    f.login(client, org.alice, org.corp)
    keys = [d["key"] for d in client.get("/api/v1/fields", query_string={"entity": "customer"}).get_json()["items"]]
    assert keys == ["channel", "budget"]
    assert (
        client.post(
            "/api/v1/fields", json={"entity": "customer", "key": "z", "label": "z", "field_type": "text"}
        ).status_code
        == 403
    )
    assert client.patch(f"/api/v1/fields/{channel['id']}", json={"label": "来源渠道"}).status_code == 403
    assert client.delete(f"/api/v1/fields/{channel['id']}").status_code == 403
    resp = client.get("/api/v1/fields", query_string={"entity": "order"})
    assert resp.status_code == 422 and "entity" in resp.get_json()["error"]["fields"]

    f.login(client, org.admin, org.corp)
    resp = client.patch(
        f"/api/v1/fields/{channel['id']}", json={"label": "来源渠道", "options": ["直销", "代理", "电商"]}
    )
    assert resp.status_code == 200 and resp.get_json()["options"] == ["直销", "代理", "电商"]
    resp = client.patch(f"/api/v1/fields/{channel['id']}", json={"options": []})
    assert resp.status_code == 422 and "options" in resp.get_json()["error"]["fields"]

    assert client.delete(f"/api/v1/fields/{channel['id']}").status_code == 204
    with database.session() as s:
        assert s.get(FieldDefinition, channel["id"]).active is False
    keys = [d["key"] for d in client.get("/api/v1/fields", query_string={"entity": "customer"}).get_json()["items"]]
    assert keys == ["budget"]
    everything = client.get("/api/v1/fields", query_string={"entity": "customer", "include_inactive": "true"})
    assert [d["key"] for d in everything.get_json()["items"]] == ["channel", "budget"]
    # A deactivated field no longer accepts values on customers.
    resp = client.post("/api/v1/customers", json={"name": "甲", "custom": {"channel": "直销"}})
    assert resp.status_code == 422 and "custom.channel" in resp.get_json()["error"]["fields"]
    # Re-creating the key is refused; reactivating works.
    again = client.post(
        "/api/v1/fields", json={"entity": "customer", "key": "channel", "label": "x", "field_type": "text"}
    )
    assert again.status_code == 409 and again.get_json()["error"]["existing_id"] == channel["id"]
    assert client.patch(f"/api/v1/fields/{channel['id']}", json={"active": True}).get_json()["active"] is True

    with database.session() as s:
        actions = (
            s.execute(
                sa.select(AuditLog.action)
                .where(AuditLog.entity_type == "field_definition", AuditLog.entity_id == channel["id"])
                .order_by(AuditLog.id)
            )
            .scalars()
            .all()
        )
        assert actions == ["create", "update", "delete", "update"]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"field_type": "select"}, "options"),
        ({"field_type": "multiselect", "options": []}, "options"),
        ({"field_type": "select", "options": ["a", "a"]}, "options"),
        ({"field_type": "text", "options": ["a"]}, "options"),
        ({"field_type": "number", "min_value": 10, "max_value": 1}, "max_value"),
        ({"field_type": "text", "min_value": 1}, "min_value"),
        ({"field_type": "number", "max_length": 5}, "max_length"),
        ({"field_type": "text", "key": "Bad Key"}, "key"),
        ({"field_type": "text", "entity": "order"}, "entity"),
        ({"field_type": "colour"}, "field_type"),
        ({"field_type": "text", "label": ""}, "label"),
    ],
)
def test_bad_field_definitions_name_the_field_and_write_nothing(client, database, org, payload, field):
    f.login(client, org.admin, org.corp)
    body = {"entity": "customer", "key": "k", "label": "标签", **payload}
    resp = client.post("/api/v1/fields", json=body)
    assert resp.status_code == 422, resp.get_json()
    assert field in resp.get_json()["error"]["fields"]
    assert _count(database, FieldDefinition) == 0 and _count(database, AuditLog) == 0


def test_range_patch_is_checked_against_the_stored_bounds(client, database, org):
    with database.session() as s:
        d = FieldDefinition(
            corp_id=org.corp.id, entity="customer", key="n", label="n", field_type="number", min_value=5
        )
        s.add(d)
    f.login(client, org.admin, org.corp)
    resp = client.patch(f"/api/v1/fields/{d.id}", json={"max_value": 1})
    assert resp.status_code == 422 and "max_value" in resp.get_json()["error"]["fields"]
    with database.session() as s:
        assert s.get(FieldDefinition, d.id).max_value is None


def test_field_definitions_are_per_tenant(client, database, org):
    with database.session() as s:
        d = FieldDefinition(
            corp_id=org.corp.id, entity="customer", key="secret", label="甲方机密字段", field_type="text"
        )
        s.add(d)
        other = f.org(s, name="乙公司")
    f.login(client, other.admin, other.corp)
    assert "甲方机密字段" not in client.get("/api/v1/fields", query_string={"include_inactive": "1"}).get_data(
        as_text=True
    )
    assert client.patch(f"/api/v1/fields/{d.id}", json={"label": "x"}).status_code == 404
    assert client.delete(f"/api/v1/fields/{d.id}").status_code == 404
    with database.session() as s:
        assert s.get(FieldDefinition, d.id).active is True and s.get(FieldDefinition, d.id).label == "甲方机密字段"
