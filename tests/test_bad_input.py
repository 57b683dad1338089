"""Bad input gets a 4xx naming the field, and nothing is written."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from models.audit import AuditLog
from models.crm import Contact, Customer
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
