"""The Flask web layer: `create_app()` builds an app; importing this package starts nothing."""

from __future__ import annotations

import logging
from datetime import timedelta

from flask import Flask, g, jsonify

from app import admin, h5
from app import db as app_db
from app.errors import register_error_handlers
from config import Settings, load_settings
from models.db import Database


def create_app(settings: Settings | None = None, *, database: Database | None = None) -> Flask:
    settings = settings or load_settings()
    app = Flask(__name__, instance_path=str(settings.instance_path), instance_relative_config=False)
    app.config.update(
        SECRET_KEY=settings.secret_key,
        CRM_SETTINGS=settings,
        TESTING=settings.testing,
        SESSION_COOKIE_NAME="crm_session",
        SESSION_COOKIE_HTTPONLY=True,
        # The H5 app runs inside the DingTalk/WeCom webview on our own origin: Lax is enough and keeps
        # the session across the platform's redirects.
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.public_url.startswith("https://"),
        PERMANENT_SESSION_LIFETIME=timedelta(days=7),
        MAX_CONTENT_LENGTH=2 * 1024 * 1024,
        JSON_AS_ASCII=False,
    )
    app.json.ensure_ascii = False
    app_db.init_app(app, database or Database(settings.database_url))
    register_error_handlers(app)

    from app.api import bp as api_bp
    from app.callbacks.dingtalk import bp as dingtalk_callbacks_bp
    from app.health import bp as health_bp
    from app.openapi import bp as openapi_bp

    app.register_blueprint(health_bp)
    app.register_blueprint(api_bp)
    app.register_blueprint(openapi_bp)
    h5.init_app(app)
    admin.init_app(app)
    app.register_blueprint(dingtalk_callbacks_bp)
    from app.auth_wecom import bp as wecom_auth_bp
    from app.callbacks.wecom import bp as wecom_callbacks_bp

    app.register_blueprint(wecom_auth_bp)
    app.register_blueprint(wecom_callbacks_bp)

    @app.after_request
    def _request_id_header(response):
        if "request_id" in g:
            response.headers["X-Request-Id"] = g.request_id
        return response

    @app.get("/")
    def index():
        return jsonify({"name": "crm", "h5": "/h5/", "admin": "/admin/", "api": "/api/v1", "docs": "/api/docs"})

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    return app
