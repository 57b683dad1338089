"""The daily agenda's "pending approvals waiting for you" count, from `approvals.pending_counts`, with the clock
under test control."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
import time_machine

from app.schemas_approvals import SubmitIn
from app.services import agenda, approvals
from models.org import Corp
from models.outbox import OutboxItem
from models.types import utcnow
from tests.approval_helpers import actor, opportunity, org_with_defaults
from tests.delivery_support import local

TZ = "Asia/Shanghai"


def _submit(session, who, opp):
    return approvals.submit(session, actor(who), SubmitIn(kind="discount", subject_type="opportunity",
                                                          subject_id=opp.id, outcome={"discount_rate": "0.1"}))


def _agendas(session):
    return {i.recipient_user_id: i for i in session.execute(
        sa.select(OutboxItem).where(OutboxItem.kind == "agenda")).scalars()}


def test_pending_counts_follow_the_current_step_and_the_final_state(session):
    org = org_with_defaults(session)
    first = _submit(session, org.alice, opportunity(session, org.corp, org.alice, name="一号单"))
    second = _submit(session, org.alice, opportunity(session, org.corp, org.alice, name="二号单"))
    _submit(session, org.bob, opportunity(session, org.corp, org.bob, name="三号单"))
    assert approvals.pending_counts(session, org.corp.id) == {org.east_lead.id: 2, org.manager.id: 1}

    approvals.decide(session, actor(org.east_lead), first.id, "approve", None)
    approvals.withdraw(session, actor(org.alice), second.id)
    assert approvals.pending_counts(session, org.corp.id) == {org.manager.id: 1}

    # A re-routed task counts for whoever holds it now, never for the leaver.
    fourth = _submit(session, org.alice, opportunity(session, org.corp, org.alice, name="四号单"))
    org.east_lead.active = False
    session.flush()
    approvals.reroute_leaver(session, org.east_lead.id)
    assert approvals.pending_counts(session, org.corp.id) == {org.manager.id: 2}
    assert fourth.state == "pending"

    other = org_with_defaults(session)
    assert approvals.pending_counts(session, other.corp.id) == {}


def test_daily_agenda_tells_approvers_how_many_approvals_wait_for_them(session):
    morning = local(TZ, 2026, 11, 10, 8, 30)
    with time_machine.travel(morning, tick=False):
        org = org_with_defaults(session)
        for name in ("一号单", "二号单"):
            _submit(session, org.alice, opportunity(session, org.corp, org.alice, name=name))
        corp = session.get(Corp, org.corp.id)
        assert agenda.enqueue_agendas(session, corp, utcnow()) == 0  # before the 09:00 agenda time
    at_nine = morning + timedelta(minutes=30, seconds=5)
    with time_machine.travel(at_nine, tick=False):
        assert agenda.enqueue_agendas(session, corp, utcnow()) == 1
        item = _agendas(session)[org.east_lead.id]
        assert item.payload["approvals"] == 2
        assert "待您审批 2" in item.payload["line"] and "approvals waiting for you 2" in item.payload["line"]
        assert set(_agendas(session)) == {org.east_lead.id}  # nobody else has anything on their plate
        assert agenda.enqueue_agendas(session, corp, utcnow()) == 0  # once a day

    with time_machine.travel(at_nine + timedelta(hours=2), tick=False):
        for inst_id in _waiting(session, org.east_lead):
            approvals.decide(session, actor(org.east_lead), inst_id, "approve", None)
    with time_machine.travel(at_nine + timedelta(days=1), tick=False):
        agenda.enqueue_agendas(session, corp, utcnow())
        # Nothing waits any more and the approver has no follow-ups or tasks: no agenda the next day.
        mine = session.execute(sa.select(sa.func.count()).select_from(OutboxItem).where(
            OutboxItem.kind == "agenda", OutboxItem.recipient_user_id == org.east_lead.id)).scalar_one()
        assert mine == 1


def _waiting(session, who):
    page = approvals.list_for(session, actor(who), "waiting", cursor=None, limit=50)
    return [row["id"] for row in page["items"]]
