"""Approval to-dos: exact requests with `responses`, then the same flow against the sandbox over HTTP."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import pytest
import responses

from integrations.base import NotFoundError, PlatformError
from integrations.dingtalk.client import DingTalkClient, DingTalkCredentials
from integrations.dingtalk.todo import close_todo, detail_url, ensure_todo, update_todo
from integrations.sandbox import DingTalkWorld, SandboxServer

API = "https://api.test.invalid"
OAPI = "https://oapi.test.invalid"
CREDS = DingTalkCredentials(corp_id="dingcorp001", app_key="dingappkey", app_secret="s3cr3t", agent_id="123456")
URL = "https://crm.example/h5/#/approvals/42"


@pytest.fixture
def mocked():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add(responses.POST, f"{API}/v1.0/oauth2/accessToken", json={"accessToken": "tok-1", "expireIn": 7200})
        yield rsps


@pytest.fixture
def client():
    return DingTalkClient(CREDS, oapi_base=OAPI, api_base=API, sleep=lambda s: None)


def _req(call):
    parts = urlsplit(call.request.url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    body = json.loads(call.request.body) if call.request.body else None
    return call.request.method, parts.path, query, body, call.request.headers.get("x-acs-dingtalk-access-token")


def test_detail_url_points_into_the_h5_page():
    assert detail_url("https://crm.example/", "/h5/#/approvals/42") == URL


def test_ensure_todo_creates_with_source_id_and_detail_url(client, mocked):
    mocked.add(responses.POST, f"{API}/v1.0/todo/users/uAlice/tasks", json={"id": "t-9", "done": False})
    ref = ensure_todo(client, creator_unionid="uAlice", approver_unionids=["uBoss"], source_id="approval-42-1",
                      subject="审批：折扣 15%", url=URL, due_time_ms=1_800_000_000_000)
    assert ref.task_id == "t-9" and ref.created
    method, path, query, body, token = _req(mocked.calls[1])
    assert (method, path, query, token) == ("POST", "/v1.0/todo/users/uAlice/tasks", {"operatorId": "uAlice"}, "tok-1")
    assert body == {"subject": "审批：折扣 15%", "executorIds": ["uBoss"], "detailUrl": {"appUrl": URL, "pcUrl": URL},
                    "sourceId": "approval-42-1", "creatorId": "uAlice", "dueTime": 1_800_000_000_000,
                    "notifyConfigs": {"dingNotify": "1"}}


def test_ensure_todo_twice_finds_the_first_task(client, mocked):
    mocked.add(responses.POST, f"{API}/v1.0/todo/users/uAlice/tasks", status=400,
               json={"code": "todo.taskCreate.paramError", "message": "task exist", "requestid": "r1"})
    mocked.add(responses.GET, f"{API}/v1.0/todo/users/uAlice/tasks/sources/approval%2F42",
               json={"id": "t-9", "sourceId": "approval/42", "done": False})
    ref = ensure_todo(client, creator_unionid="uAlice", approver_unionids=["uBoss"], source_id="approval/42",
                      subject="审批", url=URL)
    assert ref.task_id == "t-9" and not ref.created
    method, path, query, body, _ = _req(mocked.calls[2])
    assert (method, query, body) == ("GET", {}, None)
    assert mocked.calls[2].request.url.endswith("/tasks/sources/approval%2F42")  # a source id cannot add a path


def test_other_create_errors_are_not_swallowed(client, mocked):
    mocked.add(responses.POST, f"{API}/v1.0/todo/users/uAlice/tasks", status=400,
               json={"code": "todo.taskCreate.paramError", "message": "subject is oversize"})
    with pytest.raises(PlatformError) as info:
        ensure_todo(client, creator_unionid="uAlice", approver_unionids=["uBoss"], source_id="a-1", subject="x",
                    url=URL)
    assert info.value.code == "todo.taskCreate.paramError"
    assert len(mocked.calls) == 2  # token + create; no lookup


def test_close_todo_marks_done_by_source_id(client, mocked):
    mocked.add(responses.GET, f"{API}/v1.0/todo/users/uAlice/tasks/sources/a-1", json={"id": "t-9", "done": False})
    mocked.add(responses.PUT, f"{API}/v1.0/todo/users/uAlice/tasks/t-9", json={"result": True})
    assert close_todo(client, owner_unionid="uAlice", source_id="a-1") is True
    method, path, query, body, token = _req(mocked.calls[2])
    assert (method, path, query, body, token) == ("PUT", "/v1.0/todo/users/uAlice/tasks/t-9",
                                                  {"operatorId": "uAlice"}, {"done": True}, "tok-1")


def test_close_todo_already_done_or_gone(client, mocked):
    mocked.add(responses.GET, f"{API}/v1.0/todo/users/uAlice/tasks/sources/a-1", json={"id": "t-9", "done": True})
    mocked.add(responses.GET, f"{API}/v1.0/todo/users/uAlice/tasks/sources/a-2", status=400,
               json={"code": "todo.taskQuery.paramError", "message": "task not exist"})
    assert close_todo(client, owner_unionid="uAlice", source_id="a-1") is True
    assert close_todo(client, owner_unionid="uAlice", source_id="a-2") is False
    assert [c.request.method for c in mocked.calls[1:]] == ["GET", "GET"]  # nothing to PUT


def test_update_todo_by_source_id(client, mocked):
    mocked.add(responses.GET, f"{API}/v1.0/todo/users/uAlice/tasks/sources/a-1", json={"id": "t-9", "done": False})
    mocked.add(responses.PUT, f"{API}/v1.0/todo/users/uAlice/tasks/t-9", json={"result": True})
    assert update_todo(client, owner_unionid="uAlice", source_id="a-1", subject="审批（已改）",
                       executorIds=["uCarol"], dueTime=1_900_000_000_000)
    method, path, query, body, _ = _req(mocked.calls[2])
    assert (method, query) == ("PUT", {"operatorId": "uAlice"})
    assert body == {"subject": "审批（已改）", "executorIds": ["uCarol"], "dueTime": 1_900_000_000_000}


# ------------------------------------------------------------------ against the sandbox


@pytest.fixture(scope="module")
def server():
    with SandboxServer(DingTalkWorld(seed=21, users=20)) as srv:
        yield srv


def test_approval_todo_lifecycle_in_the_sandbox(server):
    corp = next(iter(server.world.corps.values()))
    client = DingTalkClient(DingTalkCredentials(corp.corp_id, corp.app_key, corp.app_secret, str(corp.agent_id)),
                            oapi_base=server.url, api_base=server.url)
    alice, boss = (corp.users[u] for u in sorted(corp.users)[1:3])
    url = detail_url("http://127.0.0.1:5000", "/h5/#/approvals/7")
    first = ensure_todo(client, creator_unionid=alice.unionid, approver_unionids=[boss.unionid],
                        source_id="crm-approval-7-1", subject="审批：合同 #7", url=url)
    again = ensure_todo(client, creator_unionid=alice.unionid, approver_unionids=[boss.unionid],
                        source_id="crm-approval-7-1", subject="审批：合同 #7", url=url)
    assert first.created and not again.created and again.task_id == first.task_id
    stored = server.world.todos[first.task_id]
    assert stored["executorIds"] == [boss.unionid] and stored["detailUrl"] == {"appUrl": url, "pcUrl": url}
    assert update_todo(client, owner_unionid=alice.unionid, source_id="crm-approval-7-1",
                       subject="审批：合同 #7（改）")
    assert server.world.todos[first.task_id]["subject"] == "审批：合同 #7（改）"
    assert close_todo(client, owner_unionid=alice.unionid, source_id="crm-approval-7-1") is True
    assert server.world.todos[first.task_id]["done"] is True and server.world.todos[first.task_id]["finishTime"]
    client.delete_todo(alice.unionid, first.task_id)
    assert close_todo(client, owner_unionid=alice.unionid, source_id="crm-approval-7-1") is False
    with pytest.raises(NotFoundError):
        client.get_todo_by_source_id(alice.unionid, "crm-approval-7-1")
    client.http.session.close()
