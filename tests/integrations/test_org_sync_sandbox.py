"""Full org sync against the sandbox over real HTTP: a 2,000-user corp with people in several departments,
the shared DB rate limiter, a crash injected mid-run and the resume, and the admin endpoints that start
a sync and poll its progress."""

from __future__ import annotations

import time

import pytest
import requests
import sqlalchemy as sa

from app.services import sync_runs
from app.services.org_sync import SyncFailed, SyncStats, full_sync
from integrations.dingtalk.client import DingTalkClient, DingTalkCredentials
from integrations.dingtalk.ratelimit import DbRateLimiter
from integrations.sandbox import DingTalkWorld, SandboxServer
from integrations.sandbox.corpgen import generate_corp
from models.org import Department, DepartmentLeader, Role, User, UserDepartment
from models.platform import SyncRun
from tests import factories as f
from tests.integrations.sandbox_binding import bind

# Faster than DingTalk's 20/s so the suite stays quick; the limiter keeps under it all the same.
QPS = 60


@pytest.fixture(scope="module")
def server():
    world = DingTalkWorld(seed=5, corps=0, qps_limit=QPS)
    world.add_corp(generate_corp(5, users=2000, depts=40))
    with SandboxServer(world) as srv:
        yield srv


@pytest.fixture(autouse=True)
def _reset(server):
    yield
    with server.world.lock:
        server.world.faults.clear()
        server.world.call_counts.clear()
        server.world.throttled.clear()


@pytest.fixture
def sbx(server):
    return next(iter(server.world.corps.values()))


def _client(server, sbx, database, corp_pk) -> DingTalkClient:
    creds = DingTalkCredentials(sbx.corp_id, sbx.app_key, sbx.app_secret, str(sbx.agent_id))
    return DingTalkClient(creds, oapi_base=server.url, api_base=server.url,
                          limiter=DbRateLimiter(database, corp_pk, per_second=QPS - 10))


def _minimum(server, sbx) -> dict:
    return requests.get(f"{server.url}/sandbox/dingtalk/corps/{sbx.corp_id}/stats", timeout=5).json()


def _api_calls(server) -> int:
    return sum(n for p, n in server.world.call_counts.items() if p != "/v1.0/oauth2/accessToken")


def test_full_sync_of_2000_users_matches_the_sandbox(server, sbx, database):
    stats = SyncStats()
    run = full_sync(database, database.corp_pk, _client(server, sbx, database, database.corp_pk), stats=stats)
    sizes = _minimum(server, sbx)
    assert run.status == "succeeded" and run.total == run.done == sizes["departments"] == 40
    # the root's detail call is the only one beyond the minimum; nothing was throttled
    assert _api_calls(server) == run.calls_made == sizes["minimumCalls"] + 1
    assert sum(server.world.throttled.values()) == 0
    with database.session() as s:
        users = {u.platform_userid: u for u in s.scalars(sa.select(User).where(User.corp_id == database.corp_pk))}
        depts = {d.id: d.platform_dept_id for d in s.scalars(sa.select(Department))}
        members = {(a, depts[b]) for a, b in s.execute(sa.select(UserDepartment.user_id, UserDepartment.department_id))}
        leaders = {(a, depts[b])
                   for a, b in s.execute(sa.select(DepartmentLeader.user_id, DepartmentLeader.department_id))}
    assert len(users) == 2000 and run.added == 2000 + 40
    by_pk = {u.id: uid for uid, u in users.items()}
    expected_members = {(u.userid, str(d)) for u in sbx.users.values() for d in u.dept_ids}
    assert {(by_pk[a], d) for a, d in members} == expected_members
    assert sum(1 for u in sbx.users.values() if len(u.dept_ids) >= 3) > 0  # people in three departments
    expected_leaders = {(m, str(d.dept_id)) for d in sbx.depts.values() for m in d.manager_userids}
    assert {(by_pk[a], d) for a, d in leaders} == expected_leaders
    someone = next(u for u in sbx.users.values() if len(u.dept_ids) >= 2)
    row = users[someone.userid]
    assert (row.unionid, row.title, row.mobile, row.name) == (someone.unionid, someone.title, someone.mobile,
                                                              someone.name)
    assert stats.users_applied == len(expected_members)


def test_crash_mid_run_then_rerun_continues_with_fewer_calls(server, sbx, database):
    """The sandbox answers a permission error on the 25th user listing; the rerun resumes the run."""
    client = _client(server, sbx, database, database.corp_pk)
    requests.post(f"{server.url}/sandbox/dingtalk/faults", timeout=5,
                  json={"path": "/topapi/v2/user/list", "errcode": 60011, "errmsg": "没有调用该接口的权限",
                        "after": 24})
    with pytest.raises(SyncFailed):
        full_sync(database, database.corp_pk, client, threads=2, chunk_users=200)
    first = _api_calls(server)
    with database.session() as s:
        crashed = s.scalars(sa.select(SyncRun)).one()
        assert crashed.status == "failed" and crashed.errors[-1]["code"] == "60011"
        assert 0 < crashed.done < 40 and crashed.calls_made == first
    server.world.call_counts.clear()
    run = full_sync(database, database.corp_pk, client, threads=2)
    again = _api_calls(server)
    from_scratch = _minimum(server, sbx)["minimumCalls"] + 1
    assert run.id == crashed.id and run.status == "succeeded" and run.done == 40
    # the tree is walked again (41 calls), only unfinished departments are listed again
    assert again < from_scratch and again <= 41 + (40 - crashed.done) * 2
    with database.session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(User)) == 2000
        assert s.scalar(sa.select(sa.func.count()).select_from(User).where(User.active.is_(False))) == 0


