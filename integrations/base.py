"""The small interface the services use to talk to a platform (DingTalk or WeCom).

Services never import a platform package directly: they ask `integrations.registry` for the client of a
corp and speak in the neutral types below. Each platform maps its own ids, error codes and message
formats onto these. Nothing here knows a host name: every base URL comes from settings.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

# --------------------------------------------------------------------------- errors


class PlatformError(Exception):
    """A platform call failed. `cause` is one readable line for admins (no secrets, ever)."""

    retryable: bool = False

    def __init__(self, cause: str, *, code: str | int | None = None, platform: str = "", detail: Any = None):
        super().__init__(cause)
        self.cause = cause
        self.code = None if code is None else str(code)
        self.platform = platform
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.cause} ({self.platform} {self.code})" if self.code else self.cause


class RetryableError(PlatformError):
    """Throttled, timed out, 5xx or 'system busy': the same call may succeed later."""

    retryable = True

    def __init__(self, cause: str, *, retry_after: float | None = None, **kwargs):
        super().__init__(cause, **kwargs)
        self.retry_after = retry_after


class RateLimitedError(RetryableError):
    """The platform's per-app / per-API rate limit answered (DingTalk 90018, WeCom 45009/45033)."""


class CredentialsError(PlatformError):
    """Wrong key/secret, IP not whitelisted, corp unknown: needs an admin, retrying will not help."""


class PermissionDeniedError(PlatformError):
    """The app lacks a permission (contacts read, messaging) or the user is outside the visible range."""


class InvalidCodeError(PlatformError):
    """A sign-in code that is expired, already used or unknown."""


class InvalidTokenError(PlatformError):
    """The access token was rejected; the client refreshes it and retries exactly once."""


# --------------------------------------------------------------------------- neutral data


@dataclass(frozen=True)
class PlatformDepartment:
    dept_id: str
    parent_id: str | None
    name: str
    order: int = 0


@dataclass(frozen=True)
class PlatformUser:
    userid: str
    name: str
    unionid: str | None = None
    title: str | None = None
    mobile: str | None = None
    email: str | None = None
    avatar: str | None = None
    active: bool = True
    department_ids: tuple[str, ...] = ()
    # Departments this person leads (DingTalk `leader_in_dept`, WeCom `is_leader_in_dept`).
    leader_of: tuple[str, ...] = ()
    main_department_id: str | None = None
    department_orders: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class UserPage:
    users: list[PlatformUser]
    next_cursor: int | str | None  # None: last page


@dataclass(frozen=True)
class SignInIdentity:
    userid: str
    unionid: str | None = None
    name: str | None = None


@dataclass(frozen=True)
class ConnectionReport:
    ok: bool
    message: str  # plain words, e.g. "令牌获取成功，根部门：某某公司" or the cause of the failure
    root_department: str | None = None


@dataclass(frozen=True)
class Message:
    """What to tell someone. Platforms render it as markdown, action card / text card, or OA message."""

    title: str
    markdown: str
    url: str | None = None  # opens the H5 page inside the platform's webview
    button_text: str = "查看详情"
    kind: str = "markdown"  # markdown | card | oa | approval
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SendReceipt:
    task_id: str | None  # the platform's id for the send, used to read results later
    accepted: tuple[str, ...] = ()
    # recipient → reason, for recipients the platform refused up front (invaliduser, forbidden, …)
    rejected: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DeliveryReport:
    """The platform's later verdict on a send, per recipient."""

    delivered: tuple[str, ...] = ()
    failed: dict[str, str] = field(default_factory=dict)  # userid → reason (invalid, forbidden, cap, dup…)
    pending: tuple[str, ...] = ()


@dataclass(frozen=True)
class OrgEvent:
    """An address-book change pushed by the platform, already decrypted and verified."""

    event_id: str  # for de-duplication of repeated deliveries
    kind: str  # user_upsert | user_leave | user_rename | user_recheck | dept_upsert | dept_remove
    # user_rename: `user_ids` is (new userid, old userid), the new one first so that later events about the
    # person (which name the new id) queue behind it.
    user_ids: tuple[str, ...] = ()
    dept_ids: tuple[str, ...] = ()
    raw: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- the client


class PlatformClient(abc.ABC):
    """One bound corp's app on one platform. Implementations are thread-safe and share tokens across
    processes through the database."""

    platform: str
    # Calls per second allowed per API; the org sync and delivery limiters read this.
    rate_limits: dict[str, float] = {}
    user_page_size: int = 100
    max_recipients_per_send: int = 100
    # The app's visible range may name people one by one, outside any visible department: the full sync
    # then asks `list_direct_users` too.
    range_names_people: bool = False

    @abc.abstractmethod
    def test_connection(self) -> ConnectionReport: ...

    @abc.abstractmethod
    def exchange_sign_in_code(self, code: str) -> SignInIdentity: ...

    @abc.abstractmethod
    def js_config(self, url: str) -> dict[str, Any]: ...

    @abc.abstractmethod
    def list_sub_departments(self, dept_id: str) -> list[PlatformDepartment]: ...

    @abc.abstractmethod
    def get_department(self, dept_id: str) -> PlatformDepartment: ...

    @abc.abstractmethod
    def list_department_users(self, dept_id: str, cursor: int | str | None = None) -> UserPage: ...

    @abc.abstractmethod
    def get_user(self, userid: str) -> PlatformUser: ...

    @abc.abstractmethod
    def send_message(self, userids: Sequence[str], message: Message) -> SendReceipt: ...

    def delivery_report(self, task_id: str) -> DeliveryReport:  # platforms without one return empty
        return DeliveryReport()

    def root_department_id(self) -> str:
        return "1"

    def root_department_ids(self) -> list[str]:
        """The tops of what the app may read: the departments whose parent it cannot see. One (the corp's
        root) when the whole corp is visible; several when the visible range is disjoint subtrees. Empty
        only when the range holds people and no department (see `list_direct_users`)."""
        return [self.root_department_id()]

    def list_direct_users(self) -> list[PlatformUser]:
        """People in the visible range by name rather than through a department: a department walk does
        not reach them. Platforms without such a range return none."""
        return []

    def walk_departments(self) -> Iterator[PlatformDepartment]:
        """Every department, parents before children (breadth first from each root in turn)."""
        seen: set[str] = set()
        for root_id in self.root_department_ids():
            if root_id in seen:
                continue
            root = self.get_department(root_id)
            seen.add(root.dept_id)
            yield root
            queue = [root.dept_id]
            while queue:
                current = queue.pop(0)
                for child in self.list_sub_departments(current):
                    if child.dept_id in seen:
                        continue
                    seen.add(child.dept_id)
                    yield child
                    queue.append(child.dept_id)


# --------------------------------------------------------------------------- errors added by the integrations


class NotFoundError(PlatformError):
    """The user or department no longer exists on the platform (left, deleted): sync deactivates it."""


class QuotaExceededError(PlatformError):
    """The org's monthly API quota is used up: nothing helps until next month or an upgrade."""
