"""The H5 shell and its aggregate reads: /h5/, /api/v1/h5/context, /api/v1/home, the fallback picker list."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import sqlalchemy as sa
import time_machine

from app.services.workbench import day_bounds
from models.crm import Contact, Task
from tests import factories

STATIC = Path(__file__).resolve().parents[1] / "app" / "h5" / "static"

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


def test_customer_page_renders_its_editors_results_from_the_one_detail_call(client, session):
    """What the in-place editors write (contact, task due in corp time and ticked off, deal) is all in the single
    /customers/<id> read the page renders from; nothing else is fetched."""
    org = factories.org(session)
    org.corp.timezone = "Asia/Urumqi"  # UTC+6: a naive due time must be read in the corp's zone
    customer = factories.customer(session, org.corp, org.alice, name="详情一次读取")
    session.commit()
    factories.login(client, org.alice, org.corp)
    bad = client.post(f"/api/v1/customers/{customer.id}/contacts", json={"name": "周八", "mobile": "138-abcd-0000"})
    assert bad.status_code == 422 and set(bad.get_json()["error"]["fields"]) == {"mobile"}
    assert session.execute(sa.select(sa.func.count()).where(Contact.customer_id == customer.id)).scalar() == 0
    assert client.post(f"/api/v1/customers/{customer.id}/contacts",
                       json={"name": "周八", "title": "采购经理", "mobile": "+86 139 0000 1111"}).status_code == 201
    task = client.post("/api/v1/tasks", json={"title": "寄样品", "due_at": "2026-03-11T10:00",
                                              "customer_id": customer.id}).get_json()
    assert client.patch(f"/api/v1/tasks/{task['id']}", json={"status": "done"}).status_code == 200
    client.post("/api/v1/tasks", json={"title": "回访", "customer_id": customer.id})
    opp = client.post("/api/v1/opportunities", json={"customer_id": customer.id, "name": "年度采购",
                                                     "amount": "128000.50", "stage_key": "needs",
                                                     "expected_close_date": "2026-04-30"})
    assert opp.status_code == 201, opp.get_json()

    body = client.get(f"/api/v1/customers/{customer.id}").get_json()
    assert [(c["name"], c["title"], c["mobile"]) for c in body["contacts"]] == [("周八", "采购经理", "13900001111")]
    tasks = {t["title"]: t for t in body["tasks"]}
    assert tasks["寄样品"]["status"] == "done" and tasks["寄样品"]["due_at"] == "2026-03-11T04:00:00Z"
    assert tasks["回访"]["status"] == "open" and tasks["回访"]["due_at"] is None
    assert tasks["寄样品"]["assignee"]["name"] == "张三"
    [deal] = body["opportunities"]
    assert (deal["name"], deal["amount"], deal["stage"]["key"], deal["expected_close_date"]) == (
        "年度采购", "128000.50", "needs", "2026-04-30")


def _static_imports(path: Path, seen: set[Path]) -> set[Path]:
    """Files loaded with `path` before any page runs: its static imports, transitively (not `import()`)."""
    path = path.resolve()
    if path not in seen:
        seen.add(path)
        for a, b in re.findall(r'^import\s[^;]*?from\s+"(\.[^"]+)"|^import\s+"(\.[^"]+)"', path.read_text(), re.M):
            _static_imports(path.parent / (a or b), seen)
    return seen


def test_first_load_leaves_the_editors_and_dashboard_lazy_and_fits_the_budget():
    js = STATIC / "js"
    first = _static_imports(js / "main.js", set())
    names = {p.relative_to(js.resolve()).as_posix() for p in first}
    assert {"main.js", "pages/home.js", "pages/customer_detail.js", "i18n/zh-CN.js"} <= names
    assert "pages/customer_records.js" not in names and "pages/dashboard.js" not in names
    # …and they are still reachable, through import().
    assert 'import("./customer_records.js")' in (js / "pages" / "customer_detail.js").read_text()
    total = sum(p.stat().st_size for p in first) + (STATIC / "app.css").stat().st_size
    assert total <= 200 * 1024, total


def test_both_languages_have_every_key_the_pages_use():
    key = re.compile(r'^\s*"([^"]+)":', re.M)
    zh = key.findall((STATIC / "js" / "i18n" / "zh-CN.js").read_text(encoding="utf-8"))
    en = key.findall((STATIC / "js" / "i18n" / "en.js").read_text(encoding="utf-8"))
    assert len(zh) == len(set(zh)) and len(en) == len(set(en))
    assert set(zh) == set(en)
    # Keys are also picked by ternaries and tables (HINTS), so take every quoted "namespace.rest" literal whose
    # namespace the dictionary has; other dotted strings (storage keys, field paths) have namespaces it lacks.
    namespaces = {k.split(".")[0] for k in zh}
    used = set()
    for path in (STATIC / "js").rglob("*.js"):
        if path.parent.name != "i18n":
            literals = re.findall(r'"([a-z][a-zA-Z]*(?:\.[a-zA-Z0-9]+)+)"', path.read_text(encoding="utf-8"))
            used |= {k for k in literals if k.split(".")[0] in namespaces}
    assert {"contact.err.mobile", "task.complete", "task.reopen", "opp.added", "customer.add"} <= used
    assert used - set(zh) == set()
