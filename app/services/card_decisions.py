"""Approve / reject from a WeCom template card (`template_card_event`, fact sheet §5.6).

The click is decided exactly like a decision in the H5 page — `approvals.decide` as the clicking
approver, so only a current approver may decide, and only once — and the card is then updated for every
recipient of that message with the click's one-shot `response_code` (`message/update_template_card`) to
show the outcome. A click that cannot decide (already decided, not this person's task, approval finished)
still updates the card, with the reason, so nobody keeps pressing a dead button.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import sqlalchemy as sa

from app.errors import ApiError, Conflict
from app.services import approvals
from app.services.actor import Actor
from app.services.platform import ClientFactory
from integrations.base import PlatformError
from integrations.wecom.events import CardClick
from models.approvals import ApprovalTask
from models.db import Database
from models.org import Corp, User

log = logging.getLogger(__name__)

DECISIONS = {"approve": "approve", "reject": "reject"}
OUTCOME_WORDS = {"approve": "已同意", "reject": "已驳回"}
# The card has no comment box; a rejection needs a comment in the H5 rules, so the card supplies one.
CARD_REJECT_COMMENT = "通过企业微信卡片驳回 / rejected from the WeCom card"


@dataclass(frozen=True)
class CardOutcome:
    decided: bool
    label: str  # what the card now shows instead of its buttons (≤10 characters)
    reason: str | None = None
    card_updated: bool = False


def decide_from_card(database: Database, corp_pk: int, click: CardClick, *, clients: ClientFactory) -> CardOutcome:
    decision = DECISIONS.get(click.key)
    with database.session() as s:
        corp = s.get(Corp, corp_pk)
        user = s.execute(sa.select(User).where(
            User.corp_id == corp_pk, sa.func.lower(User.platform_userid) == click.userid.lower())).scalars().first()
        task = s.execute(sa.select(ApprovalTask).where(
            ApprovalTask.corp_id == corp_pk, ApprovalTask.source_id == click.task_id)).scalar_one_or_none()
        if decision is None or user is None or not user.active or task is None:
            outcome = CardOutcome(False, "无法处理", reason="unknown button, user or task")
        else:
            actor = Actor(corp_id=corp_pk, user_id=user.id, role=user.role, request_id=f"wecom-card:{click.task_id}")
            try:
                with s.begin_nested():
                    approvals.decide(s, actor, task.instance_id, decision,
                                     CARD_REJECT_COMMENT if decision == "reject" else None, task_id=click.task_id)
                outcome = CardOutcome(True, OUTCOME_WORDS[decision])
            except Conflict as exc:
                outcome = CardOutcome(False, "已处理", reason=exc.code)
            except ApiError as exc:
                outcome = CardOutcome(False, "无权处理", reason=exc.code)
    if not click.response_code:
        return outcome
    try:
        clients(corp).update_template_card(click.response_code, atall=True, replace_name=outcome.label)
    except PlatformError as exc:  # 24-72 h old codes expire: the decision stands, the card stays stale
        log.warning("could not update WeCom card %s: %s", click.task_id, exc)
        return outcome
    return CardOutcome(outcome.decided, outcome.label, outcome.reason, card_updated=True)
