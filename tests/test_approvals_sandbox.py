"""Approvals end to end at the sandbox inbox: the approver's message, then the applicant's result, delivered
over real HTTP by the outbox worker."""

from __future__ import annotations

import pytest
import time_machine

from app.schemas_approvals import SubmitIn
from app.services import approvals
from app.services.approval_defaults import install_defaults
from app.services.delivery import Deliverer
from integrations.sandbox import DingTalkWorld, SandboxServer
from models.org import DepartmentLeader, UserDepartment
from models.types import utcnow
from tests import factories as f
from tests.approval_helpers import actor, opportunity
from tests.delivery_support import bind_sandbox_corp, inbox, local, message_text, sandbox_settings


@pytest.fixture
def server():
    with SandboxServer(DingTalkWorld(seed=5, users=4)) as srv:
        yield srv


def test_approver_and_applicant_are_told_at_the_sandbox(database, settings, server):
    cfg = sandbox_settings(settings, server)
    with database.session() as s:
        corp, people = bind_sandbox_corp(s, cfg, next(iter(server.world.corps.values())))
        install_defaults(s, corp.id)
        sales = f.department(s, corp, "销售部")
        leader, seller = people[1], people[2]
        for person in (leader, seller):
            person.main_department_id = sales.id
            s.add(UserDepartment(corp_id=corp.id, user_id=person.id, department_id=sales.id))
        s.add(DepartmentLeader(corp_id=corp.id, user_id=leader.id, department_id=sales.id))
        s.flush()
        opp = opportunity(s, corp, seller, amount="200000", name="沙箱折扣单")
        ids = (leader.platform_userid, seller.platform_userid, actor(seller), actor(leader), opp.id)
    leader_uid, seller_uid, seller_actor, leader_actor, opp_id = ids

    with time_machine.travel(local("Asia/Shanghai", 2026, 11, 10, 10, 0), tick=True):
        with database.session() as s:
            inst = approvals.submit(s, seller_actor, SubmitIn(kind="discount", subject_type="opportunity",
                                                              subject_id=opp_id, outcome={"discount_rate": "0.1"}))
            inst_id = inst.id
        Deliverer(database, cfg, owner="a1").step(utcnow())
        [to_leader] = inbox(server, leader_uid)
        text = message_text(to_leader)
        assert "沙箱折扣单" in text and to_leader["delivered"]
        # an action card linking to the H5 approval page under CRM_PUBLIC_URL
        assert to_leader["msg"]["msgtype"] == "action_card"
        assert f"crm.example.com%2Fh5%2F%23%2Fapprovals%2F{inst_id}" in text

        with database.session() as s:
            approvals.decide(s, leader_actor, inst_id, "approve", "同意")
        Deliverer(database, cfg, owner="a1").step(utcnow())
        result = [m for m in inbox(server, seller_uid) if "已通过" in message_text(m)]
        assert len(result) == 1 and result[0]["delivered"]
