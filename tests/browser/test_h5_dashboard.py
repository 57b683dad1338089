"""The dashboard in Chromium (figures on the page checked against the database) and the reminder journey:
a follow-up's next contact time → the due-reminder job and a delivery step → the sandbox inbox → the message's
link opened in a fresh browser → signed in through the picker → that customer's page."""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import requests
import sqlalchemy as sa
import time_machine
from playwright.sync_api import expect

from app.services.delivery import Deliverer
from models.crm import Customer, FollowUp, Opportunity, OpportunityStage
from models.org import Corp, User
from models.outbox import OutboxItem
from scheduler.jobs import JobContext, due_reminders
from tests import factories
from tests.browser.conftest import Person, pick_employee, shot
from tests.browser.test_h5_journeys import unique

SHANGHAI = ZoneInfo("Asia/Shanghai")


def _seed_pipeline(live_server) -> None:
    """A few deals in every stage and customers with sources, on top of whatever earlier tests left."""
    seed = live_server.seed
    with live_server.session() as s:
        corp = s.get(Corp, seed.corp_pk)
        stages = s.execute(sa.select(OpportunityStage).where(OpportunityStage.corp_id == corp.id)
                           .order_by(OpportunityStage.sort_order)).scalars().all()
        for i, person in enumerate([seed.alice, seed.bob, seed.manager]):
            owner = s.get(User, person.id)
            customer = factories.customer(s, corp, owner, name=unique("看板客户"), source=["展会", "官网", "转介绍"][i])
            for j, stage in enumerate(stages):
                for _ in range(max(1, 4 - j) + i % 2):  # fewer deals further down: a funnel's shape
                    s.add(Opportunity(corp_id=corp.id, customer_id=customer.id, name=unique("看板商机"),
                                      amount=Decimal(1000 * (j + 1) + 10 * i) + Decimal("0.5"), stage_id=stage.id,
                                      owner_id=owner.id,
                                      closed_at=datetime.now(UTC) if stage.is_won or stage.is_lost else None))
        # Never followed up since it was created 45 days ago: going stale.
        factories.customer(s, corp, s.get(User, seed.bob.id), name=unique("久未跟进客户"),
                           created_at=datetime.now(UTC) - timedelta(days=45))


def _db_funnel(live_server) -> dict[str, tuple[int, Decimal, str]]:
    with live_server.session() as s:
        stages = s.execute(sa.select(OpportunityStage).where(OpportunityStage.corp_id == live_server.seed.corp_pk)
                           ).scalars().all()
        opps = s.execute(sa.select(Opportunity.stage_id, Opportunity.amount).where(
            Opportunity.corp_id == live_server.seed.corp_pk, Opportunity.deleted_at.is_(None))).all()
    out = {}
    for stage in stages:
        amounts = [Decimal(str(a)) for sid, a in opps if sid == stage.id]
        out[stage.key] = (len(amounts), sum(amounts, Decimal(0)), stage.name)
    return out


def _db_sources_and_new(live_server) -> tuple[Counter, int]:
    local = datetime.now(SHANGHAI)
    month_start = datetime(local.year, local.month, 1, tzinfo=SHANGHAI).astimezone(UTC)
    with live_server.session() as s:
        rows = s.execute(sa.select(Customer.source, Customer.created_at).where(
            Customer.corp_id == live_server.seed.corp_pk, Customer.deleted_at.is_(None))).all()
    return (Counter((src or "").strip() or "未填写" for src, _ in rows),
            sum(1 for _, created in rows if created >= month_start))


def _db_stale(live_server) -> int:
    cutoff = datetime.now(UTC) - timedelta(days=30)
    with live_server.session() as s:
        rows = s.execute(sa.select(Customer.last_contact_at, Customer.created_at).where(
            Customer.corp_id == live_server.seed.corp_pk, Customer.deleted_at.is_(None),
            Customer.in_pool.is_(False), Customer.owner_id.is_not(None))).all()
    return sum(1 for last, created in rows if (last or created) < cutoff)


