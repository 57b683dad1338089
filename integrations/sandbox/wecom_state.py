"""The sandbox's WeCom world: corps with one self-built app each, tokens, OAuth codes, JS-SDK tickets, the
visible range, application messages with their limits, template cards and the inbox.

Kept free of HTTP (`wecom_api` turns requests into calls here). Numbers follow `wecom-api-facts.md`:
tokens and tickets 7200 s (§1, §3), OAuth codes 5 min and single use (§2.1), ticket fetches ≤400/h per
corp and ≤100/h per app (§3), 10 000 calls/min and 150 000/h per API per corp (§8), `touser` ≤1000 and
`toparty` ≤100 (§6.1), per member per app 30 messages/min and 1000/h, the excess silently dropped (§6.2),
`response_code` single use and valid 72 h (the current page, §6.4).
"""

from __future__ import annotations

import json
import random
import secrets
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

from integrations.sandbox.corpgen import SandboxCorp, SandboxDept, SandboxUser, generate_corp

TOKEN_TTL = 7200
TICKET_TTL = 7200
CODE_TTL = 300
MAX_TOUSER = 1000
MAX_TOPARTY = 100
PER_MEMBER_MINUTE = 30
PER_MEMBER_HOUR = 1000
API_PER_MINUTE = 10_000
API_PER_HOUR = 150_000
TICKETS_PER_HOUR_CORP = 400
TICKETS_PER_HOUR_APP = 100
RESPONSE_CODE_TTL = 72 * 3600
MARKDOWN_BYTES = 2048
# Not rate-limited per API (§2.2, §6.2): sign-in code exchange and message sending.
EXEMPT_PATHS = frozenset({"auth/getuserinfo", "message/send", "message/update_template_card"})


class WeComFailure(Exception):
    """An `{"errcode", "errmsg"}` answer (HTTP 200) instead of a result."""

    def __init__(self, errcode: int, errmsg: str) -> None:
        super().__init__(errmsg)
        self.errcode = errcode
        self.errmsg = errmsg


@dataclass
class WeComTag:
    """A corp tag (标签): members named one by one and whole departments (each with its subtree)."""

    tag_id: int
    name: str
    userids: list[str] = field(default_factory=list)
    dept_ids: list[int] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"tagid": self.tag_id, "tagname": self.name, "userlist": list(self.userids),
                "partylist": list(self.dept_ids)}


@dataclass
class WeComApp:
    """The corp's self-built app: its secret, AgentId, visible range and settings. The corp's tags live
    here too (one app per sandbox corp)."""

    corp: SandboxCorp
    secret: str
    agent_id: int
    name: str = "CRM"
    allow_partys: list[int] = field(default_factory=lambda: [1])
    allow_users: list[str] = field(default_factory=list)
    allow_tags: list[int] = field(default_factory=list)
    tags: dict[int, WeComTag] = field(default_factory=dict)
    contact_permission: bool = True
    trusted_domain: str | None = None  # None: any redirect host is accepted
    callback_url: str | None = None


@dataclass
class Issued:
    value: str
    app: WeComApp
    expires_at: float


@dataclass
class SentMessage:
    msgid: str
    corp_id: str
    agent_id: int
    body: dict[str, Any]
    sent_at: float
    delivered: list[str] = field(default_factory=list)
    dropped: dict[str, str] = field(default_factory=dict)  # userid → minute_cap | hour_cap | duplicate
    invalid: list[str] = field(default_factory=list)
    invalid_parties: list[str] = field(default_factory=list)
    response_code: str | None = None
    # Per recipient: what their copy of a template card shows now (after clicks and updates).
    card_state: dict[str, dict[str, Any]] = field(default_factory=dict)
    clicks: list[dict[str, Any]] = field(default_factory=list)

    @property
    def msgtype(self) -> str:
        return str(self.body.get("msgtype"))

    def as_json(self) -> dict[str, Any]:
        return {
            "msgid": self.msgid, "corpId": self.corp_id, "agentId": self.agent_id, "msgtype": self.msgtype,
            "body": self.body, "sentAt": int(self.sent_at * 1000), "delivered": self.delivered,
            "dropped": self.dropped, "invalid": self.invalid, "invalidParties": self.invalid_parties,
            "cards": self.card_state, "clicks": self.clicks,
        }


@dataclass
class Fault:
    path: str
    remaining: int
    errcode: int = -1
    errmsg: str = "sandbox fault"
    corp_id: str | None = None


