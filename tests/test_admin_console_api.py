"""Admin console API: corp binding and its connection test against the sandbox over HTTP, roles, settings,
stages and the audit log with its CSV export — admins only, 4xx naming the field, audit rows written."""

from __future__ import annotations

import csv
import io
from dataclasses import replace
from urllib.parse import urlparse

import pytest
import sqlalchemy as sa

from app import create_app
from app.services.corps import SecretBox
from integrations.sandbox.dingtalk_state import DingTalkWorld, Fault
from integrations.sandbox.server import SandboxServer
from models.approvals import ApprovalFlow
from models.audit import AuditLog
from models.crm import OpportunityStage
from models.org import Corp, Role, User
from models.rules import AutomationRule
from tests import factories as f

ADMIN_GETS = ("/api/v1/admin/corps", "/api/v1/admin/users", "/api/v1/admin/settings", "/api/v1/admin/stages",
              "/api/v1/admin/audit", "/api/v1/admin/audit.csv")


def _audit(database, corp_id, action, entity_type):
    with database.session() as s:
        return s.execute(sa.select(AuditLog).where(AuditLog.corp_id == corp_id, AuditLog.action == action,
                                                   AuditLog.entity_type == entity_type)
                         .order_by(AuditLog.id)).scalars().all()


@pytest.fixture
def org(database):
    with database.session() as s:
        return f.org(s)


def test_non_admins_get_403_everywhere(client, org, database):
    for who in (org.alice, org.manager):
        f.login(client, who, org.corp)
        for path in ADMIN_GETS:
            assert client.get(path).status_code == 403, path
        assert client.post("/api/v1/admin/corps", json={"platform": "dingtalk", "corp_id": "x"}).status_code == 403
        assert client.post(f"/api/v1/admin/corps/{org.corp.id}/test").status_code == 403
        assert client.patch(f"/api/v1/admin/users/{org.bob.id}", json={"role": "admin"}).status_code == 403
        assert client.patch("/api/v1/admin/settings", json={"stale_days": 5}).status_code == 403
    with database.session() as s:
        assert s.get(User, org.bob.id).role == Role.SALESPERSON
    client.post("/api/v1/auth/logout")
    assert client.get("/api/v1/admin/users").status_code == 401


def test_console_page_is_for_admins_only(client, org):
    assert client.get("/admin/").status_code == 401
    f.login(client, org.alice, org.corp)
    page = client.get("/admin/")
    assert page.status_code == 403 and "无权访问 / No access" in page.get_data(as_text=True)
    f.login(client, org.admin, org.corp)
    page = client.get("/admin/")
    assert page.status_code == 200 and "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert "js/main.js" in page.get_data(as_text=True)


# ----------------------------------------------------------------------------- binding


@pytest.fixture
def sandbox():
    with SandboxServer(DingTalkWorld(seed=21, corps=0, users=6)) as server:
        from integrations.sandbox.corpgen import generate_corp

        corp = server.world.add_corp(generate_corp(21, index=0, users=6))
        yield server, corp


@pytest.fixture
def sandbox_client(settings, database, sandbox):
    server, _ = sandbox
    cfg = replace(settings, sandbox=True, sandbox_port=urlparse(server.url).port, public_url="https://crm.example.com")
    return create_app(cfg, database=database).test_client(), cfg


