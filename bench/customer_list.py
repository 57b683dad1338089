"""Customer-list benchmark on PostgreSQL: seed at scale, measure list latency at 10k and at full size,
and compare gunicorn throughput of the manager list with a bare Flask JSON endpoint — in one run.

    .venv/bin/python bench/customer_list.py --customers 1000000 --followups 5000000   # the full run
    .venv/bin/python bench/customer_list.py --small                                   # quick check

See bench/README.md for what each figure means. Writes bench/results/ (git-ignored).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(BENCH))

import requests  # noqa: E402
import seed  # noqa: E402

RESULTS = BENCH / "results"
VENV_BIN = Path(sys.executable).parent
APP_PORT, BARE_PORT = 18731, 18732


def log(msg: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {msg}", flush=True)


# ----------------------------------------------------------------------------- servers

class Server:
    """A gunicorn process we started; stopped by its own pid only."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], port: int, probe: str, cwd: Path) -> None:
        self.name, self.port, self.probe = name, port, probe
        self.log_path = RESULTS / f"gunicorn_{name}.log"
        self.log_fh = open(self.log_path, "a")
        self.proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=self.log_fh, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{name} server exited; see {self.log_path}")
            try:
                if requests.get(f"http://127.0.0.1:{port}{probe}", timeout=2).status_code < 500:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"{name} server did not come up; see {self.log_path}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # gunicorn master stops its workers
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log_fh.close()


def app_env(url: str) -> dict[str, str]:
    from cryptography.fernet import Fernet

    env = dict(os.environ)
    env.update(CRM_DATABASE_URL=url, CRM_SANDBOX="true", CRM_SECRET_KEY=secrets.token_urlsafe(32),
               CRM_MASTER_KEY=Fernet.generate_key().decode(), CRM_INSTANCE_PATH=str(RESULTS / "instance"))
    return env


APP_TARGET = "app.wsgi:app"


def start_app(url: str, workers: int, env: dict[str, str]) -> Server:
    argv = [str(VENV_BIN / "gunicorn"), "-w", str(workers), "-b", f"127.0.0.1:{APP_PORT}"]
    if APP_TARGET != "app.wsgi:app":  # an experiment module in bench/
        argv += ["--pythonpath", str(BENCH)]
    return Server("app", argv + [APP_TARGET], env, APP_PORT, "/healthz", REPO)


def start_bare(workers: int) -> Server:
    return Server("bare", [str(VENV_BIN / "gunicorn"), "-w", str(workers), "-b", f"127.0.0.1:{BARE_PORT}",
                           "--chdir", str(BENCH), "bare_app:app"], dict(os.environ), BARE_PORT, "/ping", BENCH)


# ----------------------------------------------------------------------------- who asks what

@dataclass
class Cast:
    """The signed-in people and the query parameters each list type rotates over."""

    salespeople: list[requests.Session]
    managers: list[tuple[requests.Session, int]]  # (session, led department id)
    admin: requests.Session
    tag_pairs: list[tuple[int, int]]
    name_fragments: list[str]
    phone_prefixes: list[str]
    cookies: dict[str, list[str]] = field(default_factory=dict)


def sign_in(base: str, userid: str) -> requests.Session:
    s = requests.Session()
    r = s.post(f"{base}/api/v1/auth/dev", json={"corpId": seed.CORP_PLATFORM_ID, "userid": userid}, timeout=10)
    r.raise_for_status()
    return s


