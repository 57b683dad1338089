"""Data scope: own/collaborating for salespeople, led subtree for managers, everything for admins."""

from __future__ import annotations

from models.crm import CustomerCollaborator
from tests import factories as f


def _visible(client, who, corp, **params):
    f.login(client, who, corp)
    resp = client.get("/api/v1/customers", query_string={"limit": 100, **params})
    assert resp.status_code == 200
    return {c["name"] for c in resp.get_json()["items"]}


def test_scope_by_role(client, database):
    with database.session() as s:
        org = f.org(s)
        f.customer(s, org.corp, org.alice, name="甲-张三的")
        shared = f.customer(s, org.corp, org.bob, name="乙-李四的")
        s.add(CustomerCollaborator(corp_id=org.corp.id, customer_id=shared.id, user_id=org.alice.id))
        f.customer(s, org.corp, org.bob, name="丙-李四的")
        f.customer(s, org.corp, org.admin, name="丁-总部的")
        f.customer(s, org.corp, None, name="戊-公海")

    assert _visible(client, org.alice, org.corp) == {"甲-张三的", "乙-李四的"}
    assert _visible(client, org.bob, org.corp) == {"乙-李四的", "丙-李四的"}
    # 东组长 leads 华东组 only; 王经理 leads 销售部 and so both groups below it.
    assert _visible(client, org.east_lead, org.corp) == {"甲-张三的"}
    assert _visible(client, org.manager, org.corp) == {"甲-张三的", "乙-李四的", "丙-李四的"}
    assert _visible(client, org.admin, org.corp) == {"甲-张三的", "乙-李四的", "丙-李四的", "丁-总部的"}
    # The public pool is readable by everyone when asked for.
    assert _visible(client, org.bob, org.corp, in_pool="true") == {"戊-公海"}
    # Department filter narrows within scope.
    assert _visible(client, org.manager, org.corp, department_id=org.south.id) == {"乙-李四的", "丙-李四的"}


def test_out_of_scope_detail_and_write_are_404(client, database):
    with database.session() as s:
        org = f.org(s)
        theirs = f.customer(s, org.corp, org.bob, name="李四的客户")
        pool = f.customer(s, org.corp, None, name="公海客户")
    f.login(client, org.alice, org.corp)
    assert client.get(f"/api/v1/customers/{theirs.id}").status_code == 404
    assert client.patch(f"/api/v1/customers/{theirs.id}", json={"grade": "A"}).status_code == 404
    assert client.delete(f"/api/v1/customers/{theirs.id}").status_code == 404
    assert client.get(f"/api/v1/customers/{pool.id}").status_code == 200
    assert client.patch(f"/api/v1/customers/{pool.id}", json={"grade": "A"}).status_code == 404


def test_assignment_rules(client, database):
    with database.session() as s:
        org = f.org(s)
        c = f.customer(s, org.corp, org.alice, name="待分配")
    f.login(client, org.alice, org.corp)
    resp = client.patch(f"/api/v1/customers/{c.id}", json={"owner_id": org.bob.id})
    assert resp.status_code == 403 and "owner_id" in resp.get_json()["error"]["fields"]
    f.login(client, org.east_lead, org.corp)
    assert client.patch(f"/api/v1/customers/{c.id}", json={"owner_id": org.bob.id}).status_code == 403
    f.login(client, org.manager, org.corp)
    resp = client.patch(f"/api/v1/customers/{c.id}", json={"owner_id": org.bob.id})
    assert resp.status_code == 200 and resp.get_json()["owner"]["id"] == org.bob.id