def test_dashboard_shows_the_funnel_for_seeded_data(page_for, live_server, viewport):
    _seed_pipeline(live_server)
    page = page_for(viewport)
    scripts: list[str] = []
    page.on("request", lambda req: scripts.append(req.url) if req.url.endswith(".js") else None)
    page.goto("/h5/")
    pick_employee(page, live_server.seed.admin)
    expect(page.locator(".greeting")).to_be_visible()
    # The home page does not fetch the dashboard's code; opening the tab does.
    assert not [u for u in scripts if "pages/dashboard.js" in u]
    page.locator(".tabbar [data-tab=dashboard]").click()
    expect(page.locator("#dash-funnel")).to_be_visible()
    assert [u for u in scripts if "pages/dashboard.js" in u]
    expect(page.locator("#dash-scope")).to_have_text("全公司数据")

    funnel = _db_funnel(live_server)
    assert sum(n for n, _a, _name in funnel.values()) >= 18
    for key, (count, amount, name) in funnel.items():
        button = page.locator(f"[data-stage='{key}']")
        if key != "lost":
            expect(button.locator(".funnel-count")).to_have_text(str(count))
        button.click()
        # Tapping a bar gives its exact figures.
        expect(page.locator("#funnel-readout")).to_contain_text(f"{name}：{count} 个商机，金额 ¥{amount:,.2f}")
    # Conversion from 初步接触 to 需求确认, as the page reports it, recomputed from the database.
    path = ["initial", "needs", "proposal", "negotiation", "won"]
    reached = {k: sum(funnel[p][0] for p in path[i:]) for i, k in enumerate(path)}
    rate = reached["needs"] / reached["initial"] * 100
    expect(page.locator("[data-from=initial]")).to_have_text(f"↓ {f'{rate:.1f}'.removesuffix('.0')}%")

    sources, new_this_month = _db_sources_and_new(live_server)
    for source, count in sources.items():
        page.locator(f".legend-item[data-source='{source}']").click()
        expect(page.locator("#sources-readout")).to_contain_text(f"{source}：{count} 个客户")
    expect(page.locator("#dash-pie .slice")).to_have_count(len(sources))
    page.locator("#dash-pie .slice").first.click()
    expect(page.locator("#sources-readout")).to_contain_text("个客户，占")
    expect(page.locator("#dash-new [data-month=this] b")).to_have_text(str(new_this_month))
    stale = _db_stale(live_server)
    assert stale >= 1
    expect(page.locator("#dash-stale-count")).to_have_attribute("data-count", str(stale))
    expect(page.locator("#dash-stale a").first).to_have_attribute("href", re.compile(r"^#/customers/\d+$"))
    shot(page, viewport, "20-dashboard")

    # A salesperson sees their own figures only.
    mine = page_for(viewport)
    mine.goto("/h5/#/dashboard")
    pick_employee(mine, live_server.seed.alice)
    expect(mine.locator("#dash-scope")).to_have_text("我的数据")
    with live_server.session() as s:
        alice_initial = s.execute(sa.select(sa.func.count()).select_from(Opportunity).join(OpportunityStage).where(
            Opportunity.owner_id == live_server.seed.alice.id, Opportunity.deleted_at.is_(None),
            OpportunityStage.key == "initial")).scalar_one()
    expect(mine.locator("[data-stage=initial] .funnel-count")).to_have_text(str(alice_initial))
    names = mine.locator("#dash-leaderboard .board-name").all_inner_texts()
    assert set(names) <= {live_server.seed.alice.name}
    mine.evaluate("localStorage.setItem('crm.lang', 'en')")
    mine.reload()
    expect(mine.locator("#dash-scope")).to_have_text("My figures")
    expect(mine.locator("#page-title")).to_have_text("Sales dashboard")
    mine.locator("[data-stage=initial]").click()
    expect(mine.locator("#funnel-readout")).to_contain_text(f"初步接触: {alice_initial} deals worth ¥")
    assert page.outside_requests == [] and mine.outside_requests == []


def _sandbox_inbox(live_server, userid: str) -> list[dict]:
    http = requests.Session()
    http.trust_env = False
    data = http.get(f"{live_server.sandbox.url}/sandbox/dingtalk/inbox",
                    params={"corpId": live_server.seed.corp_id, "userid": userid}, timeout=30).json()
    http.close()
    return data["messages"]


