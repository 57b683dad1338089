"""WeCom sign-in pages: `/auth/wecom/start` sends the browser to WeCom's OAuth2 page (`snsapi_base`,
silent inside the WeCom client), `/auth/wecom/callback` comes back with a code, starts the session and
returns to the same-site `next` path. Thin: the rules live in `app.services.sign_in_wecom`."""

from __future__ import annotations

from flask import Blueprint, current_app, redirect, session

from app.api.parsing import Query
from app.auth.session import sign_in
from app.db import get_database, get_session
from app.services.platform import client_factory
from app.services.sign_in_wecom import check_state, find_wecom_corp, sign_in_with_wecom, start_oauth

bp = Blueprint("auth_wecom", __name__, url_prefix="/auth/wecom")

PENDING_KEY = "wecom_oauth"


@bp.get("/start")
def start():
    query = Query({"corp", "next"})
    settings = current_app.config["CRM_SETTINGS"]
    corp = find_wecom_corp(get_session(), query.str("corp", max_length=64))
    begun = start_oauth(corp, oauth_base=settings.for_corp(corp).wecom_oauth_base,
                        redirect_uri=f"{settings.public_url.rstrip('/')}/auth/wecom/callback",
                        next_path=query.args.get("next"))
    session[PENDING_KEY] = begun.pending
    return redirect(begun.url, code=302)


@bp.get("/callback")
def callback():
    query = Query({"code", "state", "appid"})
    # Single use in this browser whatever happens next; check_state also claims it in the database.
    pending = session.pop(PENDING_KEY, None)
    db_session = get_session()
    corp = check_state(db_session, pending, query.str("state", max_length=128))
    clients = client_factory(settings=current_app.config["CRM_SETTINGS"], database=get_database())
    result = sign_in_with_wecom(db_session, clients=clients, corp=corp, code=query.str("code", max_length=512) or "")
    sign_in(result.user)
    return redirect(pending["next"], code=302)
