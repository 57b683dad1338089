"""Shared builders for the approval and rule tests."""

from __future__ import annotations

from contextlib import contextmanager
from decimal import Decimal

import sqlalchemy as sa

from app.services.actor import Actor
from app.services.approval_defaults import install_defaults
from models.crm import Opportunity, OpportunityStage
from models.outbox import OutboxItem
from tests import factories as f


def org_with_defaults(session, **kwargs):
    org = f.org(session, **kwargs)
    install_defaults(session, org.corp.id)
    return org


def actor(user) -> Actor:
    return Actor(corp_id=user.corp_id, user_id=user.id, role=user.role)


def opportunity(session, corp, owner, amount="100000", stage_key="initial", customer=None, name="年度采购"):
    customer = customer or f.customer(session, corp, owner)
    stage = session.execute(sa.select(OpportunityStage).where(
        OpportunityStage.corp_id == corp.id, OpportunityStage.key == stage_key)).scalar_one()
    opp = Opportunity(corp_id=corp.id, customer_id=customer.id, name=name, amount=Decimal(amount),
                      stage_id=stage.id, owner_id=owner.id if owner else None, custom={})
    session.add(opp)
    session.flush()
    return opp


def outbox(session, *, kind=None, recipient=None, approval_id=None):
    stmt = sa.select(OutboxItem).order_by(OutboxItem.id)
    if kind:
        stmt = stmt.where(OutboxItem.kind == kind)
    if recipient is not None:
        stmt = stmt.where(OutboxItem.recipient_user_id == recipient.id)
    if approval_id is not None:
        stmt = stmt.where(OutboxItem.subject_type == "approval", OutboxItem.subject_id == approval_id)
    return session.execute(stmt).scalars().all()


@contextmanager
def count_queries(engine):
    seen: list[str] = []

    def listener(conn, cursor, statement, params, context, executemany):
        seen.append(statement)

    sa.event.listen(engine, "before_cursor_execute", listener)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", listener)


def corp_b_approval_ids(session, org, opp) -> dict[str, int]:
    """For the tenant-isolation walk: a pending approval, a flow, an automation and an assignment rule of corp B."""
    from app.schemas_approvals import SubmitIn
    from app.services import approvals
    from models.approvals import ApprovalFlow
    from models.rules import AutomationRule

    install_defaults(session, org.corp.id)
    inst = approvals.submit(session, actor(org.alice), SubmitIn(kind="discount", subject_type="opportunity",
                                                                 subject_id=opp.id))
    flow_id = session.execute(sa.select(ApprovalFlow.id).where(ApprovalFlow.corp_id == org.corp.id)).scalars().first()
    rule_id = session.execute(sa.select(AutomationRule.id).where(
        AutomationRule.corp_id == org.corp.id)).scalars().first()
    from models.rules import AssignmentRule

    assign = AssignmentRule(corp_id=org.corp.id, name=f"{opp.name}分配", user_id=org.bob.id)
    session.add(assign)
    session.flush()
    return {"approval_id": inst.id, "flow_id": flow_id, "rule_id": rule_id, "assignment_rule_id": assign.id}
