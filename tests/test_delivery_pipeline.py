"""The worker's pipeline against the sandbox over real HTTP: the next batch is claimed while the last person of
the current one is sent to, a slow batch keeps its lease, and a batch claimed ahead goes back when the worker
stops."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
import sqlalchemy as sa
import time_machine

from app.services import outbox
from app.services.delivery import Deliverer
from integrations.sandbox import DingTalkWorld, SandboxServer
from models.outbox import OutboxItem, OutboxState
from models.types import utcnow
from scheduler.worker import run_worker
from tests.delivery_support import bind_sandbox_corp, inbox, local, marker_counts, sandbox_settings

TZ = "Asia/Shanghai"


@pytest.fixture
def server():
    with SandboxServer(DingTalkWorld(seed=12, users=6)) as srv:
        yield srv


@pytest.fixture
def bound(database, settings, server):
    cfg = sandbox_settings(settings, server)
    with database.session() as s:
        corp, people = bind_sandbox_corp(s, cfg, next(iter(server.world.corps.values())),
                                         corp_settings={"quiet_hours": []})
    return cfg, corp, people


def _enqueue(database, corp, people, due, per_person=2):
    with database.session() as s:
        for n, person in enumerate(people):
            for i in range(per_person):
                marker = n * 10 + i
                outbox.enqueue(s, corp_id=corp.id, kind="follow_up_due", recipient_user_id=person.id,
                               subject_type="customer", subject_id=marker + 1, due_at=due,
                               payload={"line": f"item-{marker}-x"})


def _items(database, person):
    with database.session() as s:
        return s.execute(sa.select(OutboxItem).where(OutboxItem.recipient_user_id == person.id)
                         .order_by(OutboxItem.id)).scalars().all()


def test_before_last_runs_once_as_the_last_persons_turn_begins(database, bound, server):
    cfg, corp, people = bound
    at = local(TZ, 2026, 11, 10, 10, 0)
    _enqueue(database, corp, people[1:4], at)
    sent_before: list[int] = []
    with time_machine.travel(at, tick=True):
        result = Deliverer(database, cfg, owner="w").step(utcnow(), before_last=lambda: sent_before.append(
            len(inbox(server))))
    assert result.sent_messages == 3
    assert sent_before == [2]  # two people were sent to, the third not yet


def test_slow_batch_keeps_its_lease_and_leaves_items_another_worker_took(database, bound, server):
    cfg, corp, people = bound
    a, b, c = people[1:4]
    at = local(TZ, 2026, 11, 10, 10, 0)
    _enqueue(database, corp, [a, b, c], at)
    mine = Deliverer(database, cfg, owner="slow", lease_seconds=60)
    with time_machine.travel(at, tick=True):
        groups = mine.claim(utcnow())
    assert len(groups) == 3
    # B's lease ran out and another worker took B (as `outbox.claim` would after expiry).
    with database.session() as s:
        s.execute(sa.update(OutboxItem).where(OutboxItem.recipient_user_id == b.id)
                  .values(lease_owner="other", lease_until=at + timedelta(minutes=10)))
    lease_of_c = []
    with time_machine.travel(at + timedelta(seconds=40), tick=True):
        # Two thirds of the lease gone: it is extended before anyone is sent to.
        result = mine.step(utcnow(), groups, before_last=lambda: lease_of_c.extend(
            i.lease_until for i in _items(database, c)))
    assert result.lost_leases == 2 and result.sent_messages == 2
    assert lease_of_c and all(t >= at + timedelta(seconds=99) for t in lease_of_c)
    assert {i.state for i in _items(database, a) + _items(database, c)} == {OutboxState.SENT}
    assert {(i.state, i.lease_owner) for i in _items(database, b)} == {(OutboxState.SENDING, "other")}
    assert inbox(server, b.platform_userid) == []  # left to the worker that holds it
    assert marker_counts(inbox(server)) == {"0": 1, "1": 1, "20": 1, "21": 1}


def test_stopped_worker_hands_back_the_batch_it_claimed_ahead(database, bound, server):
    cfg, corp, people = bound
    _enqueue(database, corp, people[1:4], utcnow() - timedelta(seconds=5))
    stop = threading.Event()

    def client_factory(corp_row):
        from integrations.registry import client_for

        client = client_for(corp_row, settings=cfg, database=database)

        class StopAfterSend:
            def __getattr__(self, name):
                return getattr(client, name)

            def send_message(self, userids, message):
                receipt = client.send_message(userids, message)
                stop.set()  # the worker is told to stop while its next batch is already claimed
                return receipt

        return StopAfterSend()

    total = run_worker(cfg, database, stop=stop, owner="w", batch=1, client_factory=client_factory)
    assert total.sent_messages == 1
    with database.session() as s:
        rows = s.execute(sa.select(OutboxItem.state, OutboxItem.lease_owner, sa.func.count())
                         .group_by(OutboxItem.state, OutboxItem.lease_owner)).all()
    # Nothing waits out a lease: one person sent, the other two ready for any worker at once.
    assert sorted(rows) == [(OutboxState.PENDING, None, 4), (OutboxState.SENT, None, 2)]
