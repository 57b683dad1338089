"""What every new corp starts with: the built-in approval flows and the default automation rules.

`create_corp` calls `install_defaults(session, corp.id)`; running it again adds only what is missing.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so

from app.services.rules import install_default_rules
from models.approvals import ApprovalFlow

DIRECT = {"type": "direct_leader"}
SECOND = {"type": "nth_leader", "n": 2}

DEFAULT_FLOWS: tuple[dict[str, Any], ...] = (
    {"kind": "discount", "name": "折扣审批 / discount", "subject_type": "opportunity",
     "description": "特殊折扣：直属上级审批；折扣超过 20% 或金额超过 50 万再由二级上级审批",
     "steps": [
         {"name": "直属上级 / direct leader", "approvers": [DIRECT], "mode": "any", "condition": []},
         {"name": "总监（折扣>20%）/ director: discount > 20%", "approvers": [SECOND], "mode": "any",
          "condition": [{"field": "discount_rate", "op": "gt", "value": 0.2}]},
         {"name": "总监（金额>50万）/ director: amount > 500,000", "approvers": [SECOND], "mode": "any",
          "condition": [{"field": "amount", "op": "gt", "value": 500000}]},
     ],
     "cc": [], "locked_fields": ["amount"]},
    {"kind": "contract", "name": "合同审批 / contract", "subject_type": "opportunity",
     "description": "合同：直属上级，再由管理员（法务/财务）审批",
     "steps": [
         {"name": "直属上级 / direct leader", "approvers": [DIRECT], "mode": "any", "condition": []},
         {"name": "管理员 / admin", "approvers": [{"type": "role", "role": "admin"}], "mode": "any", "condition": []},
     ],
     "cc": [DIRECT], "locked_fields": ["amount", "expected_close_date"]},
    {"kind": "large_opportunity", "name": "大额商机审批 / large opportunity", "subject_type": "opportunity",
     "description": "金额超过 50 万的商机：直属上级，再二级上级",
     "steps": [
         {"name": "直属上级 / direct leader", "approvers": [DIRECT], "mode": "any", "condition": []},
         {"name": "总监 / director", "approvers": [SECOND], "mode": "any", "condition": []},
     ],
     "cc": [], "locked_fields": ["amount"]},
)


def install_default_flows(session: so.Session, corp_id: int) -> list[ApprovalFlow]:
    have = set(session.execute(sa.select(ApprovalFlow.kind).where(
        ApprovalFlow.corp_id == corp_id, ApprovalFlow.is_default.is_(True))).scalars())
    rows = [ApprovalFlow(corp_id=corp_id, is_default=True, active=True, **spec)
            for spec in DEFAULT_FLOWS if spec["kind"] not in have]
    session.add_all(rows)
    session.flush()
    return rows


def install_defaults(session: so.Session, corp_id: int) -> None:
    install_default_flows(session, corp_id)
    install_default_rules(session, corp_id)