def pick_cast(url: str, org: seed.Org, base: str, rng: random.Random, phase1_customers: int) -> Cast:
    """Salespeople who own customers among the first `phase1_customers` (so they exist at both sizes),
    region managers (each leads a 大区 subtree: cities and their sales groups), and the admin for search.
    Search terms are taken from customers and contacts that exist at both sizes."""
    import psycopg

    with psycopg.connect(seed._pg_url(url)) as c:
        owners = [r[0] for r in c.execute(
            "SELECT owner_id FROM customers WHERE id <= %s AND owner_id IS NOT NULL AND deleted_at IS NULL "
            "GROUP BY owner_id HAVING count(*) >= 3 ORDER BY owner_id", (phase1_customers,))]
        owners = [o for o in owners if o in set(org.salespeople)]
        names = [r[0] for r in c.execute(
            "SELECT name FROM customers WHERE id <= %s AND deleted_at IS NULL AND NOT in_pool ORDER BY id",
            (phase1_customers,))]
        mobiles = [r[0] for r in c.execute(
            "SELECT mobile FROM contacts WHERE customer_id <= %s AND mobile IS NOT NULL ORDER BY id",
            (phase1_customers,))]
    sales_ids = rng.sample(owners, min(20, len(owners)))
    frags = []
    for name in rng.sample(names, 20):
        city = next(ci for ci, _p, _r in seed.CITIES if name.startswith(ci))
        frags.append(name[len(city): len(city) + 3])  # brand + next char: e.g. 德聚贵 — 3 CJK characters
    phones = [m[:7] for m in rng.sample(mobiles, 20)]  # 7-digit mobile prefix, e.g. 1387654
    t = org.tag_ids
    pairs = [(t["意向"][0], t["行业"][0]), (t["意向"][0], t["来源"][2]), (t["意向"][1], t["行业"][1]),
             (t["意向"][0], t["行业"][2])]
    return Cast(
        salespeople=[sign_in(base, org.userid_of[u]) for u in sales_ids],
        managers=[(sign_in(base, org.userid_of[u]), d) for u, d in org.region_leaders],
        admin=sign_in(base, org.userid_of[org.admins[1]]),
        tag_pairs=pairs, name_fragments=frags, phone_prefixes=phones,
    )


QUERY_KINDS = ("a_own", "b_subtree_tags", "c_name", "c_phone")
QUERY_LABELS = {
    "a_own": "(a) salesperson's own list",
    "b_subtree_tags": "(b) manager subtree + 2 tags (all-of)",
    "c_name": "(c) search: name fragment (3 chars)",
    "c_phone": "(c) search: mobile prefix (7 digits)",
}


