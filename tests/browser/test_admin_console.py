"""Admin console journeys in Chromium at both viewports: bind a sandbox corp through the wizard (a wrong
secret shows its cause in plain words, the right one connects), run an org sync and watch it finish, filter
the delivery log and retry a failed message, export the audit log as CSV; non-admins see "no access"."""

from __future__ import annotations

import csv
import io
import itertools
from datetime import timedelta

import sqlalchemy as sa
from playwright.sync_api import expect

import models
from app.services import outbox
from app.services.corps import SecretBox
from integrations.sandbox.corpgen import generate_corp
from models.audit import AuditLog
from models.org import Corp, User
from models.outbox import OutboxItem, OutboxState, Priority
from models.platform import SyncRun
from models.types import utcnow
from tests import factories
from tests.browser.conftest import shot, sign_in_directly
from tests.browser.test_h5_journeys import unique

_corp_index = itertools.count(40)


def _as_admin(page_for, live_server, viewport, hash_path: str):
    page = page_for(viewport)
    page.goto("/h5/")
    sign_in_directly(page, live_server, live_server.seed.admin.userid)
    page.goto(f"/admin/#/{hash_path}")
    return page


def test_bind_wizard_wrong_secret_then_success(page_for, live_server, viewport):
    # A fresh corp in the running sandbox, bound through the wizard as a newcomer would.
    sandbox_corp = live_server.sandbox.server.world.add_corp(generate_corp(77, index=next(_corp_index), users=5))
    page = _as_admin(page_for, live_server, viewport, "bind")
    page.click("#new-corp")
    page.check("input[name=platform][value=dingtalk]")
    expect(page.locator("#sandbox-box")).to_be_checked()
    page.click("#next-platform")
    form = page.locator("#credentials-form")
    form.locator("input[name=corp_id]").fill(sandbox_corp.corp_id)
    form.locator("input[name=name]").fill("向导企业")
    form.locator("input[name=app_key]").fill(sandbox_corp.app_key)
    form.locator("input[name=app_secret]").fill("not-the-secret")
    form.locator("input[name=agent_id]").fill(str(sandbox_corp.agent_id))
    form.locator("input[name=aes_key]").fill("too-short")
    page.click("#save-credentials")
    # 4xx: the field is named beside its input and everything typed stays.
    expect(form.locator("[data-field=aes_key] .field-error")).to_be_visible()
    expect(form.locator("input[name=app_key]")).to_have_value(sandbox_corp.app_key)
    form.locator("input[name=aes_key]").fill("")
    page.click("#save-credentials")

    result = page.locator("#test-result")
    expect(result).to_have_class("result fail")
    expect(result).to_contain_text("连接失败")
    expect(result.locator(".message")).to_contain_text("AppSecret 不正确")
    expect(result.locator(".hints")).to_contain_text("重新复制 AppKey 和 AppSecret")
    expect(page.locator("#to-callback")).to_be_disabled()
    shot(page, viewport, "admin-bind-failed")

    page.click("#fix-credentials")
    page.locator("#credentials-form input[name=app_secret]").fill(sandbox_corp.app_secret)
    page.click("#save-credentials")
    expect(page.locator("#test-result")).to_have_class("result ok")
    expect(page.locator("#test-result")).to_contain_text("根部门")
    page.click("#to-callback")
    expect(page.locator("#callback-url")).to_have_text(
        f"{live_server.app.config['CRM_SETTINGS'].public_url}/callbacks/dingtalk/{sandbox_corp.corp_id}")
    token = page.locator("#callback-token").inner_text()
    aes_key = page.locator("#callback-aes").inner_text()
    assert len(aes_key) == 43 and token
    shot(page, viewport, "admin-bind-callback")
    page.click("#finish")
    expect(page.locator(f"tr[data-corp='{sandbox_corp.corp_id}']")).to_be_visible()

    settings = live_server.app.config["CRM_SETTINGS"]
    with live_server.session() as s:
        corp = s.execute(sa.select(Corp).where(Corp.platform_corp_id == sandbox_corp.corp_id)).scalar_one()
        stored = SecretBox(settings.master_key).open(corp.secrets_ciphertext)
        assert stored == {"app_secret": sandbox_corp.app_secret, "callback_token": token, "aes_key": aes_key}
        assert corp.settings["bound_from_corp"] == live_server.seed.corp_pk
        corp_pk = corp.id
    assert page.outside_requests == []
    _unbind(live_server, corp_pk)


def _unbind(live_server, corp_pk: int) -> None:
    """The other journeys share this server and expect its one sandbox corp: remove every row of ours."""
    with live_server.database.engine.begin() as conn:
        for table in reversed(models.Base.metadata.sorted_tables):
            if "corp_id" in table.c:
                conn.execute(table.delete().where(table.c.corp_id == corp_pk))
        conn.execute(sa.delete(Corp.__table__).where(Corp.__table__.c.id == corp_pk))


def test_sync_runs_with_progress_to_done(page_for, live_server, viewport):
    page = _as_admin(page_for, live_server, viewport, "sync")
    expect(page.locator("#org-tree .dept").first).to_be_visible()
    page.click("#run-sync")
    progress = page.locator("#sync-progress[data-status=succeeded]")
    expect(progress).to_be_visible(timeout=30000)
    with live_server.session() as s:
        run = s.execute(sa.select(SyncRun).where(SyncRun.corp_id == live_server.seed.corp_pk)
                        .order_by(SyncRun.id.desc())).scalars().first()
        assert run.status == "succeeded" and run.done == run.total and run.total > 0
        done, total, updated = run.done, run.total, run.updated
    expect(progress).to_contain_text(f"{done} / {total}")
    expect(progress).to_contain_text(f"更新 {updated}")
    expect(page.locator(f"#sync-history tr[data-run='{run.id}']")).to_contain_text(f"{done}/{total}")
    shot(page, viewport, "admin-sync")


