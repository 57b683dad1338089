"""`crm stream`: receive DingTalk events over Stream mode (for corps without a public callback URL)."""

from __future__ import annotations

import threading
import time

import click

from app.cli import _fail, load_settings, main, one_line_errors


@main.command()
@click.option("--corp", "corp_ref", default=None, help="CorpId; default: every bound DingTalk corp")
@one_line_errors
def stream(corp_ref: str | None) -> None:
    """Run the official dingtalk-stream client per corp; events go to the same inbox as HTTP push."""
    import sqlalchemy as sa

    from app.callbacks.dingtalk import accept_payload
    from app.services.corps import SecretBox, find_corp
    from app.services.event_inbox import EventApplier
    from integrations.dingtalk.stream import build_client
    from models.db import Database
    from models.org import Corp, Platform

    settings = load_settings()
    database = Database(settings.database_url)
    with database.session() as session:
        if corp_ref:
            corps = [find_corp(session, corp_ref)]
        else:
            corps = list(session.execute(sa.select(Corp).where(
                Corp.platform == Platform.DINGTALK, Corp.active.is_(True)).order_by(Corp.id)).scalars())
    corps = [c for c in corps if c.platform == Platform.DINGTALK]
    if not corps:
        _fail("没有可用的钉钉企业 / no DingTalk corp bound (crm corp add --platform dingtalk …)")
    box = SecretBox(settings.master_key)
    applier = EventApplier(database, settings)
    threads = []
    for corp in corps:
        secret = box.open(corp.secrets_ciphertext).get("app_secret")
        if not corp.app_key or not secret:
            _fail(f"企业 {corp.platform_corp_id} 未配置 AppKey/AppSecret / AppKey or AppSecret missing")
        sink = _sink(database, corp.id, applier, accept_payload)
        client = build_client(corp.app_key, secret, sink, api_base=settings.for_corp(corp).dingtalk_api_base,
                              corp_id=corp.platform_corp_id)
        thread = threading.Thread(target=client.start_forever, name=f"stream-{corp.id}", daemon=True)
        thread.start()
        threads.append(thread)
        click.echo(f"Stream 已连接 / streaming events for {corp.platform_corp_id}")
    try:
        while any(t.is_alive() for t in threads):
            time.sleep(1)
    except KeyboardInterrupt:
        applier.wait_idle(10)


def _sink(database, corp_pk, applier, accept):
    return lambda payload: accept(database, corp_pk, payload, source="stream", submit=applier.submit)