def request_for(kind: str, cast: Cast, i: int) -> tuple[requests.Session, str]:
    if kind == "a_own":
        return cast.salespeople[i % len(cast.salespeople)], "/api/v1/customers"
    if kind == "b_subtree_tags":
        s, dept = cast.managers[i % len(cast.managers)]
        a, b = cast.tag_pairs[(i // len(cast.managers)) % len(cast.tag_pairs)]
        return s, f"/api/v1/customers?department_id={dept}&tags_all={a},{b}"
    if kind == "c_name":
        return cast.admin, f"/api/v1/customers?q={cast.name_fragments[i % len(cast.name_fragments)]}"
    return cast.admin, f"/api/v1/customers?q={cast.phone_prefixes[i % len(cast.phone_prefixes)]}"


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    k = (len(s) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def measure_latency(base: str, cast: Cast, n: int, warmup: int = 10) -> dict[str, dict[str, float]]:
    """Sequential requests over HTTP, kinds interleaved so background noise hits all alike."""
    for i in range(warmup):
        for kind in QUERY_KINDS:
            s, path = request_for(kind, cast, i)
            s.get(base + path, timeout=60).raise_for_status()
    times: dict[str, list[float]] = {k: [] for k in QUERY_KINDS}
    items: dict[str, list[int]] = {k: [] for k in QUERY_KINDS}
    for i in range(n):
        for kind in QUERY_KINDS:
            s, path = request_for(kind, cast, i)
            t = time.perf_counter()
            r = s.get(base + path, timeout=60)
            times[kind].append((time.perf_counter() - t) * 1000)
            r.raise_for_status()
            items[kind].append(len(r.json()["items"]))
    return {k: {"p50": pct(v, 50), "p95": pct(v, 95), "mean": statistics.fmean(v), "max": max(v),
                "avg_items": statistics.fmean(items[k]), "n": len(v)} for k, v in times.items()}


# ----------------------------------------------------------------------------- EXPLAIN

def explain(url: str, org: seed.Org, cast_ids: dict[str, Any], out: Path) -> dict[str, Any]:
    """Capture the SQL the service really runs for each list type, EXPLAIN (ANALYZE, BUFFERS) it."""
    import sqlalchemy as sa

    from app.services import customers
    from app.services.actor import Actor
    from models.db import Database
    from models.org import User

    db = Database(seed._sa_url(url))  # the app's own engine settings (jit off, no parallel plans, …)
    captured: list[tuple[str, Any]] = []
    sa.event.listen(db.engine, "before_cursor_execute",
                    lambda conn, cur, stmt, params, ctx, many: captured.append((stmt, params)))
    report: dict[str, Any] = {}
    with open(out, "w") as fh, db.session() as s:
        for kind, (user_id, query) in cast_ids.items():
            role = s.get(User, user_id).role
            actor = Actor(corp_id=org.corp_id, user_id=user_id, role=role)
            captured.clear()
            customers.list_customers(s, actor, query)
            n_statements = len(captured)
            main = [(st, p) for st, p in captured if "FROM customers" in st and "LIMIT" in st][0]
            conn = s.connection()
            conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + main[0], main[1]).all()  # warm
            plan = "\n".join(r[0] for r in conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + main[0],
                                                                 main[1]).all())
            exec_ms = float(plan.rsplit("Execution Time: ", 1)[1].split(" ms")[0])
            report[kind] = {"execution_ms": exec_ms, "statements_per_list": n_statements}
            fh.write(f"===== {QUERY_LABELS[kind]}  (user {user_id}, role {role}; "
                     f"{n_statements} SQL statements per list call)\n")
            fh.write(f"-- query: {query}\n{main[0]}\n-- params: {main[1]}\n\n{plan}\n\n")
    db.dispose()
    return report


def explain_other_lists(url: str, org: seed.Org, sales_user: int, out: Path) -> dict[str, float]:
    """EXPLAIN (ANALYZE) every statement of the other list and detail reads at this size — other sorts, a
    second page, a customer's timeline and contacts, opportunities, tasks, org users — so a scan shows up."""
    import sqlalchemy as sa

    from app.services import contacts, customers, follow_ups, opportunities, tasks
    from app.services import org as org_service
    from app.services.actor import Actor
    from models.db import Database
    from models.org import User

    db = Database(seed._sa_url(url))
    captured: list[tuple[str, Any]] = []
    sa.event.listen(db.engine, "before_cursor_execute",
                    lambda conn, cur, stmt, params, ctx, many: captured.append((stmt, params)))
    worst: dict[str, float] = {}
    with open(out, "w") as fh, db.session() as s:
        def actor(uid: int) -> Actor:
            return Actor(corp_id=org.corp_id, user_id=uid, role=s.get(User, uid).role)

        admin, sales = actor(org.admins[1]), actor(sales_user)
        mgr_id, dept = org.region_leaders[0]
        mgr = actor(mgr_id)
        own = s.execute(sa.select(sa.text("id")).select_from(sa.text("customers"))
                        .where(sa.text("owner_id = :u AND deleted_at IS NULL")), {"u": sales_user}).scalars().first()
        page1 = customers.list_customers(s, sales, customers.CustomerQuery())
        cases = {
            "customers admin -created_at": lambda: customers.list_customers(s, admin, customers.CustomerQuery(
                sort="-created_at")),
            "customers admin name": lambda: customers.list_customers(s, admin, customers.CustomerQuery(sort="name")),
            "customers admin next_contact_at": lambda: customers.list_customers(s, admin, customers.CustomerQuery(
                sort="next_contact_at")),
            "customers admin in_pool=true": lambda: customers.list_customers(s, admin, customers.CustomerQuery(
                in_pool=True)),
            "customers salesperson page 2": lambda: customers.list_customers(s, sales, customers.CustomerQuery(
                cursor=page1["next_cursor"])),
            "customers salesperson stale 30 days": lambda: customers.list_customers(s, sales, customers.CustomerQuery(
                stale_days=30)),
            "customers manager whole scope": lambda: customers.list_customers(s, mgr, customers.CustomerQuery()),
            "customer detail": lambda: customers.detail(s, sales, own),
            "contacts of a customer": lambda: contacts.list_contacts(s, sales, own),
            "follow-ups of a customer": lambda: follow_ups.list_follow_ups(s, sales, own, cursor=None, limit=20),
            "opportunities salesperson": lambda: opportunities.list_opportunities(
                s, sales, opportunities.OpportunityQuery()),
            "opportunities admin": lambda: opportunities.list_opportunities(s, admin, opportunities.OpportunityQuery()),
            "tasks salesperson": lambda: tasks.list_tasks(s, sales, tasks.TaskQuery()),
            "tasks manager for a customer": lambda: tasks.list_tasks(s, mgr, tasks.TaskQuery(customer_id=own)),
            "org users of a region": lambda: org_service.list_users(s, admin, department_id=dept, active=True, q=None,
                                                                    cursor=None, limit=50),
        }
        conn = s.connection()
        for label, run in cases.items():
            captured.clear()
            try:
                run()
            except Exception as exc:  # reported in the file, not fatal to the run
                fh.write(f"===== {label}: {type(exc).__name__}: {exc}\n\n")
                continue
            statements = list(captured)
            fh.write(f"===== {label} ({len(statements)} statements)\n")
            worst[label] = 0.0
            for stmt, params in statements:
                plan = "\n".join(r[0] for r in conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + stmt,
                                                                     params).all())
                ms = float(plan.rsplit("Execution Time: ", 1)[1].split(" ms")[0])
                worst[label] = max(worst[label], ms)
                fh.write(f"{stmt}\n-- params: {params}\n{plan}\n\n")
    db.dispose()
    return worst