def test_delivery_log_filters_and_retry(page_for, live_server, viewport):
    now = utcnow()
    with live_server.session() as s:
        corp = s.get(Corp, live_server.seed.corp_pk)
        person = factories.user(s, corp, unique("投递"))
        sent = outbox.enqueue(s, corp_id=corp.id, kind="follow_up_due", recipient_user_id=person.id,
                              subject_type="customer", subject_id=1, due_at=now - timedelta(hours=1),
                              payload={"line": "已发送的提醒"}, priority=Priority.REMINDER)
        failed = outbox.enqueue(s, corp_id=corp.id, kind="follow_up_due", recipient_user_id=person.id,
                                subject_type="customer", subject_id=2, due_at=now - timedelta(hours=2),
                                payload={"line": "失败的提醒"}, priority=Priority.REMINDER)
        sent.state = OutboxState.SENT
        failed.state, failed.last_error = OutboxState.FAILED, "60011 应用没有权限"
        s.flush()
        person_id, person_name, sent_id, failed_id = person.id, person.name, sent.id, failed.id
    page = _as_admin(page_for, live_server, viewport, "deliveries")
    expect(page.locator("#usage")).to_be_visible()
    page.fill("#delivery-filters input[name=recipient]", person_name)  # a name is looked up
    page.click("#apply-filters")
    expect(page.locator("#delivery-list tr[data-item]")).to_have_count(2)
    page.fill("#delivery-filters input[name=recipient]", str(person_id))
    page.select_option("#delivery-filters select[name=state]", "failed")
    page.click("#apply-filters")
    rows = page.locator("#delivery-list tr[data-item]")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-item", str(failed_id))
    expect(rows.first.locator(".verdict")).to_contain_text("60011")
    shot(page, viewport, "admin-deliveries")
    page.click(f"button[data-retry='{failed_id}']")
    expect(page.locator("#delivery-list .empty")).to_be_visible()  # no failed ones left for this person
    with live_server.session() as s:
        assert s.get(OutboxItem, failed_id).state == OutboxState.PENDING
        assert s.get(OutboxItem, sent_id).state == OutboxState.SENT
        # Keep the retried reminder out of other journeys' deliveries.
        s.get(OutboxItem, failed_id).state = OutboxState.SENT


def test_audit_csv_export_downloads_the_rows(page_for, live_server, viewport):
    with live_server.session() as s:
        corp = s.get(Corp, live_server.seed.corp_pk)
        person = factories.user(s, corp, unique("角色"))
        person_id, userid = person.id, person.platform_userid
    page = _as_admin(page_for, live_server, viewport, "users")
    page.fill("input[name=q]", userid)
    page.press("input[name=q]", "Enter")
    picker = page.locator(f"select[data-user='{person_id}']")
    picker.select_option("presales")
    expect(page.locator("#toast")).to_contain_text("角色已更新")
    with live_server.session() as s:
        assert s.get(User, person_id).role == "presales"

    page.goto("/admin/#/audit")
    page.fill("#audit-filters input[name=entity]", "user")
    page.fill("#audit-filters input[name=action]", "set_role")
    page.click("#audit-filter")
    expect(page.locator(f"#audit-list tr[data-audit] >> text=user #{person_id}")).to_be_visible()
    shot(page, viewport, "admin-audit")
    with page.expect_download() as download:
        page.click("#export-csv")
    text = download.value.path().read_text(encoding="utf-8-sig")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0][0] == "时间 / time"
    mine = [r for r in rows[1:] if r[3] == "user" and r[4] == str(person_id)]
    assert len(mine) == 1 and mine[0][2] == "set_role" and "presales" in mine[0][5]
    assert all(r[2] == "set_role" for r in rows[1:])
    with live_server.session() as s:
        export = s.execute(sa.select(AuditLog).where(AuditLog.corp_id == live_server.seed.corp_pk,
                                                     AuditLog.action == "export").order_by(AuditLog.id.desc())
                           ).scalars().first()
        assert export.actor_id == live_server.seed.admin.id
        assert export.changes["filters"]["after"] == {"entity": "user", "action": "set_role"}


def test_settings_form_keeps_input_on_rejection(page_for, live_server, viewport):
    page = _as_admin(page_for, live_server, viewport, "settings")
    page.fill("#settings-form input[name=pool_warn_days]", "90")
    page.click("#save-settings")
    expect(page.locator("#settings-form [data-field=pool_warn_days] .field-error")).to_be_visible()
    expect(page.locator("#settings-form input[name=pool_warn_days]")).to_have_value("90")
    shot(page, viewport, "admin-settings")
    with live_server.session() as s:
        assert s.get(Corp, live_server.seed.corp_pk).settings.get("pool_warn_days", 7) == 7


def test_other_pages_render_and_non_admins_see_no_access(page_for, live_server, viewport):
    page = _as_admin(page_for, live_server, viewport, "config")
    expect(page.locator("#stages tr[data-stage=won]")).to_be_visible()
    shot(page, viewport, "admin-config")
    page.locator("[data-nav=flows]").click()
    expect(page.locator("tr[data-flow]").first).to_be_visible()
    other = page_for(viewport)
    other.goto("/h5/")
    sign_in_directly(other, live_server, live_server.seed.alice.userid)
    response = other.goto("/admin/")
    assert response.status == 403
    expect(other.locator("#denied h1")).to_have_text("无权访问 / No access")
    shot(other, viewport, "admin-no-access")
