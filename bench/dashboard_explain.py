"""The dashboard's SQL on PostgreSQL at a 100k-customer corp: does every statement use an index?

Seeds a corp with `bench/seed.py` (org of 2,000 users, customers and follow-ups by COPY) into its own database,
adds opportunities spread over the stages, then for an admin, a region leader, a city leader and a salesperson
captures every statement `app.services.dashboard.dashboard` runs and EXPLAINs (ANALYZE, BUFFERS) each one.
Prints per statement the execution time and any sequential scan on a big table; writes the plans to
bench/results/dashboard_explain_<N>.txt. The issue names no time limit for the dashboard, so nothing here is a
pass/fail ratio: the check is "no Seq Scan on customers, follow_ups or opportunities".

    CRM_BENCH_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/crm_bench_dashboard \\
        .venv/bin/python bench/dashboard_explain.py [--customers 100000] [--followups 300000] [--reuse]
"""

from __future__ import annotations

import argparse
import os
import random
import re
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import psycopg  # noqa: E402
import seed  # noqa: E402

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/crm_bench_dashboard"
BIG = ("customers", "follow_ups", "opportunities")


def add_opportunities(url: str, corp_id: int, per_customer: float) -> int:
    """Roughly `per_customer` opportunities per customer, owned by the customer's owner, over all stages;
    won and lost ones closed within the last 90 days."""
    with psycopg.connect(seed._pg_url(url)) as conn:
        n = conn.execute(
            """
            INSERT INTO opportunities (corp_id, customer_id, name, amount, stage_id, owner_id, closed_at, custom,
                                       created_at, updated_at)
            SELECT c.corp_id, c.id, '商机' || c.id, round((random() * 500000)::numeric, 2), s.id, c.owner_id,
                   CASE WHEN s.is_won OR s.is_lost THEN now() - random() * interval '90 days' END, '{}',
                   c.created_at, c.created_at
            FROM customers c
            CROSS JOIN LATERAL (SELECT id, is_won, is_lost FROM opportunity_stages
                                WHERE corp_id = c.corp_id ORDER BY random() + c.id * 0 LIMIT 1) s
            WHERE c.corp_id = %s AND c.owner_id IS NOT NULL AND random() < %s
            """, (corp_id, per_customer)).rowcount
        conn.execute("ANALYZE opportunities")
        return n


def actors(url: str, org: seed.Org) -> list[tuple[str, int, str]]:
    with psycopg.connect(seed._pg_url(url)) as conn:
        busiest = conn.execute(
            "SELECT owner_id FROM customers WHERE corp_id = %s AND owner_id = ANY(%s) GROUP BY owner_id "
            "ORDER BY count(*) DESC LIMIT 1", (org.corp_id, org.salespeople)).fetchone()[0]
    return [("admin (whole corp)", org.admins[0], "admin"),
            ("region leader", org.region_leaders[0][0], "manager"),
            ("city leader", org.city_leaders[0][0], "manager"),
            ("salesperson with the most customers", busiest, "salesperson")]


def explain(url: str, org: seed.Org, out: Path) -> list[dict]:
    import sqlalchemy as sa

    from app.services import dashboard
    from app.services.actor import Actor
    from models.db import Database

    db = Database(seed._sa_url(url))  # the app's engine settings
    captured: list[tuple[str, object]] = []
    sa.event.listen(db.engine, "before_cursor_execute",
                    lambda conn, cur, stmt, params, ctx, many: captured.append((stmt, params)))
    report = []
    with open(out, "w") as fh, db.session() as s:
        for label, user_id, role in actors(url, org):
            actor = Actor(corp_id=org.corp_id, user_id=user_id, role=role)
            dashboard.dashboard(s, actor)  # warm the cache
            captured.clear()
            t = time.perf_counter()
            body = dashboard.dashboard(s, actor)
            call_ms = (time.perf_counter() - t) * 1000
            statements = [(st, p) for st, p in captured if st.lstrip().upper().startswith("SELECT")]
            fh.write(f"##### {label}: user {user_id}, scope {body['scope']}, {len(statements)} statements, "
                     f"call {call_ms:.1f} ms, funnel total {body['funnel']['total']}, stale {body['stale']['count']}\n")
            scans, total = [], 0.0
            conn = s.connection()
            for st, params in statements:
                plan = "\n".join(r[0] for r in conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + st, params).all())
                ms = float(plan.rsplit("Execution Time: ", 1)[1].split(" ms")[0])
                total += ms
                seq = sorted(set(re.findall(r"Seq Scan on (\w+)", plan)) & set(BIG))
                scans += seq
                fh.write(f"-- {ms:.2f} ms{'  SEQ SCAN ' + ','.join(seq) if seq else ''}\n{st}\n-- {params}\n{plan}\n\n")
            report.append({"who": label, "statements": len(statements), "sql_ms": total, "call_ms": call_ms,
                           "seq_scans_on_big_tables": scans})
    db.dispose()
    return report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--customers", type=int, default=100_000)
    ap.add_argument("--followups", type=int, default=300_000)
    ap.add_argument("--opportunities-per-customer", type=float, default=0.3)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--reuse", action="store_true", help="keep an already seeded database")
    args = ap.parse_args()
    url = os.environ.get("CRM_BENCH_DATABASE_URL", DEFAULT_URL)
    if args.reuse:
        org = seed.load_org(url)
    else:
        rng = random.Random(args.seed)
        seed.recreate_database(url)
        seed.migrate(url)
        org = seed.build_org(url, rng)
        seed.bulk_load(url, org, seed.Clock(datetime.now(UTC)), rng, seed.Cursor(), args.customers, args.followups)
        opps = add_opportunities(url, org.corp_id, args.opportunities_per_customer)
        print(f"seeded {args.customers:,} customers, {args.followups:,} follow-ups, {opps:,} opportunities")
    out = REPO / "bench" / "results" / f"dashboard_explain_{args.customers // 1000}k.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    report = explain(url, org, out)
    for r in report:
        print(f"{r['who']:<38} {r['statements']} statements  SQL {r['sql_ms']:8.1f} ms  call {r['call_ms']:8.1f} ms  "
              f"seq scans on big tables: {', '.join(r['seq_scans_on_big_tables']) or 'none'}")
    print(f"plans: {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
