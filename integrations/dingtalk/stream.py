"""DingTalk Stream mode (fact sheet §8) on the official `dingtalk-stream` SDK.

The SDK owns the websocket, keep-alive, reconnects and acks; this adapter only turns each EVENT frame
into the payload shape of a decrypted HTTP push, so both channels feed one inbox and one parser, and
points the SDK's gateway call at our configured API base (with a timeout, which the SDK's lacks).
Handlers must be quick (≈3 s, §8.1): the sink only stores the event; applying happens elsewhere.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import dingtalk_stream
import requests
from dingtalk_stream import AckMessage, EventMessage

log = logging.getLogger(__name__)

OPEN_CONNECTION_PATH = "/v1.0/gateway/connections/open"
TIMEOUT = (3.0, 10.0)


def payload_from_stream(event: EventMessage) -> dict[str, Any]:
    """Stream metadata lives in the frame headers (`eventType`, `eventId`, `eventCorpId`,
    `eventBornTime`), the ids in `data`; HTTP push has them all in one JSON object (§6)."""
    payload: dict[str, Any] = dict(event.data) if isinstance(event.data, dict) else {}
    headers = event.headers
    if headers.event_type:
        payload["EventType"] = headers.event_type
    if headers.event_id:
        payload["eventId"] = headers.event_id
    if headers.event_corp_id:
        payload["CorpId"] = headers.event_corp_id
    if headers.event_born_time:
        payload["EventTime"] = headers.event_born_time
    return payload


class InboxEventHandler(dingtalk_stream.EventHandler):
    """Hands every event to `sink(payload)` in a worker thread and acks; a failing sink answers 500,
    so DingTalk redelivers (the SDK sends no ack at all when `process` raises)."""

    def __init__(self, sink: Callable[[dict[str, Any]], Any], *, corp_id: str | None = None) -> None:
        super().__init__()
        self.logger = log
        self.sink = sink
        self.corp_id = corp_id

    async def process(self, event: EventMessage):
        payload = payload_from_stream(event)
        if self.corp_id and payload.get("CorpId") not in (None, self.corp_id):
            # Not this corp's event: acknowledge so it is not redelivered here, and store nothing.
            log.warning("stream event %s for corp %s ignored", payload.get("eventId"), payload.get("CorpId"))
            return AckMessage.STATUS_OK, "OK"
        try:
            await asyncio.to_thread(self.sink, payload)
        except Exception:
            log.exception("stream event %s could not be stored", payload.get("eventId"))
            return AckMessage.STATUS_SYSTEM_EXCEPTION, "retry later"
        return AckMessage.STATUS_OK, "OK"


class StreamClient(dingtalk_stream.DingTalkStreamClient):
    """The official client with the gateway on `api_base` (CRM_DINGTALK_API_BASE) instead of the
    SDK's import-time global, and timeouts on the gateway call."""

    def __init__(self, app_key: str, app_secret: str, *, api_base: str,
                 http: requests.Session | None = None) -> None:
        super().__init__(dingtalk_stream.Credential(app_key, app_secret), logger=log)
        self.open_connection_url = api_base.rstrip("/") + OPEN_CONNECTION_PATH
        self.http = http or requests.Session()
        self.http.trust_env = False

    def __repr__(self) -> str:  # never the secret
        return f"<StreamClient app={self.credential.client_id}>"

    def open_connection(self) -> dict[str, Any] | None:
        topics = []
        if self._is_event_required:
            topics.append({"type": "EVENT", "topic": "*"})
        topics.extend({"type": "CALLBACK", "topic": t} for t in self.callback_handler_map)
        body = {"clientId": self.credential.client_id, "clientSecret": self.credential.client_secret,
                "subscriptions": topics, "ua": f"crm-microapp/dingtalk-stream-{dingtalk_stream.version.VERSION_STRING}",
                "localIp": self.get_host_ip()}
        try:
            resp = self.http.post(self.open_connection_url, json=body, timeout=TIMEOUT)
        except requests.RequestException as exc:
            log.error("stream gateway unreachable: %s", type(exc).__name__)
            return None
        if resp.status_code != 200:
            # 401 authFailed = wrong AppKey/AppSecret (§8.1); the SDK retries after 10 s.
            log.error("stream gateway refused the connection: HTTP %s %s", resp.status_code, resp.text[:200])
            return None
        try:
            data = resp.json()
        except ValueError:
            return None
        return data if isinstance(data, dict) and data.get("endpoint") and data.get("ticket") else None


def build_client(app_key: str, app_secret: str, sink: Callable[[dict[str, Any]], Any], *, api_base: str,
                 corp_id: str | None = None) -> StreamClient:
    client = StreamClient(app_key, app_secret, api_base=api_base)
    client.register_all_event_handler(InboxEventHandler(sink, corp_id=corp_id))
    return client