def _token(rng: random.Random, n: int, alphabet: str) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def make_wecom_corp(seed: int | str = 1, *, index: int = 0, users: int = 60, name: str | None = None,
                    allow_partys: list[int] | None = None, allow_users: list[str] | None = None) -> WeComApp:
    """A corp from `corpgen` (same org shape as the DingTalk sandbox) with WeCom-style identifiers. The app
    sees the whole corp unless `allow_partys` / `allow_users` give its visible range (any set of
    departments, each with its subtree, plus people named one by one)."""
    corp = generate_corp(f"wecom:{seed}", index=index, users=users, name=name)
    rng = random.Random(f"wecom:{seed}:{index}:ids")
    alnum = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    corp.corp_id = "ww" + _token(rng, 16, "0123456789abcdef")
    corp.app_key = ""
    corp.app_secret = _token(rng, 43, alnum + "-_")
    corp.agent_id = 1000002 + index
    corp.callback_token = _token(rng, 24, alnum)
    corp.callback_aes_key = _token(rng, 43, alnum)
    return WeComApp(corp=corp, secret=corp.app_secret, agent_id=corp.agent_id,
                    allow_partys=[1] if allow_partys is None else [int(p) for p in allow_partys],
                    allow_users=[str(u) for u in allow_users or ()])


def add_bulk_org(app: WeComApp, *, departments: int, users: int, seed: int | str = 1) -> None:
    """Grow a corp to `departments` extra teams and `users` extra members, for benchmarks: teams hang under
    regional departments, ten to a region, members are spread evenly."""
    corp = app.corp
    rng = random.Random(f"bulk:{seed}")
    regions: list[int] = []
    next_id = max(corp.depts) + 1
    teams: list[int] = []
    for i in range(departments):
        if i % 10 == 0:
            corp.depts[next_id] = SandboxDept(next_id, f"大区{i // 10 + 1}", 1, i)
            regions.append(next_id)
            next_id += 1
        corp.depts[next_id] = SandboxDept(next_id, f"销售{i + 1}组", regions[-1], i % 10, "sales")
        teams.append(next_id)
        next_id += 1
    corp.next_dept_id = next_id
    start = len(corp.users) + 1
    for i in range(users):
        dept = teams[i % len(teams)] if teams else 1
        userid = f"bulk{start + i:06d}"
        corp.users[userid] = SandboxUser(
            userid=userid, unionid=userid, name=f"员工{start + i}", title="销售代表", mobile="", email="",
            dept_ids=[dept], dept_orders={dept: rng.randint(1, 1000)}, job_number="", hired_date=0,
        )


