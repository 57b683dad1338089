"""`crm sandbox`: the simulated DingTalk corp(s) on a local port, for newcomers, tests and benchmarks."""

from __future__ import annotations

import click

from app.cli import _fail, main, one_line_errors


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8900, show_default=True, type=click.IntRange(1, 65535))
@click.option("--users", default=60, show_default=True, type=click.IntRange(2, 200_000), help="people per corp")
@click.option("--depts", default=None, type=click.IntRange(1, 20_000), help="departments per corp")
@click.option("--corps", default=1, show_default=True, type=click.IntRange(1, 20))
@click.option("--seed", default="1", show_default=True, help="same seed, same corp")
@click.option("--latency", default=0.0, show_default=True, type=click.FloatRange(0, 10), help="seconds per call")
@click.option("--qps", default=20, show_default=True, type=click.IntRange(1, 10_000), help="per app, per API")
@click.option("--callback-url", default=None, help="where to push events; {corp} becomes the CorpId")
@one_line_errors
def sandbox(host, port, users, depts, corps, seed, latency, qps, callback_url) -> None:
    """Serve the DingTalk sandbox until interrupted (Ctrl-C)."""
    from integrations.sandbox.server import build_world, port_is_free, serve

    if not port_is_free(host, port):
        _fail(f"端口 {port} 已被占用 / port {port} is busy: pass --port")
    preview = build_world(seed=seed, corps=corps, users=users, depts=depts)
    base = f"http://{host}:{port}"
    for corp in preview.corps.values():
        click.echo(f"沙箱企业 / sandbox corp {corp.corp_id} {corp.name}: {len(corp.users)} users, "
                   f"{len(corp.depts)} departments, AppKey {corp.app_key}, AgentId {corp.agent_id}")
    click.echo(f"CRM_DINGTALK_OAPI_BASE={base} CRM_DINGTALK_API_BASE={base}  "
               f"(credentials: {base}/sandbox/dingtalk/corps)")
    serve(host, port, seed=seed, corps=corps, users=users, depts=depts, latency=latency, qps_limit=qps,
          callback_url=callback_url, block=True)
