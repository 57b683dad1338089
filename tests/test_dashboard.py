"""GET /api/v1/dashboard on SQLite and PostgreSQL: every figure checked against what the test computes itself
from the rows it seeded (random but seeded), per data scope, and at the corp-local month boundary."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import sqlalchemy as sa
import time_machine

from models.crm import FollowUp, Opportunity, OpportunityStage
from models.org import Corp, Role
from tests import factories

SHANGHAI = ZoneInfo("Asia/Shanghai")
# 07:00 on 12 April in Shanghai (23:00 on the 11th in UTC): seeded rows fall in April, March and February.
NOW = datetime(2026, 4, 12, 7, 0, tzinfo=SHANGHAI).astimezone(UTC)
SOURCES = ["展会", "官网", "转介绍", "  官网 ", None, ""]


@dataclass
class Row:
    id: int
    owner_id: int | None
    created_at: datetime
    source: str | None = None
    last_contact_at: datetime | None = None
    deleted: bool = False
    name: str = ""


@dataclass
class Opp:
    owner_id: int
    stage_key: str
    amount: Decimal
    closed_at: datetime | None
    deleted: bool


@dataclass
class World:
    org: factories.Org
    carol: object  # a salesperson outside the sales department the manager leads
    customers: list[Row]
    follow_ups: list[tuple[int, datetime]]  # (author, occurred_at)
    opps: list[Opp]
    stages: list[tuple[str, bool, bool]]  # key, won, lost in the corp's order


def _when(rng: random.Random, days_back: int = 75) -> datetime:
    return NOW - timedelta(seconds=rng.randrange(days_back * 86400))


def _seed(session, rng: random.Random) -> World:
    org = factories.org(session)
    carol = factories.user(session, org.corp, "王五", departments=[org.hq])
    people = [org.alice, org.bob, org.manager, org.east_lead, org.admin, carol]
    customers = []
    for i in range(90):
        owner = rng.choice(people + [None])
        last = rng.choice([None, _when(rng)])
        created = _when(rng)
        deleted = rng.random() < 0.08
        row = factories.customer(session, org.corp, owner, name=f"看板客户{i:03d}", source=rng.choice(SOURCES),
                                 created_at=created, last_contact_at=last,
                                 deleted_at=NOW if deleted else None)
        customers.append(Row(row.id, owner.id if owner else None, created, row.source, last, deleted, row.name))
    live = [c for c in customers if not c.deleted]
    follow_ups = []
    for _ in range(120):
        author, occurred = rng.choice(people), _when(rng)
        # Written up to three days after the contact: the month of the contact is the one that counts.
        written = min(NOW, occurred + timedelta(seconds=rng.randrange(3 * 86400)))
        session.add(FollowUp(corp_id=org.corp.id, customer_id=rng.choice(live).id, author_id=author.id, kind="call",
                             content="看板", occurred_at=occurred, created_at=written))
        follow_ups.append((author.id, occurred))
    stage_rows = session.execute(sa.select(OpportunityStage).where(OpportunityStage.corp_id == org.corp.id)
                                 .order_by(OpportunityStage.sort_order)).scalars().all()
    stages = [(s.key, s.is_won, s.is_lost) for s in stage_rows]
    opps = []
    for i in range(70):
        stage = rng.choice(stage_rows)
        owner = rng.choice(people)
        amount = Decimal(rng.randrange(100, 5_000_000)) / 100
        closed = _when(rng) if stage.is_won or stage.is_lost else None
        deleted = rng.random() < 0.05
        session.add(Opportunity(corp_id=org.corp.id, customer_id=rng.choice(live).id, name=f"商机{i}",
                                amount=amount, stage_id=stage.id, owner_id=owner.id, closed_at=closed,
                                deleted_at=NOW if deleted else None))
        opps.append(Opp(owner.id, stage.key, amount, closed, deleted))
    session.flush()
    return World(org, carol, customers, follow_ups, opps, stages)


def _month(months_back: int = 0) -> tuple[datetime, datetime]:
    local = NOW.astimezone(SHANGHAI)
    year, month = local.year, local.month - months_back
    while month < 1:
        year, month = year - 1, month + 12
    start = datetime(year, month, 1, tzinfo=SHANGHAI)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=SHANGHAI)
    return start.astimezone(UTC), end.astimezone(UTC)


def _expected(world: World, sees, stale_days: int = 30) -> dict:
    """The dashboard computed here, in Python, straight from the seeded rows."""
    opps = [o for o in world.opps if not o.deleted and sees(o.owner_id)]
    by_stage = {key: [o for o in opps if o.stage_key == key] for key, _, _ in world.stages}
    path = [key for key, _won, lost in world.stages if not lost]
    reached = {key: sum(len(by_stage[k]) for k in path[i:]) for i, key in enumerate(path)}
    funnel = {}
    for key, _won, _lost in world.stages:
        nxt = path[path.index(key) + 1] if key in path and path.index(key) + 1 < len(path) else None
        rate = round(reached[nxt] / reached[key], 4) if nxt and reached[key] else None
        funnel[key] = (len(by_stage[key]), str(sum((o.amount for o in by_stage[key]), Decimal("0.00"))), rate)

    start, end = _month()
    customers = [c for c in world.customers if not c.deleted and sees(c.owner_id)]
    board: dict[int, list] = {}
    for o in opps:
        if {k: w for k, w, _ in world.stages}[o.stage_key] and start <= o.closed_at < end:
            board.setdefault(o.owner_id, [Decimal(0), 0, 0])[0] += o.amount
    for author, occurred in world.follow_ups:
        if sees(author) and start <= occurred < end:
            board.setdefault(author, [Decimal(0), 0, 0])[1] += 1
    for c in customers:
        if c.owner_id is not None and start <= c.created_at < end:
            board.setdefault(c.owner_id, [Decimal(0), 0, 0])[2] += 1
    ranked = sorted(board.items(), key=lambda kv: (-kv[1][0], -kv[1][1], -kv[1][2], kv[0]))[:10]

    def new(bounds):
        return sum(1 for c in customers if bounds[0] <= c.created_at < bounds[1])

    cutoff = NOW - timedelta(days=stale_days)
    stale = sorted((c for c in customers if c.owner_id is not None and (c.last_contact_at or c.created_at) < cutoff),
                   key=lambda c: (c.last_contact_at or c.created_at, c.id))
    return {
        "funnel": funnel,
        "leaderboard": [(uid, f"{won:.2f}", fus, news) for uid, (won, fus, news) in ranked],
        "sources": dict(Counter((c.source or "").strip() or None for c in customers)),
        "new": (new(_month()), new(_month(1))),
        "stale": (len(stale), [c.id for c in stale[:20]]),
    }


def _actual(body: dict) -> dict:
    return {
        "funnel": {s["key"]: (s["count"], s["amount"], s["conversion"]) for s in body["funnel"]["stages"]},
        "leaderboard": [(r["user"]["id"], r["won_amount"], r["follow_ups"], r["new_customers"])
                        for r in body["leaderboard"]],
        "sources": {s["source"]: s["count"] for s in body["sources"]},
        "new": (body["new_customers"]["this_month"], body["new_customers"]["last_month"]),
        "stale": (body["stale"]["count"], [c["id"] for c in body["stale"]["items"]]),
    }


def _get(client, who, corp, query: str = "") -> dict:
    with time_machine.travel(NOW, tick=False):  # the session cookie is dated too, so sign in at that time
        factories.login(client, who, corp)
        resp = client.get(f"/api/v1/dashboard{query}")
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()


def test_every_figure_matches_the_rows_for_each_scope(client, session):
    world = _seed(session, random.Random(20260401))
    session.commit()
    org = world.org
    team = {org.manager.id, org.east_lead.id, org.alice.id, org.bob.id}
    scopes = [(org.admin, lambda owner: True, "all"),
              (org.manager, lambda owner: owner in team, "team"),
              (org.east_lead, lambda owner: owner in {org.east_lead.id, org.alice.id}, "team"),
              (org.alice, lambda owner: owner == org.alice.id, "own"),
              (world.carol, lambda owner: owner == world.carol.id, "own")]
    for who, sees, kind in scopes:
        body = _get(client, who, org.corp, "?period=month")
        assert body["scope"] == kind
        assert _actual(body) == _expected(world, sees), who.name
        assert body["period"]["start"] == "2026-03-31T16:00:00Z" and body["period"]["timezone"] == "Asia/Shanghai"
    # The seed is rich enough that the checks above compared something on every chart.
    everything = _expected(world, lambda owner: True)
    assert everything["stale"][0] > 20 and len(everything["leaderboard"]) == 6 and all(everything["new"])
    assert sum(n for n, _a, _r in everything["funnel"].values()) > 50


def test_a_salesperson_never_sees_anyone_elses_numbers(client, session):
    world = _seed(session, random.Random(7))
    session.commit()
    org = world.org
    body = _get(client, org.alice, org.corp)
    assert {r["user"]["id"] for r in body["leaderboard"]} <= {org.alice.id}
    others = {c.id for c in world.customers if c.owner_id != org.alice.id}
    assert not others & {c["id"] for c in body["stale"]["items"]}
    mine = [o for o in world.opps if o.owner_id == org.alice.id and not o.deleted]
    assert body["funnel"]["total"] == len(mine) < len([o for o in world.opps if not o.deleted])
    # Collaborating on bob's customer does not bring bob's figures in.
    from models.crm import CustomerCollaborator

    bobs = next(c for c in world.customers if c.owner_id == org.bob.id and not c.deleted)
    session.add(CustomerCollaborator(corp_id=org.corp.id, customer_id=bobs.id, user_id=org.alice.id))
    session.commit()
    assert _get(client, org.alice, org.corp) == body


def test_stale_days_follows_the_corp_setting(client, session):
    world = _seed(session, random.Random(3))
    corp = session.get(Corp, world.org.corp.id)
    corp.settings = {**corp.settings, "stale_days": 12}
    session.commit()
    body = _get(client, world.org.admin, world.org.corp)
    assert body["stale"]["days"] == 12
    assert _actual(body)["stale"] == _expected(world, lambda owner: True, stale_days=12)["stale"]


def test_month_boundary_is_the_corp_local_month(client, session):
    org = factories.org(session)
    just_before = datetime(2026, 3, 31, 23, 59, tzinfo=SHANGHAI).astimezone(UTC)  # 15:59 UTC, March locally
    just_after = datetime(2026, 4, 1, 0, 0, tzinfo=SHANGHAI).astimezone(UTC)  # 16:00 UTC on 31 March
    early_march = datetime(2026, 3, 1, 0, 0, tzinfo=SHANGHAI).astimezone(UTC)  # 28 Feb in UTC
    for when in (just_before, just_after, just_after, early_march, early_march - timedelta(seconds=1)):
        factories.customer(session, org.corp, org.alice, created_at=when)
    session.commit()
    body = _get(client, org.alice, org.corp)
    assert body["new_customers"] == {"this_month": 2, "last_month": 2}
    assert body["leaderboard"][0]["new_customers"] == 2
    # The same rows in a corp on UTC, on 31 March: the three late ones are March there, the two early ones February.
    corp = session.get(Corp, org.corp.id)
    corp.timezone = "UTC"
    session.commit()
    with time_machine.travel(datetime(2026, 3, 31, 17, 0, tzinfo=UTC), tick=False):
        factories.login(client, org.alice, org.corp)
        body = client.get("/api/v1/dashboard").get_json()
    assert body["new_customers"] == {"this_month": 3, "last_month": 2}


def test_bad_input_is_a_422_naming_the_field(client, session):
    org = factories.org(session)
    session.commit()
    assert client.get("/api/v1/dashboard").status_code == 401
    factories.login(client, org.admin, org.corp)
    for query, field in (("?period=week", "period"), ("?period=", None), ("?x=1", "x"), ("?period=%00", "period")):
        resp = client.get(f"/api/v1/dashboard{query}")
        if field is None:
            assert resp.status_code == 200
            continue
        assert resp.status_code == 422 and field in resp.get_json()["error"]["fields"], query


def test_empty_corp_and_role_without_led_departments(client, session):
    org = factories.org(session)
    lone_manager = factories.user(session, org.corp, "孤单经理", role=Role.MANAGER, departments=[org.hq])
    factories.customer(session, org.corp, org.alice, source="官网")
    session.commit()
    body = _get(client, lone_manager, org.corp)
    assert body["scope"] == "own" and body["sources"] == [] and body["leaderboard"] == []
    assert body["funnel"]["total"] == 0 and body["funnel"]["win_rate"] is None
    assert all(s["count"] == 0 and s["amount"] == "0.00" and s["conversion"] is None for s in body["funnel"]["stages"])
    assert body["stale"] == {"days": 30, "count": 0, "items": [], "more": False}
