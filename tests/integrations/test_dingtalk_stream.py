"""Stream mode without a network: the SDK's own EventMessage, built from a frame as the server sends
it, goes through our handler into the inbox and is applied like an HTTP push."""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor

import pytest
import responses
import sqlalchemy as sa
from dingtalk_stream import AckMessage, EventMessage

from app.callbacks.dingtalk import accept_payload
from app.services.event_inbox import apply_event
from integrations.base import PlatformUser
from integrations.dingtalk.stream import InboxEventHandler, StreamClient, build_client, payload_from_stream
from models.inbox import EventState, PlatformEvent
from models.org import User
from tests import factories
from tests.test_event_inbox import FakePlatform


def frame(event_type="user_add_org", event_id="evt-s1", corp_id="dingcorp", data=None) -> EventMessage:
    """A server frame (fact sheet §8.1 step 3), parsed by the SDK itself."""
    return EventMessage.from_dict(
        {
            "specVersion": "1.0",
            "type": "EVENT",
            "headers": {
                "topic": "*",
                "messageId": "m-1",
                "contentType": "application/json",
                "time": "1700000000000",
                "eventType": event_type,
                "eventId": event_id,
                "eventCorpId": corp_id,
                "eventBornTime": "1700000000000",
                "eventUnifiedAppId": "app-1",
            },
            "data": json.dumps(data if data is not None else {"timeStamp": "1700000000000", "userId": ["u-stream"]}),
        }
    )


def run(coro):
    """Await `coro` on a fresh loop in its own thread: another test (Playwright's sync API) may have left
    a running loop in this one, and the SDK calls `process` from its own loop anyway."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


def test_payload_has_the_http_push_shape():
    payload = payload_from_stream(frame())
    assert payload == {
        "timeStamp": "1700000000000",
        "userId": ["u-stream"],
        "EventType": "user_add_org",
        "eventId": "evt-s1",
        "CorpId": "dingcorp",
        "EventTime": 1700000000000,
    }


@pytest.fixture
def world(session):
    org = factories.org(session, corp_id="dingstreamcorp")
    session.commit()
    return org


def _handler(database, world, submitted):
    def sink(payload):
        return accept_payload(
            database, world.corp.id, payload, source="stream", submit=lambda pk, _key: submitted.append(pk)
        )

    return InboxEventHandler(sink, corp_id=world.corp.platform_corp_id)


def test_stream_event_lands_in_the_inbox_once_and_is_applied(database, world):
    submitted: list[int] = []
    handler = _handler(database, world, submitted)
    event = frame(corp_id="dingstreamcorp", data={"userId": ["u-stream"]})
    assert run(handler.process(event)) == (AckMessage.STATUS_OK, "OK")
    assert run(handler.process(event)) == (AckMessage.STATUS_OK, "OK")  # redelivery
    assert len(submitted) == 1
    with database.session() as s:
        row = s.get(PlatformEvent, submitted[0])
        assert (row.source, row.event_type, row.event_id, row.state) == ("stream", "user_add_org", "evt-s1", "pending")
    person = PlatformUser(userid="u-stream", name="流式", department_ids=(world.east.platform_dept_id,))
    assert apply_event(database, submitted[0], clients=lambda corp: FakePlatform(users=[person])) == EventState.APPLIED
    with database.session() as s:
        assert s.execute(sa.select(User).where(User.platform_userid == "u-stream")).scalar_one().active


def test_capitalised_department_keys_and_other_corps(database, world):
    submitted: list[int] = []
    handler = _handler(database, world, submitted)
    run(handler.process(frame("org_dept_create", "evt-d", "dingstreamcorp", {"DeptId": [77]})))
    run(handler.process(frame("org_dept_create", "evt-x", "dingsomeoneelse", {"deptId": [78]})))
    with database.session() as s:
        rows = s.execute(sa.select(PlatformEvent)).scalars().all()
    assert [(r.event_id, r.payload["kind"], r.payload["dept_ids"]) for r in rows] == [("evt-d", "dept_upsert", ["77"])]


def test_a_failing_store_answers_500_so_dingtalk_redelivers():
    def broken(_payload):
        raise RuntimeError("database down")

    assert run(InboxEventHandler(broken).process(frame()))[0] == AckMessage.STATUS_SYSTEM_EXCEPTION


@responses.activate
def test_gateway_call_goes_to_the_configured_base():
    responses.add(
        responses.POST,
        "http://sandbox.test/v1.0/gateway/connections/open",
        json={"endpoint": "ws://sandbox.test/connect", "ticket": "tk+/="},
        match=[
            responses.matchers.json_params_matcher(
                {
                    "clientId": "ak",
                    "clientSecret": "sk",
                    "subscriptions": [{"type": "EVENT", "topic": "*"}],
                },
                strict_match=False,
            )
        ],
    )
    client = build_client("ak", "sk", lambda p: None, api_base="http://sandbox.test/")
    assert client.open_connection() == {"endpoint": "ws://sandbox.test/connect", "ticket": "tk+/="}
    sent = json.loads(responses.calls[0].request.body)
    assert sent["ua"].startswith("crm-microapp/") and "localIp" in sent
    assert "sk" not in repr(client)


@responses.activate
def test_wrong_credentials_give_no_connection():
    responses.add(
        responses.POST,
        "http://sandbox.test/v1.0/gateway/connections/open",
        status=401,
        json={"code": "authFailed", "message": "鉴权失败"},
    )
    assert StreamClient("ak", "bad", api_base="http://sandbox.test").open_connection() is None


class _Socket:
    """Stands in for the websocket: collects the frames the SDK sends back."""

    def __init__(self):
        self.sent: list[dict] = []

    async def send(self, text):
        self.sent.append(json.loads(text))


def test_sdk_routes_a_server_frame_to_the_inbox_and_acks_it(database, world):
    """The SDK's own routing (frame JSON → EventMessage → our handler → ack frame), minus the socket."""
    submitted: list[int] = []

    def sink(payload):
        return accept_payload(
            database, world.corp.id, payload, source="stream", submit=lambda pk, _key: submitted.append(pk)
        )

    client = build_client("ak", "sk", sink, api_base="http://sandbox.test", corp_id="dingstreamcorp")
    client.websocket = _Socket()
    server_frame = {
        "specVersion": "1.0",
        "type": "EVENT",
        "headers": {
            "topic": "*",
            "messageId": "m-42",
            "contentType": "application/json",
            "time": "1700000000000",
            "eventType": "user_leave_org",
            "eventId": "evt-ws",
            "eventCorpId": "dingstreamcorp",
            "eventBornTime": "1700000000000",
        },
        "data": json.dumps({"userId": [world.bob.platform_userid]}),
    }
    run(client.route_message(server_frame))
    [ack] = client.websocket.sent
    assert ack["code"] == AckMessage.STATUS_OK and ack["headers"]["messageId"] == "m-42"
    assert len(submitted) == 1
    with database.session() as s:
        row = s.get(PlatformEvent, submitted[0])
        assert (row.event_type, row.payload["kind"], row.payload["user_ids"]) == (
            "user_leave_org",
            "user_leave",
            [world.bob.platform_userid],
        )
