"""`crm org …`: org structure sync."""

from __future__ import annotations

import click

from app.cli import _fail, load_settings, main, one_line_errors


@main.group()
def org() -> None:
    """Org structure sync."""


@org.command("sync")
@click.option("--corp", "corp_ref", default=None, help="CorpId; optional when one corp is bound")
@click.option("--full", is_flag=True, help="full sync (the only kind a command can start; events are incremental)")
@one_line_errors
def org_sync(corp_ref: str | None, full: bool) -> None:
    """Walk the platform's departments and users into the database (resumes an interrupted run)."""
    from app.services import org_sync as sync
    from app.services.corps import find_corp
    from integrations.registry import client_for
    from models.db import Database

    if not full:
        _fail("请加 --full：增量同步由平台事件驱动 / pass --full: incremental sync is driven by platform events")
    settings = load_settings()
    database = Database(settings.database_url)
    with database.session() as session:
        bound = find_corp(session, corp_ref)
    try:
        run = sync.full_sync(database, bound.id, client_for(bound, settings=settings, database=database))
    except sync.SyncAlreadyRunning as exc:
        _fail(f"已有同步在进行 / a sync is already running: {exc}")
    except sync.SyncFailed as exc:
        _fail(f"同步失败，可重新运行以继续 / sync failed, run again to resume: {exc}")
    click.echo(f"同步完成 / synced: +{run.added} ~{run.updated} -{run.deactivated} users/depts, "
               f"{run.removed} departments removed, {run.calls_made} API calls")
