"""Serving the sandbox over real HTTP on loopback: in a background thread (tests, `make run`) or in the
foreground (`crm sandbox`)."""

from __future__ import annotations

import logging
import socket
import threading
from typing import Any

from flask import Blueprint, Flask, jsonify
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from integrations.sandbox.corpgen import generate_corp
from integrations.sandbox.dingtalk_api import create_blueprint
from integrations.sandbox.dingtalk_state import DingTalkWorld
from integrations.sandbox.wecom_api import create_wecom_blueprint
from integrations.sandbox.wecom_state import WeComWorld

log = logging.getLogger(__name__)


def create_app(dingtalk: DingTalkWorld | None = None, *, extra_blueprints: tuple[Blueprint, ...] = ()) -> Flask:
    """A WSGI app with the DingTalk half (and any other platform halves passed in `extra_blueprints`)."""
    world = dingtalk or DingTalkWorld()
    app = Flask("crm_sandbox")
    app.json.ensure_ascii = False
    app.json.sort_keys = False
    app.extensions["sandbox.dingtalk"] = world
    app.register_blueprint(create_blueprint(world))
    if not any(bp.name == "sandbox_wecom" for bp in extra_blueprints):  # tests pass their own WeCom world
        app.register_blueprint(create_wecom_blueprint(WeComWorld()))
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


def port_is_free(host: str, port: int) -> bool:
    """Whether a server could listen on (host, port) now. werkzeug exits the process on a busy port,
    so callers ask first and fail with one readable line instead."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server itself will
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def build_world(*, seed: int | str = 1, corps: int = 1, users: int = 60, depts: int | None = None,
                latency: float = 0.0, qps_limit: int = 20) -> DingTalkWorld:
    """A world of `corps` generated corps; `depts` asks for that many departments per corp."""
    world = DingTalkWorld(seed, corps=0, users=users, qps_limit=qps_limit, latency=latency)
    for index in range(corps):
        world.add_corp(generate_corp(seed, index=index, users=users, depts=depts))
    return world


def serve(host: str = "127.0.0.1", port: int = 8900, *, seed: int | str = 1, corps: int = 1, users: int = 60,
          depts: int | None = None, latency: float = 0.0, qps_limit: int = 20, callback_url: str | None = None,
          extra_blueprints: tuple[Blueprint, ...] = (), block: bool = True) -> SandboxServer:
    """Start the sandbox. `block=True` serves until interrupted (for `crm sandbox`); otherwise the
    started server is returned and runs in a daemon thread."""
    world = build_world(seed=seed, corps=corps, users=users, depts=depts, latency=latency, qps_limit=qps_limit)
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
