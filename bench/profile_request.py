"""Where does one customer-list request spend its time? In-process (Flask test client), no HTTP server.

    .venv/bin/python bench/profile_request.py [--kind b_subtree_tags] [--n 300] [--profile]

Runs against the already seeded bench database (CRM_BENCH_DATABASE_URL, default crm_bench). Prints the
mean wall time per request, the SQL statements one request issues (with their server round-trip time),
and with --profile the top functions by cumulative time.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

import seed  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kind", default="b_subtree_tags", choices=["a_own", "b_subtree_tags", "c_name", "bare_me"])
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()

    import sqlalchemy as sa
    from cryptography.fernet import Fernet

    from app import create_app
    from config import load_settings
    from models.db import Database

    url = seed._sa_url(os.environ.get("CRM_BENCH_DATABASE_URL", seed.DEFAULT_URL))
    org = seed.load_org(url)
    settings = load_settings({"CRM_DATABASE_URL": url, "CRM_SANDBOX": "true", "CRM_SECRET_KEY": "x" * 40,
                              "CRM_MASTER_KEY": Fernet.generate_key().decode(),
                              "CRM_INSTANCE_PATH": str(BENCH / "results" / "instance")})
    db = Database(url)
    app = create_app(settings, database=db)
    client = app.test_client()
    mgr, dept = org.region_leaders[0]
    who = {"a_own": org.salespeople[0], "b_subtree_tags": mgr, "c_name": org.admins[1], "bare_me": mgr}[args.kind]
    r = client.post("/api/v1/auth/dev", json={"corpId": seed.CORP_PLATFORM_ID, "userid": org.userid_of[who]})
    assert r.status_code == 200, r.get_json()
    a, b = org.tag_ids["意向"][0], org.tag_ids["行业"][0]
    path = {"a_own": "/api/v1/customers", "b_subtree_tags": f"/api/v1/customers?department_id={dept}&tags_all={a},{b}",
            "c_name": "/api/v1/customers?q=华泰达", "bare_me": "/api/v1/me"}[args.kind]

    statements: list[list] = []

    def before(conn, cursor, statement, parameters, context, executemany):
        conn.info["t"] = time.perf_counter()

    def after(conn, cursor, statement, parameters, context, executemany):
        statements.append([statement.split("\n")[0][:110], (time.perf_counter() - conn.info["t"]) * 1000])

    for _ in range(20):
        assert client.get(path).status_code == 200
    sa.event.listen(db.engine, "before_cursor_execute", before)
    sa.event.listen(db.engine, "after_cursor_execute", after)
    statements.clear()
    client.get(path)
    one = list(statements)
    sa.event.remove(db.engine, "before_cursor_execute", before)
    sa.event.remove(db.engine, "after_cursor_execute", after)

    prof = cProfile.Profile() if args.profile else None
    t = time.perf_counter()
    if prof:
        prof.enable()
    for _ in range(args.n):
        client.get(path)
    if prof:
        prof.disable()
    per = (time.perf_counter() - t) * 1000 / args.n
    print(f"{args.kind}: {path}\n  {per:.2f} ms per request in-process (mean of {args.n}), "
          f"{len(one)} SQL statements:")
    for stmt, ms in one:
        print(f"    {ms:7.2f} ms  {stmt}")
    print(f"  SQL round trips total {sum(ms for _s, ms in one):.2f} ms; the rest is Python (Flask, SQLAlchemy, "
          "serialisation)")
    if prof:
        print(breakdown(pstats.Stats(prof), args.n))
        pstats.Stats(prof).sort_stats("cumulative").print_stats(35)


# Where a request's own time (tottime) goes, by the package of the function that spent it. The driver's time
# is mostly waiting for PostgreSQL; "app" is our views and services including building the dicts.
GROUPS = (("database driver (psycopg, incl. waiting for PostgreSQL)", ("/psycopg/", "/psycopg_binary/")),
          ("SQLAlchemy (statement building, compiling, result rows)", ("/sqlalchemy/",)),
          ("JSON encoding", ("/json/",)),
          ("Flask / Werkzeug / itsdangerous (routing, session cookie, response)",
           ("/flask/", "/werkzeug/", "/itsdangerous/")),
          ("pydantic", ("/pydantic",)),
          ("app (views, services, serialisation to dicts)", ("/app/",)))


def breakdown(stats: pstats.Stats, n: int) -> str:
    totals: dict[str, float] = {}
    for (filename, _line, _func), (_cc, _nc, tottime, _ct, _callers) in stats.stats.items():
        group = next((g for g, keys in GROUPS if any(k in filename for k in keys)), "other (stdlib, builtins)")
        totals[group] = totals.get(group, 0.0) + tottime
    whole = sum(totals.values())
    lines = [f"  per-request time by package (cProfile tottime, with profiler overhead; {whole * 1000 / n:.2f} ms):"]
    for group, secs in sorted(totals.items(), key=lambda kv: -kv[1]):
        lines.append(f"    {secs * 1000 / n:7.2f} ms  {100 * secs / whole:5.1f}%  {group}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
