"""Admin delivery API: the log with filters and cursor pages, per-recipient verdicts, retry, usage; admins only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from app.services import outbox
from models.outbox import Delivery, DeliveryVerdict, OutboxState, Priority
from models.platform import ApiUsage
from tests import factories as f


@pytest.fixture
def world(database):
    now = datetime.now(UTC)
    with database.session() as s:
        org = f.org(s)
        ids = []
        for n in range(5):
            item = outbox.enqueue(s, corp_id=org.corp.id, kind="follow_up_due" if n % 2 else "agenda",
                                  recipient_user_id=(org.alice if n < 3 else org.bob).id, subject_type="customer",
                                  subject_id=n + 1, due_at=now - timedelta(hours=n), payload={"line": f"第{n}条"},
                                  priority=Priority.REMINDER)
            ids.append(item.id)
        d = Delivery(corp_id=org.corp.id, recipient_user_id=org.alice.id, local_day="2026-11-10", title="汇总",
                     content_hash="h", item_count=2, platform_task_id="700", verdict=DeliveryVerdict.DROPPED,
                     verdict_reason="daily_cap", sent_at=now)
        s.add(d)
        s.flush()
        first = s.get(outbox.OutboxItem, ids[0])
        first.state, first.delivery_id = OutboxState.SENT, d.id
        failed = s.get(outbox.OutboxItem, ids[4])
        failed.state, failed.last_error = OutboxState.FAILED, "60011 no permission"
        month = now.astimezone(ZoneInfo(org.corp.timezone)).strftime("%Y-%m")
        s.add(ApiUsage(corp_id=org.corp.id, month=month, family="work_notification", count=4100))
    return org, ids


def test_admins_only(client, world):
    org, _ = world
    f.login(client, org.alice, org.corp)
    for path in ("/api/v1/admin/deliveries", "/api/v1/admin/usage"):
        assert client.get(path).status_code == 403
    assert client.post(f"/api/v1/admin/deliveries/{world[1][4]}/retry").status_code == 403


def test_log_filters_pages_and_verdicts(client, world):
    org, ids = world
    f.login(client, org.admin, org.corp)
    page = client.get("/api/v1/admin/deliveries?limit=2").get_json()
    assert [i["id"] for i in page["items"]] == [ids[4], ids[3]] and page["next_cursor"]
    rest = client.get(f"/api/v1/admin/deliveries?limit=10&cursor={page['next_cursor']}").get_json()
    assert [i["id"] for i in rest["items"]] == [ids[2], ids[1], ids[0]] and rest["next_cursor"] is None
    sent = rest["items"][-1]
    assert sent["delivery"]["verdict"] == "dropped" and sent["delivery"]["reason"] == "daily_cap"
    assert sent["delivery"]["merged"] is True and sent["recipient"]["name"] == "张三"

    def ids_for(query):
        return [i["id"] for i in client.get(f"/api/v1/admin/deliveries?{query}").get_json()["items"]]

    assert ids_for("state=failed") == [ids[4]]
    assert ids_for("kind=agenda") == [ids[4], ids[2], ids[0]]
    assert ids_for(f"recipient={org.bob.id}") == [ids[4], ids[3]]
    since = (datetime.now(UTC) - timedelta(hours=1, minutes=30)).isoformat()
    assert ids_for(f"from={since.replace('+00:00', 'Z')}") == [ids[1], ids[0]]


@pytest.mark.parametrize("query, field", [("state=lost", "state"), ("recipient=abc", "recipient"),
                                          ("from=yesterday", "from"), ("limit=1000", "limit"), ("colour=red", "colour"),
                                          ("cursor=-5", "cursor")])
def test_bad_filters_are_4xx_naming_the_field(client, world, query, field):
    org, _ = world
    f.login(client, org.admin, org.corp)
    resp = client.get(f"/api/v1/admin/deliveries?{query}")
    assert resp.status_code in (400, 422) and field in resp.get_json()["error"]["fields"]


def test_retry_only_failed_and_only_own_corp(client, world, database):
    org, ids = world
    f.login(client, org.admin, org.corp)
    assert client.post(f"/api/v1/admin/deliveries/{ids[1]}/retry").status_code == 409
    resp = client.post(f"/api/v1/admin/deliveries/{ids[4]}/retry")
    assert resp.status_code == 200 and resp.get_json()["state"] == "pending"
    with database.session() as s:
        other = f.org(s, name="别家公司")
        theirs = outbox.enqueue(s, corp_id=other.corp.id, kind="x", recipient_user_id=other.alice.id,
                                subject_type="t", subject_id=1, due_at=datetime.now(UTC), payload={})
        theirs.state = OutboxState.FAILED
    assert client.post(f"/api/v1/admin/deliveries/{theirs.id}/retry").status_code == 404


def test_usage_against_quota_with_warning(client, world):
    org, _ = world
    f.login(client, org.admin, org.corp)
    data = client.get("/api/v1/admin/usage").get_json()
    assert data["quota"] == 5000 and data["used"] == 4100 and data["warning"] is True
    assert data["families"]["work_notification"] == {"used": 4100, "counted": True}
    assert data["messages"] == 1 and data["items_merged"] == 1 and data["waiting"] == 3
