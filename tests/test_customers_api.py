"""Customer API: create/read/update/delete, filters, search, pagination, duplicates, audit."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

from models.audit import AuditLog
from models.crm import Contact, Customer, FieldDefinition
from tests import factories as f


def _org(database):
    with database.session() as s:
        return f.org(s)


def test_create_read_update_delete_round_trip(client, database):
    org = _org(database)
    f.login(client, org.alice, org.corp)
    resp = client.post(
        "/api/v1/customers",
        json={
            "name": "杭州云栖科技有限公司",
            "grade": "A",
            "source": "展会",
            "industry": "软件",
            "next_contact_at": "2026-12-01T10:00:00",
            "contacts": [{"name": "赵六", "mobile": "+86 138-0013-8000", "decision_role": "decision_maker"}],
        },
    )
    assert resp.status_code == 201, resp.get_json()
    body = resp.get_json()
    cid = body["id"]
    assert body["owner"]["id"] == org.alice.id
    assert body["contacts"][0]["mobile"] == "13800138000"
    # 10:00 in Asia/Shanghai is 02:00 UTC.
    assert body["next_contact_at"] == "2026-12-01T02:00:00Z"

    resp = client.patch(f"/api/v1/customers/{cid}", json={"grade": "B", "region": "华东"})
    assert resp.status_code == 200
    assert resp.get_json()["grade"] == "B"

    with database.session() as s:
        entries = s.execute(sa.select(AuditLog).where(AuditLog.entity_id == cid).order_by(AuditLog.id)).scalars().all()
        assert [e.action for e in entries] == ["create", "update"]
        assert entries[1].changes == {
            "grade": {"before": "A", "after": "B"},
            "region": {"before": None, "after": "华东"},
        }
        assert entries[1].actor_id == org.alice.id and entries[1].request_id

    assert client.delete(f"/api/v1/customers/{cid}").status_code == 204
    assert client.get(f"/api/v1/customers/{cid}").status_code == 404
    with database.session() as s:
        assert s.get(Customer, cid).deleted_at is not None


def test_duplicate_name_or_phone_is_409_and_override_is_for_managers(client, database):
    org = _org(database)
    with database.session() as s:
        existing = f.customer(s, org.corp, org.bob, name="深圳华为技术有限公司")
        s.add(Contact(corp_id=org.corp.id, customer_id=existing.id, name="钱七", mobile="13900001111"))
    f.login(client, org.alice, org.corp)
    resp = client.post("/api/v1/customers", json={"name": "深圳 华为技术 股份有限公司"})
    assert resp.status_code == 409
    err = resp.get_json()["error"]
    assert err["code"] == "duplicate" and err["match"]["id"] == existing.id and err["match"]["matched_on"] == "name"

    resp = client.post(
        "/api/v1/customers", json={"name": "别的公司", "contacts": [{"name": "x", "mobile": "8613900001111"}]}
    )
    assert resp.status_code == 409 and resp.get_json()["error"]["match"]["matched_on"] == "phone"

    resp = client.post("/api/v1/customers", json={"name": "深圳华为技术", "allow_duplicate": True})
    assert resp.status_code == 403

    f.login(client, org.manager, org.corp)
    resp = client.post("/api/v1/customers", json={"name": "深圳华为技术", "allow_duplicate": True})
    assert resp.status_code == 201
    with database.session() as s:
        actions = s.execute(sa.select(AuditLog.action).where(AuditLog.entity_id == resp.get_json()["id"])).scalars()
        assert set(actions) == {"create", "duplicate_override"}


def test_list_filters_search_and_cursor_pages(client, database):
    org = _org(database)
    with database.session() as s:
        hot, big = f.tag(s, org.corp, "高"), f.tag(s, org.corp, "大客户", "规模")
        ids = []
        for i in range(25):
            c = f.customer(s, org.corp, org.alice, name=f"华东客户{i:02d}", grade="A" if i % 2 else "C")
            ids.append(c.id)
            if i % 3 == 0:
                s.add_all([f.CustomerTagRow(c, hot), f.CustomerTagRow(c, big)] if i % 2 else [f.CustomerTagRow(c, hot)])
        target = s.get(Customer, ids[7])
        s.add(Contact(corp_id=org.corp.id, customer_id=target.id, name="孙悟空", mobile="13712345678"))
    f.login(client, org.alice, org.corp)

    seen, cursor = [], None
    while True:
        resp = client.get(
            "/api/v1/customers", query_string={"limit": 10, "sort": "name", **({"cursor": cursor} if cursor else {})}
        )
        assert resp.status_code == 200
        page = resp.get_json()
        seen += [c["id"] for c in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert sorted(seen) == sorted(ids) and len(seen) == len(set(seen))
    names = list(client.get("/api/v1/customers", query_string={"limit": 100, "sort": "name"}).get_json()["items"])
    assert [c["name"] for c in names] == sorted(c["name"] for c in names)

    grade_a = client.get("/api/v1/customers", query_string={"grade": "A", "limit": 100}).get_json()["items"]
    assert {c["grade"] for c in grade_a} == {"A"} and len(grade_a) == 12

    both = client.get("/api/v1/customers", query_string={"tags_all": f"{hot.id},{big.id}", "limit": 100}).get_json()
    assert sorted(c["id"] for c in both["items"]) == sorted(ids[i] for i in range(25) if i % 3 == 0 and i % 2)
    anyof = client.get("/api/v1/customers", query_string={"tags_any": f"{hot.id},{big.id}", "limit": 100}).get_json()
    assert sorted(c["id"] for c in anyof["items"]) == sorted(ids[i] for i in range(25) if i % 3 == 0)

    by_contact = client.get("/api/v1/customers", query_string={"q": "悟空"}).get_json()["items"]
    assert [c["id"] for c in by_contact] == [ids[7]]
    by_phone = client.get("/api/v1/customers", query_string={"q": "137 1234"}).get_json()["items"]
    assert [c["id"] for c in by_phone] == [ids[7]]
    by_name = client.get("/api/v1/customers", query_string={"q": "客户1"}).get_json()["items"]
    assert sorted(c["id"] for c in by_name) == sorted(ids[10:20])


def test_custom_fields_are_validated_per_definition(client, database):
    org = _org(database)
    with database.session() as s:
        s.add_all(
            [
                FieldDefinition(
                    corp_id=org.corp.id,
                    entity="customer",
                    key="budget",
                    label="预算",
                    field_type="number",
                    min_value=0,
                    max_value=1e9,
                    required=True,
                ),
                FieldDefinition(
                    corp_id=org.corp.id,
                    entity="customer",
                    key="channel",
                    label="渠道",
                    field_type="select",
                    options=["直销", "代理"],
                ),
            ]
        )
    f.login(client, org.alice, org.corp)
    resp = client.post("/api/v1/customers", json={"name": "甲", "custom": {"channel": "电商"}})
    assert resp.status_code == 422
    assert set(resp.get_json()["error"]["fields"]) == {"custom.budget", "custom.channel"}
    resp = client.post("/api/v1/customers", json={"name": "甲", "custom": {"budget": -1, "nope": 1}})
    assert set(resp.get_json()["error"]["fields"]) == {"custom.budget", "custom.nope"}
    resp = client.post("/api/v1/customers", json={"name": "甲", "custom": {"budget": 5000, "channel": "直销"}})
    assert resp.status_code == 201 and resp.get_json()["custom"] == {"budget": 5000, "channel": "直销"}
    with database.session() as s:
        assert s.execute(sa.select(sa.func.count()).select_from(Customer)).scalar() == 1


def test_cursor_pages_over_a_nullable_sort_keep_every_row_once(client, database):
    """next_contact_at is nullable: pages run through the dated rows, then the undated ones, none lost."""
    org = _org(database)
    with database.session() as s:
        ids = []
        for i in range(13):
            when = None if i % 3 == 0 else datetime(2027, 1, 1 + i % 4, tzinfo=UTC)
            ids.append(f.customer(s, org.corp, org.alice, name=f"排序客户{i:02d}", next_contact_at=when).id)
    f.login(client, org.alice, org.corp)
    for sort in ("next_contact_at", "-last_contact_at", "-updated_at", "created_at"):
        seen, cursor, dates = [], None, []
        while True:
            params = {"limit": 4, "sort": sort, **({"cursor": cursor} if cursor else {})}
            page = client.get("/api/v1/customers", query_string=params).get_json()
            seen += [c["id"] for c in page["items"]]
            dates += [c["next_contact_at"] for c in page["items"]]
            cursor = page["next_cursor"]
            if not cursor:
                break
        assert sorted(seen) == sorted(ids) and len(seen) == len(set(seen)), sort
        if sort == "next_contact_at":
            dated = [d for d in dates if d is not None]
            assert dates == dated + [None] * (len(dates) - len(dated)) and dated == sorted(dated)
