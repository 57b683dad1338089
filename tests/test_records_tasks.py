"""Tasks API: my list and filters, assignment rules, visibility, completion, delete rules, tenants."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from models.audit import AuditLog
from models.crm import Task
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


def _ids(resp):
    assert resp.status_code == 200, resp.get_json()
    return [t["id"] for t in resp.get_json()["items"]]


def test_create_defaults_complete_and_audit(client, database, world):
    org, mine, _ = world
    f.login(client, org.alice, org.corp)
    resp = client.post("/api/v1/tasks", json={"title": "回访", "customer_id": mine.id, "due_at": "2027-01-05T09:00:00"})
    assert resp.status_code == 201, resp.get_json()
    task = resp.get_json()
    assert task["assignee"]["id"] == org.alice.id and task["created_by"]["id"] == org.alice.id
    assert task["status"] == "open" and task["due_at"] == "2027-01-05T01:00:00Z"
    assert task["customer"] == {"id": mine.id, "name": "张三的客户"}

    done = client.patch(f"/api/v1/tasks/{task['id']}", json={"status": "done"}).get_json()
    assert done["status"] == "done" and done["completed_at"]
    with database.session() as s:
        assert s.get(Task, task["id"]).completed_at is not None
    reopened = client.patch(f"/api/v1/tasks/{task['id']}", json={"status": "open"}).get_json()
    assert reopened["completed_at"] is None
    with database.session() as s:
        entries = s.execute(sa.select(AuditLog).where(AuditLog.entity_type == "task").order_by(AuditLog.id)).scalars()
        entries = list(entries)
        assert [e.action for e in entries] == ["create", "update", "update"]
        assert entries[1].changes["status"] == {"before": "open", "after": "done"}

    assert client.delete(f"/api/v1/tasks/{task['id']}").status_code == 204
    assert client.get(f"/api/v1/tasks/{task['id']}").status_code == 404
    assert _count(database, AuditLog, AuditLog.entity_type == "task", AuditLog.action == "delete") == 1


def test_assignment_rules(client, database, world):
    org, _, _ = world
    f.login(client, org.alice, org.corp)
    resp = client.post("/api/v1/tasks", json={"title": "帮我做", "assignee_id": org.bob.id})
    assert resp.status_code == 403 and "assignee_id" in resp.get_json()["error"]["fields"]
    resp = client.post("/api/v1/tasks", json={"title": "x", "assignee_id": 999999})
    assert resp.status_code == 422 and "assignee_id" in resp.get_json()["error"]["fields"]
    assert _count(database, Task) == 0

    f.login(client, org.east_lead, org.corp)  # leads 华东组 only
    assert client.post("/api/v1/tasks", json={"title": "x", "assignee_id": org.bob.id}).status_code == 403
    assert client.post("/api/v1/tasks", json={"title": "x", "assignee_id": org.alice.id}).status_code == 201

    f.login(client, org.manager, org.corp)
    resp = client.post("/api/v1/tasks", json={"title": "拜访", "assignee_id": org.bob.id})
    assert resp.status_code == 201
    task_id = resp.get_json()["id"]

    # Bob may work on it but not hand it to someone else, nor delete it.
    f.login(client, org.bob, org.corp)
    assert client.get(f"/api/v1/tasks/{task_id}").status_code == 200
    resp = client.patch(f"/api/v1/tasks/{task_id}", json={"assignee_id": org.alice.id})
    assert resp.status_code == 403 and "assignee_id" in resp.get_json()["error"]["fields"]
    assert client.delete(f"/api/v1/tasks/{task_id}").status_code == 403
    assert client.patch(f"/api/v1/tasks/{task_id}", json={"status": "cancelled"}).status_code == 200


def test_list_defaults_to_mine_with_filters_and_pages(client, database, world):
    org, mine, _ = world
    now = datetime.now(UTC)
    with database.session() as s:
        for i in range(5):
            s.add(
                Task(
                    corp_id=org.corp.id,
                    title=f"甲{i}",
                    assignee_id=org.alice.id,
                    created_by_id=org.alice.id,
                    due_at=now + timedelta(days=i) if i < 4 else None,
                    status="done" if i == 1 else "open",
                )
            )
        s.add(Task(corp_id=org.corp.id, title="乙", assignee_id=org.bob.id, created_by_id=org.bob.id))
    f.login(client, org.alice, org.corp)
    all_mine = client.get("/api/v1/tasks").get_json()["items"]
    assert [t["title"] for t in all_mine] == ["甲0", "甲1", "甲2", "甲3", "甲4"]  # earliest due first, undated last
    assert [t["title"] for t in client.get("/api/v1/tasks", query_string={"status": "open"}).get_json()["items"]] == [
        "甲0",
        "甲2",
        "甲3",
        "甲4",
    ]
    due_soon = client.get("/api/v1/tasks", query_string={"due_before": (now + timedelta(days=1, hours=1)).isoformat()})
    assert [t["title"] for t in due_soon.get_json()["items"]] == ["甲0", "甲1"]

    seen, cursor = [], None
    while True:
        page = client.get("/api/v1/tasks", query_string={"limit": 2, **({"cursor": cursor} if cursor else {})})
        seen += _ids(page)
        cursor = page.get_json()["next_cursor"]
        if not cursor:
            break
    assert seen == [t["id"] for t in all_mine]

    resp = client.get("/api/v1/tasks", query_string={"assignee_id": org.bob.id})
    assert resp.status_code == 403 and "assignee_id" in resp.get_json()["error"]["fields"]
    resp = client.get("/api/v1/tasks", query_string={"status": "finished"})
    assert resp.status_code == 422 and "status" in resp.get_json()["error"]["fields"]

    f.login(client, org.manager, org.corp)
    assert client.get("/api/v1/tasks").get_json()["items"] == []
    bobs = client.get("/api/v1/tasks", query_string={"assignee_id": org.bob.id}).get_json()["items"]
    assert [t["title"] for t in bobs] == ["乙"]
    f.login(client, org.east_lead, org.corp)
    assert client.get("/api/v1/tasks", query_string={"assignee_id": org.bob.id}).status_code == 403
    assert len(client.get("/api/v1/tasks", query_string={"assignee_id": org.alice.id}).get_json()["items"]) == 5


def test_visibility_through_the_customer(client, database, world):
    org, mine, theirs = world
    with database.session() as s:
        about_mine = Task(
            corp_id=org.corp.id,
            title="张三客户的事",
            assignee_id=org.alice.id,
            created_by_id=org.alice.id,
            customer_id=mine.id,
        )
        s.add(about_mine)
        s.flush()
        task_id = about_mine.id
    f.login(client, org.bob, org.corp)
    assert client.get(f"/api/v1/tasks/{task_id}").status_code == 404
    assert client.patch(f"/api/v1/tasks/{task_id}", json={"status": "done"}).status_code == 404
    assert client.delete(f"/api/v1/tasks/{task_id}").status_code == 404
    assert client.get("/api/v1/tasks", query_string={"customer_id": mine.id}).status_code == 404
    # Bob cannot hang a task on a customer he cannot see.
    resp = client.post("/api/v1/tasks", json={"title": "x", "customer_id": mine.id})
    assert resp.status_code == 404 and "customer_id" in resp.get_json()["error"]["fields"]
    assert _count(database, Task) == 1

    f.login(client, org.manager, org.corp)
    assert client.get(f"/api/v1/tasks/{task_id}").status_code == 200
    assert _ids(client.get("/api/v1/tasks", query_string={"customer_id": mine.id})) == [task_id]
    f.login(client, org.alice, org.corp)
    assert _ids(client.get("/api/v1/tasks", query_string={"customer_id": mine.id})) == [task_id]
    resp = client.get("/api/v1/tasks", query_string={"customer_id": theirs.id})
    assert resp.status_code == 404 and "customer_id" in resp.get_json()["error"]["fields"]


def test_task_on_an_opportunity_takes_its_customer(client, database, world):
    org, mine, _ = world
    f.login(client, org.alice, org.corp)
    opp = client.post("/api/v1/opportunities", json={"customer_id": mine.id, "name": "商机"}).get_json()
    resp = client.post("/api/v1/tasks", json={"title": "报价", "opportunity_id": opp["id"]})
    assert resp.status_code == 201 and resp.get_json()["customer"]["id"] == mine.id
    with database.session() as s:
        other_id = f.customer(s, org.corp, org.alice, name="另一个").id
    resp = client.post("/api/v1/tasks", json={"title": "报价", "opportunity_id": opp["id"], "customer_id": other_id})
    assert resp.status_code == 422 and "opportunity_id" in resp.get_json()["error"]["fields"]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "title"),
        ({"title": ""}, "title"),
        ({"title": "x", "due_at": "明天"}, "due_at"),
        ({"title": "x", "status": "done"}, "status"),
        ({"title": "x", "customer_id": 987654}, "customer_id"),
        ({"title": "x", "opportunity_id": 987654}, "opportunity_id"),
    ],
)
def test_bad_task_input_names_the_field_and_writes_nothing(client, database, world, payload, field):
    org, _, _ = world
    f.login(client, org.alice, org.corp)
    resp = client.post("/api/v1/tasks", json=payload)
    assert 400 <= resp.status_code < 500
    assert field in resp.get_json()["error"]["fields"]
    assert _count(database, Task) == 0 and _count(database, AuditLog) == 0


def test_patch_nulls_rejected(client, database, world):
    org, _, _ = world
    f.login(client, org.alice, org.corp)
    task_id = client.post("/api/v1/tasks", json={"title": "x"}).get_json()["id"]
    for field in ("title", "status", "assignee_id"):
        resp = client.patch(f"/api/v1/tasks/{task_id}", json={field: None})
        assert resp.status_code == 422 and field in resp.get_json()["error"]["fields"]
    assert _count(database, AuditLog, AuditLog.action == "update") == 0


def test_other_tenant_cannot_reach_tasks(client, database, world):
    org, mine, _ = world
    f.login(client, org.alice, org.corp)
    task_id = client.post("/api/v1/tasks", json={"title": "机密", "customer_id": mine.id}).get_json()["id"]
    with database.session() as s:
        other = f.org(s, name="乙公司")
    f.login(client, other.admin, other.corp)
    assert client.get(f"/api/v1/tasks/{task_id}").status_code == 404
    assert client.patch(f"/api/v1/tasks/{task_id}", json={"status": "done"}).status_code == 404
    assert client.delete(f"/api/v1/tasks/{task_id}").status_code == 404
    assert client.get("/api/v1/tasks", query_string={"assignee_id": org.alice.id}).get_json()["items"] == []
    resp = client.post("/api/v1/tasks", json={"title": "x", "assignee_id": org.alice.id})
    assert resp.status_code == 422 and "assignee_id" in resp.get_json()["error"]["fields"]
    with database.session() as s:
        assert s.get(Task, task_id).status == "open"


def test_customer_detail_lists_open_tasks_before_many_closed_ones(client, database, world):
    org, mine, _ = world
    due = datetime(2027, 1, 5, 1, 0, tzinfo=UTC)
    with database.session() as s:
        for i in range(55):
            s.add(Task(corp_id=org.corp.id, customer_id=mine.id, title=f"旧任务{i}", status="done",
                       assignee_id=org.alice.id, created_by_id=org.alice.id, due_at=due - timedelta(days=i)))
        s.add(Task(corp_id=org.corp.id, customer_id=mine.id, title="还没做", status="open",
                   assignee_id=org.alice.id, created_by_id=org.alice.id, due_at=due + timedelta(days=30)))
    f.login(client, org.alice, org.corp)
    resp = client.get(f"/api/v1/customers/{mine.id}")
    assert resp.status_code == 200, resp.get_json()
    tasks = resp.get_json()["tasks"]
    assert len(tasks) == 50
    assert (tasks[0]["title"], tasks[0]["status"]) == ("还没做", "open")
    assert all(t["status"] == "done" for t in tasks[1:])
