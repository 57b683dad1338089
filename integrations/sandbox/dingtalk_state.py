"""The sandbox's DingTalk world: corps, tokens, codes, the inbox and the documented limits.

Kept free of HTTP so the rules can be read in one place; `dingtalk_api` turns requests into calls here.
Numbers follow the fact sheet: tokens/tickets 7200 s (§1.3, §4.1; tickets capped at 24 h), sign-in codes
5 min and single use (§3.1), 20 QPS per app per API (§2.3), ≤100 userids and ≤2048-byte `msg` per send,
500 messages per user per day, identical content to a user once a day, at most 5,000 recipients per send
and 3 `to_all_user` broadcasts per day — all dropped silently (§9.1).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
import time
import zoneinfo
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from integrations.sandbox.corpgen import SandboxCorp, SandboxDept, SandboxUser, generate_corp

TOKEN_TTL = 7200
TICKET_MAX_AGE = 24 * 3600
AUTH_CODE_TTL = 300
MAX_USERIDS = 100
MAX_DEPT_IDS = 20
MAX_RECIPIENTS_PER_SEND = 5000  # internal apps (§9.1)
MAX_BROADCASTS_PER_DAY = 3  # to_all_user (§9.1, FAQ)
MAX_MSG_BYTES = 2048
DAILY_CAP = 500
SHANGHAI = zoneinfo.ZoneInfo("Asia/Shanghai")


class ApiFailure(Exception):
    """An answer DingTalk would give instead of a result. OLD APIs turn it into `errcode`, NEW into
    an HTTP status plus `code`."""

    def __init__(self, errcode: int, errmsg: str, *, status: int = 400, code: str | None = None,
                 sub_code: str | None = None):
        super().__init__(errmsg)
        self.errcode = errcode
        self.errmsg = errmsg
        self.status = status
        self.code = code
        self.sub_code = sub_code


@dataclass
class Credential:
    value: str
    corp: SandboxCorp
    expires_at: float
    created_at: float


@dataclass
class SentMessage:
    task_id: int
    corp_id: str
    agent_id: int
    msg: dict[str, Any]
    sent_at: float
    delivered: list[str] = field(default_factory=list)
    dropped: dict[str, str] = field(default_factory=dict)  # userid → forbidden code
    invalid: list[str] = field(default_factory=list)
    read: set[str] = field(default_factory=set)

    def as_json(self) -> dict[str, Any]:
        return {
            "taskId": self.task_id, "corpId": self.corp_id, "agentId": self.agent_id, "msg": self.msg,
            "msgtype": self.msg.get("msgtype"), "sentAt": int(self.sent_at * 1000),
            "delivered": self.delivered, "dropped": self.dropped, "invalid": self.invalid,
            "read": sorted(self.read),
        }


@dataclass
class Fault:
    path: str
    remaining: int
    errcode: int | None = None
    errmsg: str = "sandbox fault"
    status: int = 200
    code: str | None = None
    corp_id: str | None = None
    raw: Any = None  # a body answered verbatim (e.g. the IP-block JSON or HTML)
    after: int = 0  # let this many matching calls through first: a failure in the middle of a run
    delay: float = 0.0  # extra seconds before answering (beyond the client's read timeout = a timeout)


class DingTalkWorld:
    def __init__(self, seed: int | str = 1, corps: int = 1, users: int = 60, *, qps_limit: int = 20,
                 daily_cap: int = DAILY_CAP, latency: float = 0.0, monthly_quota: int | None = None,
                 depts: int | None = None) -> None:
        self.lock = threading.RLock()
        self.corps: dict[str, SandboxCorp] = {}
        for i in range(corps):
            self.add_corp(generate_corp(seed, index=i, users=users, depts=depts))
        self.qps_limit = qps_limit
        self.daily_cap = daily_cap
        self.latency = latency
        self.monthly_quota = monthly_quota
        self.clock_offset = 0.0
        self.tokens: dict[str, Credential] = {}
        self.token_by_app: dict[str, Credential] = {}
        self.tickets: dict[str, Credential] = {}
        self.auth_codes: dict[str, tuple[str, str, float]] = {}  # code → (corp_id, userid, expires)
        self.messages: dict[int, SentMessage] = {}
        self.next_task_id = 700_000_000_001
        self.todos: dict[str, dict[str, Any]] = {}
        self.faults: list[Fault] = []
        self.qps_windows: dict[tuple[str, str, int], int] = {}
        self.per_user_day: dict[tuple[str, str, str], int] = {}
        self.content_seen: set[tuple[str, str, str, str]] = set()
        self.broadcasts: dict[tuple[str, str], int] = {}  # (app_key, local day) → to_all_user sends
        self.quota_used: dict[tuple[str, str], int] = {}
        self.calls: list[tuple[float, str, str]] = []  # (time, app_key or '-', path), the latest 10,000
        self.call_counts: dict[str, int] = {}  # path → every call since start
        self.throttled: dict[str, int] = {}  # path → calls answered 90018
        self.events_sent: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ basics

    def now(self) -> float:
        return time.time() + self.clock_offset

    def add_corp(self, corp: SandboxCorp) -> SandboxCorp:
        self.corps[corp.corp_id] = corp
        return corp

    def corp(self, corp_id: str | None = None) -> SandboxCorp:
        if corp_id is None:
            return next(iter(self.corps.values()))
        try:
            return self.corps[corp_id]
        except KeyError:
            raise ApiFailure(40089, f"unknown corp {corp_id}") from None

    def corp_by_app_key(self, app_key: str) -> SandboxCorp | None:
        return next((c for c in self.corps.values() if c.app_key == app_key), None)

    # ------------------------------------------------------------------ limits and faults

    def check_qps(self, app_key: str, path: str) -> bool:
        """Count this call in its one-second window; False when it is over the per-app per-API limit."""
        with self.lock:
            second = int(self.now())
            key = (app_key, path, second)
            self.qps_windows[key] = self.qps_windows.get(key, 0) + 1
            if len(self.qps_windows) > 5000:
                self.qps_windows = {k: v for k, v in self.qps_windows.items() if k[2] >= second - 2}
            if self.qps_windows[key] > self.qps_limit:
                self.throttled[path] = self.throttled.get(path, 0) + 1
                return False
            return True

    def note_call(self, app_key: str, path: str) -> None:
        """Every call that reaches the server, answered or failed (benchmarks compare these counts)."""
        with self.lock:
            self.calls.append((self.now(), app_key, path))
            if len(self.calls) > 20_000:
                del self.calls[:10_000]
            self.call_counts[path] = self.call_counts.get(path, 0) + 1

    def take_fault(self, path: str, corp_id: str | None) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.remaining > 0 and path.startswith(fault.path) and fault.corp_id in (None, corp_id):
                    if fault.after > 0:
                        fault.after -= 1
                        continue
                    fault.remaining -= 1
                    return fault
            return None

    def count_quota(self, corp: SandboxCorp, path: str) -> None:
        """Monthly quota for the families that count (§2.3); off unless `monthly_quota` is set."""
        counted = path.startswith(("/topapi/message/corpconversation/asyncsend", "/v1.0/todo/",
                                   "/v1.0/workflow/"))
        if not counted or self.monthly_quota is None:
            return
        month = datetime.fromtimestamp(self.now(), SHANGHAI).strftime("%Y-%m")
        with self.lock:
            used = self.quota_used.get((corp.corp_id, month), 0)
            if used >= self.monthly_quota:
                raise ApiFailure(90020, "企业本月接口调用量已用完", status=403,
                                 code="Forbidden.AccessDenied.ApiCountLimitForOrg")
            self.quota_used[(corp.corp_id, month)] = used + 1

    # ------------------------------------------------------------------ tokens

    def issue_token(self, app_key: str, app_secret: str) -> Credential:
        corp = self.corp_by_app_key(app_key)
        if corp is None or not secrets.compare_digest(corp.app_secret, app_secret or ""):
            raise ApiFailure(40096, "不合法的appKey或appSecret", code="invalidClientIdOrSecret")
        now = self.now()
        with self.lock:
            current = self.token_by_app.get(app_key)
            if current and current.expires_at > now:
                # Asking again while valid returns the same token and extends it (§1.3).
                current.expires_at = now + TOKEN_TTL
                return current
            cred = Credential("sbx-" + secrets.token_hex(16), corp, now + TOKEN_TTL, now)
            self.tokens[cred.value] = cred
            self.token_by_app[app_key] = cred
            return cred

    def check_token(self, token: str | None) -> SandboxCorp:
        if not token:
            raise ApiFailure(88, "鉴权异常", sub_code="40000", code="AuthenticationFailed.MissingParameter")
        cred = self.tokens.get(token)
        if cred is None:
            raise ApiFailure(88, "鉴权异常", sub_code="40014", code="InvalidAuthentication")
        if cred.expires_at <= self.now():
            raise ApiFailure(88, "鉴权异常", sub_code="42001", code="InvalidAuthentication")
        return cred.corp

    def revoke_tokens(self, corp_id: str | None = None) -> int:
        with self.lock:
            gone = [t for t, c in self.tokens.items() if corp_id in (None, c.corp.corp_id)]
            for t in gone:
                cred = self.tokens.pop(t)
                self.token_by_app.pop(cred.corp.app_key, None)
            return len(gone)

    def issue_ticket(self, corp: SandboxCorp) -> Credential:
        now = self.now()
        with self.lock:
            current = self.tickets.get(corp.app_key)
            if current and current.expires_at > now and now - current.created_at < TICKET_MAX_AGE:
                current.expires_at = min(now + TOKEN_TTL, current.created_at + TICKET_MAX_AGE)
                return current
            cred = Credential("sbxticket-" + secrets.token_hex(16), corp, now + TOKEN_TTL, now)
            self.tickets[corp.app_key] = cred
            return cred

    # ------------------------------------------------------------------ sign-in

    def issue_auth_code(self, corp_id: str, userid: str) -> str:
        corp = self.corp(corp_id)
        if userid not in corp.users:
            raise ApiFailure(60121, "找不到该用户")
        code = secrets.token_hex(16)
        with self.lock:
            self.auth_codes[code] = (corp.corp_id, userid, self.now() + AUTH_CODE_TTL)
        return code

    def redeem_auth_code(self, corp: SandboxCorp, code: str) -> SandboxUser:
        with self.lock:
            entry = self.auth_codes.pop(code or "", None)  # single use, even when it fails below
        if entry is None or entry[2] <= self.now() or entry[0] != corp.corp_id:
            raise ApiFailure(40078, "不存在的临时授权码")
        user = corp.users.get(entry[1])
        if user is None:
            raise ApiFailure(60121, "找不到该用户")
        return user

    # ------------------------------------------------------------------ org

    def dept(self, corp: SandboxCorp, dept_id: Any) -> SandboxDept:
        try:
            return corp.depts[int(dept_id)]
        except (KeyError, TypeError, ValueError):
            raise ApiFailure(60003, "部门不存在") from None

    def user(self, corp: SandboxCorp, userid: Any) -> SandboxUser:
        user = corp.users.get(str(userid or ""))
        if user is None:
            raise ApiFailure(60121, "找不到该用户")
        return user

    def user_json(self, corp: SandboxCorp, u: SandboxUser, *, listed_in: int | None = None) -> dict[str, Any]:
        data: dict[str, Any] = {
            "userid": u.userid, "unionid": u.unionid, "name": u.name, "title": u.title,
            "mobile": u.mobile, "state_code": "86", "email": u.email, "job_number": u.job_number,
            "avatar": f"https://static.example.com/avatar/{u.userid}.png", "hired_date": u.hired_date,
            "dept_id_list": list(u.dept_ids), "active": u.active, "admin": u.admin, "boss": u.boss,
            "exclusive_account": False,
        }
        if listed_in is not None:
            data["leader"] = corp.is_leader(u, listed_in)
            data["dept_order"] = u.dept_orders.get(listed_in, 0)
        else:
            data["leader_in_dept"] = [{"dept_id": d, "leader": corp.is_leader(u, d)} for d in u.dept_ids]
            data["dept_order_list"] = [{"dept_id": d, "order": u.dept_orders.get(d, 0)} for d in u.dept_ids]
            data["role_list"] = []
            data["senior"] = False
            data["real_authed"] = True
            managers = [
                m for d in u.dept_ids for m in corp.depts[d].manager_userids if m != u.userid
            ] if u.dept_ids else []
            if managers:
                data["manager_userid"] = managers[0]
        return data

    # ------------------------------------------------------------------ work notifications

    def send(self, corp: SandboxCorp, body: dict[str, Any]) -> SentMessage:
        if str(body.get("agent_id")) != str(corp.agent_id):
            raise ApiFailure(40056, "不合法的agentid")
        msg = body.get("msg")
        if isinstance(msg, str):
            try:
                msg = json.loads(msg)
            except ValueError:
                raise ApiFailure(400002, "msg 不是合法的JSON") from None
        if not isinstance(msg, dict) or not msg.get("msgtype") or msg["msgtype"] not in msg:
            raise ApiFailure(400002, "msg 格式不正确")
        size = len(json.dumps(msg, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
        if size > MAX_MSG_BYTES:
            raise ApiFailure(400002, f"msg 超过 {MAX_MSG_BYTES} 字节")
        raw_ids = body.get("userid_list") or ""
        userids = [u for u in (raw_ids.split(",") if isinstance(raw_ids, str) else raw_ids) if u]
        if len(userids) > MAX_USERIDS:
            raise ApiFailure(400002, f"userid_list 最多 {MAX_USERIDS} 个")
        dept_ids = [d for d in str(body.get("dept_id_list") or "").split(",") if d]
        if len(dept_ids) > MAX_DEPT_IDS:
            raise ApiFailure(400002, f"dept_id_list 最多 {MAX_DEPT_IDS} 个")
        broadcast = body.get("to_all_user") in (True, "true")
        if broadcast:
            userids = list(corp.users)
        for d in dept_ids:
            dept = self.dept(corp, d)
            userids.extend(u.userid for u in self._subtree_members(corp, dept.dept_id))
        if not userids:
            raise ApiFailure(400002, "接收者不能为空")
        now = self.now()
        day = datetime.fromtimestamp(now, SHANGHAI).strftime("%Y-%m-%d")
        digest = hashlib.sha256(json.dumps(msg, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
        with self.lock:
            sent = SentMessage(self.next_task_id, corp.corp_id, corp.agent_id, msg, now)
            self.next_task_id += 1
            over_broadcast = False
            if broadcast:
                key = (corp.app_key, day)
                self.broadcasts[key] = self.broadcasts.get(key, 0) + 1
                over_broadcast = self.broadcasts[key] > MAX_BROADCASTS_PER_DAY
            for n, uid in enumerate(dict.fromkeys(userids)):
                if uid not in corp.users:
                    sent.invalid.append(uid)
                    continue
                # Beyond the documented limits the send still answers success; these recipients are dropped.
                # (The platform documents no forbidden code for them; the sandbox marks them with a word.)
                if over_broadcast:
                    sent.dropped[uid] = "to_all_user_daily_limit"
                    continue
                if n >= MAX_RECIPIENTS_PER_SEND:
                    sent.dropped[uid] = "recipients_per_send_limit"
                    continue
                seen_key = (corp.app_key, uid, day, digest)
                count_key = (corp.app_key, uid, day)
                if seen_key in self.content_seen:
                    sent.dropped[uid] = "143106"
                elif self.per_user_day.get(count_key, 0) >= self.daily_cap:
                    sent.dropped[uid] = "143105"
                else:
                    self.content_seen.add(seen_key)
                    self.per_user_day[count_key] = self.per_user_day.get(count_key, 0) + 1
                    sent.delivered.append(uid)
            self.messages[sent.task_id] = sent
        return sent

    def _subtree_members(self, corp: SandboxCorp, dept_id: int) -> list[SandboxUser]:
        ids, queue = {dept_id}, [dept_id]
        while queue:
            for child in corp.children(queue.pop()):
                ids.add(child.dept_id)
                queue.append(child.dept_id)
        return [u for u in corp.users.values() if ids & set(u.dept_ids)]

    def message(self, corp: SandboxCorp, agent_id: Any, task_id: Any) -> SentMessage:
        if str(agent_id) != str(corp.agent_id):
            raise ApiFailure(40056, "不合法的agentid")
        try:
            sent = self.messages[int(task_id)]
        except (KeyError, TypeError, ValueError):
            raise ApiFailure(400002, "无效的task_id") from None
        if sent.corp_id != corp.corp_id:
            raise ApiFailure(400002, "无效的task_id")
        return sent

    def inbox(self, corp_id: str | None = None, userid: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            items = [m.as_json() for m in self.messages.values()
                     if corp_id in (None, m.corp_id)
                     and (userid is None or userid in m.delivered or userid in m.dropped)]
        return items

    # ------------------------------------------------------------------ to-dos

    def todo_create(self, corp: SandboxCorp, union_id: str, body: dict[str, Any]) -> dict[str, Any]:
        if corp.user_by_unionid(union_id) is None:
            raise ApiFailure(0, "用户不存在", code="userNotExist")
        subject = body.get("subject")
        detail = body.get("detailUrl") or {}
        if not subject:
            raise ApiFailure(0, "subject is required", code="todo.taskCreate.paramError")
        if len(subject) > 1024:
            raise ApiFailure(0, "subject is oversize", code="todo.taskCreate.paramError")
        if not (detail.get("appUrl") or detail.get("pcUrl")):
            # Work to-dos need a detail URL since 2024-02-01 (§10).
            raise ApiFailure(0, "detailUrl is required", code="todo.taskCreate.paramError")
        executors = body.get("executorIds") or []
        if len(executors) > 1000:
            raise ApiFailure(0, "executors is oversize", code="todo.taskCreate.paramError")
        with self.lock:
            source_id = body.get("sourceId")
            if source_id and any(t["sourceId"] == source_id and t["corpId"] == corp.corp_id
                                 for t in self.todos.values()):
                raise ApiFailure(0, "task exist", code="todo.taskCreate.paramError")
            task_id = "task" + secrets.token_hex(8)
            task = {
                "id": task_id, "subject": subject, "description": body.get("description"),
                "startTime": None, "dueTime": body.get("dueTime"), "finishTime": None, "done": False,
                "executorIds": executors, "participantIds": body.get("participantIds") or [],
                "detailUrl": detail, "source": "crm", "sourceId": source_id,
                "createdTime": int(self.now() * 1000), "modifiedTime": int(self.now() * 1000),
                "creatorId": body.get("creatorId") or union_id, "modifierId": union_id,
                "bizTag": "crm", "requestId": secrets.token_hex(8), "priority": body.get("priority"),
                "executorStatus": dict.fromkeys(executors, False), "corpId": corp.corp_id, "ownerId": union_id,
            }
            self.todos[task_id] = task
        return {k: v for k, v in task.items() if k not in {"corpId", "ownerId", "executorStatus"}}

    def todo_get(self, corp: SandboxCorp, union_id: str, task_id: str) -> dict[str, Any]:
        task = self.todos.get(task_id)
        if task is None or task["corpId"] != corp.corp_id:
            raise ApiFailure(0, "task not exist", code="todo.taskUpdate.paramError")
        return task

    def todo_by_source(self, corp: SandboxCorp, union_id: str, source_id: str) -> dict[str, Any]:
        with self.lock:
            for task in self.todos.values():
                if task["corpId"] == corp.corp_id and task["sourceId"] == source_id:
                    return task
        raise ApiFailure(0, "task not exist", code="todo.taskQuery.paramError")

    def todo_update(self, corp: SandboxCorp, union_id: str, task_id: str, body: dict[str, Any]) -> None:
        with self.lock:
            task = self.todo_get(corp, union_id, task_id)
            for key in ("subject", "description", "dueTime", "done", "executorIds", "participantIds"):
                if key in body:
                    task[key] = body[key]
            if body.get("done"):
                task["finishTime"] = int(self.now() * 1000)
            task["modifiedTime"] = int(self.now() * 1000)

    def todo_executor_status(self, corp: SandboxCorp, union_id: str, task_id: str,
                             body: dict[str, Any]) -> None:
        with self.lock:
            task = self.todo_get(corp, union_id, task_id)
            for item in body.get("executorStatusList") or []:
                task["executorStatus"][item.get("id")] = bool(item.get("isDone"))

    def todo_delete(self, corp: SandboxCorp, union_id: str, task_id: str) -> None:
        with self.lock:
            self.todo_get(corp, union_id, task_id)
            del self.todos[task_id]

    def todo_list(self, corp_id: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(t) for t in self.todos.values() if corp_id in (None, t["corpId"])]

    # ------------------------------------------------------------------ org changes (for events)

    def add_user(self, corp: SandboxCorp, *, name: str, dept_ids: list[int], userid: str | None = None,
                 title: str = "销售代表") -> SandboxUser:
        with self.lock:
            for d in dept_ids:
                self.dept(corp, d)
            n = len(corp.users) + 1
            while f"user{n:04d}" in corp.users:
                n += 1
            uid = userid or f"user{n:04d}"
            user = SandboxUser(
                userid=uid, unionid=hashlib.sha1(f"{corp.corp_id}:{uid}".encode()).hexdigest()[:24],
                name=name, title=title, mobile=f"139{n:08d}", email=f"{uid}@example.com",
                dept_ids=list(dept_ids), dept_orders=dict.fromkeys(dept_ids, 1000 + n), job_number=f"E{n:05d}",
                hired_date=int(self.now() * 1000), active=False,
            )
            corp.users[uid] = user
            corp.touch()
            return user

    def remove_user(self, corp: SandboxCorp, userid: str) -> SandboxUser:
        with self.lock:
            user = self.user(corp, userid)
            del corp.users[userid]
            for dept in corp.depts.values():
                if userid in dept.manager_userids:
                    dept.manager_userids.remove(userid)
            corp.touch()
            return user

    def add_dept(self, corp: SandboxCorp, *, name: str, parent_id: int) -> SandboxDept:
        with self.lock:
            self.dept(corp, parent_id)
            dept = SandboxDept(corp.next_dept_id, name, parent_id, 1000)
            corp.next_dept_id += 1
            corp.depts[dept.dept_id] = dept
            corp.touch()
            return dept

    def remove_dept(self, corp: SandboxCorp, dept_id: int) -> SandboxDept:
        with self.lock:
            dept = self.dept(corp, dept_id)
            if dept.dept_id == 1 or corp.children(dept.dept_id) or corp.members(dept.dept_id):
                raise ApiFailure(60005, "部门下存在子部门或员工，不能删除")
            del corp.depts[dept.dept_id]
            corp.touch()
            return dept
