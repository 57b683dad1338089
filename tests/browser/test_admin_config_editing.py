"""Admin console editors in Chromium at both viewports: a director step (amount > 500,000) added to the discount
flow, an automation rule "stage → 需求确认 → task" created, edited and seen firing, a custom select field that
then shows in the H5 customer form, and a lead assignment rule that assigns a new ownerless customer. Each
journey first gets a rejection from the server shown beside the input with what was typed kept, and ends
with assertions on the page and on the database."""

from __future__ import annotations

import copy
import uuid

import pytest
import sqlalchemy as sa
from playwright.sync_api import expect

from models.approvals import ApprovalFlow
from models.crm import Customer, FieldDefinition, Opportunity, Task, TaskStatus
from models.org import Corp, Department, User, UserDepartment
from models.rules import AssignmentRule, AutomationRule, RuleFiring
from models.types import utcnow
from tests import factories
from tests.browser.conftest import shot, sign_in_directly
from tests.browser.test_admin_console import _as_admin
from tests.browser.test_h5_journeys import unique


@pytest.fixture
def made(live_server):
    """Customers a journey creates, retired afterwards with their opportunities and tasks: the dashboard and
    agenda journeys on this shared server count what is left."""
    customer_ids: list[int] = []
    yield customer_ids
    with live_server.session() as s:
        now = utcnow()
        s.execute(sa.update(Opportunity).where(Opportunity.customer_id.in_(customer_ids)).values(deleted_at=now))
        s.execute(sa.update(Task).where(Task.customer_id.in_(customer_ids)).values(status=TaskStatus.CANCELLED))
        s.execute(sa.update(Customer).where(Customer.id.in_(customer_ids)).values(deleted_at=now))
        s.commit()


def _fits(page) -> None:
    """Desktop first, but at 375 px nothing pushes the page sideways (wide tables scroll in their own box)."""
    assert page.evaluate("document.documentElement.scrollWidth") <= page.viewport_size["width"]


def _discount_flow(live_server) -> tuple[int, list, list]:
    with live_server.session() as s:
        flow = s.execute(
            sa.select(ApprovalFlow).where(
                ApprovalFlow.corp_id == live_server.seed.corp_pk,
                ApprovalFlow.kind == "discount",
                ApprovalFlow.is_default.is_(True),
            )
        ).scalar_one()
        return flow.id, copy.deepcopy(flow.steps), copy.deepcopy(flow.cc)


def test_discount_flow_gets_a_director_step_over_500k(page_for, live_server, viewport):
    flow_id, original_steps, original_cc = _discount_flow(live_server)
    try:
        page = _as_admin(page_for, live_server, viewport, f"flows?id={flow_id}")
        form = page.locator("#flow-form")
        expect(form.locator("fieldset[data-step]")).to_have_count(len(original_steps))
        page.click("#add-step")
        n = len(original_steps)
        step = form.locator(f"fieldset[data-step='{n}']")
        step.locator("[data-role=step-name]").fill("总监审批（金额>50万）")
        step.locator("[data-role=approver-kind]").select_option("nth_leader")
        step.locator("[data-role=n]").fill("")
        step.locator("[data-action=add-condition]").click()
        row = step.locator(".cond-row").first
        row.locator("[data-role=field]").select_option("amount")
        row.locator("[data-role=op]").select_option("gt")
        row.locator("[data-role=value]").fill("500000")
        page.click("#save-flow")
        # The 422 lands beside N, the rest of what was typed stays, nothing is written.
        expect(step.locator(f"[data-field='steps.{n}.approvers.0.n'] .field-error")).to_be_visible()
        expect(form.locator(".form-error")).to_contain_text("输入有误")
        expect(row.locator("[data-role=value]")).to_have_value("500000")
        expect(step.locator("[data-role=step-name]")).to_have_value("总监审批（金额>50万）")
        assert _discount_flow(live_server)[1] == original_steps

        step.locator("[data-role=n]").fill("2")
        _fits(page)
        shot(page, viewport, "admin-flow-editor")
        page.click("#save-flow")
        listed = page.locator(f"tr[data-flow='{flow_id}']")
        expect(listed).to_contain_text("总监审批（金额>50万）：第 2 级上级")
        shot(page, viewport, "admin-flows")
        steps = _discount_flow(live_server)[1]
        assert steps[:n] == original_steps
        assert steps[n] == {
            "name": "总监审批（金额>50万）",
            "approvers": [{"type": "nth_leader", "n": 2}],
            "mode": "any",
            "condition": [{"field": "amount", "op": "gt", "value": 500000}],
        }
    finally:
        with live_server.session() as s:  # the approval journeys share this server and its discount flow
            flow = s.get(ApprovalFlow, flow_id)
            flow.steps, flow.cc = original_steps, original_cc
            s.commit()


