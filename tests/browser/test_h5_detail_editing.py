"""On a customer's page, in Chromium at phone and desktop sizes: add and edit a contact (tap to call), add a task
due tomorrow and tick it off, add a deal and find it under its stage — each checked on the page and in the
database; a rejected save keeps what was typed."""

from __future__ import annotations

import itertools
import re
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from playwright.sync_api import expect

from models.crm import Contact, Opportunity, OpportunityStage, Task
from tests.browser.conftest import pick_employee, shot
from tests.browser.test_h5_journeys import make_customer, unique

SHANGHAI = ZoneInfo("Asia/Shanghai")
_n = itertools.count(1)


def _mobile() -> str:
    # Unique per run and per test, so no other test's contact makes it a duplicate.
    return f"137{datetime.now().strftime('%H%M%S')}{next(_n) % 100:02d}"


def _open_customer(page_for, live_server, viewport, name_prefix: str):
    customer_id = make_customer(live_server, live_server.seed.alice, unique(name_prefix))
    page = page_for(viewport)
    api_gets: list[str] = []
    scripts: list[str] = []
    page.on("request", lambda r: api_gets.append(urlsplit(r.url).path)
            if r.method == "GET" and "/api/v1/" in r.url else None)
    page.on("response", lambda r: scripts.append(urlsplit(r.url).path)
            if r.request.resource_type == "script" else None)
    page.goto(f"/h5/#/customers/{customer_id}")
    pick_employee(page, live_server.seed.alice)
    expect(page.locator("#customer-name")).to_be_visible()
    page.api_gets, page.scripts = api_gets, scripts
    return page, customer_id


def test_add_contact_bad_mobile_keeps_input_then_tel_link_and_edit(page_for, live_server, viewport):
    page, customer_id = _open_customer(page_for, live_server, viewport, "联系人编辑")
    contacts = page.locator("#contacts")
    expect(contacts.locator("li")).to_have_count(0)
    expect(page.locator("#contacts + .empty")).to_be_visible()
    # The page is one call, and the editors' code is not fetched until someone taps "add".
    reads = [p for p in page.api_gets if not p.startswith(("/api/v1/h5/", "/api/v1/auth/"))]
    assert reads == [f"/api/v1/customers/{customer_id}"]
    assert "/h5/static/js/pages/customer_records.js" not in page.scripts

    page.locator("#add-contact").click()
    form = page.locator("#contact-form")
    expect(form).to_be_visible()
    assert "/h5/static/js/pages/customer_records.js" in page.scripts
    form.locator("[name=name]").fill("周八")
    form.locator("[name=title]").fill("采购经理")
    form.locator("[name=mobile]").fill("138-abcd-0000")
    form.locator("[name=email]").fill("zhou@example.com")
    form.locator("[data-save]").click()
    expect(form.locator("[data-field=mobile] .field-error")).to_have_text("手机号只能包含数字、空格、+、- 和括号")
    expect(form.locator("[data-form-error]")).to_contain_text("输入有误")
    # Everything typed is still there; no machine words leak.
    expect(form.locator("[name=name]")).to_have_value("周八")
    expect(form.locator("[name=title]")).to_have_value("采购经理")
    expect(form.locator("[name=mobile]")).to_have_value("138-abcd-0000")
    expect(form.locator("[name=email]")).to_have_value("zhou@example.com")
    assert "pattern" not in form.inner_text() and "{" not in form.inner_text()
    shot(page, viewport, "40-contact-form-error")
    with live_server.session() as s:
        assert s.execute(sa.select(sa.func.count()).where(Contact.customer_id == customer_id)).scalar() == 0

    mobile = _mobile()
    form.locator("[name=mobile]").fill(f"+86 {mobile}")
    form.locator("[data-save]").click()
    expect(form).to_have_count(0)
    row = contacts.locator("li", has_text="周八")
    expect(row).to_contain_text("采购经理")
    expect(row.locator(f"a[href='tel:{mobile}']")).to_have_text("拨打")
    expect(page.locator("#contacts + .empty")).to_be_hidden()
    shot(page, viewport, "41-contact-added")
    with live_server.session() as s:
        contact = s.execute(sa.select(Contact).where(Contact.customer_id == customer_id)).scalar_one()
        assert (contact.name, contact.title, contact.mobile, contact.email) == ("周八", "采购经理", mobile,
                                                                             "zhou@example.com")
        contact_id = contact.id

    row.locator("[data-edit=contact]").click()
    expect(form.locator("[name=mobile]")).to_have_value(mobile)
    form.locator("[name=title]").fill("副总经理")
    form.locator("[name=email]").fill("")
    form.locator("[data-save]").click()
    expect(form).to_have_count(0)
    expect(contacts.locator("li")).to_have_count(1)
    expect(contacts.locator("li")).to_contain_text("副总经理")
    with live_server.session() as s:
        contact = s.get(Contact, contact_id)
        assert (contact.title, contact.email, contact.mobile) == ("副总经理", None, mobile)
    assert page.outside_requests == []


