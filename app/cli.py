"""The `crm` command. Each command is a thin door into a service and fails with one readable line."""

from __future__ import annotations

import functools
import json
import sys

import click
import sqlalchemy as sa

from app.errors import ApiError
from config.settings import ConfigError, load_settings
from integrations.base import PlatformError


def _fail(message: str) -> None:
    click.echo(f"错误 / error: {message}", err=True)
    sys.exit(1)


def one_line_errors(command):
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except ApiError as exc:
            detail = ", ".join(f"{k}: {v}" for k, v in exc.fields.items())
            _fail(exc.message + (f" ({detail})" if detail else ""))
        except ConfigError as exc:
            _fail(str(exc))
        except PlatformError as exc:
            _fail(str(exc))
        except sa.exc.OperationalError as exc:
            _fail(f"数据库不可用 / database unreachable: {type(exc.orig).__name__}")
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # one line, never a traceback; the type helps an operator search logs
            _fail(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """CRM micro-app for DingTalk and WeCom."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535))
@one_line_errors
def serve(host: str, port: int) -> None:
    """Serve the app (embedded mode: the development-grade threaded server)."""
    from app import create_app

    settings = load_settings()
    app = create_app(settings)
    click.echo(f"CRM serving on http://{host}:{port}/  (database: {settings.database_url.split(':', 1)[0]})")
    app.run(host=host, port=port, threaded=True, use_reloader=False)


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
@one_line_errors
def db_upgrade(revision: str) -> None:
    """Apply Alembic migrations."""
    from models import migrate

    settings = load_settings()
    migrate.upgrade(settings.database_url, revision)
    click.echo("数据库已是最新 / database up to date")


@main.command()
def keygen() -> None:
    """Print a new CRM_MASTER_KEY."""
    from cryptography.fernet import Fernet

    click.echo(Fernet.generate_key().decode())


@main.group()
def corp() -> None:
    """Bound corps (tenants)."""


@corp.command("add")
@click.option("--platform", type=click.Choice(["dingtalk", "wecom"]), required=True)
@click.option("--corp-id", required=True)
@click.option("--name", default="")
@click.option("--app-key", default=None, help="DingTalk AppKey (Client ID)")
@click.option("--app-secret", default=None, help="DingTalk AppSecret (Client Secret)")
@click.option("--secret", default=None, help="WeCom app secret")
@click.option("--agent-id", default=None)
@click.option("--callback-token", default=None)
@click.option("--aes-key", default=None)
@click.option("--timezone", default="Asia/Shanghai", show_default=True)
@one_line_errors
def corp_add(platform, corp_id, name, app_key, app_secret, secret, agent_id, callback_token, aes_key, timezone):
    """Bind a corp. Secrets are encrypted with CRM_MASTER_KEY before they touch the database."""
    from app.services.corps import SecretBox, create_corp
    from models.db import Database

    settings = load_settings()
    database = Database(settings.database_url)
    secrets = {"app_secret": app_secret, "secret": secret, "callback_token": callback_token, "aes_key": aes_key}
    with database.session() as session:
        created = create_corp(session, SecretBox(settings.master_key), platform=platform, platform_corp_id=corp_id,
                              name=name, agent_id=agent_id, app_key=app_key, secrets=secrets, timezone=timezone)
        click.echo(f"已绑定 / bound: {created.platform} {created.platform_corp_id} (id {created.id})")


@corp.command("list")
@click.option("--json", "as_json", is_flag=True)
@one_line_errors
def corp_list(as_json: bool) -> None:
    """List bound corps (never their secrets)."""
    from app.services.corps import public_dict
    from models.db import Database
    from models.org import Corp

    settings = load_settings()
    with Database(settings.database_url).session() as session:
        rows = [public_dict(c) for c in session.execute(sa.select(Corp).order_by(Corp.id)).scalars()]
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False))
        return
    if not rows:
        click.echo("尚未绑定企业 / no corps bound")
    for row in rows:
        click.echo(f"{row['corp_id']}\t{row['platform']}\t{row['name']}\tagent={row['agent_id'] or '-'}")


@corp.command("test")
@click.option("--corp", "corp_ref", default=None, help="CorpId; optional when one corp is bound")
@one_line_errors
def corp_test(corp_ref: str | None) -> None:
    """Fetch a token and read the root department; on failure, say why in one line."""
    from app.services.corps import find_corp
    from integrations.registry import client_for
    from models.db import Database

    settings = load_settings()
    database = Database(settings.database_url)
    with database.session() as session:
        bound = find_corp(session, corp_ref)
    report = client_for(bound, settings=settings, database=database).test_connection()
    if not report.ok:
        _fail(report.message)
    click.echo(report.message)


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
    except sync.SyncFailed as exc:
        _fail(f"同步失败，可重新运行以继续 / sync failed, run again to resume: {exc}")
    click.echo(f"同步完成 / synced: +{run.added} ~{run.updated} -{run.deactivated} users/depts, "
               f"{run.removed} departments removed, {run.calls_made} API calls")


if __name__ == "__main__":
    main()
