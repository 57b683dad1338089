"""Bad input gets a 4xx naming the field, and nothing is written."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from models.audit import AuditLog
from models.crm import Contact, Customer, FieldDefinition
from tests import factories as f


@pytest.fixture
def signed_in(client, database):
    with database.session() as s:
        org = f.org(s)
    f.login(client, org.alice, org.corp)
    return org


def _counts(database):
    with database.session() as s:
        return tuple(
            s.execute(sa.select(sa.func.count()).select_from(m)).scalar() for m in (Customer, Contact, AuditLog)
        )


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"name": 123}, "name"),
        ({"name": ""}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"name": "甲", "grade": "Z"}, "grade"),
        ({"name": "甲", "status": "won"}, "status"),
        ({"name": "甲", "unknown_field": 1}, "unknown_field"),
        ({"name": "甲", "owner_id": "abc"}, "owner_id"),
        ({"name": "甲", "tag_ids": [999999]}, "tag_ids"),
        ({"name": "甲", "owner_id": 999999}, "owner_id"),
        ({"name": "甲", "next_contact_at": "明天"}, "next_contact_at"),
        ({"name": "甲", "custom": {"nope": 1}}, "custom.nope"),
        ({"name": "甲", "contacts": [{"name": "乙", "mobile": "abc"}]}, "contacts.0.mobile"),
        ({"name": "甲", "contacts": [{"name": "乙", "email": "not-an-email"}]}, "contacts.0.email"),
    ],
)
def test_create_rejections_name_the_field_and_write_nothing(client, database, signed_in, payload, field):
    before = _counts(database)
    resp = client.post("/api/v1/customers", json=payload)
    assert 400 <= resp.status_code < 500
    error = resp.get_json()["error"]
    assert field in error["fields"], error
    assert error["code"] and error["message"]
    assert _counts(database) == before


def test_malformed_and_non_object_bodies(client, database, signed_in):
    resp = client.post("/api/v1/customers", data="{not json", content_type="application/json")
    assert resp.status_code == 400 and resp.get_json()["error"]["code"] == "malformed_json"
    resp = client.post("/api/v1/customers", json=[1, 2])
    assert resp.status_code == 422 and "body" in resp.get_json()["error"]["fields"]
    resp = client.post("/api/v1/customers", data="name=x", content_type="application/x-www-form-urlencoded")
    assert resp.status_code == 400 and "body" in resp.get_json()["error"]["fields"]
    assert _counts(database) == (0, 0, 0)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"cursor": "garbage!!"}, "cursor"),
        ({"cursor": "WzEsMl0"}, "cursor"),  # valid base64 of [1,2]: wrong value type for the sort
        ({"limit": "0"}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"grade": "Z"}, "grade"),
        ({"sort": "password"}, "sort"),
        ({"tags_all": "1,x"}, "tags_all"),
        ({"stale_days": "-3"}, "stale_days"),
        ({"next_contact_before": "yesterday"}, "next_contact_before"),
        ({"in_pool": "maybe"}, "in_pool"),
        ({"department_id": "424242"}, "department_id"),
        ({"bogus": "1"}, "bogus"),
    ],
)
def test_list_rejections_name_the_parameter(client, signed_in, params, field):
    resp = client.get("/api/v1/customers", query_string=params)
    assert 400 <= resp.status_code < 500
    assert field in resp.get_json()["error"]["fields"]


def test_update_with_bad_field_changes_nothing(client, database, signed_in):
    with database.session() as s:
        c = f.customer(s, signed_in.corp, signed_in.alice, name="原名", grade="A")
    resp = client.patch(f"/api/v1/customers/{c.id}", json={"grade": "B", "tag_ids": [123456]})
    assert resp.status_code == 422 and "tag_ids" in resp.get_json()["error"]["fields"]
    with database.session() as s:
        assert s.get(Customer, c.id).grade == "A"
        assert s.execute(sa.select(sa.func.count()).select_from(AuditLog)).scalar() == 0
    resp = client.patch(f"/api/v1/customers/{c.id}", json={"name": None})
    assert resp.status_code == 422 and "name" in resp.get_json()["error"]["fields"]


def test_unauthenticated_and_unknown_routes_are_json(client):
    resp = client.get("/api/v1/customers")
    assert resp.status_code == 401 and resp.get_json()["error"]["code"] == "unauthorized"
    resp = client.get("/api/v1/no-such-thing")
    assert resp.status_code == 404 and resp.get_json()["error"]["code"] == "not_found"


# ----------------------------------------------------------------------------- values the database cannot hold
# Each passes the request models' types but would make SQLite or PostgreSQL raise (a 500) if it reached a
# query: ids beyond BIGINT, NUL characters, lone surrogates, NaN, times whose UTC conversion overflows.

BIG = 10**20
NUL = "甲\x00乙"


@pytest.fixture
def admin_in(client, database):
    """An admin of a corp with one customer, one contact and custom fields `k` (text) and `n` (number) on
    every entity, so custom values are checked for storability, not rejected as unknown fields."""
    with database.session() as s:
        org = f.org(s)
        customer = f.customer(s, org.corp, org.alice)
        contact = Contact(corp_id=org.corp.id, customer_id=customer.id, name="联系人")
        s.add(contact)
        for entity in ("customer", "contact", "opportunity"):
            s.add(FieldDefinition(corp_id=org.corp.id, entity=entity, key="k", label="k", field_type="text"))
            s.add(FieldDefinition(corp_id=org.corp.id, entity=entity, key="n", label="n", field_type="number"))
        s.flush()
        customer.contact_id = contact.id  # for the URLs below
    f.login(client, org.admin, org.corp)
    return org, customer


def _id_rules(app):
    """Every API route with an integer in its path, with the methods it answers (derived from the URL map,
    so routes added later are covered too)."""
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api/v1/") and any(type(c).__name__ == "IntegerConverter"
                                                    for c in rule._converters.values()):
            for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
                yield rule, method


def test_every_url_with_a_huge_id_is_404_naming_it(app, client, database, admin_in):
    before = _counts(database)
    walked = 0
    for rule, method in _id_rules(app):
        names = list(rule.arguments)
        for name in names:  # each id in turn, the others harmless
            url = rule.rule
            for other in names:
                url = url.replace(f"<int:{other}>", str(BIG if other == name else 1))
            resp = client.open(url, method=method, json={})
            assert resp.status_code == 404, (method, url, resp.status_code, resp.get_data(as_text=True)[:200])
            assert name in resp.get_json()["error"]["fields"], (method, url)
            walked += 1
    assert walked >= 20
    assert _counts(database) == before


@pytest.mark.parametrize(
    ("method", "url", "payload", "field"),
    [
        ("POST", "/api/v1/customers", {"name": NUL}, "name"),
        ("POST", "/api/v1/customers", {"name": "甲", "address": "a\x00"}, "address"),
        ("POST", "/api/v1/customers", {"name": "甲", "owner_id": BIG}, "owner_id"),
        ("POST", "/api/v1/customers", {"name": "甲", "tag_ids": [1, BIG]}, "tag_ids.1"),
        ("POST", "/api/v1/customers", {"name": "甲", "collaborator_ids": [-BIG]}, "collaborator_ids.0"),
        ("POST", "/api/v1/customers", {"name": "甲", "custom": {"k": NUL}}, "custom.k"),
        ("POST", "/api/v1/customers", {"name": "甲", "contacts": [{"name": NUL}]}, "contacts.0.name"),
        ("POST", "/api/v1/customers", {"name": "甲", "next_contact_at": "0001-01-01T00:00:00"}, "next_contact_at"),
        ("POST", "/api/v1/customers", {"name": "甲", "next_contact_at": "9999-12-31T23:59:59-10:00"},
         "next_contact_at"),
        ("PATCH", "/api/v1/customers/C", {"name": NUL}, "name"),
        ("PATCH", "/api/v1/customers/C", {"owner_id": BIG}, "owner_id"),
        ("PATCH", "/api/v1/customers/C", {"tag_ids": [BIG]}, "tag_ids.0"),
        ("PATCH", "/api/v1/customers/C", {"next_contact_at": "1899-12-31T00:00:00+00:00"}, "next_contact_at"),
        ("POST", "/api/v1/customers/C/contacts", {"name": "乙", "wechat": "w\x00"}, "wechat"),
        ("PATCH", "/api/v1/contacts/K", {"name": NUL}, "name"),
        ("PATCH", "/api/v1/contacts/K", {"custom": {"k": NUL}}, "custom.k"),
        ("POST", "/api/v1/opportunities", {"customer_id": BIG, "name": "x"}, "customer_id"),
        ("POST", "/api/v1/opportunities", {"customer_id": "C", "name": "x", "custom": {"n": float("inf")}}, "custom.n"),
        ("POST", "/api/v1/opportunities", {"customer_id": "C", "name": "x", "custom": {"k": [NUL]}}, "custom.k.0"),
        ("POST", "/api/v1/tasks", {"title": "x", "opportunity_id": BIG}, "opportunity_id"),
        ("POST", "/api/v1/tasks", {"title": "x", "due_at": "3000-01-01T00:00:00+00:00"}, "due_at"),
        ("POST", "/api/v1/tags", {"name": "t", "group": NUL}, "group"),
        ("POST", "/api/v1/fields", {"entity": "customer", "key": "k", "label": "k", "field_type": "select",
                                    "options": ["a", NUL]}, "options.1"),
        ("POST", "/api/v1/fields", {"entity": "customer", "key": "k", "label": "k", "field_type": "text",
                                    "sort_order": -(2**31) - 1}, "sort_order"),
    ],
)
def test_unstorable_bodies_are_422_on_every_resource(client, database, admin_in, method, url, payload, field):
    _, customer = admin_in
    url = url.replace("/C", f"/{customer.id}").replace("/K", f"/{customer.contact_id}")
    payload = {k: customer.id if v == "C" else v for k, v in payload.items()}
    before = _counts(database)
    resp = client.open(url, method=method, json=payload)
    assert resp.status_code == 422, (resp.status_code, resp.get_json())
    assert field in resp.get_json()["error"]["fields"], resp.get_json()
    assert _counts(database) == before


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ('{"name": "甲", "custom": {"n": NaN}}', "custom.n"),
        ('{"name": "甲", "custom": {"n": -Infinity}}', "custom.n"),
        ('{"name": "甲", "custom": {"n": 1' + "0" * 400 + '}}', "custom.n"),
        ('{"name": "甲", "custom": {"k": "\\u0000"}}', "custom.k"),
        ('{"name": "\\ud800"}', "name"),
        ('{"name": "甲", "custom": {"k\\u0000": 1}}', "custom"),
        ('{"name": "甲", "contacts": [{"name": "乙", "title": "\\udfff"}]}', "contacts.0.title"),
    ],
)
def test_json_the_database_rejects_is_422(client, database, admin_in, raw, field):
    before = _counts(database)
    resp = client.post("/api/v1/customers", data=raw, content_type="application/json")
    assert resp.status_code == 422, resp.get_data(as_text=True)[:300]
    assert any(k.startswith(field) for k in resp.get_json()["error"]["fields"]), resp.get_json()
    assert _counts(database) == before


def _cursor(value, row_id):
    from app.services.pagination import encode_cursor

    return encode_cursor(value, row_id)


@pytest.mark.parametrize(
    ("url", "params", "field"),
    [
        ("/api/v1/customers", {"q": NUL}, "q"),
        ("/api/v1/customers", {"region": "华东\x00"}, "region"),
        ("/api/v1/customers", {"owner_id": str(BIG)}, "owner_id"),
        ("/api/v1/customers", {"tags_all": f"1,{BIG}"}, "tags_all"),
        ("/api/v1/customers", {"tags_any": str(-BIG)}, "tags_any"),
        ("/api/v1/customers", {"department_id": str(BIG)}, "department_id"),
        ("/api/v1/customers", {"next_contact_before": "0001-01-01T00:00:00"}, "next_contact_before"),
        ("/api/v1/customers", {"next_contact_after": "9999-12-31T23:59:59-10:00"}, "next_contact_after"),
        ("/api/v1/customers", {"cursor": _cursor("2026-01-01T00:00:00+00:00", BIG)}, "cursor"),
        ("/api/v1/customers", {"cursor": _cursor("0001-01-01T00:00:00+14:00", 1)}, "cursor"),
        ("/api/v1/customers", {"sort": "name", "cursor": _cursor(NUL, 1)}, "cursor"),
        ("/api/v1/customers/C/follow-ups", {"cursor": _cursor("9999-12-31T23:59:59-10:00", 1)}, "cursor"),
        ("/api/v1/opportunities", {"customer_id": str(BIG)}, "customer_id"),
        ("/api/v1/tasks", {"customer_id": str(-BIG)}, "customer_id"),
        ("/api/v1/tasks", {"due_before": "9999-12-31T23:59:59-10:00"}, "due_before"),
        ("/api/v1/fields", {"entity": NUL}, "entity"),
        ("/api/v1/org/users", {"department_id": str(BIG)}, "department_id"),
        ("/api/v1/org/users", {"q": NUL}, "q"),
        ("/api/v1/org/users", {"cursor": _cursor("张", BIG)}, "cursor"),
        ("/api/v1/org/users", {"cursor": _cursor(NUL, 1)}, "cursor"),
    ],
)
def test_unstorable_query_values_are_422_on_every_list(client, admin_in, url, params, field):
    _, customer = admin_in
    resp = client.get(url.replace("/C/", f"/{customer.id}/"), query_string=params)
    assert resp.status_code == 422, (resp.status_code, resp.get_json())
    assert field in resp.get_json()["error"]["fields"]


def test_boundary_values_are_accepted(client, database, admin_in):
    """The guards reject only what cannot be stored: the edges themselves still work."""
    org, customer = admin_in
    resp = client.post("/api/v1/customers", json={"name": "边界客户", "next_contact_at": "2999-12-31T00:00:00+00:00",
                                                  "custom": {}})
    assert resp.status_code == 201, resp.get_json()
    resp = client.get(f"/api/v1/customers/{2**63 - 1}")
    assert resp.status_code == 404
    resp = client.get("/api/v1/customers", query_string={"owner_id": str(2**63 - 1)})
    assert resp.status_code == 200 and resp.get_json()["items"] == []
    resp = client.post("/api/v1/fields", json={"entity": "customer", "key": "k2", "label": "k2",
                                               "field_type": "text", "sort_order": 2**31 - 1})
    assert resp.status_code == 201, resp.get_json()
