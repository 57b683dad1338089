"""The H5 shell and its aggregate reads: /h5/, /api/v1/h5/context, /api/v1/home, the fallback picker list."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import time_machine

from app.services.workbench import day_bounds
from models.crm import Task
from tests import factories

# 2026-03-10 10:00 in Shanghai.
NOW = datetime(2026, 3, 10, 2, 0, tzinfo=UTC)


def _shanghai(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 3, day, hour, minute, tzinfo=ZoneInfo("Asia/Shanghai")).astimezone(UTC)


def test_shell_carries_boot_flags_and_a_strict_policy(client, app):
    resp = client.get("/h5/")
    assert resp.status_code == 200
    html = resp.get_data(as_text=True)
    assert '"sandbox": true' in html and "/h5/static/js/main.js?v=" in html
    policy = resp.headers["Content-Security-Policy"]
    assert "script-src 'self' https://g.alicdn.com https://res.wx.qq.com;" in policy
    assert "unsafe-inline" not in policy
    for asset in ("/h5/static/js/main.js", "/h5/static/app.css"):
        with client.get(asset) as static:
            assert static.status_code == 200

    app.config["CRM_SETTINGS"] = app.config["CRM_SETTINGS"].with_overrides(dev_login=False, sandbox=False)
    html = client.get("/h5/").get_data(as_text=True)
    assert '"sandbox": false' in html
    assert client.get("/api/v1/h5/sandbox-employees").status_code == 404


def test_aggregates_need_sign_in(client):
    for path in ("/api/v1/home", "/api/v1/h5/context"):
        resp = client.get(path)
        assert resp.status_code == 401 and resp.get_json()["error"]["code"] == "unauthorized"
    assert client.get("/api/v1/home?x=1").status_code in {401, 422}


def test_context_has_me_zone_fields_tags_and_stages(client, session):
    org = factories.org(session)
    org.corp.timezone = "Asia/Urumqi"
    factories.tag(session, org.corp, "高意向")
    session.commit()
    factories.login(client, org.alice, org.corp)
    body = client.get("/api/v1/h5/context").get_json()
    assert body["user"] == {"id": org.alice.id, "userid": org.alice.platform_userid, "name": "张三",
                            "role": "salesperson"}
    assert body["corp"]["timezone"] == "Asia/Urumqi"
    assert [t["name"] for g in body["tag_groups"] for t in g["tags"]] == ["高意向"]
    assert [s["key"] for s in body["stages"]][:2] == ["initial", "needs"]
    assert body["fields"] == []
    assert client.get("/api/v1/h5/context?extra=1").status_code == 422


def test_home_lists_my_due_and_overdue_follow_ups_and_open_tasks(client, session):
    org = factories.org(session)
    overdue = factories.customer(session, org.corp, org.alice, name="逾期客户", next_contact_at=_shanghai(9, 16))
    today = factories.customer(session, org.corp, org.alice, name="今天客户", next_contact_at=_shanghai(10, 23, 30))
    factories.customer(session, org.corp, org.alice, name="明天客户", next_contact_at=_shanghai(11, 0, 0))
    factories.customer(session, org.corp, org.alice, name="没约客户")
    factories.customer(session, org.corp, org.bob, name="别人的客户", next_contact_at=_shanghai(9, 9))
    gone = factories.customer(session, org.corp, org.alice, name="已删客户", next_contact_at=_shanghai(9, 9))
    gone.deleted_at = NOW
    session.add_all([
        Task(corp_id=org.corp.id, title="寄样品", assignee_id=org.alice.id, due_at=NOW - timedelta(hours=1),
             customer_id=today.id, created_by_id=org.alice.id),
        Task(corp_id=org.corp.id, title="无期限", assignee_id=org.alice.id, created_by_id=org.alice.id),
        Task(corp_id=org.corp.id, title="已完成", assignee_id=org.alice.id, status="done",
             created_by_id=org.alice.id),
        Task(corp_id=org.corp.id, title="李四的", assignee_id=org.bob.id, created_by_id=org.bob.id),
    ])
    session.commit()
    with time_machine.travel(NOW, tick=False):
        factories.login(client, org.alice, org.corp)  # inside: a cookie signed in the future is refused
        resp = client.get("/api/v1/home")
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert [(f["customer"]["name"], f["overdue"]) for f in body["follow_ups"]] == [("逾期客户", True),
                                                                                   ("今天客户", False)]
    assert body["follow_ups"][0]["customer"]["id"] == overdue.id
    assert [(t["title"], t["overdue"]) for t in body["tasks"]] == [("寄样品", True), ("无期限", False)]
    assert body["tasks"][0]["customer"] == {"id": today.id, "name": "今天客户"}
    assert body["counts"]["follow_ups_overdue"] == 1 and body["counts"]["follow_ups_today"] == 1
    assert body["today"] == {"start": "2026-03-09T16:00:00Z", "end": "2026-03-10T16:00:00Z"}
    assert body["approvals"] == []


def test_day_bounds_follow_the_corp_zone_across_a_dst_change():
    # New York springs forward on 2026-03-08: that local day is 23 hours long.
    start, end = day_bounds(datetime(2026, 3, 8, 15, 0, tzinfo=UTC), "America/New_York")
    assert start == datetime(2026, 3, 8, 5, 0, tzinfo=UTC) and end == datetime(2026, 3, 9, 4, 0, tzinfo=UTC)
    start, end = day_bounds(datetime(2026, 3, 9, 15, 59, tzinfo=UTC), "Asia/Shanghai")
    assert (start, end) == (datetime(2026, 3, 8, 16, 0, tzinfo=UTC), datetime(2026, 3, 9, 16, 0, tzinfo=UTC))


def test_fallback_picker_lists_active_people_of_active_corps_only(client, session):
    org = factories.org(session)
    factories.user(session, org.corp, "离职的人", active=False)
    other = factories.corp(session, corp_id="dingclosed")
    factories.user(session, other, "停用企业的人")
    other.active = False
    session.commit()
    items = client.get("/api/v1/h5/sandbox-employees").get_json()["items"]
    names = {i["name"] for i in items}
    assert names == {"管理员", "王经理", "东组长", "张三", "李四"}
    alice = next(i for i in items if i["name"] == "张三")
    assert alice["corpId"] == org.corp.platform_corp_id and alice["userid"] == org.alice.platform_userid
