"""The admin console at /admin/: one HTML shell and hand-written ES modules, no build step, admins only.

It reuses the H5 app's fetch wrapper, element builder and language choice (served from /h5/static), so
errors read the same in both and a language switched in one holds in the other.
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

from flask import Blueprint, Flask, current_app, render_template

from app.errors import ApiError

STATIC = Path(__file__).parent / "static"

bp = Blueprint("admin", __name__, url_prefix="/admin", static_folder="static", static_url_path="/static",
               template_folder="templates")

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


@cache
def asset_version() -> str:
    digest = hashlib.sha256()
    for path in sorted(STATIC.rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(STATIC).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def _page(template: str, status: int = 200, **context):
    response = current_app.make_response((render_template(template, **context), status))
    response.headers["Content-Security-Policy"] = CSP
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Frame-Options"] = "DENY"
    return response


@bp.get("/")
def index():
    """The console shell for admins; everyone else gets a plain page saying why they cannot use it."""
    from app.auth.session import current_actor
    from app.db import get_session
    from models.org import Corp, Role, User

    settings = current_app.config["CRM_SETTINGS"]
    sandbox = bool(settings.dev_login or settings.sandbox)
    try:
        actor = current_actor()
    except ApiError:
        return _page("admin/denied.html", 401, reason="signin", sandbox=sandbox)
    if actor.role != Role.ADMIN:
        return _page("admin/denied.html", 403, reason="role", sandbox=sandbox)
    session = get_session()
    corp, user = session.get(Corp, actor.corp_id), session.get(User, actor.user_id)
    boot = {"sandbox": sandbox, "version": asset_version(),
            "corp": {"id": corp.id, "name": corp.name, "timezone": corp.timezone},
            "user": {"id": user.id, "name": user.name}}
    return _page("admin/index.html", boot=boot, version=boot["version"])


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
