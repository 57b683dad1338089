"""DingTalk full org sync benchmark (issue 3, Performance): sandbox over real HTTP, PostgreSQL, one run.

    .venv/bin/python bench/dingtalk_sync.py            # 50,000 users, 3,000 departments (~3 minutes)
    .venv/bin/python bench/dingtalk_sync.py --small    # 2,000 users, 150 departments (~15 seconds)

The sandbox runs in its own process (its request threads do not compete with the sync for this process's
GIL) with 50 ms latency per call and the standard edition's limit of 20 calls per second per app per API,
answering 90018 beyond it. The sync runs here, exactly as `crm org sync --full` does: the corp's client
from the factory (DB token store, DB rate limiter shared by all processes, usage counter), on a private
PostgreSQL schema that is dropped afterwards. See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import os
import resource
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import requests  # noqa: E402
import sqlalchemy as sa  # noqa: E402
from cryptography.fernet import Fernet  # noqa: E402

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
QPS_LIMIT = 20  # standard edition, per app per API (fact sheet §2.3)
PAGE_SIZE = 100


def _serve_sandbox(conn, seed: int, users: int, depts: int, latency: float, qps: int) -> None:
    """Child process: generate the corp, serve it, report the port, serve until terminated."""
    from integrations.sandbox.corpgen import generate_corp
    from integrations.sandbox.dingtalk_state import DingTalkWorld
    from integrations.sandbox.server import SandboxServer

    world = DingTalkWorld(seed, corps=0, qps_limit=qps, latency=latency)
    world.add_corp(generate_corp(seed, users=users, depts=depts, name="基准测试科技有限公司"))
    server = SandboxServer(world).start()
    corp = next(iter(world.corps.values()))
    conn.send({"url": server.url, **corp.credentials()})
    conn.recv()  # parent says stop
    server.stop()


def _pg_schema(url: str) -> tuple[str, str]:
    schema = f"bench_sync_{uuid.uuid4().hex[:8]}"
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


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


class _CpuMeter:
    """CPU seconds of this process and of the PostgreSQL backends serving `database` (local server only:
    read from /proc). The apply rate is wall time on a shared box; CPU per user says what the path costs
    whatever the neighbours do. Pooled connections are closed first so every backend used is seen."""

    def __init__(self, database) -> None:
        self.pids: set[int] = set()
        database.engine.dispose()
        sa.event.listen(database.engine, "connect", self._connected)

    def _connected(self, dbapi_conn, _record) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("SELECT pg_backend_pid()")
        self.pids.add(cur.fetchone()[0])
        cur.close()

    def read(self) -> tuple[float, float | None]:
        server = 0
        for pid in self.pids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:  # not on this machine, or the backend has gone: no server figure
                return time.process_time(), None
            server += int(fields[11]) + int(fields[12])  # utime + stime, in clock ticks
        return time.process_time(), server / os.sysconf("SC_CLK_TCK")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=50_000)
    ap.add_argument("--depts", type=int, default=3_000)
    ap.add_argument("--small", action="store_true", help="2,000 users in 150 departments")
    ap.add_argument("--latency", type=float, default=0.05, help="seconds the sandbox waits per call")
    ap.add_argument("--qps", type=int, default=QPS_LIMIT, help="sandbox per-app per-API limit")
    ap.add_argument("--threads", type=int, default=8, help="sync threads per pool (tree walk, user listing)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--twice", action="store_true", help="sync again (nothing changed) to time the update path")
    args = ap.parse_args()
    if args.small:
        args.users, args.depts = 2_000, 150
    base_url = os.environ.get("CRM_BENCH_DATABASE_URL", DEFAULT_URL)

    t0 = time.monotonic()
    parent, child = mp.get_context("spawn").Pipe()
    sandbox = mp.get_context("spawn").Process(
        target=_serve_sandbox, args=(child, args.seed, args.users, args.depts, args.latency, args.qps), daemon=True)
    sandbox.start()
    info = parent.recv()
    print(f"sandbox ready in {time.monotonic() - t0:.1f}s at {info['url']}: {info['users']} users, "
          f"{info['departments']} departments, {args.latency * 1000:.0f} ms latency, {args.qps} QPS/API; load average "
          f"{os.getloadavg()[0]:.1f}", flush=True)
    http = requests.Session()
    http.trust_env = False
    sizes = http.get(f"{info['url']}/sandbox/dingtalk/corps/{info['corpId']}/stats",
                     params={"pageSize": PAGE_SIZE}).json()

    from app.services.org_sync import SyncStats, full_sync
    from integrations.dingtalk.factory import client_for_corp
    from models.db import Database
    from models.migrate import upgrade_engine
    from models.org import Corp

    schema, url = _pg_schema(base_url)
    database = Database(url)
    try:
        upgrade_engine(database.engine)
        with database.session() as s:
            corp = Corp(platform="dingtalk", platform_corp_id=info["corpId"], name=info["name"],
                        app_key=info["appKey"], agent_id=str(info["agentId"]))
            s.add(corp)
        settings = SimpleNamespace(dingtalk_oapi_base=info["url"], dingtalk_api_base=info["url"],
                                   master_key=Fernet.generate_key().decode(), timezone="Asia/Shanghai")
        client = client_for_corp(corp, info["appSecret"], settings=settings, database=database, reuse=False)
        rss_before = _rss_mb()
        stats = SyncStats()
        run = full_sync(database, corp.id, client, threads=args.threads, stats=stats)
        rss_peak = _rss_mb()  # before the capacity phase below, which holds the whole dump on purpose
        calls = http.get(f"{info['url']}/sandbox/dingtalk/calls").json()
        with database.session() as s:
            users_in_db = s.scalar(sa.select(sa.func.count()).select_from(sa.text("users")))
            members_in_db = s.scalar(sa.select(sa.func.count()).select_from(sa.text("user_departments")))
        capacity = apply_capacity(database, http, info)
        report(args, sizes, calls, stats, run, rss_before, rss_peak, users_in_db, members_in_db, capacity)
        if args.twice:
            http.delete(f"{info['url']}/sandbox/dingtalk/calls")
            again = SyncStats()
            run2 = full_sync(database, corp.id, client, threads=args.threads, stats=again)
            print(f"\nsecond sync (no changes): {again.wall_seconds:.1f}s, +{run2.added} ~{run2.updated} "
                  f"-{run2.deactivated}, apply {args.users / again.apply_seconds:,.0f} users/s "
                  f"({again.users_applied:,} listings in {again.apply_seconds:.2f}s), peak RSS {_rss_mb():.0f} MB")
    finally:
        database.dispose()
        _drop_schema(base_url, schema)
        parent.send("stop")
        sandbox.join(timeout=10)
    return 0


def apply_capacity(database, http, info, chunk: int | None = None, writers: int = 2) -> dict:
    """The bulk apply path at full speed: the same org, from the sandbox's dump instead of paged calls,
    written into a second corp in chunks of `chunk` listings, each chunk one transaction as in the sync.
    (Inside the sync the writer mostly waits for the rate-limited API, so its own figure mixes in
    per-chunk overhead of small chunks; this one is what the database path can take.)"""
    from app.services.org_sync import CHUNK_USERS, _DeptInfo, apply_department_batch, write_listings
    from integrations.base import PlatformDepartment
    from integrations.dingtalk.client import DingTalkClient
    from models.org import Corp

    chunk = chunk or CHUNK_USERS
    org = http.get(f"{info['url']}/sandbox/dingtalk/corps/{info['corpId']}/org").json()
    with database.session() as s:
        corp = Corp(platform="dingtalk", platform_corp_id=info["corpId"] + "-copy", name="apply capacity")
        s.add(corp)
    children: dict = {}
    for d in org["departments"]:
        children.setdefault(d.get("parent_id"), []).append(d)
    ordered, frontier = [], list(children.get(None, []))
    while frontier:  # parents first, as the walk delivers them
        ordered.extend(frontier)
        frontier = [k for d in frontier for k in children.get(d["dept_id"], [])]
    depts = [PlatformDepartment(str(d["dept_id"]), str(d["parent_id"]) if d.get("parent_id") else None, d["name"])
             for d in ordered]
    meter = _CpuMeter(database)
    known: dict[str, _DeptInfo] = {}
    t0 = time.perf_counter()
    with database.session() as s:
        apply_department_batch(s, corp.id, depts, 1, {}, known)
    dept_seconds = time.perf_counter() - t0
    dept_ids = {k: v.id for k, v in known.items()}
    sightings = [(d, DingTalkClient._user(u)) for u in org["users"] for d in (str(x) for x in u["dept_id_list"])]
    del org
    users = len({pu.userid for _, pu in sightings})
    result = {"users": users, "listings": len(sightings), "dept_seconds": dept_seconds, "chunk": chunk}
    with ThreadPoolExecutor(writers) as pool:
        for n, run_id in ((1, 1), (writers, 2)):  # one writer (insert path), then `writers` (update path)
            seconds = 0.0
            for i in range(0, len(sightings), chunk):
                t0 = time.perf_counter()
                write_listings(database, corp.id, sightings[i:i + chunk], run_id, dept_ids, writers=n, pool=pool)
                seconds += time.perf_counter() - t0
            result[f"seconds_{n}"] = seconds
    # the headline: inserting with the sync's writer count, timed on a third corp
    with database.session() as s:
        third = Corp(platform="dingtalk", platform_corp_id=info["corpId"] + "-copy2", name="apply capacity 2")
        s.add(third)
    known3: dict[str, _DeptInfo] = {}
    with database.session() as s:
        apply_department_batch(s, third.id, depts, 1, {}, known3)
    ids3 = {k: v.id for k, v in known3.items()}
    seconds = 0.0
    client0, server0 = meter.read()
    with ThreadPoolExecutor(writers) as pool:
        for i in range(0, len(sightings), chunk):
            t0 = time.perf_counter()
            write_listings(database, third.id, sightings[i:i + chunk], 1, ids3, writers=writers, pool=pool)
            seconds += time.perf_counter() - t0
    client1, server1 = meter.read()
    result.update(cpu_client_us=(client1 - client0) / users * 1e6,
                  cpu_server_us=None if server0 is None or server1 is None else (server1 - server0) / users * 1e6)
    result.update(seconds=seconds, writers=writers, rate=users / seconds,
                  rate_1=users / result["seconds_1"], rate_update=users / result[f"seconds_{writers}"])
    return result


def report(args, sizes, calls, stats, run, rss_before, rss_peak, users_in_db, members_in_db, capacity) -> None:
    by_path: dict[str, int] = calls["byPath"]
    throttled = sum(calls["throttled"].values())
    minimum = sizes["minimumCalls"]
    made = calls["total"]
    bound_api, bound_calls = max(by_path.items(), key=lambda kv: kv[1])
    bound = bound_calls / args.qps
    users = sizes["users"]
    in_sync_rate = users / stats.apply_seconds if stats.apply_seconds else math.inf
    apply_rate = capacity["rate"]
    rows = [
        ("API calls made / minimum", f"{made:,} / {minimum:,}", made / minimum, 1.02, "≤"),
        ("wall time / rate-limit bound", f"{stats.wall_seconds:.1f}s / {bound:.1f}s", stats.wall_seconds / bound,
         1.25, "≤"),
        ("90018 answers", f"{throttled}", throttled, 0, "="),
        ("DB apply rate, bulk path (users/s)", f"{apply_rate:,.0f}", apply_rate, 20_000, "≥"),
        ("peak RSS of the sync process (MB)", f"{rss_peak:.0f}", rss_peak, 300, "≤"),
    ]
    print(f"\nfull sync of {users:,} users / {sizes['departments']:,} departments "
          f"({sizes['memberships']:,} memberships; {sizes['emptyDepartments']} empty departments)")
    print(f"  run #{run.id} {run.status}: +{run.added:,} ~{run.updated:,} -{run.deactivated:,}, "
          f"{run.calls_made:,} calls recorded; DB has {users_in_db:,} users, {members_in_db:,} memberships")
    print("  calls by API: " + ", ".join(f"{p} {n:,}" for p, n in sorted(by_path.items())))
    print(f"  minimum = {sizes['departments']:,} departments listed + {sizes['userPages']:,} user pages "
          f"(Σ ⌈members / {PAGE_SIZE}⌉); bound = {bound_calls:,} calls to {bound_api} ÷ {args.qps}/s")
    print(f"  in the sync: {stats.users_applied:,} listings in {stats.chunks} chunks, {stats.apply_seconds:.2f}s "
          f"writing users ({in_sync_rate:,.0f} users/s of writer time) + {stats.dept_seconds:.2f}s departments; "
          f"RSS {rss_before:.0f} MB before the sync")
    c, w = capacity, capacity["writers"]
    print(f"  apply capacity: {c['users']:,} users ({c['listings']:,} listings) in chunks of {c['chunk']:,}: "
          f"new corp, {w} writers {c['seconds']:.2f}s = {c['rate']:,.0f} users/s; new corp, 1 writer "
          f"{c['seconds_1']:.2f}s = {c['rate_1']:,.0f} users/s; unchanged, {w} writers {c[f'seconds_{w}']:.2f}s = "
          f"{c['rate_update']:,.0f} users/s")
    server = "n/a (remote server)" if c["cpu_server_us"] is None else f"{c['cpu_server_us']:.0f} µs"
    print(f"  CPU per user of the new-corp {w}-writer pass: {c['cpu_client_us']:.0f} µs here + {server} in "
          f"PostgreSQL backends; load average {' / '.join(f'{x:.1f}' for x in os.getloadavg())} (1/5/15 min)")
    print()
    print(f"  {'figure':<36} {'measured':>22} {'ratio/value':>12}  target   ok")
    for name, shown, value, target, op in rows:
        ok = value <= target if op == "≤" else value >= target if op == "≥" else value == target
        ratio = f"{value:.3f}" if isinstance(value, float) and value < 100 else f"{value:,.0f}"
        print(f"  {name:<36} {shown:>22} {ratio:>12}  {op} {target:<6} {'yes' if ok else 'NO'}")


if __name__ == "__main__":
    sys.exit(main())
