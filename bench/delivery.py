"""Delivery benchmark: reminders at scale through the real outbox, workers and sandbox; the due scan at 10k vs
1M follow-ups; and a simulated month of a 200-person team against the standard edition's 5,000-call quota.

    .venv/bin/python bench/delivery.py                  # everything (the burst part takes ~5 min: 5,000 sends at 18/s)
    .venv/bin/python bench/delivery.py --part burst --users 1000 --items 20000   # a quicker burst
    .venv/bin/python bench/delivery.py --part burst --hogs 2   # the burst while two processes spin the CPUs
    .venv/bin/python bench/delivery.py --part burst --cold     # workers started after the enqueue, start-up counted
    .venv/bin/python bench/delivery.py --part scan
    .venv/bin/python bench/delivery.py --part month

See bench/README.md ("Delivery benchmark"). Uses PostgreSQL database `crm_bench_delivery` (dropped and
recreated; override with CRM_BENCH_DELIVERY_URL) and a SQLite file for the month. Writes bench/results/.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))

import sqlalchemy as sa  # noqa: E402
from cryptography.fernet import Fernet  # noqa: E402

from app.services import outbox, reminders  # noqa: E402
from app.services.corps import SecretBox, create_corp  # noqa: E402
from config import Settings  # noqa: E402
from integrations.dingtalk.ratelimit import DEFAULT_PER_SECOND  # noqa: E402
from integrations.sandbox import DingTalkWorld, SandboxServer  # noqa: E402
from models.db import Database  # noqa: E402
from models.migrate import upgrade_engine  # noqa: E402
from models.org import Corp, Role, User  # noqa: E402
from models.outbox import Delivery, OutboxItem, OutboxState, Priority  # noqa: E402

RESULTS = BENCH / "results"
DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/crm_bench_delivery"
SHANGHAI = ZoneInfo("Asia/Shanghai")
DOCUMENTED_QPS = 20  # DingTalk standard edition, per app per API (fact sheet §2.3)
SEND_PATH = "/topapi/message/corpconversation/asyncsend_v2"


def log(msg: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {msg}", flush=True)


def fresh_postgres(url: str) -> Database:
    base, name = url.rsplit("/", 1)
    admin = sa.create_engine(f"{base}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    db = Database(url)
    upgrade_engine(db.engine)
    return db


def bind(db: Database, settings: Settings, sandbox_corp, users: int, extra: dict | None = None) -> tuple[int, list]:
    with db.session() as s:
        corp = create_corp(s, SecretBox(settings.master_key), platform="dingtalk",
                           platform_corp_id=sandbox_corp.corp_id, name=sandbox_corp.name,
                           agent_id=str(sandbox_corp.agent_id), app_key=sandbox_corp.app_key,
                           secrets={"app_secret": sandbox_corp.app_secret})
        # The burst is about throughput at any hour: no quiet window, and a quota the burst cannot exhaust.
        corp.settings = {**corp.settings, **(extra or {})}
        rows = [{"corp_id": corp.id, "platform_userid": u.userid, "unionid": u.unionid, "name": u.name,
                 "role": Role.ADMIN if i == 0 else Role.SALESPERSON, "active": True,
                 "created_at": datetime.now(UTC), "updated_at": datetime.now(UTC)}
                for i, u in enumerate(list(sandbox_corp.users.values())[:users])]
        s.execute(sa.insert(User), rows)
        ids = list(s.execute(sa.select(User.id).where(User.corp_id == corp.id).order_by(User.id)).scalars())
        return corp.id, ids


def copy_customers(db: Database, corp_id: int, owners: list[int], count: int, due_at) -> None:
    """COPY `count` customers whose next contact time is `due_at(i)`."""
    raw = db.engine.raw_connection()
    try:
        cur = raw.cursor()
        now = datetime.now(UTC).isoformat()
        with cur.copy("COPY customers (corp_id, name, name_norm, status, owner_id, in_pool, custom, next_contact_at,"
                      " created_at, updated_at) FROM STDIN") as copy:
            for i in range(count):
                name = f"客户{i:07d}"
                copy.write_row((corp_id, name, name, "lead", owners[i % len(owners)], False, "{}",
                                due_at(i).isoformat(), now, now))
        raw.commit()
        cur.execute("ANALYZE customers")
        raw.commit()
    finally:
        raw.close()


def sandbox_rejections(world: DingTalkWorld, path: str | None = None) -> int:
    per_second = Counter((a, p, int(t)) for t, a, p in world.calls if path is None or p == path)
    return sum(max(0, n - world.qps_limit) for n in per_second.values())


# ----------------------------------------------------------------------------- part 1: the burst


def _hog(stop_at: float) -> None:
    """A CPU hog (the "second load"): spins until `stop_at`."""
    while time.time() < stop_at:
        sum(range(10_000))


def _ready(logs: list, timeout: float = 120) -> None:
    """Wait until every worker printed its start line (imports done, database reachable)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = 0
        for out in logs:
            out.seek(0)
            seen += "thread(s)" in out.read()
        if seen == len(logs):
            return
        time.sleep(0.1)
    raise SystemExit("workers did not start")