def test_custom_flow_with_department_leader_named_user_and_cc(page_for, live_server, viewport):
    seed = live_server.seed
    with live_server.session() as s:
        dept = (
            s.execute(
                sa.select(Department)
                .where(Department.corp_id == seed.corp_pk, Department.parent_id.is_not(None))
                .order_by(Department.id)
            )
            .scalars()
            .first()
        )
        dept_id, dept_name = dept.id, dept.name
    name = unique("自定义流程")
    page = _as_admin(page_for, live_server, viewport, "flows")
    page.click("#new-flow")
    form = page.locator("#flow-form")
    form.locator("input[name=name]").fill(name)
    expect(form.locator("select[name=kind]")).to_have_value("custom")
    step = form.locator("fieldset[data-step='0']")
    step.locator("[data-role=step-name]").fill("部门负责人")
    step.locator("[data-role=approver-kind]").select_option("dept_leader")
    step.locator("[data-role=department]").select_option(str(dept_id))
    step.locator("[data-action=add-approver]").click()
    second = step.locator("[data-field='steps.0.approvers.1']")
    second.locator("[data-role=approver-kind]").select_option("users")
    second.locator(".picker-search").fill(seed.manager.name)
    second.locator(f"[data-pick='{seed.manager.id}']").click()
    expect(second.locator(f".chip[data-user-id='{seed.manager.id}']")).to_be_visible()
    step.locator("[data-role=mode]").select_option("all")
    page.click("#add-step")
    third = form.locator("fieldset[data-step='1']")
    third.locator("[data-role=step-name]").fill("管理员")
    third.locator("[data-role=approver-kind]").select_option("role")
    third.locator("[data-role=role]").select_option("admin")
    page.click("#add-cc")
    form.locator("[data-field='cc.0'] [data-role=approver-kind]").select_option("role")
    form.locator("[data-field='cc.0'] [data-role=role]").select_option("manager")
    # Reorder: the admin step first, then back.
    third.locator("button[aria-label=上移]").click()
    expect(form.locator("fieldset[data-step='0'] [data-role=step-name]")).to_have_value("管理员")
    form.locator("fieldset[data-step='1'] button[aria-label=上移]").click()
    page.click("#save-flow")
    row = page.locator("tr[data-kind=custom]", has_text=name)
    expect(row).to_contain_text(f"{dept_name} 负责人 + {seed.manager.name}")
    with live_server.session() as s:
        flow = s.execute(
            sa.select(ApprovalFlow).where(ApprovalFlow.corp_id == seed.corp_pk, ApprovalFlow.name == name)
        ).scalar_one()
        assert flow.kind == "custom" and flow.active and not flow.is_default
        assert flow.steps == [
            {
                "name": "部门负责人",
                "mode": "all",
                "condition": [],
                "approvers": [
                    {"type": "dept_leader", "department_id": dept_id},
                    {"type": "users", "user_ids": [seed.manager.id]},
                ],
            },
            {"name": "管理员", "mode": "any", "condition": [], "approvers": [{"type": "role", "role": "admin"}]},
        ]
        assert flow.cc == [{"type": "role", "role": "manager"}]
        flow_id = flow.id
    # Never used, so deleting from the list removes it.
    page.once("dialog", lambda d: d.accept())
    row.locator("[data-action=delete]").click()
    expect(page.locator("tr[data-kind=custom]", has_text=name)).to_have_count(0)
    with live_server.session() as s:
        assert s.get(ApprovalFlow, flow_id) is None


