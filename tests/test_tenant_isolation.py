"""No request authenticated for corp A can read, list, count or write any row of corp B.

The walk is derived from the app's URL map, so an endpoint added later is covered automatically (and an
endpoint whose id parameter is not mapped below fails the test until it is).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

import sqlalchemy as sa

import models
from app.services import outbox
from models.crm import Contact, FieldDefinition, FollowUp, Opportunity, OpportunityStage, Task
from models.platform import SyncRun
from tests import factories as f
from tests.approval_helpers import corp_b_approval_ids

MARK = "乙公司机密"
PARAM = re.compile(r"<(?:\w+:)?(\w+)>")


def _corp_b(session):
    org = f.org(session, name=f"{MARK}集团")
    for person in (org.admin, org.manager, org.alice, org.bob, org.east_lead):
        person.name = f"{MARK}{person.name}"
    for dept in (org.hq, org.sales, org.east, org.south):
        dept.name = f"{MARK}{dept.name}"
    customer = f.customer(session, org.corp, org.alice, name=f"{MARK}客户")
    contact = Contact(corp_id=org.corp.id, customer_id=customer.id, name=f"{MARK}联系人", mobile="13100000000")
    now = datetime.now(UTC)
    follow_up = FollowUp(
        corp_id=org.corp.id,
        customer_id=customer.id,
        author_id=org.alice.id,
        kind="call",
        content=f"{MARK}跟进",
        occurred_at=now,
        created_at=now,
    )
    stage = (
        session.execute(sa.select(OpportunityStage).where(OpportunityStage.corp_id == org.corp.id)).scalars().first()
    )
    opportunity = Opportunity(
        corp_id=org.corp.id,
        customer_id=customer.id,
        name=f"{MARK}商机",
        amount=1,
        stage_id=stage.id,
        owner_id=org.alice.id,
    )
    task = Task(corp_id=org.corp.id, title=f"{MARK}任务", assignee_id=org.alice.id, customer_id=customer.id)
    field = FieldDefinition(
        corp_id=org.corp.id, entity="customer", key="secret", label=f"{MARK}字段", field_type="text"
    )
    tag = f.tag(session, org.corp, f"{MARK}标签")
    session.add_all([contact, follow_up, opportunity, task, field])
    session.flush()
    ids = {
        "customer_id": customer.id,
        "contact_id": contact.id,
        "follow_up_id": follow_up.id,
        "opportunity_id": opportunity.id,
        "task_id": task.id,
        "field_id": field.id,
        "tag_id": tag.id,
        "user_id": org.alice.id,
        "department_id": org.sales.id,
        "stage_id": stage.id,
    }
    ids.update(corp_b_approval_ids(session, org, opportunity))  # approvals, flows, rules
    run = SyncRun(corp_id=org.corp.id, kind="full", status="succeeded")
    session.add(run)
    session.flush()
    item = outbox.enqueue(session, corp_id=org.corp.id, kind="follow_up_due", recipient_user_id=org.alice.id,
                          subject_type="customer", subject_id=customer.id, due_at=now,
                          payload={"title": f"{MARK}提醒", "line": f"{MARK}提醒"})
    ids.update(run_id=run.id, item_id=item.id)
    ids["corp_id"] = org.corp.id  # the admin console's corp binding (/admin/corps/<corp_id>)
    return org, ids


def _snapshot(database, corp_id: int) -> dict[str, list]:
    out = {}
    with database.engine.connect() as conn:
        for table in models.Base.metadata.sorted_tables:
            if "corp_id" in table.c:
                rows = conn.execute(sa.select(table).where(table.c.corp_id == corp_id)).all()
                out[table.name] = sorted(map(repr, rows))
    return out


def test_corp_a_cannot_reach_corp_b(app, client, database):
    with database.session() as s:
        a = f.org(s)
        b, b_ids = _corp_b(s)
    before = _snapshot(database, b.corp.id)
    f.login(client, a.admin, a.corp)  # the widest scope corp A has

    walked = 0
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1/") or rule.endpoint in ("api.dev_login", "api.logout"):
            continue
        names = PARAM.findall(rule.rule)
        missing = [n for n in names if n not in b_ids]
        assert not missing, f"{rule.rule}: map {missing} to a corp-B id in this test"
        url = PARAM.sub(lambda m: str(b_ids[m.group(1)]), rule.rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            walked += 1
            if method == "GET":
                if names:
                    resp = client.get(url)
                    assert resp.status_code == 404, (url, resp.status_code)
                else:
                    # Lists, fed corp B's ids as filters: no corp-B row may appear.
                    for params in (
                        {},
                        {k: str(v) for k, v in b_ids.items()},
                        {"customer_id": b_ids["customer_id"]},
                        {"owner_id": b_ids["user_id"]},
                        {"department_id": b_ids["department_id"]},
                        {"tags_all": b_ids["tag_id"]},
                        {"q": MARK},
                    ):
                        resp = client.get(url, query_string=params)
                        assert resp.status_code < 500, (url, params)
                        assert MARK not in resp.get_data(as_text=True), (url, params)
            else:
                resp = client.open(url, method=method, json={})
                assert resp.status_code in (404, 422, 400) if names else resp.status_code < 500, (url, method)
                assert resp.status_code != 500
                assert MARK not in resp.get_data(as_text=True), (url, method)
    assert walked >= 8
    assert _snapshot(database, b.corp.id) == before
