"""Delivery against the sandbox over real HTTP: digests, caps, identical content, quiet hours, retries, quota,
leases and send-result polling — time-controlled with time-machine (the sandbox shares the clock)."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa
import time_machine

from app.services import delivery, outbox
from app.services.delivery import Deliverer
from integrations.sandbox import DingTalkWorld, SandboxServer
from integrations.sandbox.dingtalk_state import Fault
from models.outbox import Delivery, DeliveryVerdict, OutboxItem, OutboxState, Priority
from models.platform import ApiUsage
from models.types import utcnow
from tests.delivery_support import bind_sandbox_corp, inbox, local, marker_counts, message_text, sandbox_settings

TZ = "Asia/Shanghai"


@pytest.fixture
def server():
    with SandboxServer(DingTalkWorld(seed=11, users=6)) as srv:
        yield srv


@pytest.fixture
def bound(database, settings, server):
    cfg = sandbox_settings(settings, server)
    with database.session() as s:
        corp, people = bind_sandbox_corp(s, cfg, next(iter(server.world.corps.values())))
    return cfg, corp, people


def _set(database, corp, **values):
    from models.org import Corp

    with database.session() as s:
        row = s.get(Corp, corp.id)
        row.settings = {**row.settings, **values}


def _enqueue(database, corp, person, due, n=1, *, kind="follow_up_due", priority=Priority.REMINDER, start=0,
             line="item-{i}-x", spacing=timedelta(0)):
    with database.session() as s:
        for i in range(start, start + n):
            outbox.enqueue(s, corp_id=corp.id, kind=kind, recipient_user_id=person.id, subject_type="customer",
                           subject_id=i + 1, due_at=due + spacing * (i - start), payload={"line": line.format(i=i)},
                           priority=priority)


def _run(deliverer, start, end, step):
    with time_machine.travel(start, tick=True) as traveller:
        t = start
        while t < end:
            traveller.move_to(t)
            deliverer.step(utcnow())
            t += step


def _items(database, **where):
    with database.session() as s:
        return s.execute(sa.select(OutboxItem).filter_by(**where).order_by(OutboxItem.id)).scalars().all()


def test_enqueue_is_idempotent(database, bound):
    cfg, corp, people = bound
    due = local(TZ, 2026, 11, 10, 9, 0)
    with database.session() as s:
        first = outbox.enqueue(s, corp_id=corp.id, kind="follow_up_due", recipient_user_id=people[1].id,
                               subject_type="customer", subject_id=7, due_at=due, payload={})
        again = outbox.enqueue(s, corp_id=corp.id, kind="follow_up_due", recipient_user_id=people[1].id,
                               subject_type="customer", subject_id=7, due_at=due, payload={"other": 1})
        later = outbox.enqueue(s, corp_id=corp.id, kind="follow_up_due", recipient_user_id=people[1].id,
                               subject_type="customer", subject_id=7, due_at=due + timedelta(days=1), payload={})
    assert first is not None and first.state == OutboxState.PENDING and first.next_attempt_at == due
    assert again is None and later is not None
    assert len(_items(database)) == 2


def test_600_items_for_one_user_in_one_day_arrive_as_digests_none_dropped(database, bound, server):
    cfg, corp, people = bound
    person = people[1]
    start = local(TZ, 2026, 11, 10, 8, 0)
    _enqueue(database, corp, person, start, 600, spacing=timedelta(seconds=72))  # 08:00 … 19:59
    _run(Deliverer(database, cfg, owner="w1"), start, start.replace(hour=20, minute=30), timedelta(minutes=2))

    items = _items(database)
    assert [i.state for i in items] == [OutboxState.SENT] * 600
    messages = inbox(server, person.platform_userid)
    assert all(m["dropped"] == {} for m in messages)
    assert 1 < len(messages) < 500  # digests, within the platform's per-user daily cap
    assert len({message_text(m) for m in messages}) == len(messages)  # never identical content
    counts = marker_counts(messages)
    assert len(counts) == 600 and set(counts.values()) == {1}  # every item exactly once
    with database.session() as s:
        assert s.execute(sa.select(sa.func.count()).select_from(Delivery)).scalar_one() == len(messages)


def test_daily_cap_holds_and_the_excess_merges_into_the_next_days_digest(database, bound, server):
    cfg, corp, people = bound
    server.world.daily_cap = 5
    _set(database, corp, user_daily_cap=5)
    person = people[2]
    start = local(TZ, 2026, 11, 10, 8, 0)
    _enqueue(database, corp, person, start, 40, spacing=timedelta(minutes=6))
    _run(Deliverer(database, cfg, owner="w1"), start, start + timedelta(hours=13), timedelta(minutes=5))

    first_day = inbox(server, person.platform_userid)
    assert 0 < len(first_day) <= 5 and all(m["dropped"] == {} for m in first_day)
    waiting = _items(database, state=OutboxState.PENDING)
    assert waiting and {i.deferred_reason for i in waiting} <= {"daily_cap", "quiet_hours"}

    next_morning = start + timedelta(days=1)
    _run(Deliverer(database, cfg, owner="w1"), next_morning, next_morning + timedelta(minutes=10),
         timedelta(minutes=1))
    messages = inbox(server, person.platform_userid)
    assert all(m["dropped"] == {} for m in messages)
    assert [i.state for i in _items(database)] == [OutboxState.SENT] * 40
    counts = marker_counts(messages)
    assert len(counts) == 40 and set(counts.values()) == {1}


def test_two_digests_in_one_minute_never_carry_identical_content(database, bound, server):
    cfg, corp, people = bound
    person = people[1]
    at = local(TZ, 2026, 11, 10, 10, 0, 5)
    deliverer = Deliverer(database, cfg, owner="w1")
    with time_machine.travel(at, tick=False):
        _enqueue(database, corp, person, at, 1, priority=Priority.APPROVAL, line="同一条内容")
        deliverer.step(utcnow())
    with time_machine.travel(at + timedelta(seconds=30), tick=False):
        _enqueue(database, corp, person, at + timedelta(seconds=20), 1, priority=Priority.APPROVAL, start=1,
                 line="同一条内容")
        deliverer.step(utcnow())
    messages = inbox(server, person.platform_userid)
    assert len(messages) == 2 and all(m["delivered"] == [person.platform_userid] for m in messages)
    assert message_text(messages[0]) != message_text(messages[1])

    # The rule is live in the sandbox: the very same message again is dropped silently.
    from integrations.base import Message
    from integrations.registry import client_for

    with database.session() as s:
        from models.org import Corp
        client = client_for(s.get(Corp, corp.id), settings=cfg, database=database)
    with time_machine.travel(at + timedelta(seconds=40), tick=True):
        client.send_message([person.platform_userid], Message(title="x", markdown="same"))
        client.send_message([person.platform_userid], Message(title="x", markdown="same"))
    assert inbox(server, person.platform_userid)[-1]["dropped"] == {person.platform_userid: "143106"}


def test_quiet_hours_hold_reminders_and_let_approvals_through_unless_configured(database, bound, server):
    cfg, corp, people = bound
    person = people[1]
    night = local(TZ, 2026, 11, 10, 22, 0)
    _enqueue(database, corp, person, night, 1, line="reminder-x")
    _enqueue(database, corp, person, night, 1, kind="approval", priority=Priority.APPROVAL, start=1,
             line="approval-x")
    _run(Deliverer(database, cfg, owner="w1"), night + timedelta(minutes=1), night + timedelta(minutes=3),
         timedelta(minutes=1))
    reminder, approval = _items(database)
    assert approval.state == OutboxState.SENT
    assert reminder.state == OutboxState.PENDING and reminder.deferred_reason == "quiet_hours"
    assert reminder.next_attempt_at == local(TZ, 2026, 11, 11, 8, 0)
    assert len(inbox(server, person.platform_userid)) == 1

    _set(database, corp, quiet_hours_approvals=False)
    _enqueue(database, corp, person, night, 1, kind="approval", priority=Priority.APPROVAL, start=5,
             line="approval2-x")
    _run(Deliverer(database, cfg, owner="w1"), night + timedelta(minutes=5), night + timedelta(minutes=6),
         timedelta(minutes=1))
    assert _items(database)[-1].state == OutboxState.PENDING
    morning = local(TZ, 2026, 11, 11, 8, 0, 30)
    _run(Deliverer(database, cfg, owner="w1"), morning, morning + timedelta(minutes=1), timedelta(minutes=1))
    assert {i.state for i in _items(database)} == {OutboxState.SENT}
    assert marker_counts(inbox(server, person.platform_userid), r"(\w+)-x") == {
        "reminder": 1, "approval": 1, "approval2": 1}


def test_retryable_error_backs_off_with_jitter_then_succeeds(database, bound, server):
    cfg, corp, people = bound
    person = people[1]
    server.world.faults.append(Fault(path="/topapi/message/corpconversation/asyncsend_v2", remaining=1,
                                     errcode=-1, status=500))
    at = local(TZ, 2026, 11, 10, 10, 0)
    _enqueue(database, corp, person, at, 1)
    _run(Deliverer(database, cfg, owner="w1"), at, at + timedelta(seconds=1), timedelta(seconds=1))
    (item,) = _items(database)
    assert item.state == OutboxState.PENDING and item.attempts == 1 and item.last_error
    wait = (item.next_attempt_at - at).total_seconds()
    assert outbox.BACKOFF_BASE_SECONDS / 2 <= wait <= outbox.BACKOFF_BASE_SECONDS + 1
    _run(Deliverer(database, cfg, owner="w1"), item.next_attempt_at, item.next_attempt_at + timedelta(seconds=1),
         timedelta(seconds=1))
    assert _items(database)[0].state == OutboxState.SENT
    assert marker_counts(inbox(server, person.platform_userid)) == {"0": 1}


def test_permanent_error_fails_and_admin_retry_requeues(database, bound, server):
    cfg, corp, people = bound
    server.world.faults.append(Fault(path="/topapi/message/corpconversation/asyncsend_v2", remaining=1,
                                     errcode=60011, errmsg="no permission"))
    at = local(TZ, 2026, 11, 10, 10, 0)
    _enqueue(database, corp, people[1], at, 1)
    _run(Deliverer(database, cfg, owner="w1"), at, at + timedelta(seconds=1), timedelta(seconds=1))
    (item,) = _items(database)
    assert item.state == OutboxState.FAILED and "60011" in item.last_error
    with database.session() as s:
        outbox.retry(s, corp.id, item.id, at + timedelta(minutes=1))
    _run(Deliverer(database, cfg, owner="w1"), at + timedelta(minutes=1), at + timedelta(minutes=2),
         timedelta(minutes=1))
    assert _items(database)[0].state == OutboxState.SENT


def test_tight_quota_merges_reminders_approvals_go_first_and_admins_warned_at_80_percent(database, bound, server):
    cfg, corp, people = bound
    _set(database, corp, monthly_api_quota=1000)
    at = local(TZ, 2026, 11, 10, 10, 0)
    with database.session() as s:
        s.add(ApiUsage(corp_id=corp.id, month="2026-11", family="work_notification", count=990))
    _enqueue(database, corp, people[1], at, 1, line="reminder-x")
    _enqueue(database, corp, people[2], at, 1, kind="approval", priority=Priority.APPROVAL, start=1,
             line="approval-x")
    _run(Deliverer(database, cfg, owner="w1"), at, at + timedelta(seconds=1), timedelta(seconds=1))
    reminder, approval = _items(database)
    assert approval.state == OutboxState.SENT
    assert reminder.state == OutboxState.PENDING and reminder.deferred_reason == "quota"
    assert reminder.next_attempt_at == local(TZ, 2026, 12, 1, 0, 0)

    with database.session() as s:
        from models.org import Corp
        row = s.get(Corp, corp.id)
        assert delivery.warn_quota(s, row, at) == 1  # one admin
        assert delivery.warn_quota(s, row, at) == 0  # once a month
        report = delivery.usage_report(s, row, at)
    assert report["warning"] and report["used"] >= 990 and report["deferred"] == {"quota": 1}


def test_budget_spacing_merges_harder_when_the_month_is_tight(database, bound, server):
    cfg, corp, people = bound
    at = local(TZ, 2026, 11, 10, 10, 0)
    with database.session() as s:
        from models.org import Corp
        row = s.get(Corp, corp.id)
        calm = delivery.budget(s, row, at)
        # 150 calls left for 15 working days (+ weekends at a fifth): ~10 a day for 6 people; 12 already spent
        # today, one of them on people[1].
        s.add(ApiUsage(corp_id=corp.id, month="2026-11", family="work_notification", count=4850))
        for n in range(12):
            s.add(Delivery(corp_id=corp.id, recipient_user_id=people[1 if n == 0 else 3].id, local_day="2026-11-10",
                           title=f"t{n}", content_hash=f"h{n}", sent_at=at - timedelta(hours=1)))
        s.flush()
        tight = delivery.budget(s, row, at)
    assert calm.level == "ok" and calm.per_person_gap == 0.0
    assert tight.level == "tight" and 5 * 3600 < tight.per_person_gap < 86400

    _enqueue(database, corp, people[1], at, 1, line="again-x")
    _enqueue(database, corp, people[2], at, 1, start=1, line="first-x")
    _run(Deliverer(database, cfg, owner="w1"), at, at + timedelta(seconds=1), timedelta(seconds=1))
    again, first = _items(database)
    assert first.state == OutboxState.SENT  # nothing today yet: goes
    assert again.state == OutboxState.PENDING and again.deferred_reason == "quota"
    wait = again.next_attempt_at - (at - timedelta(hours=1))
    assert abs(wait.total_seconds() - tight.per_person_gap) < 120

    # Another reminder for people[1] meanwhile merges into the same later digest.
    _enqueue(database, corp, people[1], at + timedelta(hours=2), 1, start=2, line="merged-x")
    later = again.next_attempt_at + timedelta(seconds=1)
    # (when that lands in quiet hours, the morning after)
    _run(Deliverer(database, cfg, owner="w1"), later, later + timedelta(hours=12), timedelta(minutes=30))
    (digest,) = inbox(server, people[1].platform_userid)
    assert marker_counts([digest], r"(\w+)-x") == {"again": 1, "merged": 1}


def test_worker_killed_after_the_platform_accepted_leaves_nothing_stuck(database, bound, server):
    cfg, corp, people = bound
    at = local(TZ, 2026, 11, 10, 10, 0)
    _enqueue(database, corp, people[1], at, 3)

    class Killed(BaseException):
        pass

    def die():
        raise Killed

    dying = Deliverer(database, cfg, owner="dying", lease_seconds=60, before_commit=die)
    with time_machine.travel(at, tick=True), pytest.raises(Killed):
        dying.step(utcnow())
    assert {i.state for i in _items(database)} == {OutboxState.SENDING}
    survivor = Deliverer(database, cfg, owner="survivor", lease_seconds=60)
    with time_machine.travel(at + timedelta(seconds=30), tick=True):
        assert survivor.step(utcnow()).claimed == 0  # still leased
    with time_machine.travel(at + timedelta(seconds=61), tick=True):
        assert survivor.step(utcnow()).sent_items == 3
    assert {i.state for i in _items(database)} == {OutboxState.SENT}
    # The one window where a duplicate is possible: accepted by the platform, not yet committed by us.
    assert marker_counts(inbox(server, people[1].platform_userid)) == {"0": 2, "1": 2, "2": 2}


def test_polling_records_verdicts_and_requeues_throttled_items(database, bound, server):
    cfg, corp, people = bound
    at = local(TZ, 2026, 11, 10, 10, 0)
    _enqueue(database, corp, people[1], at, 1, line="fine-x")
    _run(Deliverer(database, cfg, owner="w1"), at, at + timedelta(seconds=1), timedelta(seconds=1))
    server.world.daily_cap = 0  # the platform now drops silently past the cap
    _enqueue(database, corp, people[2], at, 1, start=1, line="capped-x")
    _run(Deliverer(database, cfg, owner="w1"), at + timedelta(seconds=2), at + timedelta(seconds=3),
         timedelta(seconds=1))
    fine, capped = _items(database)
    assert fine.state == capped.state == OutboxState.SENT

    from integrations.registry import client_for
    from models.org import Corp

    def factory(c):
        return client_for(c, settings=cfg, database=database)

    with time_machine.travel(at + timedelta(minutes=2), tick=True):
        counts = delivery.poll_results(database, utcnow(), factory)
    assert counts["delivered"] == 1 and counts["resent"] == 1
    with database.session() as s:
        verdicts = dict(s.execute(sa.select(Delivery.recipient_user_id, Delivery.verdict)).all())
        reasons = set(s.execute(sa.select(Delivery.verdict_reason)).scalars())
        assert s.get(Corp, corp.id) is not None
    assert verdicts == {people[1].id: DeliveryVerdict.DELIVERED, people[2].id: DeliveryVerdict.DROPPED}
    assert "daily_cap" in reasons
    fine, capped = _items(database)
    assert fine.state == OutboxState.SENT and capped.state == OutboxState.PENDING and capped.delivery_id is None