def test_stage_rule_create_edit_round_trip_and_firings(page_for, live_server, viewport, made):
    seed = live_server.seed
    name = unique("需求确认建任务")
    page = _as_admin(page_for, live_server, viewport, "rules")
    page.click("#new-rule")
    form = page.locator("#rule-form")
    form.locator("input[name=name]").fill(name)
    form.locator("select[name=trigger]").select_option("stage_changed")
    form.locator("select[name=stage]").select_option("needs")
    action = form.locator("[data-action-index='0']")
    expect(action.locator("[data-role=action-type]")).to_have_value("create_task")
    action.locator("[data-role=due_in_days]").fill("2")
    action.locator(".recipient-kind").select_option("role")
    action.locator("select[aria-label=角色]").select_option("presales")
    page.click("#save-rule")
    # No title: the 422 sits beside the title input; the other inputs keep what was typed.
    expect(action.locator("[data-field='actions.0.title'] .field-error")).to_be_visible()
    expect(action.locator("[data-role=due_in_days]")).to_have_value("2")
    expect(form.locator("select[name=stage]")).to_have_value("needs")
    action.locator("[data-role=title]").fill("为{客户名称}安排售前支持")
    page.click("#save-rule")
    row = page.locator("tr[data-rule]", has_text=name)
    expect(row).to_contain_text("商机阶段变更 → 需求确认")
    expect(row).to_contain_text("创建任务：为{客户名称}安排售前支持")
    with live_server.session() as s:
        rule = s.execute(
            sa.select(AutomationRule).where(AutomationRule.corp_id == seed.corp_pk, AutomationRule.name == name)
        ).scalar_one()
        rule_id = rule.id
        assert (rule.trigger, rule.params, rule.enabled, rule.condition) == (
            "stage_changed",
            {"stage": "needs"},
            True,
            [],
        )
        assert rule.actions == [
            {
                "type": "create_task",
                "title": "为{客户名称}安排售前支持",
                "due_in_days": 2,
                "due_in_hours": 0,
                "assignee": "role:presales",
            }
        ]

    # Edit: a grade condition, a second action notifying the owner's leader, three days instead of two.
    row.locator("[data-action=edit]").click()
    form = page.locator("#rule-form")
    expect(form.locator("input[name=name]")).to_have_value(name)
    expect(form.locator("[data-action-index='0'] [data-role=title]")).to_have_value("为{客户名称}安排售前支持")
    form.locator("[data-action-index='0'] [data-role=due_in_days]").fill("3")
    form.locator("[data-field=condition] [data-action=add-condition]").click()
    cond = form.locator("[data-field='condition.0']")
    cond.locator("[data-role=field]").select_option("grade")
    cond.locator("[data-role=op]").select_option("eq")
    cond.locator("[data-role=value]").select_option("A")
    page.click("#add-action")
    second = form.locator("[data-action-index='1']")
    expect(second.locator("[data-role=action-type]")).to_have_value("notify")
    second.locator(".recipient-kind").select_option("owner_leader")
    second.locator("[data-role=message]").fill("{客户名称} 进入需求确认")
    _fits(page)
    shot(page, viewport, "admin-rule-editor")
    page.click("#save-rule")
    expect(page.locator("tr[data-rule]", has_text=name)).to_contain_text("发送通知：负责人的上级")
    with live_server.session() as s:
        rule = s.get(AutomationRule, rule_id)
        assert rule.condition == [{"field": "grade", "op": "eq", "value": "A"}]
        assert rule.actions[0]["due_in_days"] == 3
        assert rule.actions[1] == {"type": "notify", "to": ["owner_leader"], "message": "{客户名称} 进入需求确认"}
        customer_id = factories.customer(
            s, s.get(Corp, seed.corp_pk), s.get(User, seed.alice.id), name=unique("规则客户"), grade="A"
        ).id
        made.append(customer_id)
        s.commit()

    # Move a real opportunity to 需求确认 through the API: the rule fires and its firing is listed.
    opp = page.request.post(
        "/api/v1/opportunities", data={"customer_id": customer_id, "name": "需求确认商机", "amount": "1000"}
    )
    assert opp.ok, opp.text()
    moved = page.request.patch(f"/api/v1/opportunities/{opp.json()['id']}", data={"stage_key": "needs"})
    assert moved.ok, moved.text()
    page.goto(f"/admin/#/rules?id={rule_id}")
    firing_row = page.locator("#rule-firings tr[data-firing]")
    expect(firing_row).to_have_count(1)
    expect(firing_row).to_contain_text(f"商机 #{opp.json()['id']}")
    expect(firing_row).to_contain_text("已执行")
    shot(page, viewport, "admin-rule-firings")
    with live_server.session() as s:
        firing = s.execute(sa.select(RuleFiring).where(RuleFiring.rule_id == rule_id)).scalar_one()
        assert firing.status == "done" and firing.subject_id == opp.json()["id"]
        assert [a["type"] for a in firing.actions] == ["create_task", "notify"]
    # Delete from the list.
    page.goto("/admin/#/rules")
    page.once("dialog", lambda d: d.accept())
    page.locator("tr[data-rule]", has_text=name).locator("[data-action=delete]").click()
    expect(page.locator("tr[data-rule]", has_text=name)).to_have_count(0)
    with live_server.session() as s:
        assert s.get(AutomationRule, rule_id) is None


