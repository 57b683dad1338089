"""The `crm` command. Each command is a thin door into a service and fails with one readable line."""

from __future__ import annotations

import functools
import importlib
import pkgutil
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
    """Serve the app (embedded mode: the development-grade threaded server).

    With CRM_SANDBOX=1, or CRM_SANDBOX=auto (`make run`) while no real corp is bound, the DingTalk sandbox
    starts beside the app on CRM_SANDBOX_PORT, its corp is bound pointing at it and synced, and the
    sandbox sign-in picker is on.
    """
    from app import create_app
    from app.services.sandbox_corp import sandbox_wanted, start_sandbox_mode
    from models.db import Database

    settings = load_settings()
    database = Database(settings.database_url)
    with database.session() as session:
        wanted = sandbox_wanted(session, settings)
    if wanted:
        local = "127.0.0.1" if host in {"0.0.0.0", "::", ""} else host
        mode = start_sandbox_mode(database, settings, app_url=f"http://{local}:{port}")
        settings = settings.with_overrides(sandbox=True, dev_login=True)
        for corp_id in mode.corp_ids:
            click.echo(f"沙箱模式 / sandbox mode: corp {corp_id} on {mode.url} ({mode.synced.get(corp_id, '')}); "
                       f"sign in at /h5/ with the employee picker")
    app = create_app(settings, database=database)
    # Embedded mode: this process also schedules and delivers (production runs `crm scheduler`/`crm worker`).
    from scheduler import start_embedded

    start_embedded(settings, database)
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


def _register_subcommands() -> None:
    """Every module in this package adds its own command group to `main`; importing them wires them up."""
    for module in pkgutil.iter_modules(__path__):
        if module.name.startswith("_"):  # __main__ would run the command while we are still wiring it
            continue
        importlib.import_module(f"{__name__}.{module.name}")


_register_subcommands()
