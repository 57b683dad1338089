"""Approvals and rules benchmark (issue 6).

1. Queries to resolve approvers in a 10-level org tree (limit 2).
2. What rule evaluation adds to creating a customer (limit +20 %): the shipped defaults enabled (new customer →
   task for the owner, firing logged) against every rule disabled, both through the real path — the customer
   service calls `rules.fire` itself — at the service level (`customers.create_customer`, one committed
   transaction each) and at the API level (`POST /api/v1/customers`, Flask test client). The modes alternate
   round by round in a shuffled order, in the same run on the same data; median and p95 of each, their
   ratios, and the SQL statements each mode sends per creation. A third mode with `rules.fire` patched out
   shows what the machinery costs when no rule is enabled (information, not a target).

    .venv/bin/python bench/approvals.py                        # SQLite (temp file) and PostgreSQL
    .venv/bin/python bench/approvals.py --sqlite-only --creations 100
    .venv/bin/python bench/approvals.py --only service --statements   # also list every statement

PostgreSQL: CRM_BENCH_DATABASE_URL (default postgresql://postgres@127.0.0.1:5432/test); the run works in
a private schema it drops afterwards.
"""

from __future__ import annotations

import argparse
import itertools
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
from models.crm import Task  # noqa: E402
from models.db import Database  # noqa: E402
from models.migrate import upgrade_engine  # noqa: E402
from models.org import DepartmentLeader, Role  # noqa: E402
from models.rules import AutomationRule, RuleFiring  # noqa: E402
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


# creation times per mode, time inside rules.fire per mode, statements of one creation per mode
Measured = tuple[dict[str, list[float]], dict[str, list[float]], dict[str, list[str]]]


def _corps(db: Database) -> dict[str, tuple[Actor, str, str]]:
    """Identical corps built the same way, all with the shipped defaults installed: "on" keeps them enabled,
    "off" and "skip" have every rule disabled. Each mode's customers go to its own corp, so no mode's
    creations can fire another's rules, and the corps grow alike (the duplicate check reads them)."""
    out = {}
    for label, enabled in (("on", True), ("off", False), ("skip", False)):
        with db.session() as s:
            org = f.org(s)
            install_defaults(s, org.corp.id)
            s.execute(sa.update(AutomationRule).where(AutomationRule.corp_id == org.corp.id).values(enabled=enabled))
            out[label] = (Actor(corp_id=org.corp.id, user_id=org.alice.id, role=org.alice.role),
                          org.corp.platform_corp_id, org.alice.platform_userid)
    rules.forget()  # the updates above went behind the service's back
    return out


# Modes: corp, and whether rules.fire runs at all. "fire() skipped" swaps rules.fire for a no-op (the
# customer service calls it through the module), to show what the machinery costs with nothing to do.
MODES = {"rules disabled": ("off", True), "defaults enabled": ("on", True), "fire() skipped": ("skip", False)}


def _skip_fire(*args, **kwargs):
    return []


