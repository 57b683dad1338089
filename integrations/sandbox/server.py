"""Serving the sandbox over real HTTP on loopback: in a background thread (tests, `make run`) or in the
foreground (`crm sandbox`)."""

from __future__ import annotations

import logging
import threading
from typing import Any

from flask import Blueprint, Flask, jsonify
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from integrations.sandbox.dingtalk_api import create_blueprint
from integrations.sandbox.dingtalk_state import DingTalkWorld

log = logging.getLogger(__name__)


def create_app(dingtalk: DingTalkWorld | None = None, *, extra_blueprints: tuple[Blueprint, ...] = ()) -> Flask:
    """A WSGI app with the DingTalk half (and any other platform halves passed in `extra_blueprints`)."""
    world = dingtalk or DingTalkWorld()
    app = Flask("crm_sandbox")
    app.json.ensure_ascii = False
    app.json.sort_keys = False
    app.extensions["sandbox.dingtalk"] = world
    app.register_blueprint(create_blueprint(world))
    for bp in extra_blueprints:
        app.register_blueprint(bp)

    @app.get("/healthz")
    def healthz():
        return jsonify({"ok": True})

    @app.get("/")
    def index():
        return jsonify({
            "sandbox": "DingTalk (and WeCom when mounted) simulated corps",
            "dingtalk": [c.credentials() for c in world.corps.values()],
            "hint": "set CRM_DINGTALK_OAPI_BASE and CRM_DINGTALK_API_BASE to this server's URL",
        })

    return app


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:  # tests and benchmarks make thousands
        return None


class SandboxServer:
    """`with SandboxServer(world) as srv: srv.url` — a threaded server on a free loopback port."""

    def __init__(self, world: DingTalkWorld | None = None, *, host: str = "127.0.0.1", port: int = 0,
                 extra_blueprints: tuple[Blueprint, ...] = (), quiet: bool = True) -> None:
        self.world = world or DingTalkWorld()
        self.app = create_app(self.world, extra_blueprints=extra_blueprints)
        self._server: BaseWSGIServer = make_server(
            host, port, self.app, threaded=True, request_handler=_QuietHandler if quiet else None
        )
        self.host = host
        self.port = self._server.server_port
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> SandboxServer:
        self._thread = threading.Thread(target=self._server.serve_forever, name="sandbox", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def serve(host: str = "127.0.0.1", port: int = 8900, *, seed: int | str = 1, corps: int = 1, users: int = 60,
          latency: float = 0.0, qps_limit: int = 20, callback_url: str | None = None,
          extra_blueprints: tuple[Blueprint, ...] = (), block: bool = True) -> SandboxServer:
    """Start the sandbox. `block=True` serves until interrupted (for `crm sandbox`); otherwise the
    started server is returned and runs in a daemon thread."""
    world = DingTalkWorld(seed, corps=corps, users=users, qps_limit=qps_limit, latency=latency)
    if callback_url:
        for corp in world.corps.values():
            # `{corp}` lets one template serve several corps: /callbacks/dingtalk/{corp}
            corp.callback_url = callback_url.replace("{corp}", corp.corp_id)
    server = SandboxServer(world, host=host, port=port, extra_blueprints=extra_blueprints, quiet=not block)
    for corp in world.corps.values():
        log.info("sandbox corp %s (%s) appKey=%s agentId=%s", corp.corp_id, corp.name, corp.app_key, corp.agent_id)
    if not block:
        return server.start()
    try:
        server._server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server._server.server_close()
    return server
