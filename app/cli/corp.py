"""`crm corp …`: bind, list and test corps."""

from __future__ import annotations

import json

import click
import sqlalchemy as sa

from app.cli import _fail, load_settings, main, one_line_errors


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
