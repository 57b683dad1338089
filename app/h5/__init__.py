"""The H5 workbench app at /h5/: one HTML shell, hand-written ES modules and one stylesheet, no build step.

The shell carries a small boot document (sandbox or not, asset version) so the first paint needs no API call;
every page then renders from one JSON call (see `app.api.h5_views`).
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

from flask import Blueprint, Flask, current_app, render_template

STATIC = Path(__file__).parent / "static"

bp = Blueprint("h5", __name__, url_prefix="/h5", static_folder="static", static_url_path="/static",
               template_folder="templates")

# The platforms' own SDKs load only inside their webviews, from their official script URLs; everything
# else the page needs comes from this app, so it also works offline (the browser tests run with no internet).
PLATFORM_SCRIPT_HOSTS = "https://g.alicdn.com https://res.wx.qq.com"


@cache
def asset_version() -> str:
    """A digest of the static files, appended to their URLs so a deploy is never mixed with a cached old copy."""
    digest = hashlib.sha256()
    for path in sorted(STATIC.rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(STATIC).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


@bp.get("/")
def index():
    """The app shell; the hash part of the URL (`#/customers/12`) picks the page."""
    settings = current_app.config["CRM_SETTINGS"]
    boot = {"sandbox": bool(settings.dev_login or settings.sandbox), "version": asset_version()}
    response = current_app.make_response(render_template("h5/index.html", boot=boot, version=boot["version"]))
    response.headers["Content-Security-Policy"] = (
        f"default-src 'self'; script-src 'self' {PLATFORM_SCRIPT_HOSTS}; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'self'; base-uri 'none'; form-action 'self'")
    response.headers["Cache-Control"] = "no-cache"
    return response


def init_app(app: Flask) -> None:
    from app.api.h5_views import bp as h5_api_bp

    app.register_blueprint(bp)
    app.register_blueprint(h5_api_bp)