def test_add_task_due_tomorrow_mark_done_and_reopen(page_for, live_server, viewport):
    page, customer_id = _open_customer(page_for, live_server, viewport, "任务编辑")
    tasks = page.locator("#tasks")
    page.locator("#add-task").click()
    form = page.locator("#task-form")
    # Empty title: the server's 422 sits next to the field and the picked time stays.
    form.locator("#task-due-quick [data-value=tomorrow]").click()
    tomorrow = datetime.now(SHANGHAI).date() + timedelta(days=1)
    expect(form.locator("[name=due_at]")).to_have_value(f"{tomorrow.isoformat()}T10:00")
    form.locator("[data-save]").click()
    expect(form.locator("[data-field=title] .field-error")).to_have_text("必填")
    expect(form.locator("[name=due_at]")).to_have_value(f"{tomorrow.isoformat()}T10:00")
    shot(page, viewport, "47-task-form-error")

    title = unique("寄样品")
    form.locator("[name=title]").fill(title)
    form.locator("[data-save]").click()
    expect(form).to_have_count(0)
    row = tasks.locator("li", has_text=title)
    expect(row).to_contain_text("明天 10:00")
    expect(row).to_contain_text(live_server.seed.alice.name)
    shot(page, viewport, "42-task-added")
    with live_server.session() as s:
        task = s.execute(sa.select(Task).where(Task.customer_id == customer_id)).scalar_one()
        assert (task.title, task.status, task.assignee_id) == (title, "open", live_server.seed.alice.id)
        # Tomorrow 10:00 in the corp's zone, whatever the browser's zone.
        assert task.due_at == datetime.combine(tomorrow, time(10), tzinfo=SHANGHAI).astimezone(UTC)
        task_id = task.id

    row.locator("[data-toggle=done]").click()
    expect(page.locator("#toast")).to_contain_text("任务已完成")
    expect(tasks.locator(f"li.done[data-task-id='{task_id}']")).to_contain_text("已完成")
    shot(page, viewport, "43-task-done")
    with live_server.session() as s:
        task = s.get(Task, task_id)
        assert task.status == "done" and task.completed_at is not None

    tasks.locator(f"[data-task-id='{task_id}'] [data-toggle=open]").click()
    expect(tasks.locator(f"li.open[data-task-id='{task_id}'] [data-toggle=done]")).to_be_visible()
    with live_server.session() as s:
        task = s.get(Task, task_id)
        assert task.status == "open" and task.completed_at is None

    # Edit: the time typed into the picker is corp-local too.
    tasks.locator(f"[data-task-id='{task_id}'] [data-edit=task]").click()
    expect(form.locator("[name=title]")).to_have_value(title)
    expect(form.locator("[name=due_at]")).to_have_value(f"{tomorrow.isoformat()}T10:00")
    form.locator("[name=due_at]").fill(f"{tomorrow.isoformat()}T15:30")
    form.locator("[data-save]").click()
    expect(tasks.locator(f"[data-task-id='{task_id}']")).to_contain_text("明天 15:30")
    with live_server.session() as s:
        assert s.get(Task, task_id).due_at == datetime.combine(tomorrow, time(15, 30),
                                                               tzinfo=SHANGHAI).astimezone(UTC)