def test_bind_wrong_secret_then_fix_then_test(sandbox, sandbox_client, org, database):
    _, sc = sandbox
    client, cfg = sandbox_client
    f.login(client, org.admin, org.corp)
    resp = client.post("/api/v1/admin/corps", json={"platform": "dingtalk", "corp_id": sc.corp_id, "name": "沙箱二",
                                                     "app_key": sc.app_key, "app_secret": "wrong-secret",
                                                     "agent_id": str(sc.agent_id), "sandbox": True})
    assert resp.status_code == 201, resp.get_json()
    bound = resp.get_json()
    assert bound["callback_url"] == f"https://crm.example.com/callbacks/dingtalk/{sc.corp_id}"
    assert len(bound["callback"]["aes_key"]) == 43 and bound["callback"]["token"]
    assert "wrong-secret" not in resp.get_data(as_text=True)

    failed = client.post(f"/api/v1/admin/corps/{bound['id']}/test").get_json()
    assert failed["ok"] is False and "AppSecret" in failed["message"]
    assert any("AppSecret" in hint for hint in failed["hints"])

    fixed = client.patch(f"/api/v1/admin/corps/{bound['id']}", json={"app_secret": sc.app_secret})
    assert fixed.status_code == 200 and "callback" not in fixed.get_json()  # callback values unchanged: not shown
    ok = client.post(f"/api/v1/admin/corps/{bound['id']}/test").get_json()
    assert ok["ok"] is True and ok["hints"] == [], ok

    with database.session() as s:
        row = s.get(Corp, bound["id"])
        stored = SecretBox(cfg.master_key).open(row.secrets_ciphertext)
        assert stored["app_secret"] == sc.app_secret and stored["aes_key"] == bound["callback"]["aes_key"]
        assert sc.app_secret not in row.secrets_ciphertext
    listed = client.get("/api/v1/admin/corps").get_json()
    assert [c["corp_id"] for c in listed["items"]] == [org.corp.platform_corp_id, sc.corp_id]
    assert sc.app_secret not in str(listed)
    rebind = _audit(database, org.corp.id, "rebind", "corp")
    assert rebind[0].changes == {"app_secret": {"before": "***", "after": "***"}}
    assert sc.app_secret not in str([a.changes for a in _audit(database, org.corp.id, "bind", "corp")])
    assert [a.changes["ok"]["after"] for a in _audit(database, org.corp.id, "test", "corp")] == [False, True]


def test_permission_error_names_what_to_fix(sandbox, sandbox_client, org):
    server, sc = sandbox
    client, _ = sandbox_client
    f.login(client, org.admin, org.corp)
    bound = client.post("/api/v1/admin/corps", json={"platform": "dingtalk", "corp_id": sc.corp_id,
                                                      "app_key": sc.app_key, "app_secret": sc.app_secret,
                                                      "sandbox": True}).get_json()
    server.world.faults.append(Fault(path="/topapi/v2/department", remaining=1, errcode=60011,
                                     errmsg="no permission", corp_id=sc.corp_id))
    failed = client.post(f"/api/v1/admin/corps/{bound['id']}/test").get_json()
    assert failed["ok"] is False and "60011" in failed["message"]
    assert any("通讯录" in hint and "permission" in hint for hint in failed["hints"])


def test_bind_validation_names_the_field(sandbox_client, org, database):
    client, _ = sandbox_client
    f.login(client, org.admin, org.corp)
    cases = [
        ({"platform": "qq", "corp_id": "x"}, "platform"),
        ({"platform": "dingtalk", "corp_id": ""}, "corp_id"),
        ({"platform": "dingtalk", "corp_id": "dingx", "app_secret": "s"}, "app_key"),
        ({"platform": "dingtalk", "corp_id": "dingx", "app_key": "k"}, "app_secret"),
        ({"platform": "wecom", "corp_id": "wwx", "secret": "s"}, "agent_id"),
        ({"platform": "dingtalk", "corp_id": "dingx", "app_key": "k", "app_secret": "s", "aes_key": "short"},
         "aes_key"),
        ({"platform": "dingtalk", "corp_id": org.corp.platform_corp_id, "app_key": "k", "app_secret": "s"}, "corp_id"),
    ]
    for payload, name in cases:
        resp = client.post("/api/v1/admin/corps", json=payload)
        assert resp.status_code in (409, 422), (payload, resp.status_code)
        assert name in resp.get_json()["error"]["fields"], (payload, resp.get_json())
    with database.session() as s:
        assert s.execute(sa.select(sa.func.count()).select_from(Corp)).scalar() == 1


def test_new_corps_only_in_sandbox_or_dev_mode(settings, database, org):
    client = create_app(replace(settings, dev_login=False, sandbox=False), database=database).test_client()
    with client.session_transaction() as sess:
        sess["corp_id"], sess["user_id"] = org.corp.id, org.admin.id
    resp = client.post("/api/v1/admin/corps", json={"platform": "dingtalk", "corp_id": "dingnew", "app_key": "k",
                                                     "app_secret": "s"})
    assert resp.status_code == 403 and resp.get_json()["error"]["code"] == "cli_only"
    # …but its own corp may be re-bound.
    resp = client.patch(f"/api/v1/admin/corps/{org.corp.id}", json={"app_key": "newkey", "app_secret": "newsecret"})
    assert resp.status_code == 200 and resp.get_json()["app_key"] == "newkey"


# ----------------------------------------------------------------------------- roles and settings


