"""Shared set-up for tests that run the app against the WeCom sandbox over real HTTP: settings pointing at
the sandbox, a bound sandbox app, its client and a full sync, the app answering the sandbox's callbacks, and
the sandbox's visible range and tags."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import requests
from werkzeug.serving import make_server

from app import create_app
from app.callbacks.dingtalk import event_applier
from app.callbacks.wecom import card_pool
from app.services.corps import SecretBox, create_corp
from app.services.org_sync import full_sync
from app.services.platform import platform_client
from models.org import Corp


def wecom_settings(settings, server):
    return settings.with_overrides(wecom_api_base=f"{server.url}/cgi-bin", wecom_oauth_base=server.url,
                                   public_url="http://crm.test")


def bind(database, wsettings, sbx) -> int:
    """Bind the sandbox app `sbx` as a WeCom corp; returns our primary key."""
    with database.session() as s:
        corp = create_corp(s, SecretBox(wsettings.master_key), platform="wecom", platform_corp_id=sbx.corp.corp_id,
                           name=sbx.corp.name, agent_id=str(sbx.agent_id),
                           secrets={"secret": sbx.secret, "callback_token": sbx.corp.callback_token,
                                    "aes_key": sbx.corp.callback_aes_key})
        return corp.id


def client(database, wsettings, corp_pk):
    with database.session() as s:
        corp = s.get(Corp, corp_pk)
    return platform_client(corp, settings=wsettings, database=database)


def sync(database, wsettings, corp_pk):
    return full_sync(database, corp_pk, client(database, wsettings, corp_pk), threads=4)


def set_range(http, server, sbx, *, partys=(), users=(), tags=()) -> None:
    """The app's visible range: department subtrees, people named one by one, tags."""
    resp = http.post(f"{server.url}/sandbox/wecom/config",
                     json={"corpId": sbx.corp.corp_id, "allowPartys": list(partys), "allowUsers": list(users),
                           "allowTags": list(tags)})
    assert resp.status_code == 200, resp.text


def put_tag(http, server, sbx, users, parties, *, tagid=None, name="重点客户组") -> dict:
    """Create a sandbox tag, or replace its members (`tagid`); the sandbox's answer (`tag`, `event`)."""
    body = {"corpId": sbx.corp.corp_id, "tagname": name, "userlist": list(users), "partylist": list(parties)}
    if tagid is not None:
        body["tagid"] = tagid
    resp = http.post(f"{server.url}/sandbox/wecom/tags", json=body)
    assert resp.status_code == 201, resp.text
    return resp.json()


@contextmanager
def serve_callbacks(database, wsettings, sbx, server) -> Iterator[tuple]:
    """The app on a real HTTP port with the sandbox's callback URL pointing at it (URL verification
    included); yields (app, callback url) and stops the applier, card pool and server afterwards."""
    app = create_app(wsettings, database=database)
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{httpd.server_port}/callbacks/wecom/{sbx.corp.corp_id}"
    try:
        saved = requests.post(f"{server.url}/sandbox/wecom/callback", json={"corpId": sbx.corp.corp_id, "url": url},
                              timeout=5)
        assert saved.status_code == 200, saved.text  # URL verification passed
        yield app, url
    finally:
        event_applier(app).stop()
        card_pool(app).shutdown(wait=True)
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def settle(app) -> None:
    assert event_applier(app).wait_idle(20), "events were not applied"