def explain_cases(org: seed.Org, cast: Cast, sales_user: int) -> dict[str, Any]:
    from app.services.customers import CustomerQuery

    mgr, dept = org.region_leaders[0]
    a, b = cast.tag_pairs[0]
    return {
        "a_own": (sales_user, CustomerQuery()),
        "b_subtree_tags": (mgr, CustomerQuery(department_id=dept, tags_all=[a, b])),
        "c_name": (org.admins[1], CustomerQuery(q=cast.name_fragments[0])),
        "c_phone": (org.admins[1], CustomerQuery(q=cast.phone_prefixes[0])),
    }


# ----------------------------------------------------------------------------- throughput

WRK_LUA = """
local reqs = {}
%s
local i = 0
request = function()
  i = i %% #reqs + 1
  return reqs[i]
end
"""


def load_wrk(port: int, targets: list[tuple[str, str | None]], duration: int, connections: int) -> dict[str, Any]:
    lines = []
    for k, (path, cookie) in enumerate(targets, 1):
        hdr = f'{{["Cookie"] = "{cookie}"}}' if cookie else "nil"
        lines.append(f'reqs[{k}] = wrk.format("GET", "{path}", {hdr})')
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(WRK_LUA % "\n".join(lines))
        script = fh.name
    try:
        out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "-s", script,
                              f"http://127.0.0.1:{port}"], capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(script)
    rps = float(out.split("Requests/sec:")[1].split()[0])
    bad = int(out.split("Non-2xx or 3xx responses:")[1].split()[0]) if "Non-2xx" in out else 0
    errors = out.split("Socket errors:")[1].splitlines()[0].strip() if "Socket errors" in out else ""
    return {"rps": rps, "non_2xx": bad, "socket_errors": errors, "tool": "wrk", "raw": out}


def throughput(cast: Cast, workers: int, duration: int, connections: int, bare: Server,
               me_too: bool = True) -> dict[str, Any]:
    load = load_wrk
    targets = []
    for i in range(len(cast.managers) * len(cast.tag_pairs)):
        s, path = request_for("b_subtree_tags", cast, i)
        targets.append((path, f"crm_session={s.cookies.get('crm_session')}"))
    app_res = load(APP_PORT, targets, duration, connections)
    bare_res = load(BARE_PORT, [("/ping", None)], duration, connections)
    out = {"app_b": app_res, "bare": bare_res, "ratio": app_res["rps"] / bare_res["rps"], "workers": workers,
           "connections": connections, "duration_s": duration}
    if me_too:  # reference only: the cheapest signed-in endpoint of the same app (2-3 tiny queries)
        out["app_me"] = load(APP_PORT, [("/api/v1/me", cookie) for _p, cookie in targets], duration, connections)
    return out


