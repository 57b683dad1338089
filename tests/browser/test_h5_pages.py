"""The customer list (search, filters, infinite scroll), deals by stage, sign-in per platform, the page budget."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import sqlalchemy as sa
from playwright.sync_api import expect

from integrations.sandbox.control import SandboxControl
from models.crm import Contact, Opportunity, OpportunityStage
from models.org import Corp, User
from models.types import utcnow
from tests import factories
from tests.browser.conftest import SCREENSHOTS, pick_employee, shot, sign_in_directly
from tests.browser.test_h5_journeys import make_customer, unique

BUDGET_BYTES = 200 * 1024


def _salesperson_with_book(live_server) -> dict:
    """A salesperson of their own (so other tests' customers stay out of sight) with 45 plain customers,
    one grade-A customer with a tagged contact and one not followed up for 60 days."""
    now = utcnow()
    with live_server.session() as s:
        corp = s.get(Corp, live_server.seed.corp_pk)
        person = factories.user(s, corp, unique("孙"))
        for i in range(45):
            factories.customer(s, corp, person, name=f"{unique('批量客户')}-{i:02d}", last_contact_at=now)
        tag = factories.tag(s, corp, unique("高意向"))
        star = factories.customer(s, corp, person, name=unique("华东精密机械"), grade="A",
                                  last_contact_at=now - timedelta(days=2))
        s.add(factories.CustomerTagRow(star, tag))
        phone = f"1381{star.id:07d}"
        s.add(Contact(corp_id=corp.id, customer_id=star.id, name=unique("王五"), mobile=phone, is_primary=True))
        stale = factories.customer(s, corp, person, name=unique("南方贸易"), grade="B",
                                   last_contact_at=now - timedelta(days=60))
        s.flush()
        contact_name = s.execute(sa.select(Contact.name).where(Contact.customer_id == star.id)).scalar_one()
        return {"userid": person.platform_userid, "star": star.name, "stale": stale.name, "phone": phone,
                "contact": contact_name, "tag": tag.name}


def _titles(page) -> list[str]:
    return [t.split("\n")[0].strip() for t in page.locator("#customer-results .row-title").all_inner_texts()]


def test_customer_list_search_filters_and_infinite_scroll(page_for, live_server, viewport):
    book = _salesperson_with_book(live_server)
    page = page_for(viewport)
    sign_in_directly(page, live_server, book["userid"])
    page.goto("/h5/#/customers")
    rows = page.locator("#customer-results .list > li")
    expect(rows).to_have_count(20)
    shot(page, viewport, "08-customer-list")
    # Scrolling to the end pulls the next cursor pages until the list is complete.
    for _ in range(6):
        page.locator(".sentinel").scroll_into_view_if_needed()
        if page.locator(".list-status", has_text="没有更多了").count():
            break
        page.wait_for_timeout(150)
    expect(page.locator(".list-status")).to_have_text("没有更多了")
    expect(rows).to_have_count(47)

    search = page.locator("#customer-search")
    search.fill(book["contact"])
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(book["star"])
    search.fill(book["phone"][:7])
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(book["star"])
    search.fill("")
    expect(rows).to_have_count(20)

    page.locator("#filter-toggle").click()
    page.locator("#filter-sheet .chips").first.locator("[data-value=A]").click()
    shot(page, viewport, "09-customer-filters")
    page.locator("#filter-apply").click()
    expect(rows).to_have_count(1)
    assert _titles(page)[0].startswith(book["star"])
    expect(page.locator("#filter-toggle")).to_have_text("1 个筛选")

    page.locator("#filter-toggle").click()
    page.locator("#filter-sheet button", has_text="重置").click()
    page.locator("#filter-toggle").click()
    page.locator("#filter-sheet button", has_text="30 天以上未跟进").click()
    page.locator("#filter-apply").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(book["stale"])

    page.locator("#filter-toggle").click()
    page.locator("#filter-sheet button", has_text="重置").click()
    page.locator("#filter-toggle").click()
    page.locator("#filter-sheet button", has_text=book["tag"]).click()
    page.locator("#filter-apply").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(book["star"])
    rows.first.locator("a").click()
    expect(page.locator("#customer-name")).to_have_text(book["star"])


def test_opportunities_by_stage_and_move(page_for, live_server, viewport):
    seed = live_server.seed
    with live_server.session() as s:
        corp = s.get(Corp, seed.corp_pk)
        customer = factories.customer(s, corp, s.get(User, seed.alice.id), name=unique("商机客户"))
        stages = dict(s.execute(sa.select(OpportunityStage.key, OpportunityStage.id)
                                .where(OpportunityStage.corp_id == corp.id)).all())
        opp = Opportunity(corp_id=corp.id, customer_id=customer.id, name=unique("年度采购"), amount=88000,
                          stage_id=stages["initial"], owner_id=seed.alice.id)
        s.add(opp)
        s.flush()
        opp_id, opp_name = opp.id, opp.name
    page = page_for(viewport)
    page.goto("/h5/#/opportunities")
    pick_employee(page, seed.alice)
    page.locator("#stage-chips [data-value=initial]").click()
    card = page.locator("#opportunity-results li", has_text=opp_name)
    expect(card).to_contain_text("88000")
    shot(page, viewport, "10-opportunities")
    card.locator("select").select_option("proposal")
    expect(page.locator("#toast")).to_contain_text("方案报价")
    with live_server.session() as s:
        assert s.get(Opportunity, opp_id).stage_id == stages["proposal"]
    page.locator("#stage-chips [data-value=proposal]").click()
    expect(page.locator("#opportunity-results li", has_text=opp_name)).to_have_count(1)
    page.locator("#stage-chips [data-value=initial]").click()
    expect(page.locator("#opportunity-results .list-status")).to_be_visible()
    expect(page.locator("#opportunity-results li", has_text=opp_name)).to_have_count(0)


def test_first_load_of_home_stays_within_budget(page_for, live_server, record_property):
    page = page_for("mobile")
    # Signed in through the API so that the page load below is a true first load: empty cache, straight home.
    sign_in_directly(page, live_server, live_server.seed.alice.userid)
    loaded: dict[str, int] = {}

    def count(response):
        if response.request.resource_type in {"script", "stylesheet"}:
            assert response.status == 200, (response.url, response.status)
            loaded[response.url] = len(response.body())

    page.on("response", count)
    page.goto("/h5/")
    expect(page.locator(".greeting")).to_contain_text(live_server.seed.alice.name)
    page.wait_for_load_state("networkidle")
    total = sum(loaded.values())
    names = {urlsplit(u).path for u in loaded}
    assert {"/h5/static/js/main.js", "/h5/static/app.css", "/h5/static/js/pages/home.js"} <= names
    assert all(u.startswith(live_server.url) for u in loaded), loaded
    assert 0 < total <= BUDGET_BYTES, f"first load {total} bytes > {BUDGET_BYTES}"
    record_property("h5_first_load_bytes", total)
    SCREENSHOTS.parent.mkdir(parents=True, exist_ok=True)
    (SCREENSHOTS.parent / "h5-first-load.txt").write_text(
        f"H5 first load: {total} bytes of JS+CSS in {len(loaded)} files, {total / BUDGET_BYTES:.2f} of the "
        f"{BUDGET_BYTES}-byte budget\n" + "".join(f"{n:>8} {u}\n" for u, n in sorted(loaded.items())), encoding="utf-8")


def test_me_page_switches_language(page_for, live_server, viewport):
    page = page_for(viewport)
    page.goto("/h5/#/me")
    pick_employee(page, live_server.seed.manager)
    expect(page.locator("#page-title")).to_have_text("我的")
    expect(page.locator("#view")).to_contain_text("Asia/Shanghai")
    shot(page, viewport, "11-me")
    page.locator("#language [data-lang=en]").click()
    expect(page.locator(".tabbar [data-tab=customers]")).to_have_text("Customers")
    page.goto("/h5/#/")
    expect(page.locator(".greeting")).to_have_text(f"Hello, {live_server.seed.manager.name}")
    page.goto("/h5/#/me")
    page.locator("#sign-out").click()
    expect(page.locator("#picker-list")).to_be_visible()
    expect(page.locator("h1")).to_have_text("Sign in as a sandbox employee")


FAKE_JSAPI = """
window.dd = {
  ready(cb) { cb(); },
  error() {},
  runtime: { permission: { requestAuthCode(opts) {
    window.__authCorpId = opts.corpId;
    setTimeout(() => opts.onSuccess({ code: "%s" }), 0);
  } } },
};
"""


def test_dingtalk_webview_signs_in_with_jsapi_auth_code_and_keeps_the_deep_link(page_for, live_server):
    seed = live_server.seed
    customer_name = unique("钉钉深链客户")
    customer_id = make_customer(live_server, seed.alice, customer_name)
    # The official JSAPI script is stood in for (the suite is offline) by one that hands the page a real,
    # single-use 免登 code minted by the sandbox for alice, as DingTalk would; the app redeems it for real.
    code = SandboxControl(live_server.sandbox.url).auth_code(seed.corp_id, seed.alice.userid)
    ua = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
          "Mobile/15E148 AliApp(DingTalk/7.6.0) com.laiwang.DingTalk/32000000 Channel/201200 language/zh-Hans-CN")
    page = page_for("mobile", user_agent=ua)
    page.route("https://g.alicdn.com/**", lambda route: route.fulfill(
        status=200, content_type="application/javascript", body=FAKE_JSAPI % code))
    posted = []
    page.on("request", lambda req: posted.append(req.post_data_json) if req.url.endswith("/api/v1/auth/dingtalk")
            else None)
    page.goto(f"/h5/?corpid={seed.corp_id}#/customers/{customer_id}")
    expect(page.locator("#customer-name")).to_have_text(customer_name)
    assert posted == [{"corpId": seed.corp_id, "authCode": code}]
    assert page.evaluate("window.__authCorpId") == seed.corp_id
    assert page.evaluate("fetch('/api/v1/me').then(r => r.json())")["user"]["userid"] == seed.alice.userid
    assert [u for u in page.outside_requests if not u.startswith("https://g.alicdn.com/")] == []


def test_dingtalk_without_corp_id_says_so(page_for):
    page = page_for("mobile", user_agent="Mozilla/5.0 AliApp(DingTalk/7.6.0)")
    page.goto("/h5/?corpid=$CORPID$")
    expect(page.locator("main")).to_contain_text("缺少企业标识")
    assert page.outside_requests == []


def test_wecom_webview_goes_through_oauth_start_with_the_deep_link(page_for):
    page = page_for("mobile", user_agent="Mozilla/5.0 (Linux; Android 13) wxwork/4.1.20 MicroMessenger/7.0.1")
    seen = []
    page.route("**/auth/wecom/start**", lambda route: (seen.append(route.request.url),
                                                       route.fulfill(status=200, body="ok")))
    page.goto("/h5/?corp=ww0123456789#/approvals/9")
    page.wait_for_url("**/auth/wecom/start**")
    query = parse_qs(urlsplit(seen[0]).query)
    assert query == {"corp": ["ww0123456789"], "next": ["/h5/?corp=ww0123456789#/approvals/9"]}


def test_plain_browser_in_production_is_told_to_use_the_workbench(page_for, live_server, viewport):
    app = live_server.app
    settings = app.config["CRM_SETTINGS"]
    app.config["CRM_SETTINGS"] = settings.with_overrides(dev_login=False, sandbox=False)
    try:
        page = page_for(viewport)
        page.goto("/h5/#/customers")
        expect(page.locator("main h1")).to_have_text("请从钉钉或企业微信的工作台打开本应用。")
        expect(page.locator("#picker-list")).to_have_count(0)
        shot(page, viewport, "12-production-no-workbench")
        assert page.request.get("/api/v1/h5/sandbox-employees").status == 404
    finally:
        app.config["CRM_SETTINGS"] = settings
    with live_server.session() as s:
        assert s.execute(sa.select(sa.func.count()).select_from(Corp)).scalar() == 1
