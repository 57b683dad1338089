"""Values the models accept but the database cannot store are a 4xx naming the field on the record endpoints."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from app.services.pagination import encode_cursor
from models.audit import AuditLog
from tests import factories as f

BIG = 10**20


@pytest.fixture
def world(client, database):
    with database.session() as s:
        org = f.org(s)
        customer = f.customer(s, org.corp, org.alice)
    f.login(client, org.admin, org.corp)
    return org, customer


@pytest.mark.parametrize(
    "url",
    [
        f"/api/v1/contacts/{BIG}",
        f"/api/v1/follow-ups/{BIG}",
        f"/api/v1/opportunities/{BIG}",
        f"/api/v1/tasks/{BIG}",
        f"/api/v1/customers/{BIG}/contacts",
        f"/api/v1/customers/{BIG}/follow-ups",
    ],
)
def test_huge_path_ids_are_404(client, world, url):
    resp = client.get(url)
    assert resp.status_code == 404 and resp.get_json()["error"]["fields"]


@pytest.mark.parametrize(
    ("path", "payload", "field"),
    [
        ("contacts", {"name": "a\x00b"}, "name"),
        ("contacts", {"name": "a", "custom": {"k": "a\x00"}}, "custom.k"),
        ("follow-ups", {"kind": "call", "content": "x", "contact_id": BIG}, "contact_id"),
        ("follow-ups", {"kind": "call", "content": "x", "occurred_at": "0001-01-01T00:00:00"}, "occurred_at"),
        (
            "follow-ups",
            {"kind": "call", "content": "x", "next_contact_at": "9999-12-31T23:59:59-10:00"},
            "next_contact_at",
        ),
        ("/tasks", {"title": "x", "customer_id": BIG}, "customer_id"),
        ("/tasks", {"title": "x\x00"}, "title"),
        ("/opportunities", {"customer_id": "C", "name": "x", "owner_id": BIG}, "owner_id"),
        (
            "/fields",
            {"entity": "customer", "key": "k", "label": "k", "field_type": "text", "sort_order": 2**40},
            "sort_order",
        ),
        ("/tags", {"name": "\x00"}, "name"),
    ],
)
def test_unstorable_bodies_are_422(client, database, world, path, payload, field):
    _, customer = world
    payload = {k: customer.id if v == "C" else v for k, v in payload.items()}
    url = f"/api/v1{path}" if path.startswith("/") else f"/api/v1/customers/{customer.id}/{path}"
    resp = client.post(url, json=payload)
    assert resp.status_code == 422, resp.get_json()
    assert field in resp.get_json()["error"]["fields"]
    with database.session() as s:
        assert s.execute(sa.select(sa.func.count()).select_from(AuditLog)).scalar() == 0


@pytest.mark.parametrize(
    ("url", "params", "field"),
    [
        ("/api/v1/tasks", {"assignee_id": str(BIG)}, "assignee_id"),
        ("/api/v1/tasks", {"due_before": "0001-01-01T00:00:00"}, "due_before"),
        ("/api/v1/tasks", {"cursor": encode_cursor(None, BIG)}, "cursor"),
        ("/api/v1/opportunities", {"owner_id": f"1,{BIG}"}, "owner_id"),
        ("/api/v1/opportunities", {"stage_key": "won\x00"}, "stage_key"),
        ("/api/v1/opportunities", {"cursor": encode_cursor("0001-01-01T00:00:00+14:00", 1)}, "cursor"),
    ],
)
def test_unstorable_query_values_are_422(client, world, url, params, field):
    resp = client.get(url, query_string=params)
    assert resp.status_code == 422, resp.get_json()
    assert field in resp.get_json()["error"]["fields"]
