"""Approvals and rules benchmark: queries to resolve approvers in a 10-level tree (limit 2), and the cost
of rule evaluation on customer creation with the default rules enabled vs disabled (limit +20 %).

    .venv/bin/python bench/approvals.py              # SQLite (temp file) and PostgreSQL
    .venv/bin/python bench/approvals.py --sqlite-only --creations 100

PostgreSQL: CRM_BENCH_DATABASE_URL (default postgresql://postgres@127.0.0.1:5432/postgres); the run works in
a private schema it drops afterwards.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import sqlalchemy as sa  # noqa: E402

from app.schemas import CustomerIn  # noqa: E402
from app.services import approval_routing, customers, rules  # noqa: E402
from app.services.actor import Actor  # noqa: E402
from app.services.approval_defaults import install_defaults  # noqa: E402
from models.db import Database  # noqa: E402
from models.migrate import upgrade_engine  # noqa: E402
from models.org import DepartmentLeader, Role  # noqa: E402
from models.rules import AutomationRule  # noqa: E402
from tests import factories as f  # noqa: E402

QUERY_LIMIT = 2
OVERHEAD_LIMIT = 1.20


def _count(engine, fn):
    seen = []

    def listener(conn, cursor, statement, params, context, executemany):
        seen.append(statement)

    sa.event.listen(engine, "before_cursor_execute", listener)
    try:
        fn()
    finally:
        sa.event.remove(engine, "before_cursor_execute", listener)
    return len(seen)


def routing_queries(db: Database) -> dict[str, int]:
    with db.session() as s:
        org = f.org(s)
        parent, depts = org.hq, []
        for i in range(10):
            parent = f.department(s, org.corp, f"L{i}", parent)
            depts.append(parent)
        f.user(s, org.corp, "L0 leader", role=Role.MANAGER, departments=[depts[0]], leads=[depts[0]])
        f.user(s, org.corp, "L5 leader", role=Role.MANAGER, departments=[depts[5]], leads=[depts[5]])
        worker = f.user(s, org.corp, "worker", departments=[depts[-1]])
        corp_id, worker_id = org.corp.id, worker.id
    out = {}
    for label, specs in (("direct_leader", [{"type": "direct_leader"}]),
                         ("nth_leader(2)", [{"type": "nth_leader", "n": 2}]),
                         ("direct+nth(2) in one step", [{"type": "direct_leader"}, {"type": "nth_leader", "n": 2}])):
        with db.session() as s:
            out[label] = _count(db.engine, lambda s=s, specs=specs: approval_routing.resolve(s, corp_id, worker_id,
                                                                                             specs))
    with db.session() as s:
        s.execute(sa.delete(DepartmentLeader).where(DepartmentLeader.corp_id == corp_id))
    with db.session() as s:
        out["no leader: corp admin"] = _count(db.engine, lambda: approval_routing.resolve(
            s, corp_id, worker_id, [{"type": "direct_leader"}]))
    return out


def creation_overhead(db: Database, creations: int) -> dict[str, float]:
    """Two identical corps, one with the defaults enabled and one with every rule disabled; the three modes
    alternate creation by creation (in a shuffled order), so load from other processes hits all alike."""
    actors = {}
    for label, enabled in (("on", True), ("off", False)):
        with db.session() as s:
            org = f.org(s)
            install_defaults(s, org.corp.id)
            s.execute(sa.update(AutomationRule).where(AutomationRule.corp_id == org.corp.id).values(enabled=enabled))
            actors[label] = Actor(corp_id=org.corp.id, user_id=org.alice.id, role=org.alice.role)
    rules.forget()
    seq = iter(range(10**9))
    modes = {"no fire() call": ("off", False), "rules disabled": ("off", True), "defaults enabled": ("on", True)}

    fire_alone: list[float] = []

    def create(who: Actor, fire: bool) -> None:
        with db.session() as s:
            customer = customers.create_customer(s, who, CustomerIn(name=f"基准客户{next(seq)}有限公司",
                                                                    industry="制造业", region="华东"))
            if fire:
                t0 = time.perf_counter()
                rules.fire(s, who, "customer_created", customer)
                if who is actors["on"]:
                    fire_alone.append(time.perf_counter() - t0)

    for _ in range(20):  # warm up caches and the connection pool
        for corp, fire in modes.values():
            create(actors[corp], fire)
    samples: dict[str, list[float]] = {label: [] for label in modes}
    rng = random.Random(7)
    order = list(modes)
    for _ in range(creations):
        rng.shuffle(order)
        for label in order:
            corp, fire = modes[label]
            t0 = time.perf_counter()
            create(actors[corp], fire)
            samples[label].append(time.perf_counter() - t0)
    out = {label: statistics.median(values) * 1000 for label, values in samples.items()}
    out["fire() alone, defaults enabled"] = statistics.median(fire_alone) * 1000
    return out


def api_overhead(db: Database, creations: int) -> dict[str, float]:
    """The same three modes through `POST /api/v1/customers` (what a salesperson waits for). fire() is not
    wired into the customer service yet, so this wraps `customers.create_customer` the way the wiring will:
    fire right after creating, in the same transaction."""
    from cryptography.fernet import Fernet

    from app import create_app
    from config import Settings

    people = {}
    for label, enabled in (("on", True), ("off", False)):
        with db.session() as s:
            org = f.org(s)
            install_defaults(s, org.corp.id)
            s.execute(sa.update(AutomationRule).where(AutomationRule.corp_id == org.corp.id).values(enabled=enabled))
            people[label] = (org.corp.platform_corp_id, org.alice.platform_userid)
    rules.forget()
    settings = Settings(database_url=db.url, secret_key="bench", master_key=Fernet.generate_key().decode(),
                        instance_path=Path(tempfile.mkdtemp()), dev_login=True, testing=True)
    app = create_app(settings, database=db)
    original = customers.create_customer
    wiring = {"fire": False}

    def wired(session, actor, data):
        customer = original(session, actor, data)
        if wiring["fire"]:
            rules.fire(session, actor, "customer_created", customer)
        return customer

    clients = {}
    for label, (corp_ref, userid) in people.items():
        clients[label] = app.test_client()
        assert clients[label].post("/api/v1/auth/dev", json={"corpId": corp_ref, "userid": userid}).status_code == 200
    seq = iter(range(10**9))
    modes = {"no fire() call": ("off", False), "rules disabled": ("off", True), "defaults enabled": ("on", True)}
    samples: dict[str, list[float]] = {label: [] for label in modes}
    customers.create_customer = wired
    try:
        rng = random.Random(11)
        order = list(modes)
        for i in range(creations + 20):
            rng.shuffle(order)
            for label in order:
                corp, fire = modes[label]
                wiring["fire"] = fire
                t0 = time.perf_counter()
                resp = clients[corp].post("/api/v1/customers", json={"name": f"接口客户{next(seq)}有限公司"})
                elapsed = time.perf_counter() - t0
                assert resp.status_code == 201, resp.get_json()
                if i >= 20:  # the first rounds warm up
                    samples[label].append(elapsed)
    finally:
        customers.create_customer = original
    return {label: statistics.median(values) * 1000 for label, values in samples.items()}


def report(name: str, db: Database, creations: int) -> None:
    print(f"\n== {name} ==")
    for label, n in routing_queries(db).items():
        print(f"resolve approvers, 10-level tree, {label:28s}: {n} queries  (limit {QUERY_LIMIT}; "
              f"ratio {n / QUERY_LIMIT:.2f})")
    times = creation_overhead(db, creations)
    for label, ms in times.items():
        print(f"create customer, {label:30s}: median {ms:.2f} ms")
    base, off, on = times["no fire() call"], times["rules disabled"], times["defaults enabled"]
    print(f"defaults enabled / rules disabled = {on / off:.3f}  (limit {OVERHEAD_LIMIT:.2f})")
    print(f"defaults enabled / no fire() call = {on / base:.3f}  (limit {OVERHEAD_LIMIT:.2f})")
    times = api_overhead(db, creations)
    for label, ms in times.items():
        print(f"POST /api/v1/customers, {label:18s}: median {ms:.2f} ms")
    base, off, on = times["no fire() call"], times["rules disabled"], times["defaults enabled"]
    print(f"API: defaults enabled / rules disabled = {on / off:.3f}  (limit {OVERHEAD_LIMIT:.2f})")
    print(f"API: defaults enabled / no fire() call = {on / base:.3f}  (limit {OVERHEAD_LIMIT:.2f})")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--creations", type=int, default=300, help="customers created per mode")
    parser.add_argument("--sqlite-only", action="store_true")
    args = parser.parse_args()

    path = Path(tempfile.mkdtemp()) / "bench.sqlite3"
    db = Database(f"sqlite:///{path}")
    upgrade_engine(db.engine)
    report("SQLite", db, args.creations)
    db.dispose()
    if args.sqlite_only:
        return
    url = os.environ.get("CRM_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    url = url.replace("postgresql://", "postgresql+psycopg://", 1)
    schema = f"bench_appr_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(url)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        sep = "&" if "?" in url else "?"
        db = Database(f"{url}{sep}options=-csearch_path%3D{schema},public")
        upgrade_engine(db.engine)
        report("PostgreSQL", db, args.creations)
        db.dispose()
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


if __name__ == "__main__":
    main()
