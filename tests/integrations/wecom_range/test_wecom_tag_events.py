"""WeCom `update_tag` events (fact sheet §5.5) for an app whose visible range is one tag: a person added to
the tag comes into range, one taken off it leaves with a handover unless a department of the range still
covers them. Over real HTTP against the sandbox with the app's callback endpoint live, on SQLite and
PostgreSQL; plus the event parsing and the batch prefetch on their own."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from app.services import org_events
from integrations.base import NotFoundError, PermissionDeniedError, PlatformDepartment, PlatformUser
from integrations.sandbox.wecom_events import change_contact, deliver
from integrations.wecom.events import org_event
from models.audit import AuditLog
from models.crm import Customer
from models.inbox import EventState, PlatformEvent
from models.org import Corp, Department, User
from tests import factories
from tests.integrations import wecom_binding
from tests.integrations.wecom_range.seed11 import OUTSIDER, PEOPLE, SUBTREE, TAG_DEPT, in_subtree


@pytest.fixture
def live(database, wsettings, corp_pk, sbx, server, tag_range):
    """Synced once, then the app answers callbacks and the sandbox's URL points at it."""
    wecom_binding.sync(database, wsettings, corp_pk)
    with wecom_binding.serve_callbacks(database, wsettings, sbx, server) as served:
        yield served


def live_tag(sbx) -> int:
    (tagid,) = sbx.allow_tags
    return tagid


def _users(database, corp_pk) -> dict[str, tuple[int, bool]]:
    with database.session() as s:
        return {u.platform_userid: (u.id, u.active)
                for u in s.execute(sa.select(User).where(User.corp_id == corp_pk)).scalars()}


def _depts(database, corp_pk) -> set[str]:
    with database.session() as s:
        return set(s.execute(sa.select(Department.platform_dept_id).where(Department.corp_id == corp_pk)).scalars())


def _tag_events(database, corp_pk) -> list[PlatformEvent]:
    with database.session() as s:
        rows = s.execute(sa.select(PlatformEvent).where(PlatformEvent.corp_id == corp_pk,
                                                        PlatformEvent.event_type == "update_tag")
                         .order_by(PlatformEvent.id)).scalars().all()
        s.expunge_all()
    return rows


def _give_customers(database, corp_pk, userid, n=2) -> tuple[int, list[int]]:
    with database.session() as s:
        corp = s.get(Corp, corp_pk)
        owner = s.execute(sa.select(User).where(User.corp_id == corp_pk, User.platform_userid == userid)).scalar_one()
        return owner.id, [factories.customer(s, corp, owner).id for _ in range(n)]


def _handed_over(database, owner_pk, owned) -> list[AuditLog]:
    with database.session() as s:
        customers = s.execute(sa.select(Customer).where(Customer.id.in_(owned))).scalars().all()
        assert customers and all(c.owner_id != owner_pk for c in customers)  # to a leader or the public pool
        audits = s.execute(sa.select(AuditLog).where(AuditLog.action == "handover",
                                                     AuditLog.entity_id == owner_pk)).scalars().all()
        s.expunge_all()
    return audits


# ----------------------------------------------------------------------------- over HTTP


def test_a_person_added_to_the_tag_comes_into_range(database, corp_pk, sbx, server, http, live):
    app, _ = live
    assert OUTSIDER not in _users(database, corp_pk)
    sent = wecom_binding.put_tag(http, server, sbx, [*PEOPLE, OUTSIDER], [TAG_DEPT], tagid=live_tag(sbx))["event"]
    assert sent["accepted"] and sent["changeType"] == "update_tag"
    wecom_binding.settle(app)
    users = _users(database, corp_pk)
    assert users[OUTSIDER][1] is True
    (event,) = _tag_events(database, corp_pk)
    assert event.state == EventState.APPLIED and event.payload["kind"] == "user_recheck"
    assert event.payload["user_ids"] == [OUTSIDER] and event.payload["dept_ids"] == []
    # Their own department (outside the range) is not made one of ours.
    assert _depts(database, corp_pk) == {str(d) for d in SUBTREE}


def test_a_person_taken_off_the_tag_leaves_with_handover(database, corp_pk, sbx, server, http, live):
    app, _ = live
    leaver, stays = PEOPLE
    owner_pk, owned = _give_customers(database, corp_pk, leaver)
    sent = wecom_binding.put_tag(http, server, sbx, [stays], [TAG_DEPT], tagid=live_tag(sbx))["event"]
    assert sent["accepted"]
    wecom_binding.settle(app)
    users = _users(database, corp_pk)
    assert users[leaver] == (owner_pk, False) and users[stays][1] is True
    assert len(_handed_over(database, owner_pk, owned)) == 1
    assert all(active for uid, (_, active) in users.items() if uid != leaver)
    with database.session() as s:
        assert s.get(User, owner_pk).left_at is not None


