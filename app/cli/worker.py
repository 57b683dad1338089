"""`crm worker`: deliver the outbox (any number, on any hosts, with PostgreSQL)."""

from __future__ import annotations

import signal
import threading

import click

from app.cli import load_settings, main, one_line_errors


@main.command("worker")
@click.option("--threads", default=2, show_default=True, type=click.IntRange(1, 64),
              help="delivery threads in this process (SQLite: always 1)")
@click.option("--lease", "lease_seconds", default=120.0, show_default=True, type=click.FloatRange(1, 3600),
              help="seconds a claimed batch stays ours before other workers may take it")
@click.option("--batch", default=20, show_default=True, type=click.IntRange(1, 500), help="recipients per claim")
@click.option("--idle", "idle_seconds", default=1.0, show_default=True, type=click.FloatRange(0.05, 60))
@click.option("--exit-when-idle", is_flag=True, help="stop once nothing is due (batch runs, tests)")
@one_line_errors
def worker(threads: int, lease_seconds: float, batch: int, idle_seconds: float, exit_when_idle: bool) -> None:
    """Claim due outbox rows and send them as per-person digests within the platform's limits."""
    from models.db import Database
    from scheduler.runner import owner_id
    from scheduler.worker import run_worker

    settings = load_settings()
    database = Database(settings.database_url)
    database.ping()
    if database.dialect == "sqlite":
        threads = 1  # SQLite has no row locks to share work safely between several workers
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    base = owner_id()
    click.echo(f"worker {base}: {threads} thread(s), lease {lease_seconds:g}s", err=True)
    results = []
    pool = [threading.Thread(target=lambda i=i: results.append(run_worker(
        settings, database, stop=stop, owner=f"{base}:{i}", lease_seconds=lease_seconds, batch=batch,
        idle_seconds=idle_seconds, exit_when_idle=exit_when_idle))) for i in range(threads)]
    for t in pool:
        t.start()
    while any(t.is_alive() for t in pool):
        for t in pool:
            t.join(0.5)
    sent = sum(r.sent_messages for r in results)
    items = sum(r.sent_items for r in results)
    click.echo(f"已发送 {sent} 条消息（{items} 项）/ sent {sent} messages carrying {items} items")
