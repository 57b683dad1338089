"""Address-book events: time from the callback answering DingTalk to the event being applied.

The issue's limit: an event is applied ≤ 1 s after the callback returned. The sandbox fires signed,
encrypted events (join, change, leave) at the app over real HTTP; the app stores each one, answers
`success`, and its applier thread re-fetches and writes. `applied_at` (set by the applier) minus the
moment the sender had the reply is the latency. Also printed: the callback's own answer time against
DingTalk's 2.5 s budget.

    .venv/bin/python bench/dingtalk_events.py [--events 150] [--burst 1] [--gap 0.1] [--latency 0.05]

Events go one at a time every `--gap` seconds (0.1 by default: ~7 `user/get` a second, under the limiter);
`--burst N` sends N events at once every `--gap` seconds (1.0 by default). Joins and changes each cost one
`user/get`, and the shared limiter admits a fixed number of those a second (`DEFAULT_PER_SECOND`), so events
arriving faster than that on average queue behind the limiter whatever the applier does. `--gap 0` sends
back to back to show that ceiling; the offered rate is printed next to it. Everything (sandbox, app,
sender) runs in this one process: the CPU it used per event and the load average are printed, since on a
busy host the lag is mostly waiting for a core.

SQLite in a temp directory by default; `CRM_BENCH_DATABASE_URL=postgresql://…` uses that database
(its schema is migrated; the run adds one sandbox corp and leaves it).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sqlalchemy as sa
from cryptography.fernet import Fernet
from werkzeug.serving import WSGIRequestHandler, make_server

from app import create_app
from app.callbacks.dingtalk import event_applier
from app.services.corps import SecretBox
from app.services.org_sync import full_sync
from app.services.platform import platform_client
from app.services.sandbox_corp import bind_sandbox_corp
from config import Settings
from integrations.dingtalk.ratelimit import DEFAULT_PER_SECOND
from integrations.sandbox import DingTalkWorld, SandboxServer
from integrations.sandbox.dingtalk_events import deliver, event_payload
from models.db import Database
from models.inbox import PlatformEvent
from models.migrate import upgrade_engine

LIMIT_APPLY = 1.0
LIMIT_REPLY = 2.5


class _Quiet(WSGIRequestHandler):
    def log_request(self, *args, **kwargs):
        return None


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=150)
    parser.add_argument("--burst", type=int, default=1, help="events delivered at once (1 = one after another)")
    parser.add_argument("--gap", type=float, default=None,
                        help="seconds from the start of one event (or burst) to the next; default 0.1 for single "
                             "events, 1.0 for bursts")
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--latency", type=float, default=0.05, help="sandbox seconds per API call")
    args = parser.parse_args()
    if args.gap is None:
        args.gap = 0.1 if args.burst == 1 else 1.0

    tmp = tempfile.mkdtemp(prefix="crm-bench-events-")
    url = os.environ.get("CRM_BENCH_DATABASE_URL") or f"sqlite:///{tmp}/crm.sqlite3"
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    database = Database(url)
    upgrade_engine(database.engine)
    settings = Settings(database_url=url, secret_key="bench", master_key=Fernet.generate_key().decode(),
                        instance_path=Path(tmp))

    world = DingTalkWorld(seed="bench-events", users=args.users)
    with SandboxServer(world) as sandbox:
        sbx = next(iter(world.corps.values()))
        with database.session() as s:
            s.execute(sa.delete(PlatformEvent))
            corp = bind_sandbox_corp(s, SecretBox(settings.master_key), credentials=sbx.credentials(),
                                     base_url=sandbox.url)
        run = full_sync(database, corp.id, platform_client(corp, settings=settings, database=database))
        print(f"synced {run.added} rows in the sandbox corp ({len(sbx.users)} users, {len(sbx.depts)} departments)")
        world.latency = args.latency

        app = create_app(settings, database=database)
        httpd = make_server("127.0.0.1", 0, app, threaded=True, request_handler=_Quiet)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        callback = f"http://127.0.0.1:{httpd.server_port}/callbacks/dingtalk/{sbx.corp_id}"

        # A realistic mix: changes, joins, and leaves of the people who joined.
        teams = [d.dept_id for d in sbx.depts.values() if not sbx.children(d.dept_id)]
        plan = []
        joined: list[str] = []
        for i in range(args.events):
            if i % 3 == 1:
                user = world.add_user(sbx, name=f"压测{i}", dept_ids=[teams[i % len(teams)]])
                joined.append(user.userid)
                plan.append(event_payload(sbx, "user_add_org", user_ids=[user.userid]))
            elif i % 3 == 2 and joined:
                plan.append(event_payload(sbx, "user_leave_org", user_ids=[joined.pop(0)]))
            else:
                uid = sorted(sbx.users)[i % len(sbx.users)]
                with world.lock:
                    sbx.users[uid].title = f"职位{i}"
                plan.append(event_payload(sbx, "user_modify_org", user_ids=[uid]))

        returned: dict[str, float] = {}
        replies: list[float] = []

        refused: list[dict] = []

        def fire(payload):
            outcome = deliver(sbx, callback, payload)
            if not outcome["accepted"]:  # DingTalk would retry it; counted against the run, not timed
                refused.append(outcome)
                return
            returned[payload["eventId"]] = time.time()
            replies.append(outcome["elapsedMs"] / 1000)

        started, cpu_started = time.monotonic(), time.process_time()
        with ThreadPoolExecutor(max_workers=args.burst) as pool:
            for batch in range(0, len(plan), args.burst):
                burst_started = time.monotonic()
                list(pool.map(fire, plan[batch:batch + args.burst]))
                time.sleep(max(0.0, args.gap - (time.monotonic() - burst_started)))
        fired = time.monotonic() - started
        event_applier(app).wait_idle(120)
        elapsed, cpu = time.monotonic() - started, time.process_time() - cpu_started
        with database.session() as s:
            rows = s.execute(sa.select(PlatformEvent.event_id, PlatformEvent.state, PlatformEvent.applied_at)
                             .where(PlatformEvent.corp_id == corp.id)).all()
        event_applier(app).stop()
        httpd.shutdown()

    applied = {eid: at.timestamp() for eid, state, at in rows if state == "applied"}
    lags = [max(0.0, applied[eid] - returned[eid]) for eid in returned if eid in applied]
    fetching = sum(1 for p in plan if p["EventType"] != "user_leave_org")
    offered = fetching / fired if fired else float("inf")
    print(f"database: {url.split(':', 1)[0]}, events: {len(plan)}, burst: {args.burst}, gap: {args.gap:.2f} s, "
          f"sandbox latency: {args.latency * 1000:.0f} ms/call, wall: {elapsed:.1f} s")
    print(f"offered user/get rate: {offered:.1f}/s over {fired:.1f} s of sending"
          f"  → / limiter {DEFAULT_PER_SECOND}/s = {offered / DEFAULT_PER_SECOND:.2f}"
          f"{'  (above the ceiling: lag grows with the queue)' if offered > DEFAULT_PER_SECOND else ''}")
    print(f"applied: {len(applied)}/{len(plan)} (other states: {len(rows) - len(applied)})")
    if refused:
        print(f"NOT ACCEPTED by the callback: {len(refused)}, e.g. {refused[0].get('error')}")
    if not lags:
        raise SystemExit("no event was applied")
    p50, p95, worst = pct(lags, 50), pct(lags, 95), max(lags)
    print(f"callback returned → applied: p50 {p50 * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, max {worst * 1000:.0f} ms"
          f"  → p95 / limit {LIMIT_APPLY:.0f} s = {p95 / LIMIT_APPLY:.2f}")
    r50, r95 = pct(replies, 50), pct(replies, 95)
    print(f"callback answer time:      p50 {r50 * 1000:.0f} ms, p95 {r95 * 1000:.0f} ms"
          f"  → p95 / DingTalk's {LIMIT_REPLY} s = {r95 / LIMIT_REPLY:.3f}")
    print(f"mean lag {statistics.mean(lags) * 1000:.0f} ms; CPU of this process (app, sandbox and sender "
          f"together) {cpu / len(plan) * 1000:.1f} ms per event; load average {os.getloadavg()[0]:.2f}"
          f" on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