def _interleaved(run, creations: int, warmup: int, seed: int) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Each round runs every mode once, in a shuffled order, so drift and the neighbours' load hit all
    modes alike; the first `warmup` rounds (caches, pool, prepared statements) are not kept. Returns the
    creation times and, separately, the time spent inside `rules.fire` (free of the commit's noise)."""
    real_fire = rules.fire
    samples: dict[str, list[float]] = {label: [] for label in MODES}
    inside: dict[str, list[float]] = {label: [] for label, (_, fire) in MODES.items() if fire}
    spent = [0.0]

    def timed_fire(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return real_fire(*args, **kwargs)
        finally:
            spent[0] += time.perf_counter() - t0

    rng = random.Random(seed)
    order = list(MODES)
    try:
        for i in range(warmup + creations):
            rng.shuffle(order)
            for label in order:
                corp, fire = MODES[label]
                rules.fire = timed_fire if fire else _skip_fire
                spent[0] = 0.0
                t0 = time.perf_counter()
                run(corp)
                elapsed = time.perf_counter() - t0
                if i >= warmup:
                    samples[label].append(elapsed)
                    if fire:
                        inside[label].append(spent[0])
    finally:
        rules.fire = real_fire
    return samples, inside


def _statements(engine, run) -> dict[str, list[str]]:
    """The SQL each mode sends for one creation (after warm-up, so caches are as in steady state)."""
    real_fire = rules.fire
    out = {}
    try:
        for label, (corp, fire) in MODES.items():
            rules.fire = real_fire if fire else _skip_fire
            seen: list[str] = []

            def listener(conn, cursor, statement, params, context, executemany, seen=seen):
                seen.append(" ".join(statement.split())[:110])

            sa.event.listen(engine, "before_cursor_execute", listener)
            try:
                run(corp)
            finally:
                sa.event.remove(engine, "before_cursor_execute", listener)
            out[label] = seen
    finally:
        rules.fire = real_fire
    return out


def _check_effects(db: Database, corps, created: dict[str, list[int]]) -> None:
    """The bench must measure the real path: every "on" creation made exactly one rule task and one
    firing, and no "off" creation made any."""
    with db.session() as s:
        for label, (actor, _, _) in corps.items():
            ids = created[label]
            tasks = s.execute(sa.select(sa.func.count()).select_from(Task).where(
                Task.customer_id.in_(ids), Task.source == "rule")).scalar()
            firings = s.execute(sa.select(sa.func.count()).select_from(RuleFiring).where(
                RuleFiring.corp_id == actor.corp_id, RuleFiring.subject_type == "customer",
                RuleFiring.subject_id.in_(ids), RuleFiring.status == "done")).scalar()
            expected = len(ids) if label == "on" else 0
            assert tasks == firings == expected, (label, len(ids), tasks, firings)


def service_overhead(db: Database, creations: int, warmup: int) -> Measured:
    """`customers.create_customer` in its own committed transaction, as a request runs it."""
    corps = _corps(db)
    seq = itertools.count()
    created: dict[str, list[int]] = {"on": [], "off": [], "skip": []}

    def run(corp: str) -> None:
        with db.session() as s:
            customer = customers.create_customer(s, corps[corp][0], CustomerIn(
                name=f"基准客户{next(seq)}有限公司", industry="制造业", region="华东"))
            created[corp].append(customer.id)

    samples, inside = _interleaved(run, creations, warmup, seed=7)
    statements = _statements(db.engine, run)
    _check_effects(db, corps, {label: ids[-50:] for label, ids in created.items()})
    return samples, inside, statements


def api_overhead(db: Database, creations: int, warmup: int) -> Measured:
    """`POST /api/v1/customers` through the Flask app (what a salesperson waits for, minus HTTP)."""
    from cryptography.fernet import Fernet

    from app import create_app
    from config import Settings

    corps = _corps(db)
    settings = Settings(database_url=db.url, secret_key="bench", master_key=Fernet.generate_key().decode(),
                        instance_path=Path(tempfile.mkdtemp()), dev_login=True, testing=True)
    app = create_app(settings, database=db)
    clients = {}
    for label, (_, corp_ref, userid) in corps.items():
        clients[label] = app.test_client()
        resp = clients[label].post("/api/v1/auth/dev", json={"corpId": corp_ref, "userid": userid})
        assert resp.status_code == 200, resp.get_json()
    seq = itertools.count()
    created: dict[str, list[int]] = {"on": [], "off": [], "skip": []}

    def run(corp: str) -> None:
        resp = clients[corp].post("/api/v1/customers", json={"name": f"接口客户{next(seq)}有限公司"})
        assert resp.status_code == 201, resp.get_json()
        created[corp].append(resp.get_json()["id"])

    samples, inside = _interleaved(run, creations, warmup, seed=11)
    statements = _statements(db.engine, run)
    _check_effects(db, corps, {label: ids[-50:] for label, ids in created.items()})
    return samples, inside, statements


def _p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20, method="inclusive")[-1]


def _print_overhead(level: str, samples: dict[str, list[float]], inside: dict[str, list[float]],
                    statements: dict[str, list[str]], verbose: bool) -> None:
    for label, values in samples.items():
        print(f"{level} {label:17s}: median {statistics.median(values) * 1000:6.2f} ms  "
              f"p95 {_p95(values) * 1000:6.2f} ms  ({len(values)} samples)  "
              f"{len(statements[label])} statements")
    on, off, skipped = samples["defaults enabled"], samples["rules disabled"], samples["fire() skipped"]
    for stat, fn in (("median", statistics.median), ("p95", _p95)):
        ratio = fn(on) / fn(off)
        print(f"{level} defaults enabled / rules disabled, {stat:6s} = {ratio:.3f}  (limit {OVERHEAD_LIMIT:.2f})  "
              f"{'PASS' if ratio <= OVERHEAD_LIMIT else 'FAIL'}")
    print(f"{level} (info) rules disabled / fire() skipped, median = "
          f"{statistics.median(off) / statistics.median(skipped):.3f}")
    for label, values in inside.items():
        print(f"{level} (info) time inside rules.fire, {label:17s}: median {statistics.median(values) * 1000:.3f} ms"
              f"  p95 {_p95(values) * 1000:.3f} ms")
    extra = list(statements["defaults enabled"])
    for stmt in statements["rules disabled"]:
        if stmt in extra:
            extra.remove(stmt)
    print(f"{level} statements added by the default rule: {len(extra)}  (cursor executes; BEGIN/COMMIT not counted)")
    for stmt in extra:
        print(f"    {stmt}")
    if verbose:
        for label, stmts in statements.items():
            print(f"  -- {label}")
            for stmt in stmts:
                print(f"    {stmt}")


def report(name: str, db: Database, creations: int, warmup: int, parts: set[str], verbose: bool) -> None:
    print(f"\n== {name} ==")
    if "routing" in parts:
        for label, n in routing_queries(db).items():
            print(f"resolve approvers, 10-level tree, {label:28s}: {n} queries  (limit {QUERY_LIMIT}; "
                  f"ratio {n / QUERY_LIMIT:.2f})")
    if "service" in parts:
        _print_overhead("service", *service_overhead(db, creations, warmup), verbose)
    if "api" in parts:
        _print_overhead("API", *api_overhead(db, creations, warmup), verbose)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--creations", type=int, default=400, help="timed customer creations per mode and level")
    parser.add_argument("--warmup", type=int, default=30, help="untimed rounds first")
    parser.add_argument("--sqlite-only", action="store_true")
    parser.add_argument("--pg-only", action="store_true")
    parser.add_argument("--only", choices=["routing", "service", "api"], action="append",
                        help="run only these parts (repeatable)")
    parser.add_argument("--statements", action="store_true", help="list every statement of each mode")
    args = parser.parse_args()
    parts = set(args.only or ["routing", "service", "api"])
    print("load average at start: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))

    if not args.pg_only:
        path = Path(tempfile.mkdtemp()) / "bench.sqlite3"
        db = Database(f"sqlite:///{path}")
        upgrade_engine(db.engine)
        report("SQLite", db, args.creations, args.warmup, parts, args.statements)
        db.dispose()
    if args.sqlite_only:
        return
    url = os.environ.get("CRM_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
    url = url.replace("postgresql://", "postgresql+psycopg://", 1)
    schema = f"bench_appr_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(url)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        sep = "&" if "?" in url else "?"
        db = Database(f"{url}{sep}options=-csearch_path%3D{schema},public")
        upgrade_engine(db.engine)
        report("PostgreSQL", db, args.creations, args.warmup, parts, args.statements)
        db.dispose()
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


if __name__ == "__main__":
    main()