def test_custom_select_field_appears_in_the_h5_customer_form(page_for, live_server, viewport):
    key = f"tier_{uuid.uuid4().hex[:8]}"
    page = _as_admin(page_for, live_server, viewport, "fields")
    page.click("#new-field")
    form = page.locator("#field-form")
    form.locator("select[name=entity]").select_option("customer")
    form.locator("input[name=label]").fill("客户规模档")
    form.locator("input[name=key]").fill(key)
    form.locator("select[name=field_type]").select_option("select")
    page.click("#save-field")
    expect(form.locator("[data-field=options] .field-error")).to_contain_text("选项不能为空")
    expect(form.locator("input[name=key]")).to_have_value(key)
    _fits(page)
    form.locator("textarea[name=options]").fill("大型\n中型\n小型")
    page.click("#save-field")
    row = page.locator(f"tr[data-key='customer.{key}']")
    expect(row).to_contain_text("大型、中型、小型")
    shot(page, viewport, "admin-fields")
    with live_server.session() as s:
        d = s.execute(
            sa.select(FieldDefinition).where(
                FieldDefinition.corp_id == live_server.seed.corp_pk, FieldDefinition.key == key
            )
        ).scalar_one()
        assert (d.entity, d.field_type, d.options, d.required, d.active) == (
            "customer",
            "select",
            ["大型", "中型", "小型"],
            False,
            True,
        )
        field_id = d.id

    page.goto("/h5/#/customers/new")
    choice = page.locator(f"#customer-form [name='custom.{key}']")
    expect(choice).to_be_visible()
    expect(choice.locator("option", has_text="中型")).to_have_count(1)
    shot(page, viewport, "h5-form-with-new-field")

    # Edited: a new label and a fourth option; entity, key and type stay as created.
    page.goto("/admin/#/fields")
    page.locator(f"tr[data-key='customer.{key}'] [data-action=edit]").click()
    form = page.locator("#field-form")
    expect(form.locator("textarea[name=options]")).to_have_value("大型\n中型\n小型")
    expect(form.locator("input[name=key]")).to_have_count(0)
    form.locator("input[name=label]").fill("客户规模分档")
    form.locator("textarea[name=options]").fill("大型\n中型\n小型\n微型")
    page.click("#save-field")
    expect(page.locator(f"tr[data-key='customer.{key}']")).to_contain_text("客户规模分档")
    with live_server.session() as s:
        d = s.get(FieldDefinition, field_id)
        assert (d.label, d.options, d.key, d.field_type) == (
            "客户规模分档",
            ["大型", "中型", "小型", "微型"],
            key,
            "select",
        )

    # Deactivated from the console: gone from the form, the definition kept.
    toggle = page.locator(f"tr[data-key='customer.{key}'] [data-action=active]")
    with page.expect_response(lambda r: r.request.method == "DELETE" and r.url.endswith(f"/fields/{field_id}")) as gone:
        toggle.uncheck()
    assert gone.value.status == 204
    expect(toggle).not_to_be_checked()
    expect(toggle).to_be_enabled()
    with live_server.session() as s:
        assert s.get(FieldDefinition, field_id).active is False
    page.goto("/h5/#/customers/new")
    expect(page.locator("#customer-form [name=name]")).to_be_visible()
    expect(page.locator(f"#customer-form [name='custom.{key}']")).to_have_count(0)