def test_roles_change_audited_and_last_admin_kept(client, org, database):
    f.login(client, org.admin, org.corp)
    resp = client.patch(f"/api/v1/admin/users/{org.alice.id}", json={"role": "presales"})
    assert resp.status_code == 200 and resp.get_json()["role"] == "presales"
    assert _audit(database, org.corp.id, "set_role", "user")[0].changes == {
        "role": {"before": "salesperson", "after": "presales"}}
    bad = client.patch(f"/api/v1/admin/users/{org.alice.id}", json={"role": "boss"})
    assert bad.status_code == 422 and "role" in bad.get_json()["error"]["fields"]
    last = client.patch(f"/api/v1/admin/users/{org.admin.id}", json={"role": "manager"})
    assert last.status_code == 409 and last.get_json()["error"]["fields"] == {"role": "last admin"}
    # With a second admin, the first may step down.
    assert client.patch(f"/api/v1/admin/users/{org.bob.id}", json={"role": "admin"}).status_code == 200
    assert client.patch(f"/api/v1/admin/users/{org.admin.id}", json={"role": "manager"}).status_code == 200
    with database.session() as s:
        assert s.get(User, org.admin.id).role == Role.MANAGER
    page = client.get("/api/v1/admin/users?q=张")
    assert page.status_code == 403  # no longer an admin


def test_user_list_filters(client, org):
    f.login(client, org.admin, org.corp)
    items = client.get("/api/v1/admin/users?role=manager").get_json()["items"]
    assert sorted(u["name"] for u in items) == ["东组长", "王经理"]
    first = client.get("/api/v1/admin/users?limit=2").get_json()
    rest = client.get(f"/api/v1/admin/users?limit=10&cursor={first['next_cursor']}").get_json()
    assert len(first["items"]) + len(rest["items"]) == 5 and rest["next_cursor"] is None


def test_settings_validated_per_key_and_audited(client, org, database):
    f.login(client, org.admin, org.corp)
    before = client.get("/api/v1/admin/settings").get_json()["settings"]
    assert before["stale_days"] == 30 and before["quiet_hours"] == ["21:00", "08:00"]
    bad = client.patch("/api/v1/admin/settings", json={"stale_days": 0, "agenda_time": "25:00", "leaver_policy": "x",
                                                         "quiet_hours": ["21:00"], "nope": 1, "pool_warn_days": True})
    assert bad.status_code == 422
    assert set(bad.get_json()["error"]["fields"]) == {"stale_days", "agenda_time", "leaver_policy", "quiet_hours",
                                                      "nope", "pool_warn_days"}
    clash = client.patch("/api/v1/admin/settings", json={"pool_warn_days": 60, "pool_reclaim_days": 30})
    assert clash.status_code == 422 and "pool_warn_days" in clash.get_json()["error"]["fields"]
    assert client.get("/api/v1/admin/settings").get_json()["settings"] == before  # nothing half-written
    ok = client.patch("/api/v1/admin/settings", json={"stale_days": 14, "quiet_hours": None, "agenda_time": "08:30"})
    assert ok.status_code == 200
    assert ok.get_json()["settings"]["stale_days"] == 14 and ok.get_json()["settings"]["quiet_hours"] is None
    with database.session() as s:
        assert s.get(Corp, org.corp.id).settings["agenda_time"] == "08:30"
    [entry] = _audit(database, org.corp.id, "update", "settings")
    assert entry.changes["stale_days"] == {"before": 30, "after": 14} and set(entry.changes) == {
        "stale_days", "quiet_hours", "agenda_time"}


def test_stages_edit_add_and_retire_rules(client, org, database):
    f.login(client, org.admin, org.corp)
    stages = client.get("/api/v1/admin/stages").get_json()["items"]
    won = next(s for s in stages if s["is_won"])
    needs = next(s for s in stages if s["key"] == "needs")
    assert client.patch(f"/api/v1/admin/stages/{won['id']}", json={"active": False}).status_code == 422
    bad = client.patch(f"/api/v1/admin/stages/{needs['id']}", json={"probability": 101})
    assert bad.status_code == 422 and "probability" in bad.get_json()["error"]["fields"]
    resp = client.patch(f"/api/v1/admin/stages/{needs['id']}", json={"name": "需求分析", "probability": 35})
    assert resp.status_code == 200 and resp.get_json()["name"] == "需求分析"
    added = client.post("/api/v1/admin/stages", json={"key": "trial", "name": "试用", "probability": 40})
    assert added.status_code == 201
    dup = client.post("/api/v1/admin/stages", json={"key": "trial", "name": "再试", "probability": 40})
    assert dup.status_code == 409 and "key" in dup.get_json()["error"]["fields"]
    assert client.patch(f"/api/v1/admin/stages/{added.get_json()['id']}", json={"active": False}).status_code == 200
    with database.session() as s:
        names = dict(s.execute(sa.select(OpportunityStage.key, OpportunityStage.name)
                               .where(OpportunityStage.corp_id == org.corp.id)).all())
    assert names["needs"] == "需求分析" and names["trial"] == "试用"
    assert len(_audit(database, org.corp.id, "update", "stage")) == 2
    assert len(_audit(database, org.corp.id, "create", "stage")) == 1


