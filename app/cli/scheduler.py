"""`crm scheduler`: run the job table; start any number, exactly one leads (PostgreSQL advisory lock)."""

from __future__ import annotations

import signal
import threading

import click

from app.cli import load_settings, main, one_line_errors


@main.command("scheduler")
@click.option("--speed", default=1.0, show_default=True, type=click.FloatRange(1, 3600), hidden=True,
              help="divide every job period by this (testing aid)")
@click.option("--poll", default=5.0, show_default=True, type=click.FloatRange(0.1, 25),
              help="seconds between a standby's attempts to take the lead")
@one_line_errors
def scheduler(speed: float, poll: float) -> None:
    """Lead the scheduled jobs, or stand by until the leader is gone."""
    from models.db import Database
    from scheduler.jobs import JobContext
    from scheduler.runner import lead_or_stand_by, owner_id

    settings = load_settings()
    database = Database(settings.database_url)
    database.ping()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    ctx = JobContext(database=database, settings=settings, owner=owner_id())
    mode = "leader election on PostgreSQL" if database.dialect == "postgresql" else "single scheduler (SQLite)"
    click.echo(f"scheduler {ctx.owner}: {mode}", err=True)
    lead_or_stand_by(ctx, stop, speed=speed, poll=poll)