def test_assignment_rule_assigns_a_new_ownerless_customer(page_for, live_server, viewport, made):
    seed = live_server.seed
    region = unique("测试大区")
    name = unique("分配")
    page = _as_admin(page_for, live_server, viewport, "assignment")
    page.click("#new-assignment")
    form = page.locator("#assignment-form")
    form.locator("input[name=name]").fill(name)
    form.locator("input[name=regions]").fill(region)
    page.click("#save-assignment")
    # Nobody chosen yet: said beside the person picker; the region typed stays.
    expect(form.locator("[data-field=user_id] .field-error")).to_be_visible()
    expect(form.locator("input[name=regions]")).to_have_value(region)
    form.locator(".picker-search").fill(seed.bob.name)
    form.locator(f"[data-pick='{seed.bob.id}']").click()
    _fits(page)
    page.click("#save-assignment")
    row = page.locator("tr[data-assignment]", has_text=name)
    expect(row).to_contain_text(region)
    expect(row).to_contain_text(seed.bob.name)
    shot(page, viewport, "admin-assignment")
    with live_server.session() as s:
        rule = s.execute(
            sa.select(AssignmentRule).where(AssignmentRule.corp_id == seed.corp_pk, AssignmentRule.name == name)
        ).scalar_one()
        assert (rule.regions, rule.user_id, rule.department_id, rule.enabled) == ([region], seed.bob.id, None, True)
        rule_id = rule.id
        corp = s.get(Corp, seed.corp_pk)
        first = factories.customer(s, corp, None, name=unique("公海客户"), region=region).id
        other = factories.customer(s, corp, None, name=unique("别处客户"), region="别处").id
        made.extend([first, other])
        s.commit()

    assigned = page.request.post(f"/api/v1/customers/{first}/auto-assign")
    assert assigned.ok and name in assigned.json()["reason"]
    unmatched = page.request.post(f"/api/v1/customers/{other}/auto-assign")
    page.goto(f"/h5/#/customers/{first}")
    expect(page.locator("#customer-info")).to_contain_text(seed.bob.name)
    with live_server.session() as s:
        assert s.get(Customer, first).owner_id == seed.bob.id and not s.get(Customer, first).in_pool
        assert s.get(Customer, other).owner_id is None, unmatched.text()
        # A team for the edit: the first department with two or more active members.
        dept_id = (
            s.execute(
                sa.select(UserDepartment.department_id)
                .join(User, User.id == UserDepartment.user_id)
                .where(UserDepartment.corp_id == seed.corp_pk, User.active.is_(True))
                .group_by(UserDepartment.department_id)
                .having(sa.func.count() >= 2)
                .order_by(UserDepartment.department_id)
            )
            .scalars()
            .first()
        )
        path = s.get(Department, dept_id).path  # the team is the department with its sub-departments
        members = set(
            s.execute(
                sa.select(UserDepartment.user_id)
                .join(Department, Department.id == UserDepartment.department_id)
                .where(Department.corp_id == seed.corp_pk, Department.path.startswith(path))
            ).scalars()
        )

    # Edit to round robin over a team; the next ownerless customer goes to one of its members.
    page.goto(f"/admin/#/assignment?id={rule_id}")
    form = page.locator("#assignment-form")
    expect(form.locator("input[name=regions]")).to_have_value(region)
    form.locator("input[name=target][value=team]").check()
    form.locator("select[name=department_id]").select_option(str(dept_id))
    page.click("#save-assignment")
    expect(page.locator("tr[data-assignment]", has_text=name)).to_contain_text("轮流")
    with live_server.session() as s:
        rule = s.get(AssignmentRule, rule_id)
        assert (rule.user_id, rule.department_id) == (None, dept_id)
        second = factories.customer(s, s.get(Corp, seed.corp_pk), None, name=unique("公海客户"), region=region).id
        made.append(second)
        s.commit()
    assert page.request.post(f"/api/v1/customers/{second}/auto-assign").ok
    with live_server.session() as s:
        assert s.get(Customer, second).owner_id in members

    page.goto("/admin/#/assignment")
    page.once("dialog", lambda d: d.accept())
    page.locator("tr[data-assignment]", has_text=name).locator("[data-action=delete]").click()
    expect(page.locator("tr[data-assignment]", has_text=name)).to_have_count(0)
    with live_server.session() as s:
        assert s.get(AssignmentRule, rule_id) is None


def test_editors_in_english_refuse_an_empty_flow_in_plain_words(page_for, live_server, viewport):
    page = page_for(viewport)
    page.add_init_script("localStorage.setItem('crm.lang', 'en')")
    page.goto("/h5/")
    sign_in_directly(page, live_server, live_server.seed.admin.userid)
    with live_server.session() as s:
        before = s.execute(sa.select(sa.func.count()).select_from(ApprovalFlow)).scalar()
    page.goto("/admin/#/flows?new=1")
    expect(page.locator("h1")).to_have_text("New approval flow")
    form = page.locator("#flow-form")
    form.locator("fieldset[data-step='0'] [data-role=approver-kind]").select_option("users")
    page.click("#save-flow")
    expect(form.locator(".form-error")).to_contain_text("invalid input")
    expect(form.locator("[data-field=name] .field-error")).to_have_text("Required")
    expect(form.locator("[data-field='steps.0.approvers.0.user_ids'] .field-error")).to_have_text("Required")
    expect(form.locator(".field-error").first).not_to_contain_text("pattern")
    shot(page, viewport, "admin-flow-errors-en")
    for path, heading in (
        ("rules?new=1", "New automation rule"),
        ("fields?new=1", "New custom field"),
        ("assignment?new=1", "New assignment rule"),
    ):
        page.goto(f"/admin/#/{path}")
        expect(page.locator("h1")).to_have_text(heading)
        _fits(page)
    with live_server.session() as s:
        assert s.execute(sa.select(sa.func.count()).select_from(ApprovalFlow)).scalar() == before