# ----------------------------------------------------------------------------- audit log


def test_audit_filters_and_csv_export(client, org, database):
    f.login(client, org.admin, org.corp)
    client.patch(f"/api/v1/admin/users/{org.alice.id}", json={"role": "manager"})
    client.patch("/api/v1/admin/settings", json={"stale_days": 20})
    client.patch("/api/v1/admin/settings", json={"pool_hold_cap": "=HYPERLINK(1)"})  # rejected, not logged
    items = client.get("/api/v1/admin/audit?action=set_role").get_json()["items"]
    assert [(i["entity_type"], i["entity_id"]) for i in items] == [("user", org.alice.id)]
    assert items[0]["actor"] == {"id": org.admin.id, "name": "管理员"}
    assert {i["entity_type"] for i in client.get("/api/v1/admin/audit?entity=settings").get_json()["items"]} == {
        "settings"}
    assert client.get(f"/api/v1/admin/audit?actor={org.alice.id}").get_json()["items"] == []
    assert client.get("/api/v1/admin/audit?from=2999-01-01T00:00:00").get_json()["items"] == []
    bad = client.get("/api/v1/admin/audit?from=yesterday")
    assert bad.status_code == 400 or bad.status_code == 422
    assert "from" in bad.get_json()["error"]["fields"]
    assert client.get("/api/v1/admin/audit?bogus=1").status_code in (400, 422)

    resp = client.get("/api/v1/admin/audit.csv?entity=user")
    raw = resp.get_data()
    assert resp.status_code == 200 and resp.mimetype == "text/csv" and "attachment" in resp.headers[
        "Content-Disposition"]
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    assert rows[0][0] == "时间 / time" and [r[2] for r in rows[1:]] == ["set_role"]
    assert rows[1][1] == "管理员" and "salesperson" in rows[1][5]
    [export] = _audit(database, org.corp.id, "export", "audit_log")
    assert export.changes == {"filters": {"before": None, "after": {"entity": "user"}}}
    # The export shows up in the next export.
    again = list(csv.reader(io.StringIO(client.get("/api/v1/admin/audit.csv").get_data().decode("utf-8-sig"))))
    assert [r[2] for r in again[1:3]] == ["export", "export"]


def test_csv_cells_cannot_become_formulas(client, org, database):
    from app.services import audit
    from app.services.actor import Actor

    with database.session() as s:
        audit.record(s, Actor(corp_id=org.corp.id, user_id=org.admin.id, role=Role.ADMIN), "=cmd", "customer", 1,
                     {"name": {"before": None, "after": "@SUM(A1)"}})
    f.login(client, org.admin, org.corp)
    rows = list(csv.reader(io.StringIO(client.get("/api/v1/admin/audit.csv?entity=customer")
                                       .get_data().decode("utf-8-sig"))))
    assert rows[1][2] == "'=cmd"


def test_audit_pages_by_cursor(client, org, database):
    from app.services import audit
    from app.services.actor import Actor

    with database.session() as s:
        who = Actor(corp_id=org.corp.id, user_id=org.admin.id, role=Role.ADMIN)
        for n in range(5):
            audit.record(s, who, "update", "customer", n + 1)
    f.login(client, org.admin, org.corp)
    first = client.get("/api/v1/admin/audit?entity=customer&limit=3").get_json()
    rest = client.get(f"/api/v1/admin/audit?entity=customer&limit=3&cursor={first['next_cursor']}").get_json()
    assert [i["entity_id"] for i in first["items"] + rest["items"]] == [5, 4, 3, 2, 1]
    assert rest["next_cursor"] is None


