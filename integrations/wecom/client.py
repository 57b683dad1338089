"""`WeComClient`: one bound corp's self-built app, behind the neutral `PlatformClient` interface.

Built on wechatpy 2.0.0a26 (`wechatpy.work.WeChatClient`) for request plumbing and the simple API
groups, with the gaps the sdk notes list closed here rather than by patching the package:
- every host comes from `CRM_WECOM_API_BASE` (wechatpy hard-codes the `gettoken` URL);
- every call has a timeout (wechatpy's default is none, and `gettoken` never gets one);
- wechatpy's auto-retry is off (it loops without bound on 40001/40014/42001); we refresh the token
  on 40014/42001 only and retry exactly once — 40001 means a wrong secret in WeCom;
- tokens and JS-SDK tickets live in the database (`platform_tokens`) with a single-flight lease,
  shared by every process, through the DingTalk token cache;
- `auth/getuserinfo` (not the legacy `user/getuserinfo`) and `message/update_template_card` are
  called raw.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import requests
from wechatpy.exceptions import WeChatClientException
from wechatpy.work import WeChatClient

from integrations.base import (
    ConnectionReport,
    InvalidTokenError,
    Message,
    NotFoundError,
    PermissionDeniedError,
    PlatformClient,
    PlatformDepartment,
    PlatformError,
    PlatformUser,
    RateLimitedError,
    SendReceipt,
    SignInIdentity,
    UserPage,
)
from integrations.dingtalk.ratelimit import NoRateLimit
from integrations.dingtalk.tokens import MemoryTokenStore, TokenCache, TokenStore
from integrations.dingtalk.usage import UsageHook, quota_family
from integrations.wecom import errors
from integrations.wecom.messages import render_message

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 3.0
READ_TIMEOUT = 10.0
# The department snapshot answers `list_sub_departments` during one tree walk without more calls.
SNAPSHOT_SECONDS = 300.0
RECENT_SECONDS = 5.0


@dataclass(frozen=True)
class WeComCredentials:
    corp_id: str
    secret: str
    agent_id: str

    def fingerprint(self) -> str:
        # Token rows are keyed per secret (a reset secret must not reuse the old token), without
        # storing anything derived from the secret that could be reversed.
        return hashlib.sha256(f"{self.corp_id}\0{self.secret}".encode()).hexdigest()[:12]

    def __repr__(self) -> str:  # never print the secret
        return f"WeComCredentials(corp_id={self.corp_id!r}, agent_id={self.agent_id!r})"


@dataclass(frozen=True)
class WeComSendReceipt(SendReceipt):
    """`task_id` is WeCom's `msgid` (for recall); interactive cards also get the `response_code` needed to
    update every recipient's copy later, and the card's own `card_task_id`."""

    response_code: str | None = None
    card_task_id: str | None = None
    invalid_parties: tuple[str, ...] = ()


class _WeChatClient(WeChatClient):
    """wechatpy's WeCom client with our host, our timeout, our session and our token source."""

    def __init__(self, corp_id: str, secret: str, *, api_base: str, timeout: tuple[float, float],
                 token_source: Callable[[], str], http: requests.Session) -> None:
        super().__init__(corp_id, secret, timeout=timeout, auto_retry=False)
        self.API_BASE_URL = api_base.rstrip("/") + "/"
        self._http = http
        self._token_source = token_source
        self._local = threading.local()

    @property
    def access_token(self) -> str:
        return getattr(self._local, "token", None) or self._token_source()

    def use_token(self, token: str | None) -> None:
        self._local.token = token

    def fetch_access_token(self):  # pragma: no cover - auto_retry is off; tokens come from our cache
        raise RuntimeError("tokens are fetched by WeComClient, not by wechatpy")


_SECRET_IN_URL = re.compile(r"((?:access_token|corpsecret)=)[^&\s\"']+")