# ----------------------------------------------------------------------------- the run

def phase(name: str, url: str, org: seed.Org, cast: Cast | None, args, base: str, rng: random.Random,
          phase1: int, sales_user_for_explain: list[int], bare: Server) -> tuple[Cast, dict[str, Any]]:
    if cast is None:
        cast = pick_cast(url, org, base, rng, phase1)
    log(f"[{name}] latency: {args.requests} requests per list type, sequential over HTTP")
    lat = measure_latency(base, cast, args.requests)
    for k, v in lat.items():
        log(f"    {QUERY_LABELS[k]:42s} p50 {v['p50']:7.1f} ms  p95 {v['p95']:7.1f} ms  "
            f"(avg {v['avg_items']:.1f} items)")
    if not sales_user_for_explain:
        s0 = cast.salespeople[0]
        sales_user_for_explain.append(s0.get(base + "/api/v1/me").json()["user"]["id"])
    fname = f"explain_{name}{_variant()}.txt"
    ex = explain(url, org, explain_cases(org, cast, sales_user_for_explain[0]), RESULTS / fname)
    log(f"[{name}] EXPLAIN (ANALYZE, BUFFERS) → bench/results/{fname}: "
        + ", ".join(f"{k} {v['execution_ms']:.1f} ms" for k, v in ex.items()))
    if name == _size(args.customers):
        fname = f"explain_{name}_other_lists.txt"
        other = explain_other_lists(url, org, sales_user_for_explain[0], RESULTS / fname)
        log(f"[{name}] other lists, slowest statement each → bench/results/{fname}: "
            + ", ".join(f"{k} {v:.1f} ms" for k, v in other.items()))
        ex["other_lists_ms"] = other
    log(f"[{name}] throughput: (b) on gunicorn -w {args.workers} vs bare Flask -w {args.workers}, "
        f"{args.duration}s each, {args.connections} connections")
    tp = throughput(cast, args.workers, args.duration, args.connections, bare)
    log(f"    app (b) {tp['app_b']['rps']:.0f} rps (non-2xx {tp['app_b']['non_2xx']}), "
        f"bare {tp['bare']['rps']:.0f} rps → ratio {tp['ratio']:.3f}; reference: app /api/v1/me "
        f"{tp['app_me']['rps']:.0f} rps (ratio {tp['app_me']['rps'] / tp['bare']['rps']:.3f})")
    return cast, {"latency": lat, "explain": ex, "throughput": tp}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--customers", type=int, default=1_000_000)
    ap.add_argument("--followups", type=int, default=5_000_000)
    ap.add_argument("--first", type=int, default=10_000, help="customers at the first measurement (10k)")
    ap.add_argument("--small", action="store_true", help="quick mode: 10k → 100k customers, shorter runs")
    ap.add_argument("--requests", type=int, default=200, help="latency samples per list type per size")
    ap.add_argument("--workers", type=int, default=2, help="gunicorn workers for both servers")
    ap.add_argument("--duration", type=int, default=20, help="seconds of load per server")
    ap.add_argument("--connections", type=int, default=4, help="concurrent load-generator connections")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--measure-only", metavar="LABEL",
                    help="no seeding: measure the existing bench database once, results labelled LABEL")
    ap.add_argument("--app", default="app.wsgi:app",
                    help="WSGI target for the CRM server (default app.wsgi:app; a module:app in bench/ for "
                         "an experiment)")
    args = ap.parse_args()
    if not shutil.which("wrk"):
        sys.exit("customer_list: wrk is required for the throughput figures: apt-get install -y wrk "
                 "(`make bench` installs it)")
    global APP_TARGET
    APP_TARGET = args.app
    if args.small:
        args.customers, args.followups = 100_000, 500_000
        args.requests, args.duration = min(args.requests, 60), min(args.duration, 8)
    url = os.environ.get("CRM_BENCH_DATABASE_URL", seed.DEFAULT_URL)
    RESULTS.mkdir(exist_ok=True)
    rng = random.Random(args.seed)
    first = min(args.first, args.customers)
    fu_first = round(args.followups * first / args.customers)
    label1, label2 = _size(first), _size(args.customers)

    if args.measure_only:
        return measure_only(url, args, rng, first)
    log(f"database {url}: recreate + migrate")
    seed.recreate_database(url)
    seed.migrate(url)
    clock = seed.Clock(datetime.now(UTC))
    cursor = seed.Cursor()
    t = time.perf_counter()
    org = seed.build_org(url, rng)
    org_s = time.perf_counter() - t
    log(f"org: {org.departments} departments, {len(org.user_ids)} users, {org.rows} rows in {org_s:.1f}s")
    log(f"load 1: {first:,} customers, {fu_first:,} follow-ups")
    st1 = seed.bulk_load(url, org, clock, rng, cursor, first, fu_first, log=log)

    env = app_env(seed._sa_url(url))
    servers: list[Server] = []
    results: dict[str, Any] = {"args": vars(args), "started": datetime.now(UTC).isoformat(), "git": _git()}
    try:
        app_srv = start_app(url, args.workers, env)
        servers.append(app_srv)
        bare = start_bare(args.workers)
        servers.append(bare)
        base = f"http://127.0.0.1:{APP_PORT}"
        sales_for_explain: list[int] = []
        cast, results[label1] = phase(label1, url, org, None, args, base, rng, first, sales_for_explain, bare)

        log(f"load 2: +{args.customers - first:,} customers, +{args.followups - fu_first:,} follow-ups")
        st2 = seed.bulk_load(url, org, clock, rng, cursor, args.customers - first, args.followups - fu_first,
                             log=log)
        rows = org.rows + st1.total_rows + st2.total_rows
        seed_s = org_s + st1.total_s + st2.total_s
        copy_rows = st1.total_rows + st2.total_rows
        results["seeding"] = {
            "rows": rows, "seconds": seed_s, "rows_per_s": rows / seed_s,
            "copy_only_rows_per_s": copy_rows / (st1.copy_s + st2.copy_s),
            "tables": {k: st1.rows[k] + st2.rows[k] for k in st1.rows},
            "breakdown_s": {"org": org_s, **{k: getattr(st1, k) + getattr(st2, k)
                                             for k in ("drop_s", "copy_s", "index_s", "fk_s", "analyze_s")}},
        }
        log(f"seeded {rows:,} rows in {seed_s:.1f}s = {rows / seed_s:,.0f} rows/s "
            f"(COPY alone {results['seeding']['copy_only_rows_per_s']:,.0f} rows/s)")
        # Let the freshly loaded tables settle (visibility map, no autovacuum mid-measurement); not in the rate.
        t = time.perf_counter()
        _vacuum(url)
        results["vacuum_s"] = time.perf_counter() - t
        log(f"VACUUM (outside the seeding window) {results['vacuum_s']:.1f}s")
        _, results[label2] = phase(label2, url, org, cast, args, base, rng, first, sales_for_explain, bare)
    finally:
        for s in servers:
            s.stop()
    results["labels"] = [label1, label2]
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    (RESULTS / f"summary_{stamp}.json").write_text(json.dumps(results, indent=2, ensure_ascii=False, default=str))
    print_summary(results, label1, label2, args)
    log(f"results: bench/results/summary_{stamp}.json, explain_{label1}{_variant()}.txt, "
        f"explain_{label2}{_variant()}.txt")


