"""`wx.config` / `wx.agentConfig` signatures for our H5 pages opened inside WeCom (fact sheet §3)."""

from __future__ import annotations

from flask import current_app, jsonify, request

from app.api import bp
from app.api.parsing import Query
from app.db import get_database, get_session
from app.services.jsapi_config import validate_page_url
from app.services.platform import client_factory, unavailable
from app.services.sign_in_wecom import find_wecom_corp
from integrations.base import PlatformError


@bp.get("/auth/wecom/jssdk-config")
def wecom_jssdk_config():
    """Both signatures for the page at `url`: `config` (corp ticket) and `agentConfig` (app ticket)."""
    query = Query({"corpId", "url"})
    settings = current_app.config["CRM_SETTINGS"]
    page = validate_page_url(query.args.get("url", ""), (settings.public_url, request.host_url.rstrip("/")))
    corp = find_wecom_corp(get_session(), query.str("corpId", max_length=64), field="corpId")
    client = client_factory(settings=settings, database=get_database())(corp)
    try:
        config = client.js_config(page)
    except PlatformError as exc:
        raise unavailable(exc) from exc
    return jsonify({"corpId": corp.platform_corp_id, "agentId": corp.agent_id, **config})
