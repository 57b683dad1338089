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
@click.option("--revision", default="heads", show_default=True)
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