def test_wecom_bind_wrong_secret_and_missing_contact_permission(settings, database, org):
    from integrations.sandbox.wecom_api import create_wecom_blueprint
    from integrations.sandbox.wecom_state import WeComWorld

    world = WeComWorld(seed=9, corps=1, users=8)
    wecom_app = next(iter(world.apps.values()))
    creds = world.credentials(wecom_app)
    with SandboxServer(extra_blueprints=(create_wecom_blueprint(world),)) as server:
        cfg = replace(settings, sandbox=True, sandbox_port=urlparse(server.url).port)
        client = create_app(cfg, database=database).test_client()
        f.login(client, org.admin, org.corp)
        bound = client.post("/api/v1/admin/corps", json={"platform": "wecom", "corp_id": creds["corpId"],
                                                          "secret": "wrong", "agent_id": str(creds["agentId"]),
                                                          "sandbox": True})
        assert bound.status_code == 201, bound.get_json()
        corp_pk = bound.get_json()["id"]
        assert bound.get_json()["callback_url"].endswith(f"/callbacks/wecom/{creds['corpId']}")
        failed = client.post(f"/api/v1/admin/corps/{corp_pk}/test").get_json()
        assert failed["ok"] is False and "40001" in failed["message"]
        assert any("Secret" in hint for hint in failed["hints"])

        client.patch(f"/api/v1/admin/corps/{corp_pk}", json={"secret": creds["secret"]})
        wecom_app.contact_permission = False
        denied = client.post(f"/api/v1/admin/corps/{corp_pk}/test").get_json()
        assert denied["ok"] is False and any("通讯录" in hint for hint in denied["hints"]), denied
        wecom_app.contact_permission = True
        ok = client.post(f"/api/v1/admin/corps/{corp_pk}/test").get_json()
        assert ok["ok"] is True, ok


@pytest.mark.parametrize(("message", "expected"), [
    ("服务器出口 IP 不在应用白名单中 (server IP not in the app's IP whitelist) (dingtalk 60020)", "IP"),
    ("应用未开通该接口权限 (dingtalk Forbidden.AccessDenied.AccessTokenPermissionDenied)", "通讯录"),
    ("Secret 不正确、已重置或应用已停用 (wecom 40001)", "Secret"),
    ("AgentId 与 Secret 不属于同一个应用 (wecom 301002)", "AgentId"),
    ("连接钉钉超时 (connect timeout)", "firewall"),
])
def test_hints_follow_the_documented_codes(message, expected):
    from app.services.admin_corps import hints_for

    hints = hints_for(message, "dingtalk")
    assert len(hints) == 1 and expected in hints[0], hints


def test_unknown_code_gives_no_invented_hint():
    from app.services.admin_corps import hints_for

    assert hints_for("something odd (dingtalk 123456)", "dingtalk") == []
    assert hints_for("x (dingtalk 600201)", "dingtalk") == []  # 60020 only as a whole code


def test_rule_editor_can_change_the_trigger_and_the_new_one_is_checked_and_takes_effect(client, org, database):
    """The console's rule editor sends the trigger with every save: a new trigger is validated against the
    parameters it will run with (422 naming the input, nothing written) and fires from then on."""
    f.login(client, org.admin, org.corp)
    created = client.post("/api/v1/admin/rules", json={
        "name": "需求确认建任务", "trigger": "stage_changed", "params": {"stage": "needs"},
        "actions": [{"type": "create_task", "title": "跟进{客户名称}", "due_in_days": 1}]})
    assert created.status_code == 201, created.get_json()
    rule_id = created.get_json()["id"]

    for body, field in (({"trigger": "amount_crossed"}, "params.threshold"),
                        ({"trigger": "no_follow_up", "params": {"stage": "needs"}}, "params.days"),
                        ({"trigger": None}, "trigger"), ({"trigger": "someday"}, "trigger")):
        resp = client.patch(f"/api/v1/admin/rules/{rule_id}", json=body)
        assert resp.status_code == 422 and field in resp.get_json()["error"]["fields"], (body, resp.get_json())
    stored = client.get(f"/api/v1/admin/rules/{rule_id}").get_json()
    assert (stored["trigger"], stored["params"]) == ("stage_changed", {"stage": "needs"})

    resp = client.patch(f"/api/v1/admin/rules/{rule_id}",
                        json={"trigger": "amount_crossed", "params": {"threshold": 500000}})
    assert resp.status_code == 200 and resp.get_json()["trigger"] == "amount_crossed", resp.get_json()
    assert resp.get_json()["params"] == {"threshold": "500000"}
    resp = client.patch(f"/api/v1/admin/rules/{rule_id}", json={"trigger": "customer_created", "params": {}})
    assert resp.status_code == 200 and resp.get_json()["params"] == {}
    changes = _audit(database, org.corp.id, "update", "automation_rule")[-1].changes
    assert changes["trigger"] == {"before": "amount_crossed", "after": "customer_created"}

    # From now on the rule runs on its new trigger.
    made = client.post("/api/v1/customers", json={"name": "触发器测试有限公司"})
    assert made.status_code == 201, made.get_json()
    firings = client.get(f"/api/v1/admin/rule-firings?rule_id={rule_id}").get_json()["items"]
    assert [(x["trigger"], x["subject"]["id"], x["status"]) for x in firings] == [
        ("customer_created", made.get_json()["id"], "done")]

    f.login(client, org.alice, org.corp)
    assert client.patch(f"/api/v1/admin/rules/{rule_id}", json={"trigger": "stage_changed"}).status_code == 403