def test_add_opportunity_then_find_it_under_its_stage(page_for, live_server, viewport):
    page, customer_id = _open_customer(page_for, live_server, viewport, "商机编辑")
    page.locator("#add-opportunity").click()
    form = page.locator("#opportunity-form")
    name = unique("年度框架采购")
    close = date.today() + timedelta(days=30)
    form.locator("[name=name]").fill(name)
    form.locator("[name=amount]").fill("12万")
    form.locator("[name=stage_key]").select_option("needs")
    form.locator("[name=expected_close_date]").fill(close.isoformat())
    form.locator("[data-save]").click()
    expect(form.locator("[data-field=amount] .field-error")).to_contain_text("请输入不小于 0 的金额")
    expect(form.locator("[name=amount]")).to_have_value("12万")
    expect(form.locator("[name=name]")).to_have_value(name)
    expect(form.locator("[name=stage_key]")).to_have_value("needs")
    with live_server.session() as s:
        assert s.execute(sa.select(sa.func.count()).where(Opportunity.customer_id == customer_id)).scalar() == 0

    form.locator("[name=amount]").fill("¥128,000.50")
    form.locator("[data-save]").click()
    expect(form).to_have_count(0)
    row = page.locator("#opportunities li", has_text=name)
    expect(row).to_contain_text("需求确认")
    expect(row).to_contain_text("128000.50")
    expect(row).to_contain_text(close.isoformat())
    shot(page, viewport, "44-opportunity-added")
    with live_server.session() as s:
        opp, key = s.execute(sa.select(Opportunity, OpportunityStage.key)
                             .join(OpportunityStage, OpportunityStage.id == Opportunity.stage_id)
                             .where(Opportunity.customer_id == customer_id)).one()
        assert (opp.name, opp.amount, key, opp.expected_close_date, opp.owner_id) == (
            name, Decimal("128000.50"), "needs", close, live_server.seed.alice.id)

    # A tap on the deal opens the deals list on the deal's stage.
    row.locator("a").click()
    expect(page).to_have_url(re.compile(r"#/opportunities$"))
    expect(page.locator("#stage-chips [data-value=needs]")).to_have_attribute("aria-pressed", "true")
    card = page.locator("#opportunity-results li", has_text=name)
    expect(card).to_contain_text("128000.50")
    expect(card.locator("select")).to_have_value("needs")
    shot(page, viewport, "45-opportunity-in-list")


def test_contact_with_another_customers_number_warns_and_writes_nothing(page_for, live_server, viewport):
    mobile = _mobile()
    with live_server.session() as s:
        other = make_customer(live_server, live_server.seed.bob, unique("号码已登记"))
        s.add(Contact(corp_id=live_server.seed.corp_pk, customer_id=other, name="原联系人", mobile=mobile))
    page, customer_id = _open_customer(page_for, live_server, viewport, "重复号码")
    page.locator("#add-contact").click()
    form = page.locator("#contact-form")
    form.locator("[name=name]").fill("吴九")
    form.locator("[name=mobile]").fill(mobile)
    form.locator("[data-save]").click()
    warning = form.locator("[data-duplicate=contact]")
    expect(warning).to_contain_text("这个号码已被登记")
    expect(warning).to_contain_text(live_server.seed.bob.name)
    expect(warning.locator(f"a[href='#/customers/{other}']")).to_be_visible()
    # A salesperson may not override; the form stays as typed and nothing is written.
    expect(warning.locator("[data-override]")).to_have_count(0)
    expect(form.locator("[data-field=mobile] .field-error")).to_have_text("与已有客户重复")
    expect(form.locator("[name=name]")).to_have_value("吴九")
    expect(form.locator("[name=mobile]")).to_have_value(mobile)
    shot(page, viewport, "46-contact-duplicate")
    with live_server.session() as s:
        assert s.execute(sa.select(sa.func.count()).where(Contact.customer_id == customer_id)).scalar() == 0
    form.get_by_role("button", name="取消").click()
    expect(form).to_have_count(0)
    expect(page.locator("#contacts + .empty")).to_be_visible()
