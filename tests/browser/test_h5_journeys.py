"""Journeys through the H5 app in Chromium, at phone and desktop sizes, checked on the page and in the database."""

from __future__ import annotations

import itertools
import re
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from playwright.sync_api import expect

from models.audit import AuditLog
from models.crm import Customer, FollowUp
from models.org import Corp, User
from tests import factories
from tests.browser.conftest import pick_employee, shot

SHANGHAI = ZoneInfo("Asia/Shanghai")
_n = itertools.count(1)


def _code_exchanges(live_server) -> int:
    calls = live_server.sandbox.server.world.calls
    return sum(1 for _t, _a, path in calls if path == "/topapi/v2/user/getuserinfo")


def make_customer(live_server, owner, name: str, **fields) -> int:
    with live_server.session() as s:
        return factories.customer(s, s.get(Corp, live_server.seed.corp_pk), s.get(User, owner.id), name=name,
                                  **fields).id


def unique(prefix: str) -> str:
    return f"{prefix}{datetime.now().strftime('%H%M%S%f')}{next(_n)}"


def test_sign_in_create_customer_follow_up_timeline_and_home(page_for, live_server, viewport):
    page = page_for(viewport)
    name = unique("星河精密机械")
    # A deep link opened before signing in lands on its page once the picker has signed us in.
    page.goto("/h5/#/customers/new")
    expect(page.locator("#picker-list")).to_contain_text(live_server.seed.alice.name)
    shot(page, viewport, "01-sign-in-picker")
    exchanges = _code_exchanges(live_server)
    pick_employee(page, live_server.seed.alice)
    form = page.locator("#customer-form")
    expect(form).to_be_visible()
    # The picker went through the real 免登 exchange against the sandbox, not a shortcut.
    assert _code_exchanges(live_server) == exchanges + 1
    expect(page.locator("#page-title")).to_have_text("新建客户")
    form.locator("[name=name]").fill(name)
    form.locator("[name=grade]").select_option("A")
    form.locator("[name=contact_name]").fill("赵六")
    form.locator("[name=contact_mobile]").fill(f"139{next(_n):08d}")
    form.locator("[name='custom.budget']").fill("120")
    form.locator("[name='custom.channel']").select_option("展会")
    shot(page, viewport, "02-customer-form")
    page.locator("#save-customer").click()

    expect(page.locator("#customer-name")).to_have_text(name)
    expect(page.locator("#customer-info")).to_contain_text("预算（万元）")
    expect(page.locator("#customer-info")).to_contain_text("120")
    expect(page.locator("#contacts a[href^='tel:139']")).to_have_count(1)
    customer_id = int(re.search(r"#/customers/(\d+)$", page.url).group(1))

    page.locator("#write-follow-up").click()
    follow_up = page.locator("#follow-up-form")
    follow_up.locator("#fu-kind [data-value=visit]").click()
    follow_up.locator("[name=content]").fill("上门演示了新产品，客户很感兴趣。")
    follow_up.locator("[name=location]").fill("上海市浦东新区")
    # Today 23:59 in the corp's zone: due today (or overdue if the clock passes midnight) — on home either way.
    due_local = datetime.combine(datetime.now(SHANGHAI).date(), time(23, 59))
    follow_up.locator("[name=next_contact_at]").fill(due_local.strftime("%Y-%m-%dT%H:%M"))
    shot(page, viewport, "04-follow-up-form")
    page.locator("#save-follow-up").click()

    timeline = page.locator("#timeline")
    expect(timeline).to_contain_text("上门演示了新产品")
    expect(timeline).to_contain_text("拜访")
    expect(timeline).to_contain_text("上海市浦东新区")
    shot(page, viewport, "03-customer-detail")

    with live_server.session() as s:
        customer = s.get(Customer, customer_id)
        assert customer.name == name and customer.grade == "A"
        assert customer.custom == {"budget": 120, "channel": "展会"}
        assert customer.owner_id == live_server.seed.alice.id
        row = s.execute(sa.select(FollowUp).where(FollowUp.customer_id == customer_id)).scalar_one()
        assert (row.kind, row.location, row.author_id) == ("visit", "上海市浦东新区", live_server.seed.alice.id)
        expected = due_local.replace(tzinfo=SHANGHAI).astimezone(UTC)
        assert row.next_contact_at == expected
        assert customer.next_contact_at == expected

    page.locator(".tabbar [data-tab=home]").click()
    due = page.locator("#home-today, #home-overdue")
    expect(due.locator(f"a[href='#/customers/{customer_id}']").first).to_contain_text(name)
    shot(page, viewport, "05-home")
    due.locator(f"a[href='#/customers/{customer_id}']").first.click()
    expect(page.locator("#customer-name")).to_have_text(name)
    assert page.outside_requests == []