def test_stage_changed_rule_must_name_a_stage_of_the_corp(client, org, database):
    """A rule waiting for a stage key the corp does not have would never fire: 422 naming params.stage."""
    f.login(client, org.admin, org.corp)
    body = {"name": "不存在的阶段", "trigger": "stage_changed", "params": {"stage": "nope"},
            "actions": [{"type": "create_task", "title": "跟进{客户名称}", "due_in_days": 1}]}
    resp = client.post("/api/v1/admin/rules", json=body)
    assert resp.status_code == 422 and "params.stage" in resp.get_json()["error"]["fields"], resp.get_json()
    assert not [r for r in client.get("/api/v1/admin/rules").get_json()["items"] if r["name"] == "不存在的阶段"]

    created = client.post("/api/v1/admin/rules", json={**body, "params": {"stage": "needs"}})
    assert created.status_code == 201, created.get_json()
    rule_id = created.get_json()["id"]
    resp = client.patch(f"/api/v1/admin/rules/{rule_id}", json={"params": {"stage": "nope"}})
    assert resp.status_code == 422 and "params.stage" in resp.get_json()["error"]["fields"], resp.get_json()
    assert client.get(f"/api/v1/admin/rules/{rule_id}").get_json()["params"] == {"stage": "needs"}


def test_roles_and_named_people_must_exist_for_rules_and_flows(client, org, database):
    """The console offers the four roles and this corp's people; the API refuses anything else with a 422
    naming the input, instead of storing a rule or step that routes to nobody."""
    with database.session() as s:
        stranger = f.user(s, f.corp(s), "外企业的人")
        s.commit()
        stranger_id = s.get(User, stranger.id).id
    f.login(client, org.admin, org.corp)
    task = {"type": "create_task", "title": "跟进", "assignee": "role:boss"}
    notify = {"type": "notify", "to": ["owner", f"user:{stranger_id}"], "message": "看看"}
    for actions, field in (([task], "actions.0.create_task.assignee"), ([notify], "actions.0.to.1"),
                           ([{**task, "assignee": f"user:{stranger_id}"}], "actions.0.assignee")):
        resp = client.post("/api/v1/admin/rules", json={"name": "坏规则", "trigger": "customer_created",
                                                        "actions": actions})
        assert resp.status_code == 422 and field in resp.get_json()["error"]["fields"], resp.get_json()
    step = {"name": "财务", "approvers": [{"type": "role", "role": "finance"}]}
    resp = client.post("/api/v1/admin/approval-flows", json={"name": "坏流程", "kind": "custom", "steps": [step]})
    assert resp.status_code == 422 and "steps.0.approvers.0.role.role" in resp.get_json()["error"]["fields"]
    with database.session() as s:
        assert s.execute(sa.select(AutomationRule.id).where(AutomationRule.name == "坏规则")).first() is None
        assert s.execute(sa.select(ApprovalFlow.id).where(ApprovalFlow.name == "坏流程")).first() is None

    ok = client.post("/api/v1/admin/rules", json={"name": "好规则", "trigger": "customer_created", "actions": [
        {**task, "assignee": "role:presales"}, {**notify, "to": ["owner_leader", f"user:{org.bob.id}"]}]})
    assert ok.status_code == 201, ok.get_json()
    step["approvers"] = [{"type": "role", "role": "manager"}]
    ok = client.post("/api/v1/admin/approval-flows", json={"name": "好流程", "kind": "custom", "steps": [step]})
    assert ok.status_code == 201, ok.get_json()