def test_off_the_tag_but_inside_a_range_department_stays(database, corp_pk, sbx, server, http, live):
    app, _ = live
    insider = sorted(in_subtree(sbx))[0]  # a member of 华北大区's subtree, then also named by the tag
    wecom_binding.put_tag(http, server, sbx, [*PEOPLE, insider], [TAG_DEPT], tagid=live_tag(sbx))
    wecom_binding.settle(app)
    owner_pk, owned = _give_customers(database, corp_pk, insider, n=1)
    wecom_binding.put_tag(http, server, sbx, PEOPLE, [TAG_DEPT], tagid=live_tag(sbx))
    wecom_binding.settle(app)
    assert _users(database, corp_pk)[insider] == (owner_pk, True)
    added, removed = _tag_events(database, corp_pk)
    assert added.state == removed.state == EventState.APPLIED and removed.payload["user_ids"] == [insider]
    with database.session() as s:
        assert s.get(Customer, owned[0]).owner_id == owner_pk


def test_someone_never_had_and_outside_the_range_changes_nothing(database, corp_pk, sbx, server, http, live):
    app, url = live
    before = _users(database, corp_pk)
    # A tag outside the range gains the outsider (WeCom still tells us), then a removal we never saw added.
    wecom_binding.put_tag(http, server, sbx, [OUTSIDER], [], name="其他标签")
    assert deliver(sbx, url, change_contact(sbx, "update_tag", TagId=live_tag(sbx), DelUserItems=OUTSIDER))["accepted"]
    wecom_binding.settle(app)
    assert _users(database, corp_pk) == before
    events = _tag_events(database, corp_pk)
    assert len(events) == 2 and all(e.state == EventState.APPLIED and e.error is None for e in events)


def test_a_redelivered_tag_event_is_applied_once(database, corp_pk, sbx, server, http, live):
    app, url = live
    leaver = PEOPLE[0]
    owner_pk, owned = _give_customers(database, corp_pk, leaver)
    http.post(f"{server.url}/sandbox/wecom/callback", json={"corpId": sbx.corp.corp_id, "url": None})
    wecom_binding.put_tag(http, server, sbx, PEOPLE[1:], [TAG_DEPT], tagid=live_tag(sbx))  # changed with no event sent
    fields = change_contact(sbx, "update_tag", TagId=live_tag(sbx), DelUserItems=leaver)
    assert deliver(sbx, url, fields)["accepted"] and deliver(sbx, url, fields)["accepted"]  # WeCom's retry
    wecom_binding.settle(app)
    (event,) = _tag_events(database, corp_pk)
    assert event.state == EventState.APPLIED and event.attempts == 1
    assert _users(database, corp_pk)[leaver] == (owner_pk, False)
    assert len(_handed_over(database, owner_pk, owned)) == 1


def test_out_of_range_refusal_is_a_leave_but_a_lost_api_is_not(database, corp_pk, sbx, server, http, live):
    """Real WeCom answers `user/get` for someone outside the range with 60011 (the sandbox says 60111); the
    app losing the API (48002) must not make people leave: the event fails and says why."""
    app, url = live
    leaver, stays = PEOPLE

    def fault(errcode):
        resp = http.post(f"{server.url}/sandbox/wecom/faults",
                         json={"path": "user/get", "errcode": errcode, "corpId": sbx.corp.corp_id})
        assert resp.status_code == 201

    fault(48002)
    assert deliver(sbx, url, change_contact(sbx, "update_tag", TagId=live_tag(sbx), DelUserItems=stays))["accepted"]
    wecom_binding.settle(app)
    fault(60011)
    assert deliver(sbx, url, change_contact(sbx, "update_tag", TagId=live_tag(sbx), DelUserItems=leaver))["accepted"]
    wecom_binding.settle(app)
    users = _users(database, corp_pk)
    assert users[stays][1] is True and users[leaver][1] is False
    failed, applied = _tag_events(database, corp_pk)
    assert failed.state == EventState.FAILED and "48002" in failed.error
    assert applied.state == EventState.APPLIED