def test_next_contact_quick_pick_is_corp_local(page_for, live_server):
    page = page_for("mobile")
    customer_id = make_customer(live_server, live_server.seed.alice, unique("快选测试"))
    page.goto(f"/h5/#/customers/{customer_id}/follow-up")
    pick_employee(page, live_server.seed.alice)
    page.locator("#fu-next-quick [data-value=tomorrow]").click()
    tomorrow = datetime.now(SHANGHAI).date() + timedelta(days=1)
    expect(page.locator("[name=next_contact_at]")).to_have_value(f"{tomorrow.isoformat()}T10:00")
    page.locator("[name=content]").fill("电话沟通报价")
    page.locator("#save-follow-up").click()
    expect(page.locator("#timeline")).to_contain_text("电话沟通报价")
    with live_server.session() as s:
        row = s.execute(sa.select(FollowUp).where(FollowUp.customer_id == customer_id)).scalar_one()
        assert row.kind == "call"
        assert row.next_contact_at == datetime.combine(tomorrow, time(10), tzinfo=SHANGHAI).astimezone(UTC)


def test_duplicate_warning_blocks_salesperson_and_manager_may_override(page_for, live_server, viewport):
    seed = live_server.seed
    name = unique("重复检测有限公司")
    existing = make_customer(live_server, seed.bob, name)

    page = page_for(viewport)
    page.goto("/h5/#/customers/new")
    pick_employee(page, live_server.seed.alice)
    page.locator("#customer-form [name=name]").fill(name)
    page.locator("#save-customer").click()
    warning = page.locator("#duplicate-warning")
    expect(warning).to_contain_text("可能是重复客户")
    expect(warning).to_contain_text(name)
    expect(warning).to_contain_text(seed.bob.name)
    expect(page.locator("#duplicate-override")).to_have_count(0)
    expect(page.locator("#customer-form [name=name]")).to_have_value(name)
    shot(page, viewport, "06-duplicate-warning")

    manager = page_for(viewport)
    manager.goto("/h5/#/customers/new")
    pick_employee(manager, live_server.seed.manager)
    manager.locator("#customer-form [name=name]").fill(name)
    manager.locator("#save-customer").click()
    manager.locator("#duplicate-override").click()
    expect(manager.locator("#customer-name")).to_have_text(name)
    created = int(re.search(r"#/customers/(\d+)$", manager.url).group(1))
    assert created != existing
    with live_server.session() as s:
        names = s.execute(sa.select(Customer.id).where(Customer.name == name)).scalars().all()
        assert sorted(names) == sorted([existing, created])
        override = s.execute(sa.select(AuditLog).where(AuditLog.action == "duplicate_override",
                                                         AuditLog.entity_id == created)).scalar_one()
        assert override.actor_id == seed.manager.id


def test_server_rejection_is_plain_words_and_form_keeps_input(page_for, live_server, viewport):
    page = page_for(viewport)
    name = unique("表单保留测试")
    page.goto("/h5/#/customers/new")
    pick_employee(page, live_server.seed.alice)
    form = page.locator("#customer-form")
    form.locator("[name=name]").fill(name)
    form.locator("[name=contact_name]").fill("钱七")
    form.locator("[name='custom.budget']").fill("99999")  # above the field's maximum
    page.locator("#save-customer").click()
    error = page.locator("#form-error")
    expect(error).to_contain_text("自定义字段有误")
    expect(form.locator("[data-field='custom.budget'] .field-error")).to_have_text("不能大于 10000")
    text = error.inner_text() + form.inner_text()
    assert "{" not in text and "Traceback" not in text and "custom.budget" not in text
    expect(form.locator("[name=name]")).to_have_value(name)
    expect(form.locator("[name=contact_name]")).to_have_value("钱七")
    expect(form.locator("[name='custom.budget']")).to_have_value("99999")
    shot(page, viewport, "07-form-error")

    # Network down: a plain sentence, the form still as typed, nothing written.
    page.route("**/api/v1/customers", lambda route: route.abort())
    form.locator("[name='custom.budget']").fill("50")
    page.locator("#save-customer").click()
    expect(error).to_contain_text("网络连接失败")
    expect(form.locator("[name=name]")).to_have_value(name)
    with live_server.session() as s:
        assert s.execute(sa.select(sa.func.count()).where(Customer.name == name)).scalar() == 0

    page.unroute("**/api/v1/customers")
    page.locator("#save-customer").click()
    expect(page.locator("#customer-name")).to_have_text(name)
    with live_server.session() as s:
        assert s.execute(sa.select(Customer.custom).where(Customer.name == name)).scalar_one() == {"budget": 50}


def test_edit_customer_prefills_custom_fields_and_saves_changes(page_for, live_server):
    name = unique("编辑测试")
    customer_id = make_customer(live_server, live_server.seed.alice, name, grade="B",
                                custom={"budget": 30, "channel": "官网"})
    page = page_for("desktop")
    page.goto(f"/h5/#/customers/{customer_id}/edit")
    pick_employee(page, live_server.seed.alice)
    form = page.locator("#customer-form")
    expect(form.locator("[name=name]")).to_have_value(name)
    expect(form.locator("[name='custom.budget']")).to_have_value("30")
    expect(form.locator("[name='custom.channel']")).to_have_value("官网")
    form.locator("[name=grade]").select_option("A")
    form.locator("[name='custom.budget']").fill("")
    form.locator("[name='custom.channel']").select_option("转介绍")
    page.locator("#save-customer").click()
    expect(page.locator("#customer-info")).to_contain_text("转介绍")
    expect(page.locator("#customer-info")).not_to_contain_text("预算")
    with live_server.session() as s:
        customer = s.get(Customer, customer_id)
        assert customer.grade == "A" and customer.custom == {"channel": "转介绍"}