def _variant() -> str:
    return "" if APP_TARGET == "app.wsgi:app" else "_" + APP_TARGET.split(":")[0]


def _git() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout
        dirty = subprocess.run(["git", "status", "--porcelain", "app", "models"], cwd=REPO, capture_output=True,
                               text=True).stdout
        return head.strip() + (" +uncommitted changes in app/ or models/" if dirty.strip() else "")
    except OSError:
        return "?"


def measure_only(url: str, args, rng: random.Random, first: int) -> None:
    """Re-measure an already seeded database (e.g. after trying an index): latency, EXPLAIN, throughput."""
    org = seed.load_org(url)
    env = app_env(seed._sa_url(url))
    servers: list[Server] = []
    try:
        servers.append(start_app(url, args.workers, env))
        bare = start_bare(args.workers)
        servers.append(bare)
        base = f"http://127.0.0.1:{APP_PORT}"
        _, res = phase(args.measure_only, url, org, None, args, base, rng, first, [], bare)
    finally:
        for s in servers:
            s.stop()
    res["git"] = _git()
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    (RESULTS / f"measure_{args.measure_only}_{stamp}.json").write_text(
        json.dumps(res, indent=2, ensure_ascii=False, default=str))


def _vacuum(url: str) -> None:
    import psycopg

    with psycopg.connect(seed._pg_url(url), autocommit=True) as c:
        for t in seed.BIG_TABLES:
            c.execute(f"VACUUM {t}")