def part_burst(args, url: str) -> dict:
    """100,000 follow-ups due in one minute for 5,000 people. By default the workers are already running
    (as `crm worker` is in production) when the minute's follow-ups are enqueued, and the wall time runs
    from the enqueue's commit until no item is pending or sending; `--cold` instead starts the workers
    after the enqueue with `--exit-when-idle` and counts their start-up too."""
    world = DingTalkWorld(seed=99, users=args.users, latency=0.05, qps_limit=DOCUMENTED_QPS)
    db = fresh_postgres(url)
    with SandboxServer(world) as server:
        settings = Settings(database_url=url, secret_key="bench", master_key=Fernet.generate_key().decode(),
                            instance_path=Path(tempfile.mkdtemp()), dingtalk_oapi_base=server.url,
                            dingtalk_api_base=server.url, public_url="https://crm.example.com")
        corp_id, owners = bind(db, settings, next(iter(world.corps.values())), args.users,
                               {"quiet_hours": [], "monthly_api_quota": 10_000_000})
        minute = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=1)  # the tick just past
        log(f"seeding {args.items:,} customers due in the minute {minute:%H:%M} UTC for {args.users:,} users")
        copy_customers(db, corp_id, owners, args.items, lambda i: minute + timedelta(seconds=i % 60))
        env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_")}
        env.update(CRM_DATABASE_URL=url, CRM_SECRET_KEY="bench", CRM_MASTER_KEY=settings.master_key,
                   CRM_INSTANCE_PATH=str(settings.instance_path), CRM_DINGTALK_OAPI_BASE=server.url,
                   CRM_DINGTALK_API_BASE=server.url, CRM_PUBLIC_URL=settings.public_url)
        logs = [tempfile.TemporaryFile("w+") for _ in range(args.workers)]  # a pipe nobody reads could block

        def spawn(*extra: str) -> list[subprocess.Popen]:
            return [subprocess.Popen([sys.executable, "-m", "app.cli", "worker", "--threads", str(args.threads),
                                      "--idle", "0.5", *extra], env=env, stdout=subprocess.DEVNULL, stderr=out,
                                     text=True) for out in logs]

        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu_before = before.ru_utime + before.ru_stime
        workers: list[subprocess.Popen] = []
        start_s = None
        if not args.cold:
            t0 = time.perf_counter()
            workers = spawn()
            _ready(logs)
            time.sleep(3)  # their first (empty) claims: now they idle like long-running workers
            start_s = time.perf_counter() - t0
            log(f"{args.workers} workers × {args.threads} threads running ({start_s:.1f}s to start)")
        now = minute + timedelta(seconds=59, milliseconds=999)
        t0 = time.perf_counter()
        with db.session() as s:
            corp = s.get(Corp, corp_id)
            created = reminders.enqueue_due(s, corp, minute - timedelta(seconds=1), now)
        enqueue_s = time.perf_counter() - t0
        log(f"due scan + enqueue: {created:,} outbox rows in {enqueue_s:.1f}s")
        counts_before = dict(world.call_counts)
        throttled_before = dict(world.throttled)
        t0, start_clock = time.perf_counter(), time.time()
        hogs = [multiprocessing.Process(target=_hog, args=(start_clock + 3600,), daemon=True)
                for _ in range(args.hogs)]
        for h in hogs:
            h.start()
        try:
            if args.cold:
                workers = spawn("--exit-when-idle")
                for w in workers:
                    w.wait(timeout=3600)
            else:
                open_states = (OutboxState.PENDING, OutboxState.SENDING)
                while True:
                    with db.session() as s:  # one index probe: a count here would load the database
                        left = s.execute(sa.select(OutboxItem.id).where(OutboxItem.state.in_(open_states))
                                         .limit(1)).first()
                    if left is None or time.perf_counter() - t0 > 3600:
                        break
                    time.sleep(0.2)
        finally:
            wall = time.perf_counter() - t0
            for h in hogs:
                h.terminate()
            for w in workers:
                if w.poll() is None:
                    w.send_signal(signal.SIGTERM)
            for w in workers:
                w.wait(timeout=120)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        worker_cpu = children.ru_utime + children.ru_stime - cpu_before
        # The sandbox's own counters: every call that arrived, and every call it answered 90018.
        sends = world.call_counts.get(SEND_PATH, 0) - counts_before.get(SEND_PATH, 0)
        throttled = sum(world.throttled.values()) - sum(throttled_before.values())
        arrivals = sorted(t for t, _app, path in world.calls if path == SEND_PATH and t >= start_clock)
        slot_late = sorted((t * DEFAULT_PER_SECOND % 1) / DEFAULT_PER_SECOND * 1000 for t in arrivals)
        errors = []
        for out in logs:
            out.seek(0)
            errors += [line for line in out.read().splitlines() if "Traceback" in line or "ERROR" in line]
            out.close()
        with db.session() as s:
            states = dict(s.execute(sa.select(OutboxItem.state, sa.func.count()).group_by(OutboxItem.state)).all())
            recipients = s.execute(sa.select(sa.func.count(sa.distinct(OutboxItem.recipient_user_id)))).scalar_one()
        dropped = sum(len(m.dropped) for m in world.messages.values())
        limiter = DEFAULT_PER_SECOND  # what every worker's shared DingTalk limiter allows per API
        per_second = Counter(int(t) for t in arrivals)
        result = {
            "items": args.items, "recipients": recipients, "workers": args.workers, "threads": args.threads,
            "mode": "cold: workers started after the enqueue" if args.cold else "workers already running",
            "worker_start_seconds": round(start_s, 1) if start_s is not None else None,
            "cpu_hogs": args.hogs, "enqueue_seconds": round(enqueue_s, 2), "states": states,
            "platform_send_calls": sends, "calls_per_recipient": round(sends / recipients, 3),
            "wall_seconds": round(wall, 1),
            # Where the wall time went: before the first send, the sends, after the last one.
            "first_send_after_s": round(arrivals[0] - start_clock, 2) if arrivals else None,
            "send_span_s": round(arrivals[-1] - arrivals[0], 1) if arrivals else None,
            "after_last_send_s": round(start_clock + wall - arrivals[-1], 2) if arrivals else None,
            "busiest_second_at_sandbox": max(per_second.values(), default=0),
            "worker_cpu_ms_per_send": round(worker_cpu / max(1, sends) * 1000, 1),
            # How long after its slot began each call reached the sandbox (modulo the slot width).
            "arrival_after_slot_ms_p50_p99_max": [round(slot_late[len(slot_late) // 2], 1),
                                                  round(slot_late[int(len(slot_late) * 0.99)], 1),
                                                  round(slot_late[-1], 1)] if slot_late else None,
            "bound_at_documented_20qps": round(recipients / DOCUMENTED_QPS, 1),
            "ratio_vs_documented_20qps": round(wall / (recipients / DOCUMENTED_QPS), 2),
            "our_limiter_qps": limiter,
            "bound_at_our_limiter": round(recipients / limiter, 1),
            "ratio_vs_our_limiter": round(wall / (recipients / limiter), 2),
            "rejections_90018_at_sandbox": throttled,
            "over_limit_seconds_from_arrivals": sandbox_rejections(world, SEND_PATH),
            "dropped_at_sandbox": dropped,
            "worker_errors": errors[:5],
        }
    db.dispose()
    return result


# ----------------------------------------------------------------------------- part 2: the due scan


def _scan_time(db: Database, corp_id: int, spread_days: int, samples: int, rounds: int = 3) -> float:
    """Median of `samples` one-minute scans; the best of `rounds` rounds, as the machine is shared."""
    rng = random.Random(7)
    start = datetime(2026, 6, 1, tzinfo=UTC)
    medians = []
    with db.session() as s:
        for _ in range(rounds):
            times = []
            for _ in range(samples):
                since = start + timedelta(minutes=rng.randrange(spread_days * 24 * 60))
                t0 = time.perf_counter()
                reminders.due_customers(s, corp_id, since, since + timedelta(minutes=1))
                times.append(time.perf_counter() - t0)
            medians.append(statistics.median(times))
    return min(medians)


def part_scan(args, url: str) -> dict:
    """The due scan reads (since, now] through the (corp_id, next_contact_at) index: its cost should follow
    the rows due in the window, not the table size."""
    db = fresh_postgres(url)
    settings = Settings(database_url=url, secret_key="bench", master_key=Fernet.generate_key().decode(),
                        instance_path=Path(tempfile.mkdtemp()))
    world = DingTalkWorld(seed=5, users=200)
    corp_id, owners = bind(db, settings, next(iter(world.corps.values())), 200)
    spread = 365
    start = datetime(2026, 6, 1, tzinfo=UTC)
    rng = random.Random(3)

    def due(_i):
        return start + timedelta(seconds=rng.randrange(spread * 86400))

    out = {}
    have = 0
    for size in (10_000, args.scan_large):
        log(f"due scan: seeding to {size:,} customers with next contact times spread over {spread} days")
        copy_customers(db, corp_id, owners, size - have, due)
        have = size
        out[size] = _scan_time(db, corp_id, spread, args.scan_samples)
        log(f"  median scan of a one-minute window at {size:,}: {out[size] * 1000:.2f} ms")
    with db.engine.connect() as conn:
        plan = "\n".join(r[0] for r in conn.execute(sa.text(
            "EXPLAIN SELECT id, name, owner_id, next_contact_at FROM customers WHERE corp_id = :c "
            "AND next_contact_at > :a AND next_contact_at <= :b AND deleted_at IS NULL AND owner_id IS NOT NULL "
            "AND NOT in_pool"), {"c": corp_id, "a": start, "b": start + timedelta(minutes=1)}))
    db.dispose()
    small, large = out[10_000], out[args.scan_large]
    return {"median_ms_10k": round(small * 1000, 3), f"median_ms_{args.scan_large}": round(large * 1000, 3),
            "ratio": round(large / small, 2), "plan": plan}


# ----------------------------------------------------------------------------- part 3: a month of a 200-person team


def part_month(args) -> dict:
    """December 2026 (23 working days) of a 180-salesperson + 20-manager team, on SQLite, against the sandbox
    with its monthly quota on, with the clock driven by time-machine: every 5 minutes the worker steps, every
    10 minutes the send results are polled, as the scheduler would."""
    import time_machine

    from app.services import delivery

    path = Path(tempfile.mkdtemp()) / "month.sqlite3"
    url = f"sqlite:///{path}"
    db = Database(url)
    upgrade_engine(db.engine)
    world = DingTalkWorld(seed=8, users=200, monthly_quota=5000)
    rng = random.Random(11)
    with SandboxServer(world) as server:
        settings = Settings(database_url=url, secret_key="bench", master_key=Fernet.generate_key().decode(),
                            instance_path=path.parent, dingtalk_oapi_base=server.url, dingtalk_api_base=server.url,
                            public_url="https://crm.example.com")
        corp_id, people = bind(db, settings, next(iter(world.corps.values())), 200)
        managers, sales = people[:20], people[20:]
        deliverer = delivery.Deliverer(db, settings, owner="month")

        def factory(corp):
            from integrations.registry import client_for

            return client_for(corp, settings=settings, database=db)

        start = datetime(2026, 12, 1, tzinfo=SHANGHAI)
        working_days = 0
        item_total = Counter()
        with time_machine.travel(start, tick=True) as traveller:
            for day in range(31):
                date = start + timedelta(days=day)
                workday = date.weekday() < 5
                working_days += workday
                with db.session() as s:
                    rows = []
                    if workday:
                        for person in sales:  # follow-ups agreed for today, 09:00–18:00
                            for k in range(args.followups_per_day):
                                due = date + timedelta(hours=9, minutes=rng.randrange(9 * 60))
                                rows.append({"corp_id": corp_id, "kind": "follow_up_due", "recipient_user_id": person,
                                             "subject_type": "customer", "subject_id": person * 1000 + day * 10 + k,
                                             "due_at": due.astimezone(UTC), "priority": Priority.REMINDER,
                                             "payload": {"line": f"跟进客户 {k}"}})
                        for person in sales + managers:  # the agenda at 09:00
                            rows.append({"corp_id": corp_id, "kind": "agenda", "recipient_user_id": person,
                                         "subject_type": "agenda",
                                         "due_at": (date + timedelta(hours=9)).astimezone(UTC),
                                         "priority": Priority.AGENDA, "payload": {"line": "今日日程"}})
                        for n in range(args.approvals_per_day):  # approvals to managers during the day
                            due = date + timedelta(hours=9, minutes=rng.randrange(9 * 60))
                            rows.append({"corp_id": corp_id, "kind": "approval", "subject_type": "approval",
                                         "recipient_user_id": rng.choice(managers), "subject_id": day * 1000 + n,
                                         "due_at": due.astimezone(UTC), "priority": Priority.APPROVAL,
                                         "payload": {"line": f"折扣审批 {n}"}})
                    for n in range(args.sweeps_per_day):  # stale / pool warnings, every day
                        rows.append({"corp_id": corp_id, "kind": "stale_customer", "subject_type": "customer",
                                     "recipient_user_id": rng.choice(sales), "subject_id": 900_000 + day * 100 + n,
                                     "due_at": (date + timedelta(hours=10)).astimezone(UTC),
                                     "priority": Priority.SWEEP, "payload": {"line": "客户久未跟进"}})
                    item_total.update(r["kind"] for r in rows)
                    outbox.enqueue_many(s, rows)
                for step in range(24 * 12):
                    now = date + timedelta(minutes=5 * step)
                    traveller.move_to(now)
                    while deliverer.step(datetime.now(UTC)).claimed:
                        pass
                    if step % 2 == 0:
                        delivery.poll_results(db, datetime.now(UTC), factory)
                log(f"  {date:%m-%d}: {sum(world.quota_used.values())} counted calls so far")
            traveller.move_to(start + timedelta(days=31, hours=1))
            with db.session() as s:
                corp = s.get(Corp, corp_id)
                report = delivery.usage_report(s, corp, datetime(2026, 12, 31, 23, tzinfo=SHANGHAI))
                states = dict(s.execute(sa.select(OutboxItem.state, sa.func.count()).group_by(OutboxItem.state)).all())
                late = [((i.sent_at - i.due_at).total_seconds() / 60) for i in s.execute(
                    sa.select(OutboxItem).where(OutboxItem.kind == "follow_up_due",
                                                OutboxItem.state == OutboxState.SENT)).scalars()]
                messages = s.execute(sa.select(sa.func.count()).select_from(Delivery)).scalar_one()
    counted = sum(world.quota_used.values())
    late.sort()
    return {
        "people": 200, "salespeople": len(sales), "working_days": working_days, "items": dict(item_total),
        "messages": messages, "counted_calls_at_sandbox": counted, "quota": 5000,
        "fits_quota": counted <= 5000 and states.get(OutboxState.FAILED, 0) == 0,
        "calls_per_salesperson_per_working_day": round(counted / len(sales) / working_days, 3),
        "calls_per_person_per_working_day": round(counted / 200 / working_days, 3),
        "states": states, "deferred": report["deferred"], "items_merged": report["items_merged"],
        "reminder_delay_minutes_p50": round(late[len(late) // 2], 1) if late else None,
        "reminder_delay_minutes_p95": round(late[int(len(late) * 0.95)], 1) if late else None,
        "dropped_at_sandbox": sum(len(m.dropped) for m in world.messages.values()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["all", "burst", "scan", "month"], default="all")
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cold", action="store_true", help="burst: start the workers after the enqueue")
    parser.add_argument("--hogs", type=int, default=0, help="burst: CPU-spinning processes during the sends")
    parser.add_argument("--scan-large", type=int, default=1_000_000)
    parser.add_argument("--scan-samples", type=int, default=200)
    parser.add_argument("--followups-per-day", type=int, default=4)
    parser.add_argument("--approvals-per-day", type=int, default=30)
    parser.add_argument("--sweeps-per-day", type=int, default=10)
    args = parser.parse_args()
    url = os.environ.get("CRM_BENCH_DELIVERY_URL", DEFAULT_URL)
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    results: dict = {}
    if args.part in ("all", "scan"):
        results["scan"] = part_scan(args, url)
        log(f"scan: {json.dumps({k: v for k, v in results['scan'].items() if k != 'plan'})}")
    if args.part in ("all", "burst"):
        results["burst"] = part_burst(args, url)
        log(f"burst: {json.dumps(results['burst'], default=str)}")
    if args.part in ("all", "month"):
        results["month"] = part_month(args)
        log(f"month: {json.dumps(results['month'], default=str)}")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"delivery_{datetime.now():%Y%m%d_%H%M%S}.json"
    out.write_text(json.dumps(results, indent=2, ensure_ascii=False, default=str))
    log(f"written {out}")


if __name__ == "__main__":
    main()
