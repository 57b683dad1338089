"""WeCom full org sync benchmark (issue 4, Performance): sandbox over real HTTP, PostgreSQL, one run.

    .venv/bin/python bench/wecom_sync.py            # 50,000 members, ~3,000 departments
    .venv/bin/python bench/wecom_sync.py --small    # 2,000 members, 150 departments

The sandbox runs in its own process with 50 ms latency per call and WeCom's per-API per-corp limits
(10 000 calls/min and 150 000/h, 45009 beyond them). The sync runs here as `crm org sync --full` does:
the corp's client from the factory (DB token store, DB rate limiter, usage counter) on a private
PostgreSQL schema that is dropped afterwards.

Figures:
- calls vs minimum: the endpoints a self-built app may use allow no fewer than one `gettoken`, one
  `department/list` (the whole visible range with names) and one `user/list` per department (it has no
  paging and no recursion), so minimum = 2 + departments.
- wall time vs rate-limit bound: the busiest API's calls at WeCom's sustainable per-API rate
  (10 000 per minute, i.e. 166.7/s). Bursting above it is allowed inside one minute but not over time,
  so a sync that is to stay safe on any corp size cannot beat this bound.
- frequency-limit errors: 45009/45033 answers counted by the sandbox.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import requests  # noqa: E402
import sqlalchemy as sa  # noqa: E402
from cryptography.fernet import Fernet  # noqa: E402

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
PER_MINUTE = 10_000  # one API, per corp (fact sheet §8)


def _serve_sandbox(conn, seed: int, users: int, depts: int, latency: float) -> None:
    """Child process: generate the corp, serve it, report the port, serve until told to stop."""
    from integrations.sandbox.server import SandboxServer
    from integrations.sandbox.wecom_api import create_wecom_blueprint
    from integrations.sandbox.wecom_state import WeComWorld, add_bulk_org

    world = WeComWorld(seed, corps=1, users=60, latency=latency)
    app = world.app()
    add_bulk_org(app, departments=depts, users=max(0, users - len(app.corp.users)), seed=seed)
    world.org_changed(app)
    server = SandboxServer(extra_blueprints=(create_wecom_blueprint(world),)).start()
    conn.send({"url": server.url, **world.credentials(app)})
    conn.recv()
    server.stop()


def _pg_schema(url: str) -> tuple[str, str]:
    schema = f"bench_wecom_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(url)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    admin.dispose()
    sep = "&" if "?" in url else "?"
    return schema, f"{url}{sep}options=-csearch_path%3D{schema},public"


def _drop_schema(url: str, schema: str) -> None:
    admin = sa.create_engine(url)
    with admin.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=50_000)
    ap.add_argument("--depts", type=int, default=3_000, help="extra teams (plus one region per ten teams)")
    ap.add_argument("--small", action="store_true", help="2,000 members, about 150 departments")
    ap.add_argument("--latency", type=float, default=0.05)
    ap.add_argument("--threads", type=int, default=12, help="sync threads per pool")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    if args.small:
        args.users, args.depts = 2_000, 120
    base_url = os.environ.get("CRM_BENCH_DATABASE_URL", DEFAULT_URL)

    t0 = time.monotonic()
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    sandbox = ctx.Process(target=_serve_sandbox, args=(child, args.seed, args.users, args.depts, args.latency),
                          daemon=True)
    sandbox.start()
    info = parent.recv()
    print(f"sandbox ready in {time.monotonic() - t0:.1f}s at {info['url']}: {info['users']:,} members, "
          f"{info['departments']:,} departments, {args.latency * 1000:.0f} ms latency", flush=True)
    http = requests.Session()
    http.trust_env = False

    from app.services.org_sync import SyncStats, full_sync
    from integrations.wecom.factory import client_for_corp
    from models.db import Database
    from models.migrate import upgrade_engine
    from models.org import Corp

    schema, url = _pg_schema(base_url)
    database = Database(url)
    try:
        upgrade_engine(database.engine)
        with database.session() as s:
            corp = Corp(platform="wecom", platform_corp_id=info["corpId"], name=info["name"],
                        agent_id=str(info["agentId"]))
            s.add(corp)
        settings = SimpleNamespace(wecom_api_base=f"{info['url']}/cgi-bin", master_key=Fernet.generate_key().decode(),
                                   timezone="Asia/Shanghai")
        client = client_for_corp(corp, info["secret"], settings=settings, database=database, reuse=False)
        http.post(f"{info['url']}/sandbox/wecom/config", json={"resetCounters": True})
        stats = SyncStats()
        started = time.monotonic()
        run = full_sync(database, corp.id, client, threads=args.threads, stats=stats)
        wall = time.monotonic() - started
        calls = http.get(f"{info['url']}/sandbox/wecom/calls").json()
        with database.session() as s:
            users_in_db = s.scalar(sa.select(sa.func.count()).select_from(sa.text("users")))
        report(info, calls, run, wall, users_in_db)
    finally:
        database.dispose()
        _drop_schema(base_url, schema)
        parent.send("stop")
        sandbox.join(timeout=10)
    return 0


def report(info, calls, run, wall, users_in_db) -> None:
    by_path: dict[str, int] = calls["byPath"]
    errors = sum(n for key, n in calls["errors"].items() if key.endswith((":45009", ":45033")))
    made = calls["total"]
    minimum = 2 + info["departments"]
    busiest, busiest_calls = max(by_path.items(), key=lambda kv: kv[1])
    bound = busiest_calls / (PER_MINUTE / 60)
    print(f"\nfull sync of {info['users']:,} members / {info['departments']:,} departments: run #{run.id} "
          f"{run.status}, +{run.added:,} ~{run.updated:,} -{run.deactivated:,}; DB has {users_in_db:,} users")
    print("  calls by API: " + ", ".join(f"{p} {n:,}" for p, n in sorted(by_path.items())))
    print(f"  minimum = gettoken + department/list + one user/list per department; "
          f"bound = {busiest_calls:,} calls to {busiest} at {PER_MINUTE:,}/min")
    rows = [
        ("API calls made / minimum", f"{made:,} / {minimum:,}", made / minimum, 1.02),
        ("wall time / rate-limit bound", f"{wall:.1f}s / {bound:.1f}s", wall / bound, 1.25),
        ("45009/45033 answers", f"{errors}", float(errors), 0.0),
    ]
    print(f"\n  {'figure':<32} {'measured':>22} {'ratio':>8}  target   ok")
    for name, shown, value, target in rows:
        ok = value <= target
        print(f"  {name:<32} {shown:>22} {value:>8.3f}  ≤ {target:<6} {'yes' if ok else 'NO'}")


if __name__ == "__main__":
    sys.exit(main())