class WeComWorld:
    def __init__(self, seed: int | str = 1, corps: int = 1, users: int = 60, *, latency: float = 0.0,
                 per_minute: int = API_PER_MINUTE, per_hour: int = API_PER_HOUR,
                 allow_partys: list[int] | None = None, allow_users: list[str] | None = None) -> None:
        self.lock = threading.RLock()
        self.apps: dict[str, WeComApp] = {}
        self._members: dict[str, dict[int, list[str]]] = {}
        self._range: dict[str, list[int]] = {}
        self._range_sets: dict[str, frozenset[int]] = {}
        self._tag_users: dict[str, frozenset[str]] = {}
        for i in range(corps):
            self.add_app(make_wecom_corp(seed, index=i, users=users, allow_partys=allow_partys,
                                         allow_users=allow_users))
        self.latency = latency
        self.per_minute = per_minute
        self.per_hour = per_hour
        self.max_concurrent: int | None = None  # corp-level concurrency cap per API (45033); off by default
        self.clock_offset = 0.0
        self.tokens: dict[str, Issued] = {}
        self.tickets: dict[str, Issued] = {}
        self.codes: dict[str, tuple[str, str | None, str | None, float]] = {}  # code → corp, userid, openid, exp
        self.messages: dict[str, SentMessage] = {}
        self.response_codes: dict[str, tuple[str, float]] = {}  # code → (msgid, expires)
        self.task_ids: set[tuple[str, str]] = set()  # (corp_id, task_id) already used
        self.next_msgid = 1
        self.faults: list[Fault] = []
        self.api_calls: dict[tuple[str, str, str], deque[float]] = defaultdict(deque)
        self.in_flight: dict[tuple[str, str], int] = defaultdict(int)
        self.ticket_fetches: dict[tuple[str, str], deque[float]] = defaultdict(deque)
        self.member_sends: dict[tuple[str, str], deque[float]] = defaultdict(deque)
        self.recent_bodies: dict[tuple[str, str], float] = {}
        self.calls: list[tuple[float, str, str]] = []  # (time, corp_id, path)
        self.errors: list[tuple[float, str, str, int]] = []  # (time, corp_id, path, errcode)
        self.events_sent: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ basics

    def now(self) -> float:
        return time.time() + self.clock_offset

    def add_app(self, app: WeComApp) -> WeComApp:
        self.apps[app.corp.corp_id] = app
        self._members.pop(app.corp.corp_id, None)
        return app

    def app(self, corp_id: str | None = None) -> WeComApp:
        if corp_id is None:
            return next(iter(self.apps.values()))
        try:
            return self.apps[corp_id]
        except KeyError:
            raise WeComFailure(40013, f"invalid corpid {corp_id}") from None

    def org_changed(self, app: WeComApp) -> None:
        """Drop the derived indexes after any change to departments, members or the visible range."""
        self._members.pop(app.corp.corp_id, None)
        self._range.pop(app.corp.corp_id, None)
        self._range_sets.pop(app.corp.corp_id, None)
        self._tag_users.pop(app.corp.corp_id, None)
        app.corp.touch()

    def _member_index(self, app: WeComApp) -> dict[int, list[str]]:
        index = self._members.get(app.corp.corp_id)
        if index is None:
            index = defaultdict(list)
            for u in app.corp.users.values():
                for d in u.dept_ids:
                    index[d].append(u.userid)
            self._members[app.corp.corp_id] = index
        return index

    def members(self, app: WeComApp, dept_id: int) -> list[SandboxUser]:
        users = [app.corp.users[u] for u in self._member_index(app).get(dept_id, ())]
        return sorted(users, key=lambda u: (-u.dept_orders.get(dept_id, 0), u.userid))

    # ------------------------------------------------------------------ limits and faults

    def take_fault(self, path: str, corp_id: str | None) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.remaining > 0 and path.startswith(fault.path) and fault.corp_id in (None, corp_id):
                    fault.remaining -= 1
                    return fault
            return None

    def count_call(self, app: WeComApp, path: str) -> None:
        """Per API per corp: 10 000/min and 150 000/h (§8); a block lasts the window. Raises 45009."""
        now = self.now()
        with self.lock:
            self.calls.append((now, app.corp.corp_id, path))
            if path in EXEMPT_PATHS:
                return
            minute = self.api_calls[(app.corp.corp_id, path, "m")]
            hour = self.api_calls[(app.corp.corp_id, path, "h")]
            while minute and minute[0] <= now - 60:
                minute.popleft()
            while hour and hour[0] <= now - 3600:
                hour.popleft()
            if len(minute) >= self.per_minute or len(hour) >= self.per_hour:
                self.errors.append((now, app.corp.corp_id, path, 45009))
                raise WeComFailure(45009, "api freq out of limit")
            minute.append(now)
            hour.append(now)

    def enter(self, app: WeComApp, path: str) -> None:
        with self.lock:
            key = (app.corp.corp_id, path)
            if self.max_concurrent is not None and self.in_flight[key] >= self.max_concurrent:
                self.errors.append((self.now(), app.corp.corp_id, path, 45033))
                raise WeComFailure(45033, "api concurrent out of limit")
            self.in_flight[key] += 1

    def leave(self, app: WeComApp, path: str) -> None:
        with self.lock:
            self.in_flight[(app.corp.corp_id, path)] -= 1

    # ------------------------------------------------------------------ tokens and tickets

    def issue_token(self, corp_id: str | None, secret: str | None) -> Issued:
        app = self.apps.get(corp_id or "")
        if app is None:
            raise WeComFailure(40013, "invalid corpid")
        if not secrets.compare_digest(app.secret, secret or ""):
            raise WeComFailure(40001, "invalid credential")
        # A new value each time (whether WeCom still repeats a valid token is unconfirmed, §1); the old
        # one keeps working until it expires.
        issued = Issued("wxt-" + secrets.token_hex(24), app, self.now() + TOKEN_TTL)
        with self.lock:
            self.tokens[issued.value] = issued
        return issued

    def check_token(self, token: str | None) -> WeComApp:
        if not token:
            raise WeComFailure(41001, "access_token missing")
        issued = self.tokens.get(token)
        if issued is None:
            raise WeComFailure(40014, "invalid access_token")
        if issued.expires_at <= self.now():
            raise WeComFailure(42001, "access_token expired")
        return issued.app

    def revoke_tokens(self, corp_id: str | None = None) -> int:
        with self.lock:
            gone = [t for t, i in self.tokens.items() if corp_id in (None, i.app.corp.corp_id)]
            for t in gone:
                del self.tokens[t]
            return len(gone)

    def issue_ticket(self, app: WeComApp, kind: str) -> Issued:
        """kind: `corp` (get_jsapi_ticket) or `agent` (ticket/get?type=agent_config). ≤400/h per corp and
        ≤100/h per app (§3; the same assumed for the agent ticket)."""
        now = self.now()
        with self.lock:
            per_corp = self.ticket_fetches[(app.corp.corp_id, f"{kind}:corp")]
            per_app = self.ticket_fetches[(app.corp.corp_id, f"{kind}:app:{app.agent_id}")]
            for window in (per_corp, per_app):
                while window and window[0] <= now - 3600:
                    window.popleft()
            if len(per_corp) >= TICKETS_PER_HOUR_CORP or len(per_app) >= TICKETS_PER_HOUR_APP:
                raise WeComFailure(45009, "api freq out of limit: jsapi ticket")
            per_corp.append(now)
            per_app.append(now)
            issued = Issued(f"{kind}-" + secrets.token_hex(20), app, now + TICKET_TTL)
            self.tickets[issued.value] = issued
            return issued

    def ticket_fetch_count(self, corp_id: str, kind: str) -> int:
        return len(self.ticket_fetches.get((corp_id, f"{kind}:corp"), ()))

    # ------------------------------------------------------------------ OAuth

    def issue_code(self, corp_id: str, userid: str | None = None, *, openid: str | None = None) -> str:
        app = self.app(corp_id)
        if userid is not None and userid not in app.corp.users:
            raise WeComFailure(60111, f"userid not found: {userid}")
        code = secrets.token_urlsafe(24)
        with self.lock:
            self.codes[code] = (app.corp.corp_id, userid, openid, self.now() + CODE_TTL)
        return code

    def redeem_code(self, app: WeComApp, code: str | None) -> dict[str, Any]:
        with self.lock:
            entry = self.codes.pop(code or "", None)
        if entry is None or entry[0] != app.corp.corp_id:
            raise WeComFailure(40029, "invalid code")
        _, userid, openid, expires = entry
        if expires <= self.now():
            raise WeComFailure(42003, "code expired")
        if userid is not None:
            return {"userid": userid}
        return {"openid": openid or "o" + secrets.token_hex(12)}

    def check_redirect(self, app: WeComApp, redirect_uri: str) -> None:
        from urllib.parse import urlsplit

        if app.trusted_domain is not None and urlsplit(redirect_uri).netloc != app.trusted_domain:
            raise WeComFailure(50001, "redirect_uri 与可信域名不一致 (redirect host is not a trusted domain)")

    # ------------------------------------------------------------------ org (visible range)

    def range_tags(self, app: WeComApp) -> list[WeComTag]:
        return [app.tags[t] for t in app.allow_tags if t in app.tags]

    def range_dept_ids(self, app: WeComApp) -> list[int]:
        """Departments in the app's visible range: each listed department and its whole subtree, also those
        a tag of the range brings (department/list answers "应用可见范围内的部门")."""
        cached = self._range.get(app.corp.corp_id)
        if cached is not None:
            return cached
        kids: dict[int, list[SandboxDept]] = defaultdict(list)
        for d in app.corp.depts.values():
            if d.parent_id is not None:
                kids[d.parent_id].append(d)
        seen: list[int] = []
        found: set[int] = set()
        tagged = [d for t in self.range_tags(app) for d in t.dept_ids]
        queue = deque(d for d in [*app.allow_partys, *tagged] if d in app.corp.depts)
        while queue:
            dept_id = queue.popleft()
            if dept_id in found:
                continue
            found.add(dept_id)
            seen.append(dept_id)
            queue.extend(k.dept_id for k in sorted(kids[dept_id], key=lambda k: (k.order, k.dept_id)))
        self._range[app.corp.corp_id] = seen
        return seen

    def range_set(self, app: WeComApp) -> frozenset[int]:
        cached = self._range_sets.get(app.corp.corp_id)
        if cached is None:
            cached = self._range_sets[app.corp.corp_id] = frozenset(self.range_dept_ids(app))
        return cached

    def in_range_user(self, app: WeComApp, userid: str, range_ids: frozenset[int] | set[int] | None = None) -> bool:
        user = app.corp.users.get(userid)
        if user is None:
            return False
        range_ids = self.range_set(app) if range_ids is None else range_ids
        return userid in app.allow_users or bool(set(user.dept_ids) & range_ids) or userid in self.tag_users(app)

    def tag_users(self, app: WeComApp) -> frozenset[str]:
        """People the range's tags name one by one (cached: `send` to @all asks once per member)."""
        cached = self._tag_users.get(app.corp.corp_id)
        if cached is None:
            cached = frozenset(u for t in self.range_tags(app) for u in t.userids)
            self._tag_users[app.corp.corp_id] = cached
        return cached

    def check_contacts(self, app: WeComApp) -> None:
        if not app.contact_permission:
            raise WeComFailure(60011, "no privilege to access/modify contact/party/agent")

    def dept_in_range(self, app: WeComApp, dept_id: Any) -> SandboxDept:
        self.check_contacts(app)
        try:
            dept = app.corp.depts[int(dept_id)]
        except (KeyError, TypeError, ValueError):
            raise WeComFailure(60123, "invalid party id") from None
        if dept.dept_id not in self.range_set(app):
            raise WeComFailure(60011, "no privilege to access/modify contact/party/agent")
        return dept

    def tag_get(self, app: WeComApp, tag_id: Any) -> dict[str, Any]:
        """`tag/get`: any tag of the corp, but only the members inside the app's visible range (90213)."""
        try:
            tag = app.tags[int(tag_id)]
        except (KeyError, TypeError, ValueError):
            raise WeComFailure(40068, "invalid tagid") from None
        range_ids = self.range_set(app)
        users = [app.corp.users[u] for u in tag.userids
                 if u in app.corp.users and self.in_range_user(app, u, range_ids)]
        return {"tagname": tag.name, "userlist": [{"userid": u.userid, "name": u.name} for u in users],
                "partylist": [d for d in tag.dept_ids if d in range_ids]}

    def put_tag(self, app: WeComApp, tag_id: int | None, name: str, userids: list[str],
                dept_ids: list[int]) -> tuple[WeComTag, dict[str, list[Any]]]:
        """Create a tag or replace its members; returns the tag and what changed (for `update_tag`)."""
        for u in userids:
            if u not in app.corp.users:
                raise WeComFailure(60111, f"userid not found: {u}")
        for d in dept_ids:
            if d not in app.corp.depts:
                raise WeComFailure(60123, f"invalid party id {d}")
        with self.lock:
            if tag_id is None:
                tag_id = max(app.tags, default=0) + 1
            old = app.tags.get(tag_id) or WeComTag(tag_id, name)
            tag = WeComTag(tag_id, name or old.name, list(dict.fromkeys(userids)), list(dict.fromkeys(dept_ids)))
            app.tags[tag_id] = tag
            self.org_changed(app)
        changes = {"AddUserItems": [u for u in tag.userids if u not in old.userids],
                   "DelUserItems": [u for u in old.userids if u not in tag.userids],
                   "AddPartyItems": [d for d in tag.dept_ids if d not in old.dept_ids],
                   "DelPartyItems": [d for d in old.dept_ids if d not in tag.dept_ids]}
        return tag, changes

    def remove_tag(self, app: WeComApp, tag_id: int) -> WeComTag:
        with self.lock:
            tag = app.tags.pop(tag_id, None)
            if tag is None:
                raise WeComFailure(40068, "invalid tagid")
            app.allow_tags = [t for t in app.allow_tags if t != tag_id]
            self.org_changed(app)
            return tag

    def dept_json(self, app: WeComApp, d: SandboxDept) -> dict[str, Any]:
        return {"id": d.dept_id, "name": d.name, "name_en": "", "department_leader": list(d.manager_userids),
                "parentid": d.parent_id or 0, "order": 100_000_000 - d.order}

    def user_json(self, app: WeComApp, u: SandboxUser, *, simple: bool = False) -> dict[str, Any]:
        base: dict[str, Any] = {"userid": u.userid, "name": u.name, "department": list(u.dept_ids)}
        if simple:
            return base
        main = next((d for d in u.dept_ids if d != 1), u.dept_ids[0] if u.dept_ids else 1)
        leaders = [self.app_leader_of(app, d) for d in u.dept_ids]
        # A self-built app created after 2022-06-20 gets no mobile/email/avatar/gender (§4.1).
        return {**base, "order": [u.dept_orders.get(d, 0) for d in u.dept_ids], "position": u.title,
                "status": 1 if u.active else 4, "main_department": main,
                "is_leader_in_dept": [1 if u.userid in lead else 0 for lead in leaders],
                "direct_leader": [], "alias": "", "telephone": "", "extattr": {"attrs": []}}

    @staticmethod
    def app_leader_of(app: WeComApp, dept_id: int) -> list[str]:
        dept = app.corp.depts.get(dept_id)
        return dept.manager_userids if dept else []

    # ------------------------------------------------------------------ messages

    def _new_msgid(self) -> str:
        with self.lock:
            self.next_msgid += 1
            return f"msg{self.next_msgid:08d}"

    def send(self, app: WeComApp, body: dict[str, Any]) -> dict[str, Any]:
        try:
            agent_id = int(body.get("agentid"))
        except (TypeError, ValueError):
            raise WeComFailure(40056, "invalid agentid") from None
        if agent_id != app.agent_id:
            raise WeComFailure(301002, "not allow operate another agent with this accesstoken")
        msgtype = body.get("msgtype")
        payload = body.get(msgtype) if isinstance(msgtype, str) else None
        if msgtype not in {"text", "textcard", "markdown", "news", "template_card"} or not isinstance(payload, dict):
            raise WeComFailure(40008, "invalid message type")
        touser = [u for u in str(body.get("touser") or "").split("|") if u]
        toparty = [p for p in str(body.get("toparty") or "").split("|") if p]
        if len(touser) > MAX_TOUSER or len(toparty) > MAX_TOPARTY:
            raise WeComFailure(40032, "invalid userid size: at most 1000 touser and 100 toparty")
        if msgtype == "markdown" and not payload.get("content"):
            raise WeComFailure(41016, "content empty")
        if msgtype == "textcard" and not (payload.get("title") and payload.get("description") and payload.get("url")):
            raise WeComFailure(40035, "textcard needs title, description and url")
        card_task: str | None = None
        if msgtype == "template_card":
            card_task = self._check_card(app, payload)
        range_ids = set(self.range_dept_ids(app))
        if touser == ["@all"]:
            recipients = [u.userid for u in app.corp.users.values() if self.in_range_user(app, u.userid, range_ids)]
            invalid: list[str] = []
        else:
            # userids are case-insensitive; invaliduser comes back lower-cased (§6.1).
            by_lower = {u.lower(): u for u in app.corp.users}
            recipients, invalid = [], []
            for u in dict.fromkeys(touser):
                real = by_lower.get(u.lower())
                if real is not None and self.in_range_user(app, real, range_ids):
                    recipients.append(real)
                else:
                    invalid.append(u.lower())
        invalid_parties = []
        for p in toparty:
            if not p.isdigit() or int(p) not in range_ids:
                invalid_parties.append(p)
                continue
            recipients.extend(m.userid for m in self.members(app, int(p)))
        recipients = list(dict.fromkeys(recipients))
        if not recipients:
            raise WeComFailure(81013, "user & party & tag all invalid")
        now = self.now()
        sent = SentMessage(self._new_msgid(), app.corp.corp_id, agent_id, body, now, invalid=invalid,
                           invalid_parties=invalid_parties)
        duplicate_key = None
        if body.get("enable_duplicate_check") in (1, "1"):
            interval = min(int(body.get("duplicate_check_interval") or 1800), 14400)
            duplicate_key = json.dumps(body, sort_keys=True, ensure_ascii=False)
        with self.lock:
            for userid in recipients:
                if duplicate_key is not None:
                    seen = self.recent_bodies.get((userid, duplicate_key))
                    if seen is not None and seen > now - interval:
                        sent.dropped[userid] = "duplicate"
                        continue
                    self.recent_bodies[(userid, duplicate_key)] = now
                window = self.member_sends[(f"{app.corp.corp_id}:{agent_id}", userid)]
                while window and window[0] <= now - 3600:
                    window.popleft()
                if len(window) >= PER_MEMBER_HOUR:
                    sent.dropped[userid] = "hour_cap"  # silently: the API still answers ok (§6.2)
                    continue
                if sum(1 for t in window if t > now - 60) >= PER_MEMBER_MINUTE:
                    sent.dropped[userid] = "minute_cap"
                    continue
                window.append(now)
                sent.delivered.append(userid)
                if card_task is not None:
                    sent.card_state[userid] = {"buttons": [b.get("text") for b in payload.get("button_list", [])]}
            if card_task is not None:
                self.task_ids.add((app.corp.corp_id, card_task))
                sent.response_code = self._new_response_code(sent.msgid)
            self.messages[sent.msgid] = sent
        answer: dict[str, Any] = {"invaliduser": "|".join(invalid), "invalidparty": "|".join(invalid_parties),
                                  "invalidtag": "", "unlicenseduser": "", "msgid": sent.msgid}
        if sent.response_code:
            answer["response_code"] = sent.response_code
        return answer

    def _check_card(self, app: WeComApp, card: dict[str, Any]) -> str | None:
        card_type = card.get("card_type")
        if card_type not in {"text_notice", "news_notice", "button_interaction", "vote_interaction",
                             "multiple_interaction"}:
            raise WeComFailure(40035, "invalid card_type")
        task_id = card.get("task_id")
        if card_type == "button_interaction":
            if not task_id:
                raise WeComFailure(40035, "task_id required for button_interaction")
            buttons = card.get("button_list") or []
            if not 1 <= len(buttons) <= 6:
                raise WeComFailure(40035, "button_list must have 1 to 6 buttons")
            keys = [b.get("key") for b in buttons if int(b.get("type") or 0) == 0]
            if any(not k for k in keys) or len(set(keys)) != len(keys):
                raise WeComFailure(40035, "callback buttons need unique keys")
        if task_id is not None:
            if (app.corp.corp_id, str(task_id)) in self.task_ids:
                raise WeComFailure(40035, "task_id already used by this app")
            return str(task_id)
        return None

    def _new_response_code(self, msgid: str) -> str:
        code = secrets.token_urlsafe(18)
        self.response_codes[code] = (msgid, self.now() + RESPONSE_CODE_TTL)
        return code

    def update_card(self, app: WeComApp, body: dict[str, Any]) -> dict[str, Any]:
        if int(body.get("agentid") or 0) != app.agent_id:
            raise WeComFailure(301002, "not allow operate another agent with this accesstoken")
        with self.lock:
            entry = self.response_codes.pop(str(body.get("response_code") or ""), None)
            if entry is None or entry[1] <= self.now():
                raise WeComFailure(40035, "invalid response_code (unknown, used or expired)")
            sent = self.messages[entry[0]]
            if sent.corp_id != app.corp.corp_id:
                raise WeComFailure(40035, "invalid response_code")
            if body.get("atall") in (1, "1"):
                targets = list(sent.card_state)
            else:
                targets = [u for u in body.get("userids") or [] if u in sent.card_state]
            if body.get("button", {}).get("replace_name"):
                state = {"buttons": [], "replace_name": body["button"]["replace_name"]}
            elif isinstance(body.get("template_card"), dict):
                card = body["template_card"]
                state = {"buttons": [b.get("text") for b in card.get("button_list") or []],
                         "title": (card.get("main_title") or {}).get("title")}
            else:
                raise WeComFailure(40035, "button.replace_name or template_card required")
            for userid in targets:
                sent.card_state[userid] = dict(state)
        return {"invaliduser": []}

    def click(self, corp_id: str, msgid: str, userid: str, key: str) -> tuple[SentMessage, dict[str, str]]:
        """A member taps a button of their copy of a card: the `template_card_event` fields (§5.6)."""
        app = self.app(corp_id)
        with self.lock:
            sent = self.messages.get(msgid)
            if sent is None or sent.corp_id != corp_id or sent.msgtype != "template_card":
                raise WeComFailure(40035, "no such template card message")
            state = sent.card_state.get(userid)
            if state is None:
                raise WeComFailure(60111, "this member did not receive the card")
            card = sent.body["template_card"]
            button = next((b for b in card.get("button_list") or [] if b.get("key") == key), None)
            if button is None or not state.get("buttons"):
                raise WeComFailure(42017, "button key does not exist or the card is no longer clickable")
            code = self._new_response_code(sent.msgid)
            sent.clicks.append({"userid": userid, "key": key, "at": int(self.now())})
        fields = {
            "ToUserName": corp_id, "FromUserName": userid, "CreateTime": str(int(self.now())), "MsgType": "event",
            "Event": "template_card_event", "EventKey": key, "TaskId": str(card.get("task_id")),
            "CardType": str(card.get("card_type")), "ResponseCode": code, "AgentID": str(app.agent_id),
        }
        return sent, fields

    def apply_passive_reply(self, sent: SentMessage, userid: str, reply: dict[str, Any]) -> None:
        """A passive `update_button` / `update_template_card` reply changes the clicker's copy only."""
        with self.lock:
            if reply.get("MsgType") == "update_button":
                name = (reply.get("Button") or {}).get("ReplaceName")
                sent.card_state[userid] = {"buttons": [], "replace_name": name}
            elif reply.get("MsgType") == "update_template_card":
                sent.card_state[userid] = {"buttons": [], "replaced": True}

    def inbox(self, corp_id: str | None = None, userid: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            out = []
            for sent in self.messages.values():
                if corp_id and sent.corp_id != corp_id:
                    continue
                if userid and userid not in sent.delivered and userid not in sent.dropped:
                    continue
                out.append(sent.as_json())
            return out

    # ------------------------------------------------------------------ org changes (fire events)

    def add_user(self, app: WeComApp, *, name: str, dept_ids: list[int], userid: str | None = None,
                 title: str = "") -> SandboxUser:
        corp = app.corp
        for d in dept_ids:
            if d not in corp.depts:
                raise WeComFailure(60123, f"invalid party id {d}")
        userid = userid or f"user{len(corp.users) + 1:04d}x{secrets.token_hex(2)}"
        if userid in corp.users:
            raise WeComFailure(60102, "userid existed")
        user = SandboxUser(userid=userid, unionid=userid, name=name, title=title, mobile="", email="",
                           dept_ids=list(dept_ids), dept_orders=dict.fromkeys(dept_ids, 0), job_number="",
                           hired_date=0)
        with self.lock:
            corp.users[userid] = user
            self.org_changed(app)
        return user

    def update_user(self, app: WeComApp, userid: str, *, name: str | None = None,
                    dept_ids: list[int] | None = None, title: str | None = None,
                    new_userid: str | None = None) -> SandboxUser:
        """`new_userid`: the admin changes the member's userid (allowed once in the console); the member
        keeps their departments, leaderships and place in the visible range."""
        user = app.corp.users.get(userid)
        if user is None:
            raise WeComFailure(60111, "userid not found")
        if dept_ids:
            for d in dept_ids:
                if d not in app.corp.depts:
                    raise WeComFailure(60123, f"invalid party id {d}")
        if new_userid is not None and new_userid != userid:
            if not 1 <= len(new_userid.encode()) <= 64:
                raise WeComFailure(40003, "invalid userid")
            if any(u.lower() == new_userid.lower() for u in app.corp.users):
                raise WeComFailure(60102, "userid existed")
        with self.lock:
            if new_userid is not None and new_userid != userid:
                del app.corp.users[userid]
                user.userid = user.unionid = new_userid
                app.corp.users[new_userid] = user
                for d in app.corp.depts.values():
                    d.manager_userids = [new_userid if m == userid else m for m in d.manager_userids]
                app.allow_users = [new_userid if u == userid else u for u in app.allow_users]
                for tag in app.tags.values():
                    tag.userids = [new_userid if u == userid else u for u in tag.userids]
            if name:
                user.name = name
            if title is not None:
                user.title = title
            if dept_ids:
                user.dept_ids = list(dept_ids)
                user.dept_orders = {d: user.dept_orders.get(d, 0) for d in dept_ids}
            self.org_changed(app)
        return user

    def remove_user(self, app: WeComApp, userid: str) -> SandboxUser:
        with self.lock:
            user = app.corp.users.pop(userid, None)
            if user is None:
                raise WeComFailure(60111, "userid not found")
            for d in app.corp.depts.values():
                if userid in d.manager_userids:
                    d.manager_userids.remove(userid)
            for tag in app.tags.values():  # a deleted member leaves every tag
                tag.userids = [u for u in tag.userids if u != userid]
            self.org_changed(app)
        return user

    def add_dept(self, app: WeComApp, *, name: str, parent_id: int) -> SandboxDept:
        corp = app.corp
        if parent_id not in corp.depts:
            raise WeComFailure(60123, "invalid parent party id")
        with self.lock:
            dept = SandboxDept(corp.next_dept_id, name, parent_id, 0)
            corp.depts[dept.dept_id] = dept
            corp.next_dept_id += 1
            self.org_changed(app)
        return dept

    def update_dept(self, app: WeComApp, dept_id: int, *, name: str | None = None,
                    parent_id: int | None = None) -> SandboxDept:
        dept = app.corp.depts.get(dept_id)
        if dept is None or (parent_id is not None and parent_id not in app.corp.depts):
            raise WeComFailure(60123, "invalid party id")
        with self.lock:
            if name:
                dept.name = name
            if parent_id is not None:
                dept.parent_id = parent_id
            self.org_changed(app)
        return dept

    def remove_dept(self, app: WeComApp, dept_id: int) -> SandboxDept:
        corp = app.corp
        if dept_id == 1 or dept_id not in corp.depts:
            raise WeComFailure(60123, "invalid party id")
        if corp.children(dept_id) or self.members(app, dept_id):
            raise WeComFailure(60005, "department contains sub-department or members")
        with self.lock:
            dept = corp.depts.pop(dept_id)
            for tag in app.tags.values():
                tag.dept_ids = [d for d in tag.dept_ids if d != dept_id]
            self.org_changed(app)
            return dept

    def credentials(self, app: WeComApp) -> dict[str, Any]:
        return {
            "corpId": app.corp.corp_id, "name": app.corp.name, "secret": app.secret, "agentId": app.agent_id,
            "callbackToken": app.corp.callback_token, "callbackAesKey": app.corp.callback_aes_key,
            "callbackUrl": app.callback_url, "allowPartys": app.allow_partys, "allowUsers": app.allow_users,
            "allowTags": app.allow_tags, "tags": [t.as_json() for t in app.tags.values()],
            "contactPermission": app.contact_permission, "departments": len(app.corp.depts),
            "users": len(app.corp.users),
        }