def _size(n: int) -> str:
    return f"{n // 1_000_000}M" if n % 1_000_000 == 0 else (f"{n // 1000}k" if n % 1000 == 0 else str(n))


def print_summary(r: dict[str, Any], l1: str, l2: str, args) -> None:
    rows = []
    sd = r["seeding"]
    ok = sd["rows_per_s"] >= 50_000
    rows.append(("seeding rate, all rows incl. index/FK rebuild + ANALYZE", f"{sd['rows_per_s']:,.0f} rows/s",
                 "≥ 50,000 rows/s", "PASS" if ok else "FAIL"))
    for k in QUERY_KINDS:
        a, b = r[l1]["latency"][k], r[l2]["latency"][k]
        ratio = b["p95"] / a["p95"]
        rows.append((f"{QUERY_LABELS[k]} p50/p95 @{l1}", f"{a['p50']:.1f} / {a['p95']:.1f} ms", "", ""))
        rows.append((f"{QUERY_LABELS[k]} p50/p95 @{l2}", f"{b['p50']:.1f} / {b['p95']:.1f} ms", "", ""))
        rows.append((f"{QUERY_LABELS[k]} p95({l2})/p95({l1})", f"{ratio:.2f}×", "≤ 3×",
                     "PASS" if ratio <= 3 else "FAIL"))
    for lab in (l1, l2):
        tp = r[lab]["throughput"]
        rows.append((f"rps (b) gunicorn -w{args.workers} @{lab}", f"{tp['app_b']['rps']:,.0f}", "", ""))
        rows.append((f"rps bare Flask JSON gunicorn -w{args.workers} @{lab}", f"{tp['bare']['rps']:,.0f}", "", ""))
        if "app_me" in tp:
            rows.append((f"  reference: rps signed-in /api/v1/me @{lab}", f"{tp['app_me']['rps']:,.0f}", "(info)", ""))
        last = lab == l2
        rows.append((f"rps ratio (b)/bare @{lab}", f"{tp['ratio']:.3f}", "≥ 0.35" if last else "(info)",
                     ("PASS" if tp["ratio"] >= 0.35 else "FAIL") if last else ""))
    w = max(len(x[0]) for x in rows)
    print()
    print(f"{'figure':{w}}  {'measured':>22}  {'target':>16}  result")
    print("-" * (w + 50))
    for name, val, target, res in rows:
        print(f"{name:{w}}  {val:>22}  {target:>16}  {res}")
    print()
    print("seeding breakdown (s): " + ", ".join(f"{k} {v:.1f}" for k, v in sd["breakdown_s"].items())
          + f"; rows: {sd['rows']:,} " + json.dumps(sd["tables"]))
    print(f"COPY alone: {sd['copy_only_rows_per_s']:,.0f} rows/s; VACUUM after seeding (not counted): "
          f"{r['vacuum_s']:.1f}s")


if __name__ == "__main__":
    main()
