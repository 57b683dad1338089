"""Routing approvers through the org tree: each edge case, and the query budget on a deep tree."""

from __future__ import annotations

from app.services import approval_routing as routing
from models.org import DepartmentLeader, Role
from tests import factories as f
from tests.approval_helpers import count_queries

DIRECT = [{"type": "direct_leader"}]


def test_direct_leader_is_the_main_departments_leader(session):
    org = f.org(session)
    res = routing.resolve(session, org.corp.id, org.alice.id, DIRECT)
    assert res.approver_ids == [org.east_lead.id]
    assert not res.skipped_applicant


def test_a_leader_applying_goes_to_the_parent_departments_leader(session):
    org = f.org(session)
    assert routing.resolve(session, org.corp.id, org.east_lead.id, DIRECT).approver_ids == [org.manager.id]


def test_department_without_leader_walks_up(session):
    org = f.org(session)
    # 华南组 has no leader: bob's direct leader is 销售部's.
    assert routing.resolve(session, org.corp.id, org.bob.id, DIRECT).approver_ids == [org.manager.id]


def test_inactive_leader_counts_as_no_leader(session):
    org = f.org(session)
    org.east_lead.active = False
    session.flush()
    assert routing.resolve(session, org.corp.id, org.alice.id, DIRECT).approver_ids == [org.manager.id]


def test_no_leader_anywhere_falls_back_to_the_corp_admin(session):
    org = f.org(session)
    session.query(DepartmentLeader).filter(DepartmentLeader.corp_id == org.corp.id).delete()
    session.flush()
    res = routing.resolve(session, org.corp.id, org.alice.id, DIRECT)
    assert res.approver_ids == [org.admin.id]
    assert "管理员" in res.notes[org.admin.id]


def test_applicant_who_is_the_approver_is_skipped_and_recorded(session):
    org = f.org(session)
    res = routing.resolve(session, org.corp.id, org.alice.id, [{"type": "users", "user_ids": [org.alice.id]}])
    assert res.approver_ids == []
    assert res.skipped_applicant
    # an admin applying where the fallback is the admin: also skipped
    session.query(DepartmentLeader).filter(DepartmentLeader.corp_id == org.corp.id).delete()
    session.flush()
    res = routing.resolve(session, org.corp.id, org.admin.id, DIRECT)
    assert res.approver_ids == [] and res.skipped_applicant


def test_deactivated_named_approver_is_replaced_by_their_leader(session):
    org = f.org(session)
    org.east_lead.active = False
    session.flush()
    res = routing.resolve(session, org.corp.id, org.bob.id, [{"type": "users", "user_ids": [org.east_lead.id]}])
    assert res.approver_ids == [org.manager.id]
    assert "停用" in res.notes[org.manager.id]


def test_nth_leader_counts_levels_with_a_leader(session):
    org = f.org(session)
    boss = f.user(session, org.corp, "总裁", role=Role.MANAGER, departments=[org.hq], leads=[org.hq])
    assert routing.resolve(session, org.corp.id, org.alice.id, [{"type": "nth_leader", "n": 2}]).approver_ids == [
        org.manager.id]
    assert routing.resolve(session, org.corp.id, org.alice.id, [{"type": "nth_leader", "n": 3}]).approver_ids == [
        boss.id]
    # fewer levels than asked: the topmost, with a note
    res = routing.resolve(session, org.corp.id, org.alice.id, [{"type": "nth_leader", "n": 9}])
    assert res.approver_ids == [boss.id] and boss.id in res.notes


def test_dept_leader_and_role_specs(session):
    org = f.org(session)
    assert routing.resolve(session, org.corp.id, org.alice.id,
                           [{"type": "dept_leader", "department_id": org.south.id}]).approver_ids == [org.manager.id]
    res = routing.resolve(session, org.corp.id, org.alice.id, [{"type": "role", "role": "manager"}])
    assert res.approver_ids == [org.manager.id, org.east_lead.id]
    # nobody in the role: the corp admin
    assert routing.resolve(session, org.corp.id, org.alice.id,
                           [{"type": "role", "role": "presales"}]).approver_ids == [org.admin.id]


def test_department_with_two_leaders_gives_both(session):
    org = f.org(session)
    second = f.user(session, org.corp, "副组长", departments=[org.east], leads=[org.east])
    assert routing.resolve(session, org.corp.id, org.alice.id, DIRECT).approver_ids == [org.east_lead.id, second.id]


def test_leader_of_skips_the_person_themselves(session):
    org = f.org(session)
    assert routing.leader_of(session, org.east_lead.id) == [org.manager.id]
    assert routing.leader_of(session, org.manager.id) == [org.admin.id]


def _deep_tree(session, levels: int):
    org = f.org(session)
    parent, depts = org.hq, []
    for i in range(levels):
        parent = f.department(session, org.corp, f"第{i}级", parent)
        depts.append(parent)
    top = f.user(session, org.corp, "顶层负责人", role=Role.MANAGER, departments=[depts[0]], leads=[depts[0]])
    worker = f.user(session, org.corp, "一线员工", departments=[depts[-1]])
    return org, top, worker


def test_resolving_in_a_ten_level_tree_costs_at_most_two_queries(database):
    with database.session() as s:
        org, top, worker = _deep_tree(s, 10)
        ids = (org.corp.id, top.id, worker.id, org.admin.id)
    corp_id, top_id, worker_id, admin_id = ids
    with database.session() as s, count_queries(database.engine) as seen:
        res = routing.resolve(s, corp_id, worker_id, [{"type": "direct_leader"}, {"type": "nth_leader", "n": 2}])
    # The only leaders are 10 levels up (direct) and at 销售部 (second level): walked the whole chain.
    assert res.approver_ids[0] == top_id
    assert len(seen) <= 2, seen
    # no leader at all in the chain: the admin fallback is the second query
    with database.session() as s:
        s.query(DepartmentLeader).filter(DepartmentLeader.corp_id == corp_id).delete()
    with database.session() as s, count_queries(database.engine) as seen:
        res = routing.resolve(s, corp_id, worker_id, [{"type": "direct_leader"}])
    assert res.approver_ids == [admin_id]
    assert len(seen) == 2, seen
