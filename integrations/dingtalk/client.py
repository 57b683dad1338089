"""`DingTalkClient`: one bound corp's internal app, behind the neutral `PlatformClient` interface.

Plain `requests` for both hosts (sdk notes §1.6): the official SDK covers only the v1.0 half, weighs
~128 MB and needs its own error and retry wrapping, while about a dozen endpoints are used here.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from integrations.base import (
    ConnectionReport,
    DeliveryReport,
    InvalidTokenError,
    Message,
    PlatformClient,
    PlatformDepartment,
    PlatformError,
    PlatformUser,
    RateLimitedError,
    SendReceipt,
    SignInIdentity,
    UserPage,
)
from integrations.dingtalk.http import DingTalkHttp
from integrations.dingtalk.jsapi import jsapi_signature
from integrations.dingtalk.messages import render_message
from integrations.dingtalk.ratelimit import NoRateLimit
from integrations.dingtalk.tokens import MemoryTokenStore, TokenCache, TokenStore
from integrations.dingtalk.usage import UsageHook, quota_family
from models.platform import TokenKind

log = logging.getLogger(__name__)

TOKEN_PATH = "/v1.0/oauth2/accessToken"
JSAPI_TICKET_PATH = "/v1.0/oauth2/jsapiTickets"

# forbidden_list codes of getsendresult (§9.3) → our reason words
_FORBIDDEN_REASONS = {
    "143103": "app_rate_limit",
    "143104": "org_rate_limit",
    "143105": "daily_cap",
    "143106": "duplicate",
    "1430002": "prohibited_content",
    "1430004": "executive_protection",
}

# Throttled calls are not counted against the monthly quota by DingTalk (§2.3), so not by us either.
_NOT_COUNTED = (RateLimitedError,)


@dataclass(frozen=True)
class DingTalkCredentials:
    corp_id: str
    app_key: str
    app_secret: str
    agent_id: str

    def __repr__(self) -> str:  # never print the secret
        return f"DingTalkCredentials(corp_id={self.corp_id!r}, app_key={self.app_key!r}, agent_id={self.agent_id!r})"


class DingTalkClient(PlatformClient):
    platform = "dingtalk"
    # Standard edition: 20 calls per second per app per API (§2.3).
    rate_limits = {"default": 20.0}
    user_page_size = 100
    max_recipients_per_send = 100

    def __init__(
        self,
        credentials: DingTalkCredentials,
        *,
        oapi_base: str,
        api_base: str,
        token_store: TokenStore | None = None,
        usage_hook: UsageHook | None = None,
        limiter: Any = None,
        jsapi_digest: str = "sha256",
        throttle_retries: int = 1,
        http: DingTalkHttp | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        token_cache: TokenCache | None = None,
    ) -> None:
        self.credentials = credentials
        self.http = http or DingTalkHttp(oapi_base, api_base)
        self.tokens = token_cache or TokenCache(token_store or MemoryTokenStore(clock=clock), clock=clock)
        self.usage_hook = usage_hook
        self.limiter = limiter or NoRateLimit()
        # SHA-256 per the current official samples; SHA-1 acceptance is unconfirmed (§4.2, §12).
        self.jsapi_digest = jsapi_digest
        self.throttle_retries = throttle_retries
        self._sleep = sleep
        self._clock = clock

    def __repr__(self) -> str:
        return f"<DingTalkClient corp={self.credentials.corp_id} app={self.credentials.app_key}>"

    # ------------------------------------------------------------------ plumbing

    def _count(self, path: str) -> None:
        if self.usage_hook is None:
            return
        try:
            self.usage_hook(path, quota_family(path))
        except Exception:  # a usage-counter hiccup must never fail the business call
            log.warning("could not record API usage for %s", path, exc_info=True)

    def _wire(self, path: str, call: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """One rate-limited, counted call; on a throttle answer sleep and retry a bounded number of times
        (DingTalk's advice for 90018 is to sleep 1 s, §2.3)."""
        attempt = 0
        while True:
            self.limiter.acquire(path)
            try:
                result = call()
            except _NOT_COUNTED as exc:
                if attempt >= self.throttle_retries:
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
        body = {"appKey": self.credentials.app_key, "appSecret": self.credentials.app_secret}
        data = self._wire(TOKEN_PATH, lambda: self.http.api("POST", TOKEN_PATH, None, body))
        token, expire_in = data.get("accessToken"), data.get("expireIn")
        if not token:
            raise PlatformError("钉钉未返回 accessToken (no accessToken in the answer)",
                                code="bad_response", platform="dingtalk")
        return token, float(expire_in or 7200)

    def _with_token(self, path: str, call: Callable[[str], dict[str, Any]]) -> dict[str, Any]:
        """Run `call(token)`; if the token is refused, refresh it and retry exactly once (§1.3)."""
        token = self.tokens.get(TokenKind.ACCESS_TOKEN, self._fetch_access_token)
        try:
            return self._wire(path, lambda: call(token))
        except InvalidTokenError:
            log.info("dingtalk token rejected on %s; refreshing once", path)
            self.tokens.invalidate(TokenKind.ACCESS_TOKEN)
            fresh = self.tokens.get(TokenKind.ACCESS_TOKEN, self._fetch_access_token, rejected=token)
            return self._wire(path, lambda: call(fresh))

    def _oapi(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._with_token(path, lambda token: self.http.oapi(path, token, body))

    def _api(self, method: str, path: str, body: dict[str, Any] | None = None,
             params: dict[str, Any] | None = None) -> dict[str, Any]:
        return self._with_token(path, lambda token: self.http.api(method, path, token, body, params=params))

    def access_token(self) -> str:
        return self.tokens.get(TokenKind.ACCESS_TOKEN, self._fetch_access_token)

    # ------------------------------------------------------------------ connection and sign-in

    def test_connection(self) -> ConnectionReport:
        """Fetch a token with the stored credentials (not the cached one: the secret may have just been
        changed) and read the root department."""
        try:
            # DingTalk hands back the same token while it is valid (§1.3), so this costs no rotation.
            self._fetch_access_token()
            root = self.get_department(self.root_department_id())
        except PlatformError as exc:
            return ConnectionReport(ok=False, message=str(exc))
        return ConnectionReport(
            ok=True,
            message=f"令牌获取成功，根部门：{root.name} (token ok, root department: {root.name})",
            root_department=root.name,
        )

    def exchange_sign_in_code(self, code: str) -> SignInIdentity:
        data = self._oapi("/topapi/v2/user/getuserinfo", {"code": code})
        result = data.get("result") or {}
        return SignInIdentity(userid=result["userid"], unionid=result.get("unionid"), name=result.get("name"))

    def _jsapi_ticket_fetch(self) -> tuple[str, float]:
        data = self._api("POST", JSAPI_TICKET_PATH)
        ticket = data.get("jsapiTicket")
        if not ticket:
            raise PlatformError("钉钉未返回 jsapiTicket (no jsapiTicket in the answer)",
                                code="bad_response", platform="dingtalk")
        return ticket, float(data.get("expireIn") or 7200)

    def js_config(self, url: str) -> dict[str, Any]:
        """The values for `dd.config` on the page at `url` (§4.2)."""
        ticket = self.tokens.get(TokenKind.JSAPI_TICKET, self._jsapi_ticket_fetch)
        nonce = secrets.token_hex(8)
        timestamp = int(self._clock())
        return {
            "agentId": self.credentials.agent_id,
            "corpId": self.credentials.corp_id,
            "timeStamp": timestamp,
            "nonceStr": nonce,
            "signature": jsapi_signature(ticket, nonce, timestamp, url, self.jsapi_digest),
            "type": 0,
        }

    # ------------------------------------------------------------------ org structure

    @staticmethod
    def _department(d: dict[str, Any]) -> PlatformDepartment:
        parent = d.get("parent_id")
        return PlatformDepartment(
            dept_id=str(d["dept_id"]),
            parent_id=None if parent in (None, 0, "0") else str(parent),
            name=d.get("name") or "",
            order=int(d.get("order") or 0),
        )

    def root_department_ids(self) -> list[str]:
        # The full-sync recipe is a walk from department 1 (fact sheet §5.3): the sub-department listings
        # are not limited by the app's contacts scope, so one root always covers everything listable.
        return ["1"]

    def get_department(self, dept_id: str) -> PlatformDepartment:
        data = self._oapi("/topapi/v2/department/get", {"dept_id": int(dept_id), "language": "zh_CN"})
        return self._department(data.get("result") or {})

    def get_department_detail(self, dept_id: str) -> dict[str, Any]:
        """The raw `department/get` result (leaders in `dept_manager_userid_list`, member counts)."""
        return self._oapi("/topapi/v2/department/get", {"dept_id": int(dept_id), "language": "zh_CN"}).get(
            "result"
        ) or {}

    def list_sub_departments(self, dept_id: str) -> list[PlatformDepartment]:
        data = self._oapi("/topapi/v2/department/listsub", {"dept_id": int(dept_id), "language": "zh_CN"})
        return [self._department(d) for d in data.get("result") or []]

    @staticmethod
    def _user(u: dict[str, Any], listed_in: str | None = None) -> PlatformUser:
        dept_ids = tuple(str(d) for d in u.get("dept_id_list") or ())
        leader_of: list[str] = []
        for item in u.get("leader_in_dept") or ():
            if item.get("leader"):
                leader_of.append(str(item.get("dept_id")))
        if listed_in is not None and u.get("leader") and listed_in not in leader_of:
            # `user/list` only says whether the person leads the department being listed.
            leader_of.append(listed_in)
        orders = {str(o["dept_id"]): int(o.get("order") or 0) for o in u.get("dept_order_list") or ()}
        if listed_in is not None and u.get("dept_order") is not None:
            orders.setdefault(listed_in, int(u["dept_order"]))
        return PlatformUser(
            userid=u["userid"],
            name=u.get("name") or "",
            unionid=u.get("unionid"),
            title=u.get("title") or None,
            mobile=u.get("mobile") or None,
            email=u.get("email") or u.get("org_email") or None,
            avatar=u.get("avatar") or None,
            # DingTalk's `active` means "has activated the DingTalk account", not employment (§5.2):
            # everyone listed is a current member, people who leave vanish from the listings.
            active=True,
            department_ids=dept_ids,
            leader_of=tuple(leader_of),
            # DingTalk has no "main department"; the first of dept_id_list is the one shown first.
            main_department_id=dept_ids[0] if dept_ids else None,
            department_orders=orders,
        )

    def list_department_users(self, dept_id: str, cursor: int | str | None = None) -> UserPage:
        body = {
            "dept_id": int(dept_id),
            "cursor": int(cursor or 0),
            "size": self.user_page_size,
            "contain_access_limit": False,
            "language": "zh_CN",
        }
        result = self._oapi("/topapi/v2/user/list", body).get("result") or {}
        users = [self._user(u, listed_in=str(dept_id)) for u in result.get("list") or []]
        next_cursor = result.get("next_cursor") if result.get("has_more") else None
        return UserPage(users=users, next_cursor=next_cursor)

    def get_user(self, userid: str) -> PlatformUser:
        data = self._oapi("/topapi/v2/user/get", {"userid": userid, "language": "zh_CN"})
        return self._user(data.get("result") or {})

    # ------------------------------------------------------------------ work notifications

    def send_message(self, userids: Sequence[str], message: Message) -> SendReceipt:
        recipients = list(dict.fromkeys(u for u in userids if u))
        if not recipients:
            raise ValueError("send_message needs at least one userid")
        if len(recipients) > self.max_recipients_per_send:
            raise ValueError(f"at most {self.max_recipients_per_send} userids per send, got {len(recipients)}")
        msg = render_message(message)
        body = {
            "agent_id": int(self.credentials.agent_id),
            "userid_list": ",".join(recipients),
            "msg": msg,
        }
        data = self._oapi("/topapi/message/corpconversation/asyncsend_v2", body)
        task_id = data.get("task_id")
        # Asynchronous: success means accepted for delivery, not delivered (§9.1).
        return SendReceipt(task_id=None if task_id is None else str(task_id), accepted=tuple(recipients))

    def delivery_report(self, task_id: str) -> DeliveryReport:
        data = self._oapi(
            "/topapi/message/corpconversation/getsendresult",
            {"agent_id": int(self.credentials.agent_id), "task_id": int(task_id)},
        )
        result = data.get("send_result") or {}
        failed: dict[str, str] = {}
        for uid in result.get("invalid_user_id_list") or ():
            failed[uid] = "invalid"
        for uid in result.get("forbidden_user_id_list") or ():
            failed[uid] = "forbidden"
        for item in result.get("forbidden_list") or ():
            uid = item.get("userid")
            if uid:
                failed[uid] = _FORBIDDEN_REASONS.get(str(item.get("code")), f"forbidden:{item.get('code')}")
        for uid in result.get("failed_user_id_list") or ():
            failed.setdefault(uid, "failed")
        delivered = [
            uid
            for uid in [*(result.get("read_user_id_list") or ()), *(result.get("unread_user_id_list") or ())]
            if uid not in failed
        ]
        return DeliveryReport(delivered=tuple(dict.fromkeys(delivered)), failed=failed)

    # ------------------------------------------------------------------ to-dos (v1.0, unionId based §10)

    def create_todo(
        self,
        creator_unionid: str,
        *,
        subject: str,
        executor_unionids: Sequence[str],
        detail_url: str,
        source_id: str,
        description: str | None = None,
        due_time_ms: int | None = None,
        priority: int | None = None,
        notify: bool = True,
    ) -> dict[str, Any]:
        """Create a work to-do; `detail_url` is mandatory since 2024-02-01 (§10)."""
        body: dict[str, Any] = {
            "subject": subject[:1024],
            "executorIds": list(executor_unionids),
            "detailUrl": {"appUrl": detail_url, "pcUrl": detail_url},
            "sourceId": source_id,
            "creatorId": creator_unionid,
        }
        if description:
            body["description"] = description[:4096]
        if due_time_ms is not None:
            body["dueTime"] = int(due_time_ms)
        if priority is not None:
            body["priority"] = priority
        if notify:
            body["notifyConfigs"] = {"dingNotify": "1"}
        return self._api("POST", f"/v1.0/todo/users/{creator_unionid}/tasks", body,
                         params={"operatorId": creator_unionid})

    def get_todo_by_source_id(self, owner_unionid: str, source_id: str) -> dict[str, Any]:
        """The task created with `source_id` (our business id); `NotFoundError` when there is none."""
        return self._api("GET", f"/v1.0/todo/users/{owner_unionid}/tasks/sources/{quote(source_id, safe='')}")

    def update_todo(self, owner_unionid: str, task_id: str, **fields: Any) -> bool:
        """Update `subject`, `description`, `dueTime`, `done`, `executorIds`... (camelCase keys)."""
        data = self._api("PUT", f"/v1.0/todo/users/{owner_unionid}/tasks/{task_id}", fields,
                         params={"operatorId": owner_unionid})
        return bool(data.get("result", True))

    def complete_todo(self, owner_unionid: str, task_id: str) -> bool:
        return self.update_todo(owner_unionid, task_id, done=True)

    def set_todo_executor_status(self, owner_unionid: str, task_id: str, statuses: dict[str, bool]) -> bool:
        body = {"executorStatusList": [{"id": uid, "isDone": done} for uid, done in statuses.items()]}
        data = self._api("PUT", f"/v1.0/todo/users/{owner_unionid}/tasks/{task_id}/executorStatus", body,
                         params={"operatorId": owner_unionid})
        return bool(data.get("result", True))

    def delete_todo(self, owner_unionid: str, task_id: str) -> bool:
        data = self._api("DELETE", f"/v1.0/todo/users/{owner_unionid}/tasks/{task_id}",
                         params={"operatorId": owner_unionid})
        return bool(data.get("result", True))