class RedactSecrets(logging.Filter):
    """`gettoken` carries the app secret in its query string and every call carries the token (§0);
    urllib3 logs request lines at DEBUG, so mask both there: debug logging must never leak them."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and record.args:
            record.args = tuple(_SECRET_IN_URL.sub(r"\1***", a) if isinstance(a, str) else a for a in record.args)
        if isinstance(record.msg, str):
            record.msg = _SECRET_IN_URL.sub(r"\1***", record.msg)
        return True


_urllib3_log = logging.getLogger("urllib3.connectionpool")
if not any(isinstance(f, RedactSecrets) for f in _urllib3_log.filters):
    _urllib3_log.addFilter(RedactSecrets())


def make_session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # HTTP(S)_PROXY must not reroute calls (e.g. away from the loopback sandbox)
    session.headers["User-Agent"] = "crm-microapp/0.1 (+wecom)"
    return session


def _split(value: Any) -> list[str]:
    if not value:
        return []
    if isinstance(value, list):
        return [str(v) for v in value]
    return [v for v in str(value).split("|") if v]


class WeComClient(PlatformClient):
    platform = "wecom"
    # 10 000 calls/min per API per corp (§8); 160/s keeps a per-second limiter under it.
    rate_limits = {"default": 160.0}
    user_page_size = 0  # user/list has no paging: one call returns a department's direct members
    max_recipients_per_send = 1000
    range_names_people = True  # `agent/get` → `allow_userinfos` (§4.2)
    # Per app per member (§6.2): beyond these WeCom silently drops messages; the delivery layer enforces them.
    per_user_limits = {"minute": 30, "hour": 1000}

    def __init__(
        self,
        credentials: WeComCredentials,
        *,
        api_base: str,
        token_store: TokenStore | None = None,
        usage_hook: UsageHook | None = None,
        limiter: Any = None,
        http: requests.Session | None = None,
        timeout: tuple[float, float] = (CONNECT_TIMEOUT, READ_TIMEOUT),
        throttle_retries: int = 1,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        token_cache: TokenCache | None = None,
    ) -> None:
        self.credentials = credentials
        self.api_base = api_base.rstrip("/")
        self.timeout = timeout
        self.http = http or make_session()
        self.tokens = token_cache or TokenCache(token_store or MemoryTokenStore(clock=clock), clock=clock)
        self.usage_hook = usage_hook
        self.limiter = limiter or NoRateLimit()
        self.throttle_retries = throttle_retries
        self._sleep = sleep
        self._clock = clock
        fp = credentials.fingerprint()
        # platform_tokens.kind is 32 characters: prefix + 12-hex fingerprint.
        self.token_kind = f"wecom:at:{fp}"
        self.corp_ticket_kind = f"wecom:jsapi:{fp}"
        self.agent_ticket_kind = f"wecom:agent:{fp}"
        self.wx = _WeChatClient(credentials.corp_id, credentials.secret, api_base=self.api_base,
                                timeout=timeout, token_source=self.access_token, http=self.http)
        self._snapshot: tuple[float, list[PlatformDepartment]] | None = None
        self._snapshot_lock = threading.Lock()
        self._tag_depts: list[PlatformDepartment] = []

    def __repr__(self) -> str:
        return f"<WeComClient corp={self.credentials.corp_id} agent={self.credentials.agent_id}>"

    # ------------------------------------------------------------------ plumbing

    def _count(self, path: str) -> None:
        if self.usage_hook is None:
            return
        try:
            self.usage_hook(path, quota_family(path))
        except Exception:  # a usage-counter hiccup must never fail the business call
            log.warning("could not record API usage for %s", path, exc_info=True)

    def _once(self, path: str, call: Callable[[], Any]) -> dict[str, Any]:
        """One HTTP exchange through wechatpy, every failure turned into a `PlatformError`."""
        try:
            result = call()
        except WeChatClientException as exc:
            if exc.errcode is None:  # raise_for_status inside wechatpy
                status = getattr(exc.response, "status_code", None)
                raise errors.http_error(status) from None
            err = errors.error_for(exc.errcode, exc.errmsg)
            log.info("wecom %s failed: errcode=%s", path, exc.errcode)
            raise err from None
        except requests.Timeout:
            raise errors.timeout_error(path) from None
        except requests.RequestException as exc:
            raise errors.network_error(exc) from None
        except (KeyError, TypeError):  # a wechatpy helper indexing a field the answer lacks
            raise errors.bad_response() from None
        if not isinstance(result, dict):  # wechatpy hands back the raw Response for non-JSON bodies
            raise errors.bad_response()
        return result

    def _wire(self, path: str, call: Callable[[], Any]) -> dict[str, Any]:
        """Rate-limited, counted; a short throttle (45033) is slept off a bounded number of times, a
        45009 block (a whole minute or more) is raised at once."""
        attempt = 0
        while True:
            self.limiter.acquire(path)
            try:
                result = self._once(path, call)
            except RateLimitedError as exc:
                if attempt >= self.throttle_retries or (exc.retry_after or 0) > 5:
                    raise
                attempt += 1
                self._sleep(exc.retry_after or 1.0)
                continue
            except PlatformError as exc:
                if exc.code not in {"timeout", "network"}:
                    self._count(path)
                raise
            self._count(path)
            return result

    def _fetch_access_token(self) -> tuple[str, float]:
        """`gettoken` ourselves: wechatpy's version hard-codes the host and sends no timeout."""
        params = {"corpid": self.credentials.corp_id, "corpsecret": self.credentials.secret}

        def call() -> Any:
            resp = self.http.get(f"{self.api_base}/gettoken", params=params, timeout=self.timeout)
            if resp.status_code >= 400:
                raise WeChatClientException(None, None, response=resp)
            try:
                data = resp.json()
            except ValueError:
                return None
            if isinstance(data, dict) and data.get("errcode") not in (None, 0, "0"):
                raise WeChatClientException(int(data["errcode"]), data.get("errmsg"), response=resp)
            return data

        data = self._wire("gettoken", call)
        token = data.get("access_token")
        if not token:
            raise PlatformError("企业微信未返回 access_token (no access_token in the answer)", code="bad_response",
                                platform=errors.PLATFORM)
        return token, float(data.get("expires_in") or 7200)

    def access_token(self) -> str:
        return self.tokens.get(self.token_kind, self._fetch_access_token)

    def _call(self, path: str, call: Callable[[], Any]) -> dict[str, Any]:
        """Run a token-bearing call; if WeCom refuses the token, refresh it and retry exactly once."""
        token = self.access_token()
        self.wx.use_token(token)
        try:
            try:
                return self._wire(path, call)
            except InvalidTokenError:
                log.info("wecom token rejected on %s; refreshing once", path)
                self.tokens.invalidate(self.token_kind)
                fresh = self.tokens.get(self.token_kind, self._fetch_access_token, rejected=token)
                self.wx.use_token(fresh)
                return self._wire(path, call)
        finally:
            self.wx.use_token(None)

    def get(self, path: str, **params: Any) -> dict[str, Any]:
        return self._call(path, lambda: self.wx.get(path, params=dict(params)))

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._call(path, lambda: self.wx.post(path, data=body))

    # ------------------------------------------------------------------ connection and sign-in

    def test_connection(self) -> ConnectionReport:
        """Token (a new secret is a new cache key, so this really tests the stored secret), the app's
        details, and the departments in its visible range."""
        try:
            self.access_token()
            agent = self._agent()
            depts = self._department_snapshot(force=True)
            people, parties = self._named_people(agent)
            if not depts and parties:
                depts = self._add_tag_departments(parties)
            if not depts and not people:
                raise errors.empty_range_error()
        except PlatformError as exc:
            return ConnectionReport(ok=False, message=str(exc))
        app_name = agent.get("name") or self.credentials.agent_id
        tops = self._tops(depts)
        names = "、".join(d.name for d in tops[:5]) + (" …" if len(tops) > 5 else "") if tops else "—"
        extra_zh = f"，单独可见成员 {len(people)} 人" if people else ""
        extra_en = f", {len(people)} people visible by name" if people else ""
        tags = self._tag_ids(agent)
        if tags:
            extra_zh += f"，可见标签 {len(tags)} 个"
            extra_en += f", {len(tags)} tags"
        return ConnectionReport(
            ok=True,
            message=(f"令牌获取成功，应用：{app_name}，根部门：{names}，可见部门 {len(depts)} 个{extra_zh} "
                     f"(token ok, app: {app_name}, root departments: {names}, {len(depts)} departments "
                     f"visible{extra_en})"),
            root_department=tops[0].name if tops else None,
        )

    def exchange_sign_in_code(self, code: str) -> SignInIdentity:
        """OAuth2 `snsapi_base` code → userid via `auth/getuserinfo` (§2.2; wechatpy only has the legacy
        `user/getuserinfo`). A visitor who is not a member (openid only) cannot sign in to the CRM."""
        data = self.get("auth/getuserinfo", code=code)
        userid = data.get("userid") or data.get("UserId")
        if not userid:
            raise PermissionDeniedError("不是本企业成员，无法登录 (not a member of this corp: cannot sign in)",
                                        code="not_member", platform=errors.PLATFORM)
        return SignInIdentity(userid=str(userid))

    def _ticket(self, kind: str, path: str, call: Callable[[], Any]) -> str:
        def fetch() -> tuple[str, float]:
            data = self._call(path, call)
            if not data.get("ticket"):
                raise PlatformError("企业微信未返回 ticket (no ticket in the answer)", code="bad_response",
                                    platform=errors.PLATFORM)
            return data["ticket"], float(data.get("expires_in") or 7200)

        # Cached in the database and refreshed 10 minutes before its 2 h expiry: about one fetch per
        # 110 minutes per corp, far inside the 100-per-hour-per-app limit (§3).
        return self.tokens.get(kind, fetch)

    def js_config(self, url: str) -> dict[str, Any]:
        """Values for `wx.config` (corp ticket, appId = CorpID) and `wx.agentConfig` (app ticket); each has
        its own nonce, timestamp and signature over the page URL without its `#fragment` (§3)."""
        page = url.split("#", 1)[0]
        corp_ticket = self._ticket(self.corp_ticket_kind, "get_jsapi_ticket", self.wx.jsapi.get_ticket)
        agent_ticket = self._ticket(self.agent_ticket_kind, "ticket/get", self.wx.jsapi.get_agent_ticket)
        timestamp = int(self._clock())

        def signed(ticket: str) -> dict[str, Any]:
            nonce = secrets.token_hex(8)
            return {"timestamp": timestamp, "nonceStr": nonce,
                    "signature": self.wx.jsapi.get_jsapi_signature(nonce, ticket, timestamp, page)}

        return {
            "config": {"appId": self.credentials.corp_id, **signed(corp_ticket)},
            "agentConfig": {"corpid": self.credentials.corp_id, "agentid": self.credentials.agent_id,
                            **signed(agent_ticket)},
        }

    # ------------------------------------------------------------------ org structure

    @staticmethod
    def _department(d: dict[str, Any]) -> PlatformDepartment:
        parent = d.get("parentid")
        return PlatformDepartment(
            dept_id=str(d["id"]),
            parent_id=None if parent in (None, 0, "0") else str(parent),
            name=d.get("name") or "",
            order=int(d.get("order") or 0),
        )

    def _department_snapshot(self, *, force: bool = False, max_age: float = SNAPSHOT_SECONDS,
                             ) -> list[PlatformDepartment]:
        """Every department in the app's visible range with names, in one `department/list` call without
        an id (a self-built app may call it with its own secret, §4.1; without an id it answers the whole
        range, §4.2); reused for `SNAPSHOT_SECONDS`. Empty when the range names no department."""
        with self._snapshot_lock:
            if not force and self._snapshot and self._clock() - self._snapshot[0] < max_age:
                return self._snapshot[1]
            data = self.get("department/list")
            depts = [self._department(d) for d in data.get("department") or []]
            ids = {d.dept_id for d in depts}
            depts += [d for d in self._tag_depts if d.dept_id not in ids]
            self._snapshot = (self._clock(), depts)
            return depts

    def _add_tag_departments(self, parties: list[str]) -> list[PlatformDepartment]:
        """Tag departments that `department/list` left out become tops of the range, each with its subtree
        (`department/list?id=` answers both in one call); refused that, the department alone
        (`department/get`) so its own members are still listed. Kept across snapshot refreshes."""
        known = {d.dept_id for d in self._department_snapshot(max_age=RECENT_SECONDS)}
        found: list[PlatformDepartment] = []
        for dept_id in parties:
            if dept_id in known:
                continue
            try:
                data = self.get("department/list", id=int(dept_id))
                sub = [self._department(d) for d in data.get("department") or []]
            except PermissionDeniedError:
                sub = []
            if not any(d.dept_id == dept_id for d in sub):
                try:
                    data = self._call("department/get", lambda d=dept_id: self.wx.department.get(int(d)))
                except (NotFoundError, PermissionDeniedError):
                    log.warning("wecom tag department %s cannot be read; skipped", dept_id)
                    continue
                sub = [self._department(data)]
            new = [d for d in sub if d.dept_id not in known]
            known.update(d.dept_id for d in new)
            found.extend(new)
        with self._snapshot_lock:
            self._tag_depts = self._tag_depts + found
            if self._snapshot is not None:
                self._snapshot = (self._snapshot[0], self._snapshot[1] + found)
        return self._department_snapshot(max_age=RECENT_SECONDS)

    def _agent(self) -> dict[str, Any]:
        return self._call("agent/get", lambda: self.wx.agent.get(self.credentials.agent_id))

    @staticmethod
    def _direct_userids(agent: dict[str, Any]) -> list[str]:
        """`allow_userinfos.user[].userid` of `agent/get`: the people the range names one by one (§4.2; the
        field names come from SDKs, so anything else in that shape is ignored, not fatal)."""
        users = (agent.get("allow_userinfos") or {}).get("user") or []
        return list(dict.fromkeys(str(u["userid"]) for u in users if isinstance(u, dict) and u.get("userid")))

    @staticmethod
    def _tag_ids(agent: dict[str, Any]) -> list[int]:
        """`allow_tags.tagid[]` of `agent/get`: tags whose members and departments are in the range."""
        tags = (agent.get("allow_tags") or {}).get("tagid") or []
        return list(dict.fromkeys(int(t) for t in tags if str(t).isdigit()))

    def tag_members(self, tag_id: int | str) -> tuple[list[str], list[str]]:
        """`tag/get` (获取标签成员, 90213): the tag's userids and department ids, only those inside the
        visible range. An unknown tag is 40068."""
        data = self._call("tag/get", lambda: self.wx.tag.get_users(int(tag_id)))
        users = [str(u["userid"]) for u in data.get("userlist") or [] if isinstance(u, dict) and u.get("userid")]
        return users, [str(p) for p in data.get("partylist") or []]

    def _named_people(self, agent: dict[str, Any]) -> tuple[list[str], list[str]]:
        """Everyone the range names one by one (`allow_userinfos` and the members of every tag of
        `allow_tags`), and the departments those tags bring."""
        people, parties = self._direct_userids(agent), []
        for tag_id in self._tag_ids(agent):
            users, depts = self.tag_members(tag_id)
            people += users
            parties += depts
        return list(dict.fromkeys(people)), list(dict.fromkeys(parties))

    @staticmethod
    def _tops(depts: list[PlatformDepartment]) -> list[PlatformDepartment]:
        """The tops of the visible range: department 1 when the whole corp is visible, else every department
        whose parent is outside the range (a range of several disjoint subtrees has several), lowest id first."""
        ids = {d.dept_id for d in depts}
        tops = [d for d in depts if d.parent_id is None or d.parent_id not in ids]
        return sorted(tops, key=lambda d: (0, int(d.dept_id)) if d.dept_id.isdigit() else (1, d.dept_id))

    def root_department_ids(self) -> list[str]:
        # A walk starts here: read the range afresh (an admin may have just changed it), and the roots'
        # `get_department` right after reuses this snapshot instead of a minutes-old one.
        self._tag_depts = []
        tops = self._tops(self._department_snapshot(force=True))
        if not tops:
            # Only then is the range's own answer needed: departments of its tags that `department/list`
            # did not include become tops (the platform's list normally includes them).
            people, parties = self._named_people(self._agent())
            if parties:
                tops = self._tops(self._add_tag_departments(parties))
            if not tops and not people:
                raise errors.empty_range_error()
        return [d.dept_id for d in tops]

    def root_department_id(self) -> str:
        tops = self._tops(self._department_snapshot())
        if not tops:
            raise errors.empty_range_error()
        return tops[0].dept_id

    def list_direct_users(self) -> list[PlatformUser]:
        """Members the range names one by one or through a tag: `user/list` of a department outside the range
        is refused (60011), so each is read with `user/get` (in range by being named). Someone deleted or taken
        out of the range between the two calls (60111 / 60021) is skipped: the sync then deactivates them."""
        found = []
        people, _ = self._named_people(self._agent())
        for userid in people:
            try:
                found.append(self.get_user(userid))
            except (NotFoundError, PermissionDeniedError):
                continue
        return found

    def get_department(self, dept_id: str) -> PlatformDepartment:
        snapshot = self._snapshot
        if snapshot is None or str(dept_id) in {d.dept_id for d in self._tops(snapshot[1])}:
            # A full walk starts at the roots: that is the moment to take a fresh snapshot (unless one was
            # taken a moment ago, e.g. by `root_department_ids()` just before).
            depts = self._department_snapshot(max_age=RECENT_SECONDS)
            found = next((d for d in depts if d.dept_id == str(dept_id)), None)
            if found is not None:
                return found
        data = self._call("department/get", lambda: self.wx.department.get(int(dept_id)))
        if not data:
            raise NotFoundError("部门不存在 (department not found)", code=60123, platform=errors.PLATFORM)
        return self._department(data)

    def list_sub_departments(self, dept_id: str) -> list[PlatformDepartment]:
        depts = self._department_snapshot()
        kids = [d for d in depts if d.parent_id == str(dept_id)]
        return sorted(kids, key=lambda d: (-d.order, int(d.dept_id) if d.dept_id.isdigit() else 0))

    @staticmethod
    def _user(u: dict[str, Any]) -> PlatformUser:
        dept_ids = tuple(str(d) for d in u.get("department") or ())
        orders = u.get("order") or []
        leaders = u.get("is_leader_in_dept") or []
        status = int(u.get("status") or 1)
        main = u.get("main_department")
        return PlatformUser(
            userid=str(u["userid"]),
            name=u.get("name") or "",
            title=u.get("position") or None,
            # Sensitive fields are cut for apps created after 2022-06-20 (§4.1): absent, not empty.
            mobile=u.get("mobile") or None,
            email=u.get("email") or u.get("biz_mail") or None,
            avatar=u.get("avatar") or None,
            # 1 active, 4 not yet activated (still a member); 2 disabled, 5 quit.
            active=status in (1, 4),
            department_ids=dept_ids,
            leader_of=tuple(d for d, flag in zip(dept_ids, leaders, strict=False) if int(flag or 0) == 1),
            main_department_id=str(main) if main else (dept_ids[0] if dept_ids else None),
            department_orders={d: int(o or 0) for d, o in zip(dept_ids, orders, strict=False)},
        )

    def list_department_users(self, dept_id: str, cursor: int | str | None = None) -> UserPage:
        """Direct members of one department (`user/list`, no recursion, no paging: §4.2)."""
        data = self.get("user/list", department_id=int(dept_id))
        return UserPage(users=[self._user(u) for u in data.get("userlist") or []], next_cursor=None)

    def get_user(self, userid: str) -> PlatformUser:
        return self._user(self._call("user/get", lambda: self.wx.user.get(userid)))

    # ------------------------------------------------------------------ application messages

    def send_message(self, userids: Sequence[str], message: Message) -> WeComSendReceipt:
        """`message/send`. Recipients outside the range come back in `invaliduser` (lower-cased by WeCom)
        and are reported as rejected; when every one is invalid WeCom answers 81013, reported the same way."""
        recipients = list(dict.fromkeys(u for u in userids if u))
        if not recipients:
            raise ValueError("send_message needs at least one userid")
        if len(recipients) > self.max_recipients_per_send:
            raise ValueError(f"at most {self.max_recipients_per_send} userids per send, got {len(recipients)}")
        msg = render_message(message)
        if msg["msgtype"] != "template_card":
            # A retry after a timeout must not reach people twice: WeCom drops identical bodies (§6.1).
            msg = {**msg, "enable_duplicate_check": 1, "duplicate_check_interval": 1800}
        agent_id = int(self.credentials.agent_id)
        card_task_id = msg.get("template_card", {}).get("task_id")
        try:
            data = self._call("message/send", lambda: self.wx.message.send(agent_id, recipients, msg=msg))
        except PermissionDeniedError as exc:
            if exc.code != "81013":
                raise
            return WeComSendReceipt(task_id=None, accepted=(), rejected=dict.fromkeys(recipients, "invaliduser"),
                                    card_task_id=card_task_id)
        by_lower = {u.lower(): u for u in recipients}
        invalid = {by_lower.get(u.lower(), u) for u in _split(data.get("invaliduser"))}
        rejected = {u: "invaliduser" for u in recipients if u in invalid}
        for u in _split(data.get("unlicenseduser")):
            rejected.setdefault(by_lower.get(u.lower(), u), "unlicensed")
        return WeComSendReceipt(
            task_id=data.get("msgid") or None,
            accepted=tuple(u for u in recipients if u not in rejected),
            rejected=rejected,
            response_code=data.get("response_code") or None,
            card_task_id=card_task_id,
            invalid_parties=tuple(_split(data.get("invalidparty"))),
        )

    def update_template_card(self, response_code: str, *, userids: Sequence[str] = (), atall: bool = False,
                             replace_name: str | None = None,
                             template_card: dict[str, Any] | None = None) -> dict[str, Any]:
        """`message/update_template_card` (missing from wechatpy): grey the buttons out with
        `replace_name`, or replace the whole card. Each `response_code` works once (§6.4)."""
        if (replace_name is None) == (template_card is None):
            raise ValueError("pass exactly one of replace_name or template_card")
        body: dict[str, Any] = {"agentid": int(self.credentials.agent_id), "response_code": response_code}
        if atall:
            body["atall"] = 1
        else:
            if not userids:
                raise ValueError("pass userids or atall=True")
            body["userids"] = list(dict.fromkeys(userids))
        if replace_name is not None:
            body["button"] = {"replace_name": replace_name}
        else:
            body["template_card"] = template_card
        return self.post("message/update_template_card", body)