def _someone_new(live_server) -> Person:
    """A sandbox employee no other test signs in as, so no earlier reminder shares their digest. Only people
    the sandbox directory holds can sign in through the picker (other tests add database-only users)."""
    seed = live_server.seed
    taken = {seed.alice.id, seed.bob.id, seed.manager.id, seed.admin.id}
    in_sandbox = set(live_server.sandbox.server.world.corps[seed.corp_id].users)
    with live_server.session() as s:
        users = s.execute(sa.select(User).where(User.corp_id == seed.corp_pk, User.active.is_(True),
                                                User.id.not_in(taken)).order_by(User.id.desc())).scalars().all()
        user = next(u for u in users if u.platform_userid in in_sandbox)
        return Person(user.id, user.platform_userid, user.name)


def test_reminder_arrives_in_the_inbox_and_its_link_opens_the_customer(page_for, live_server, viewport):
    person = _someone_new(live_server)
    name = unique("提醒旅程客户")
    page = page_for(viewport)
    page.goto("/h5/#/customers/new")
    pick_employee(page, person)
    form = page.locator("#customer-form")
    form.locator("[name=name]").fill(name)
    page.locator("#save-customer").click()
    expect(page.locator("#customer-name")).to_have_text(name)
    customer_id = int(re.search(r"#/customers/(\d+)$", page.url).group(1))

    page.locator("#write-follow-up").click()
    follow_up = page.locator("#follow-up-form")
    follow_up.locator("[name=content]").fill("电话确认了需求，约好后天再聊。")
    # The day after tomorrow at 10:17 in the corp's zone: inside working hours, no quiet-hours deferral.
    due_local = datetime.combine(datetime.now(SHANGHAI).date() + timedelta(days=2), time(10, 17))
    follow_up.locator("[name=next_contact_at]").fill(due_local.strftime("%Y-%m-%dT%H:%M"))
    page.locator("#save-follow-up").click()
    expect(page.locator("#timeline")).to_contain_text("电话确认了需求")
    due = due_local.replace(tzinfo=SHANGHAI).astimezone(UTC)
    with live_server.session() as s:
        assert s.execute(sa.select(FollowUp.next_contact_at).where(FollowUp.customer_id == customer_id)
                         ).scalar_one() == due

    settings = live_server.app.config["CRM_SETTINGS"].with_overrides(public_url=live_server.url)
    worker = Deliverer(live_server.database, settings, owner=f"browser-{viewport}")
    worker.step(datetime.now(UTC))  # whatever was already due (a new customer's task) goes out on its own
    before = {m["taskId"] for m in _sandbox_inbox(live_server, person.userid)}
    # The scheduler's clock reaches the due time (the sandbox shares it): the job queues, a worker step sends.
    with time_machine.travel(due + timedelta(minutes=1), tick=True):
        ctx = JobContext(database=live_server.database, settings=settings, owner="browser-test")
        due_reminders(ctx, due + timedelta(minutes=1))
        with live_server.session() as s:
            # (Other tests queue rows with made-up subject ids: the recipient tells this one apart.)
            item = s.execute(sa.select(OutboxItem).where(
                OutboxItem.subject_type == "customer", OutboxItem.subject_id == customer_id,
                OutboxItem.kind == "follow_up_due", OutboxItem.recipient_user_id == person.id)).scalar_one()
            assert item.due_at == due
        result = worker.step(due + timedelta(minutes=1))
        assert result.claimed >= 1
    with live_server.session() as s:
        assert s.get(OutboxItem, item.id).state == "sent"

    arrived = [m for m in _sandbox_inbox(live_server, person.userid) if m["taskId"] not in before]
    assert len(arrived) == 1 and person.userid in arrived[0]["delivered"]
    text = json.dumps(arrived[0]["msg"], ensure_ascii=False)
    assert name in text
    # The message links through DingTalk's in-app opener; the client opens the page its `url` parameter names.
    openers = set(re.findall(r"\((dingtalk://dingtalkclient/page/link\?[^)\s]+)\)", text))
    links = {parse_qs(urlsplit(opener).query)["url"][0] for opener in openers}
    assert links == {f"{live_server.url}/h5/#/customers/{customer_id}"}, text

    # Opened from the message in a browser that has never signed in: picker, then straight to the customer.
    phone = page_for(viewport)
    phone.goto(links.pop())
    pick_employee(phone, person)
    expect(phone.locator("#customer-name")).to_have_text(name)
    expect(phone.locator("#timeline")).to_contain_text("电话确认了需求")
    shot(phone, viewport, "21-reminder-link-customer")
    assert page.outside_requests == [] and phone.outside_requests == []