def test_transient_faults_are_retried(server, sbx, database):
    requests.post(f"{server.url}/sandbox/dingtalk/faults", timeout=5,
                  json={"path": "/topapi/v2/user/list", "errcode": -1, "errmsg": "系统繁忙", "after": 3})
    requests.post(f"{server.url}/sandbox/dingtalk/faults", timeout=5,
                  json={"path": "/topapi/v2/department/listsub", "status": 502, "after": 5})
    run = full_sync(database, database.corp_pk, _client(server, sbx, database, database.corp_pk), sleep=lambda s: None)
    assert run.status == "succeeded" and run.calls_made == _minimum(server, sbx)["minimumCalls"] + 1 + 2


def test_admin_starts_a_sync_and_polls_progress(client, database, settings, server, sbx):
    corp_pk = bind(database, settings, server, sbx)
    with database.session() as s:
        from models.org import Corp

        corp = s.get(Corp, corp_pk)
        admin = f.user(s, corp, "管理员", role=Role.ADMIN)
        admin.platform_userid = "user0001"  # a real member of the sandbox corp, so the sync keeps them
        rep = f.user(s, corp, "销售", role=Role.SALESPERSON)
    f.login(client, rep, corp)
    assert client.post("/api/v1/admin/org/sync").status_code == 403
    assert client.get("/api/v1/admin/org/sync-runs").status_code == 403
    client.post("/api/v1/auth/logout")
    assert client.get("/api/v1/admin/org/sync-runs").status_code == 401
    f.login(client, admin, corp)

    resp = client.post("/api/v1/admin/org/sync")
    assert resp.status_code == 202, resp.get_json()
    started = resp.get_json()
    assert started["status"] == "running" and resp.headers["Location"].endswith(f"/sync-runs/{started['id']}")
    second = client.post("/api/v1/admin/org/sync")
    assert second.status_code == 409 and second.get_json()["error"]["code"] == "sync_running"
    sync_runs.wait(started["id"], timeout=120)

    detail = client.get(f"/api/v1/admin/org/sync-runs/{started['id']}").get_json()
    assert "status" in detail, detail
    assert detail["status"] == "succeeded" and detail["progress"] == {"done": 40, "total": 40}
    assert detail["added"] >= 1999 and detail["callsMade"] > 40 and detail["durationSeconds"] > 0
    assert detail["finishedAt"].endswith("Z") and detail["errors"] == []
    listed = client.get("/api/v1/admin/org/sync-runs?limit=5").get_json()["items"]
    assert [r["id"] for r in listed] == [started["id"]]
    assert client.get("/api/v1/admin/org/sync-runs?limit=0").status_code == 422
    assert client.get("/api/v1/admin/org/sync-runs?bogus=1").status_code == 422
    assert client.get("/api/v1/admin/org/sync-runs/999999").status_code == 404
    assert client.get(f"/api/v1/admin/org/sync-runs/{2**70}").status_code == 404

    # another corp's admin sees none of it
    with database.session() as s:
        other = f.corp(s, corp_id="dingothercorp")
        other_admin = f.user(s, other, "别家管理员", role=Role.ADMIN)
    client.post("/api/v1/auth/logout")
    f.login(client, other_admin, other)
    assert client.get(f"/api/v1/admin/org/sync-runs/{started['id']}").status_code == 404
    assert client.get("/api/v1/admin/org/sync-runs").get_json()["items"] == []


def test_progress_is_visible_while_the_background_sync_runs(client, database, settings, server, sbx, monkeypatch):
    from app.services import org_sync

    monkeypatch.setattr(org_sync, "PROGRESS_EVERY", 0.3)  # this small corp syncs in seconds
    corp_pk = bind(database, settings, server, sbx)
    with database.session() as s:
        from models.org import Corp

        corp = s.get(Corp, corp_pk)
        admin = f.user(s, corp, "管理员", role=Role.ADMIN)
        admin.platform_userid = "user0001"
    f.login(client, admin, corp)
    with server.world.lock:
        server.world.latency = 0.05
    try:
        run_id = client.post("/api/v1/admin/org/sync").get_json()["id"]
        seen = []
        deadline = time.time() + 60
        while time.time() < deadline:
            body = client.get(f"/api/v1/admin/org/sync-runs/{run_id}").get_json()
            seen.append((body["status"], body["progress"]["done"], body["progress"]["total"]))
            if body["status"] != "running":
                break
            time.sleep(0.3)
        sync_runs.wait(run_id, timeout=60)
    finally:
        with server.world.lock:
            server.world.latency = 0.0
    assert any(st == "running" and t and 0 < d < t for st, d, t in seen), seen
    assert seen[-1] == ("succeeded", 40, 40)


def test_starting_a_sync_for_a_corp_without_credentials_is_a_4xx(client, database):
    with database.session() as s:
        corp = f.corp(s, corp_id="dingunbound", secrets={})
        admin = f.user(s, corp, "管理员", role=Role.ADMIN)
    f.login(client, admin, corp)
    resp = client.post("/api/v1/admin/org/sync")
    assert resp.status_code == 422 and resp.get_json()["error"]["code"] == "corp_not_bound"
    with database.session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(SyncRun)) == 0
