"""Data scope: own/collaborating for salespeople, led subtree for managers, everything for admins."""

from __future__ import annotations

from datetime import UTC, datetime

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


def test_department_filter_inside_and_outside_the_led_subtree(client, database):
    """Within a manager's own subtree the list skips the scope clause (every owner there is in scope); outside
    it the scope still applies. Either way: the corp only, live rows only."""
    with database.session() as s:
        org = f.org(s)
        other = f.org(s)
        f.customer(s, org.corp, org.alice, name="甲-张三的")
        theirs = f.customer(s, org.corp, org.bob, name="丙-李四的")
        f.customer(s, org.corp, org.bob, name="己-已删除", deleted_at=datetime.now(UTC))
        f.customer(s, org.corp, org.admin, name="丁-总部的")
        s.add(CustomerCollaborator(corp_id=org.corp.id, customer_id=theirs.id, user_id=org.east_lead.id))
        f.customer(s, other.corp, other.bob, name="庚-别家的")

    # 王经理 leads 销售部: 华南组 is inside, so every live customer owned there.
    assert _visible(client, org.manager, org.corp, department_id=org.south.id) == {"丙-李四的"}
    # 总部 is above what he leads: only what his scope covers, not the admin's customer.
    assert _visible(client, org.manager, org.corp, department_id=org.hq.id) == {"甲-张三的", "丙-李四的"}
    # 东组长 leads 华东组 only: in 华南组 he sees just the customer he collaborates on.
    assert _visible(client, org.east_lead, org.corp, department_id=org.south.id) == {"丙-李四的"}
    assert _visible(client, org.east_lead, org.corp, department_id=org.east.id) == {"甲-张三的"}
    # A salesperson filtering a department sees only their own scope within it.
    assert _visible(client, org.alice, org.corp, department_id=org.sales.id) == {"甲-张三的"}
    # Another corp's department is unknown here.
    f.login(client, org.manager, org.corp)
    resp = client.get("/api/v1/customers", query_string={"department_id": other.south.id})
    assert resp.status_code == 422 and "department_id" in resp.get_json()["error"]["fields"]


def test_keyset_order_uses_nulls_last_only_for_nullable_columns():
    from sqlalchemy.dialects import postgresql

    from app.services import pagination
    from models.crm import Customer

    def sql(column, descending):
        key = pagination.SortKey(column, descending, "datetime")
        order = pagination.order_by(key, Customer.id)
        after = pagination.after(key, Customer.id, datetime(2026, 1, 1, tzinfo=UTC), 5)
        dialect = postgresql.dialect()
        return (", ".join(str(o.compile(dialect=dialect)) for o in order), str(after.compile(dialect=dialect)))

    order, after = sql(Customer.updated_at, True)
    assert order == "customers.updated_at DESC, customers.id DESC" and "IS NULL" not in after
    order, after = sql(Customer.next_contact_at, False)
    assert order == "customers.next_contact_at ASC NULLS LAST, customers.id ASC" and "IS NULL" in after