def test_a_department_added_to_the_tag_is_read_and_its_members_wait_for_the_full_sync(
        database, wsettings, corp_pk, sbx, server, http, live):
    app, _ = live
    finance = {u.userid for u in sbx.corp.users.values() if 17 in u.dept_ids}
    wecom_binding.put_tag(http, server, sbx, PEOPLE, [TAG_DEPT, 17], tagid=live_tag(sbx))
    wecom_binding.settle(app)
    (event,) = _tag_events(database, corp_pk)
    assert event.state == EventState.APPLIED and event.payload["dept_ids"] == ["17"]
    assert "17" in _depts(database, corp_pk)
    users = _users(database, corp_pk)
    # Only the ones the tag names by themselves are there yet; the nightly sync lists the department.
    assert finance - set(users) and set(PEOPLE) <= set(users)
    wecom_binding.sync(database, wsettings, corp_pk)
    assert finance <= set(_users(database, corp_pk))
    # Taken off the tag again: the department stays until a full sync says otherwise.
    wecom_binding.put_tag(http, server, sbx, PEOPLE, [TAG_DEPT], tagid=live_tag(sbx))
    wecom_binding.settle(app)
    assert "17" in _depts(database, corp_pk) and _tag_events(database, corp_pk)[-1].state == EventState.APPLIED


# ----------------------------------------------------------------------------- parsing and prefetch


def _tag_fields(**items):
    return {"ToUserName": "ww1", "FromUserName": "sys", "CreateTime": "1700000000", "MsgType": "event",
            "Event": "change_contact", "ChangeType": "update_tag", "TagId": "3", **items}


def test_update_tag_is_a_recheck_of_everyone_it_names():
    event = org_event(_tag_fields(AddUserItems="zhangsan, lisi,,", DelUserItems="lisi,wangwu",
                                  AddPartyItems="4,5", DelPartyItems=" 6 ,4"))
    assert event.kind == "user_recheck"
    assert event.user_ids == ("zhangsan", "lisi", "wangwu") and event.dept_ids == ("4", "5", "6")
    assert event.event_id.startswith("wecom:update_tag:1700000000:")
    assert org_event(_tag_fields(AddUserItems="zhangsan")).event_id != event.event_id
    assert org_event(_tag_fields(DelUserItems="zhangsan")).user_ids == ("zhangsan",)
    only_party = org_event(_tag_fields(AddPartyItems="9"))
    assert (only_party.user_ids, only_party.dept_ids) == ((), ("9",))
    # Nobody named: nothing to do (nor to store).
    assert org_event(_tag_fields()) is None
    assert org_event(_tag_fields(AddUserItems="", DelUserItems=",", AddPartyItems=" ")) is None


class _Counting:
    def __init__(self):
        self.asked: list[str] = []

    def get_user(self, userid):
        self.asked.append(f"user:{userid}")
        if userid == "gone":
            raise NotFoundError("gone", code=60111)
        if userid == "hidden":
            raise PermissionDeniedError("out of range", code=60011)
        return PlatformUser(userid=userid, name=userid, department_ids=("2",))

    def get_department(self, dept_id):
        self.asked.append(f"dept:{dept_id}")
        if dept_id == "1":
            raise PermissionDeniedError("out of range", code=60011)
        return PlatformDepartment(dept_id=dept_id, parent_id="1", name=dept_id)


def test_recheck_events_of_a_batch_ask_each_person_once():
    client = _Counting()
    changes = org_events.fetch_changes(client, [
        ("user_recheck", ("a", "gone", "hidden"), ("2",)),
        ("user_recheck", ("a", "b"), ()),
        ("user_upsert", ("b",), ()),
    ], known_depts=set())
    first, second, third = changes
    assert sorted(client.asked) == sorted(["user:a", "user:gone", "user:hidden", "user:b", "dept:2", "dept:1"])
    assert [u.userid for u in first.users] == ["a"] and first.gone_users == ["gone", "hidden"]
    assert [d.dept_id for d in first.departments] == ["2"] and first.members_deferred == ["2"]
    assert [u.userid for u in second.users] == ["a", "b"] and not second.gone_users
    assert [u.userid for u in third.users] == ["b"]


def test_recheck_fails_on_a_refusal_that_is_not_about_the_range():
    class Refusing(_Counting):
        def get_user(self, userid):
            raise PermissionDeniedError("api forbidden", code=48002)

    (outcome,) = org_events.fetch_changes(Refusing(), [("user_recheck", ("a",), ())], known_depts=set())
    assert isinstance(outcome, PermissionDeniedError) and outcome.code == "48002"
