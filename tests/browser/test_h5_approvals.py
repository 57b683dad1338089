"""A discount approval end to end: the salesperson asks from the deal, the approver opens the pushed link,
signs in through the picker and approves, the applicant sees it approved."""

from __future__ import annotations

from decimal import Decimal

import sqlalchemy as sa
from playwright.sync_api import expect

from models.approvals import ApprovalInstance, ApprovalTask
from models.crm import Opportunity, OpportunityStage
from models.org import Corp, User
from tests import factories
from tests.browser.conftest import Person, pick_employee, shot
from tests.browser.test_h5_journeys import unique


def _deal(live_server) -> tuple[int, str]:
    seed = live_server.seed
    with live_server.session() as s:
        corp = s.get(Corp, seed.corp_pk)
        customer = factories.customer(s, corp, s.get(User, seed.alice.id), name=unique("折扣客户"))
        stage = s.execute(sa.select(OpportunityStage.id).where(OpportunityStage.corp_id == corp.id,
                                                               OpportunityStage.key == "proposal")).scalar_one()
        opp = Opportunity(corp_id=corp.id, customer_id=customer.id, name=unique("设备采购"), amount=Decimal("120000"),
                          stage_id=stage, owner_id=seed.alice.id)
        s.add(opp)
        s.flush()
        return opp.id, opp.name


def test_discount_approval_submitted_approved_from_the_link_and_seen_by_the_applicant(page_for, live_server,
                                                                                       viewport):
    opp_id, opp_name = _deal(live_server)
    applicant = page_for(viewport)
    applicant.goto("/h5/#/opportunities")
    pick_employee(applicant, live_server.seed.alice)
    applicant.locator("#stage-chips [data-value='']").click()
    applicant.locator(f"[data-request-approval='{opp_id}']").click()
    form = applicant.locator("#approval-form")
    expect(form).to_contain_text(opp_name)
    form.locator("[name=discount]").fill("15")
    form.locator("[name=reason]").fill("客户承诺年底前签约，申请 15% 折扣。")
    shot(applicant, viewport, "13-approval-request")
    applicant.locator("#submit-approval").click()
    expect(applicant.locator("#approval-title")).to_contain_text(opp_name)
    expect(applicant.locator(".hero [data-state]")).to_have_text("审批中")
    expect(applicant.locator("#withdraw")).to_be_visible()

    with live_server.session() as s:
        inst = s.execute(sa.select(ApprovalInstance).where(ApprovalInstance.subject_id == opp_id,
                                                           ApprovalInstance.subject_type == "opportunity")).scalar_one()
        assert (inst.kind, inst.state, inst.applicant_id) == ("discount", "pending", live_server.seed.alice.id)
        assert Decimal(str(inst.outcome["discount_rate"])) == Decimal("0.15")
        assert inst.reason == "客户承诺年底前签约，申请 15% 折扣。"
        task = s.execute(sa.select(ApprovalTask).where(ApprovalTask.instance_id == inst.id,
                                                       ApprovalTask.state == "pending")).scalar_one()
        approver = s.get(User, task.approver_id)
        approver_person = Person(approver.id, approver.platform_userid, approver.name)
        link = f"/h5/#/approvals/{inst.id}"
    assert approver_person.id != live_server.seed.alice.id

    # The approver taps the link a pushed message carries, signs in, and lands on that approval.
    desk = page_for(viewport)
    desk.goto(link)
    pick_employee(desk, approver_person)
    expect(desk.locator("#approval-title")).to_contain_text(opp_name)
    expect(desk.locator("#view")).to_contain_text("15%")
    expect(desk.locator("#view")).to_contain_text(live_server.seed.alice.name)
    shot(desk, viewport, "14-approval-decide")
    desk.locator("#reject").click()  # a rejection needs a comment: said in plain words, nothing decided
    expect(desk.locator("#decision-form .error-box")).to_be_visible()
    assert "{" not in desk.locator("#decision-form .error-box").inner_text()
    desk.locator("#decision-form [name=comment]").fill("同意，注意回款节点。")
    desk.locator("#approve").click()
    expect(desk.locator(".hero [data-state]")).to_have_text("已通过")
    expect(desk.locator("#approval-steps")).to_contain_text("同意，注意回款节点。")

    with live_server.session() as s:
        inst = s.execute(sa.select(ApprovalInstance).where(ApprovalInstance.subject_id == opp_id)).scalar_one()
        assert inst.state == "approved"
        decided = s.execute(sa.select(ApprovalTask).where(ApprovalTask.instance_id == inst.id,
                                                          ApprovalTask.approver_id == approver_person.id)).scalar_one()
        assert (decided.state, decided.comment) == ("approved", "同意，注意回款节点。")

    applicant.goto("/h5/#/approvals")
    applicant.locator("#approval-boxes [data-value=submitted]").click()
    row = applicant.locator("#approval-results li", has_text=opp_name)
    expect(row.locator("[data-state]")).to_have_text("已通过")
    shot(applicant, viewport, "15-approvals-submitted")
    row.locator("a").click()
    expect(applicant.locator(".hero [data-state]")).to_have_text("已通过")
    expect(applicant.locator("#withdraw")).to_have_count(0)
