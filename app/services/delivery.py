"""Turning claimed outbox items into platform messages without losing any to the platform's silent rules.

DingTalk drops, without an error, a second identical message to one person on one day and anything past
500 a day; WeCom drops past 30 a minute / 1000 an hour per member; a standard-edition DingTalk org has
5,000 counted calls a month. So a worker never sends item by item: everything due for one person goes as
one digest, spaced so the person's caps and the corp's monthly budget hold, and items that may not go yet
wait (merging into that person's next digest) instead of failing.

Approval requests are the exception: each is its own message, because it acts on one approval task — on
DingTalk an action card into the H5 approval page plus the approver's 待办 (to-do API, by unionid), on WeCom
the 同意 / 驳回 card. When the task is settled, `approval_todo_done` closes the to-do or updates the card with
the response code kept on the delivery row; that is bookkeeping, never a message.
"""

from __future__ import annotations

import calendar
import hashlib
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from time import monotonic
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
import sqlalchemy.orm as so

from app.services import outbox
from app.services.corps import corp_setting
from integrations.base import (
    Message,
    NotFoundError,
    PlatformClient,
    PlatformError,
    QuotaExceededError,
    RetryableError,
)
from integrations.dingtalk.todo import close_todo, detail_url, ensure_todo
from integrations.dingtalk.usage import COUNTED_FAMILIES
from models.approvals import ApprovalInstance, ApprovalTask, TaskState
from models.db import Database
from models.org import Corp, Role, User
from models.outbox import Delivery, DeliveryVerdict, OutboxItem, OutboxState, Priority
from models.platform import ApiUsage

log = logging.getLogger(__name__)

# Per person per app, as the fact sheets give them; a corp setting may lower them.
PLATFORM_CAPS: dict[str, dict[str, int]] = {
    "dingtalk": {"day": 500},
    "wecom": {"minute": 30, "hour": 1000},
}
# Throttle verdicts the platform gives after accepting: the items are fine, they go with the next digest.
RESEND_REASONS = frozenset({"daily_cap", "duplicate", "app_rate_limit", "org_rate_limit"})
DIGEST_BODY_BYTES = 1200
# Sales teams are quiet at weekends: a weekend day gets this share of a working day's budget.
WEEKEND_WEIGHT = 0.2
# The share of a day's budget that reminders and sweeps leave for approvals arriving later that day.
APPROVAL_HEADROOM = 0.2
# An approval request is its own message (a card whose buttons or link act on one approval task), never
# a line in a digest; closing its to-do / card afterwards (`approval_todo_done`) is bookkeeping, not a message.
REQUEST_KIND = "approval_request"
NO_UNIONID = "审批人没有 unionid，未建钉钉待办 / approver has no unionid: no DingTalk to-do"
DECIDED_BEFORE_SENT = "审批任务已处理，不再发送 / the approval task was settled before delivery"
NOTHING_TO_CLOSE = "没有已送达的待办或卡片 / no delivered to-do or card to close"
# What a WeCom card shows instead of its buttons once the approver's task is settled (≤10 characters).
CARD_LABELS = {"approved": "已同意", "rejected": "已驳回", "reassigned": "已转交他人", "withdrawn": "已撤回",
               "settled": "他人已处理", "approval_approved": "审批已通过", "approval_rejected": "审批已驳回"}
# WeCom's response_code may last only 24 h (wecom facts §6.4): past that a failed update becomes a message.
CARD_CODE_SAFE = timedelta(hours=24)
KIND_LABELS = {
    "follow_up_due": "跟进提醒",
    "agenda": "今日日程",
    "stale_customer": "客户久未跟进",
    "rule_notify": "自动提醒",
    "handover": "离职交接",
    "pool_warning": "即将收回公海",
    "pool_reclaimed": "已收回公海",
    "approval": "待审批",
    "approval_escalation": "审批催办",
    "quota_warning": "接口额度预警",
}

ClientFactory = Callable[[Corp], PlatformClient]
Batch = dict[tuple[int, int], list[OutboxItem]]  # (corp, recipient) → their claimed items


# --------------------------------------------------------------------------- links and clock helpers


def h5_link(public_url: str, subject_type: str, subject_id: int | None) -> str:
    base = public_url.rstrip("/")
    if subject_type == "customer" and subject_id:
        return f"{base}/h5/#/customers/{subject_id}"
    if subject_type == "approval" and subject_id:
        return f"{base}/h5/#/approvals/{subject_id}"
    return f"{base}/h5/#/"


def _hm(value: str) -> time:
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


def local_now(corp: Corp, now: datetime) -> datetime:
    return now.astimezone(ZoneInfo(corp.timezone or "Asia/Shanghai"))


def quiet_until(corp: Corp, now: datetime) -> datetime | None:
    """When the corp's quiet window ends, or None when `now` is outside it."""
    window = corp_setting(corp, "quiet_hours")
    if not window:
        return None
    start, end = _hm(window[0]), _hm(window[1])
    local = local_now(corp, now)
    t = local.time()
    inside = (start <= t or t < end) if start > end else (start <= t < end)
    if not inside:
        return None
    opens = local.replace(hour=end.hour, minute=end.minute, second=0, microsecond=0)
    if opens <= local:
        opens += timedelta(days=1)
    return opens


def _next_local_midnight(corp: Corp, now: datetime) -> datetime:
    local = local_now(corp, now)
    return (local + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)


def _next_month_start(corp: Corp, now: datetime) -> datetime:
    local = local_now(corp, now)
    first = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return (first + timedelta(days=32)).replace(day=1)


def _waking_seconds(corp: Corp) -> float:
    window = corp_setting(corp, "quiet_hours")
    if not window:
        return 86400.0
    start, end = _hm(window[0]), _hm(window[1])
    quiet = ((start.hour * 60 + start.minute) - (end.hour * 60 + end.minute)) % (24 * 60)
    return max(3600.0, (24 * 60 - quiet) * 60.0)


# --------------------------------------------------------------------------- quota budget


@dataclass
class Budget:
    quota: int
    used: int  # counted calls this month, from the usage tally
    used_today: int
    days_left: float  # including today; a weekend day weighs WEEKEND_WEIGHT of a working day
    active_people: int
    waking_seconds: float

    @property
    def remaining(self) -> int:
        return self.quota - self.used

    @property
    def per_day(self) -> float:
        """What today may spend so the month lasts: what was left this morning over the days left."""
        return max(0.0, (self.remaining + self.used_today) / max(1.0, self.days_left))

    @property
    def reserve(self) -> int:
        # Kept for approvals once the month is nearly spent.
        return max(10, self.quota // 50)

    @property
    def level(self) -> str:
        if self.remaining <= 0:
            return "exhausted"
        if self.remaining <= self.reserve:
            return "reserve"
        # Reminders, agendas and sweeps stop spending freely before the day's share is gone, so the
        # approvals that arrive later in the day still fit in it.
        if self.used_today >= (1 - APPROVAL_HEADROOM) * self.per_day:
            return "tight"
        return "ok"

    @property
    def per_person_gap(self) -> float:
        """Seconds between two digests to one person that keep the corp within today's budget."""
        per_person = self.per_day / max(1, self.active_people)
        if per_person <= 0:
            return float("inf")
        if per_person >= 24:
            return 0.0
        # Calendar spacing: quiet hours only ever push a digest later, so this never spends more than the
        # share (with under one a day, a person gets a digest every few days, everything in between merged).
        return 86400.0 / per_person

    @property
    def can_poll(self) -> bool:
        """Reading send results costs counted calls too; only when the month has room for twice the sends."""
        return self.level == "ok" and self.per_day >= 2 * self.active_people

    def as_dict(self) -> dict[str, Any]:
        return {"quota": self.quota, "used": self.used, "remaining": self.remaining, "used_today": self.used_today,
                "days_left": self.days_left, "per_day": round(self.per_day, 1), "level": self.level,
                "active_people": self.active_people, "per_person_gap_seconds": round(self.per_person_gap)}


def month_usage(session: so.Session, corp: Corp, now: datetime) -> dict[str, int]:
    month = local_now(corp, now).strftime("%Y-%m")
    rows = session.execute(
        sa.select(ApiUsage.family, ApiUsage.count).where(ApiUsage.corp_id == corp.id, ApiUsage.month == month)
    ).all()
    return {r.family: r.count for r in rows}


def budget(session: so.Session, corp: Corp, now: datetime) -> Budget:
    local = local_now(corp, now)
    usage = month_usage(session, corp, now)
    used = sum(count for family, count in usage.items() if family in COUNTED_FAMILIES)
    # Today's sends are a range of (corp_id, sent_at): by `local_day` PostgreSQL walked every delivery the
    # corp ever had (that index leads with the recipient), a cost that grew each month.
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    sent_today = session.execute(
        sa.select(sa.func.count()).select_from(Delivery)
        .where(Delivery.corp_id == corp.id, Delivery.sent_at >= midnight)
    ).scalar_one()
    # A send is read back within 23 hours of leaving (poll_results), so today's reads are of sends since
    # yesterday's midnight; the bound keeps this a range too.
    polled_today = session.execute(
        sa.select(sa.func.count()).select_from(Delivery)
        .where(Delivery.corp_id == corp.id, Delivery.sent_at >= midnight - timedelta(days=1),
               Delivery.polled_at >= midnight)
    ).scalar_one() if corp.platform == "dingtalk" else 0
    # To-do calls count too: one create per approval request's to-do, one update per closing.
    todos_today = session.execute(
        sa.select(sa.func.count()).select_from(Delivery)
        .where(Delivery.corp_id == corp.id, Delivery.sent_at >= midnight, Delivery.todo_task_id.is_not(None))
    ).scalar_one() + session.execute(
        sa.select(sa.func.count()).select_from(OutboxItem)
        .where(OutboxItem.corp_id == corp.id, OutboxItem.kind == "approval_todo_done", OutboxItem.sent_at >= midnight)
    ).scalar_one() if corp.platform == "dingtalk" else 0
    people = session.execute(
        sa.select(sa.func.count()).select_from(User).where(User.corp_id == corp.id, User.active.is_(True))
    ).scalar_one()
    days_in_month = calendar.monthrange(local.year, local.month)[1]
    days_left = sum(1.0 if local.replace(day=d).weekday() < 5 else WEEKEND_WEIGHT
                    for d in range(local.day, days_in_month + 1))
    return Budget(quota=int(corp_setting(corp, "monthly_api_quota") or 0), used=used,
                  used_today=min(used, sent_today + polled_today + todos_today), days_left=days_left,
                  active_people=max(1, people), waking_seconds=_waking_seconds(corp))


# --------------------------------------------------------------------------- digest rendering


def _line(item: OutboxItem) -> str:
    text = str(item.payload.get("line") or item.payload.get("text") or KIND_LABELS.get(item.kind, item.kind))
    return text.replace("\n", " ")[:120]


def render_digest(corp: Corp, items: list[OutboxItem], now: datetime, public_url: str, *, variant: int = 0) -> Message:
    """One message for everything due for one person. The title carries the count and the local time, so
    two digests on one day differ; `variant` breaks the rare remaining tie."""
    local = local_now(corp, now)
    stamp = local.strftime("%m-%d %H:%M")
    if len(items) == 1:
        item = items[0]
        label = item.payload.get("title") or KIND_LABELS.get(item.kind, "提醒")
        title = f"{label} · {stamp}"
        url = item.payload.get("url") or h5_link(public_url, item.subject_type, item.subject_id)
    else:
        kinds = {i.kind for i in items}
        label = KIND_LABELS.get(next(iter(kinds)), "提醒") if len(kinds) == 1 else "待办汇总"
        title = f"{label}（{len(items)} 条）· {stamp}"
        url = h5_link(public_url, "agenda", None)
    if variant:
        title = f"{title} #{variant + 1}"
    # As many lines as DingTalk's 2048-byte message takes (links and title need the rest); then a count.
    lines: list[str] = []
    size = 0
    for item in items:
        line = f"- {_line(item)}"
        size += len(line.encode()) + 1
        if size > DIGEST_BODY_BYTES:
            break
        lines.append(line)
    if len(lines) < len(items):
        more = len(items) - len(lines)
        lines.append(f"- …还有 {more} 条 / {more} more")
    body = f"#### {title}\n\n" + "\n".join(lines)
    kind = "card" if any(i.priority >= Priority.APPROVAL for i in items) else "markdown"
    return Message(title=title, markdown=body, url=url, button_text="打开 CRM", kind=kind)


def _task_source(item: OutboxItem) -> str | None:
    payload = item.payload
    return ((payload.get("card") or {}).get("task_id") or (payload.get("todo") or {}).get("source_id")
            or payload.get("task_id"))


def _card_label(task_state: str | None, approval_state: str | None) -> str:
    if task_state in ("approved", "rejected", "reassigned"):
        return CARD_LABELS[task_state]
    if approval_state == "withdrawn":
        return CARD_LABELS["withdrawn"]
    if approval_state in ("approved", "rejected"):
        return CARD_LABELS[f"approval_{approval_state}"]
    return CARD_LABELS["settled"]


def render_request(corp: Corp, item: OutboxItem, now: datetime, public_url: str, *, variant: int = 0) -> Message:
    """One approval request as its own message: on DingTalk an action card opening the H5 approval page, on
    WeCom the 同意 / 驳回 `button_interaction` card carrying the approval task's id."""
    payload = item.payload
    stamp = local_now(corp, now).strftime("%m-%d %H:%M")
    title = f"{KIND_LABELS['approval']}：{payload.get('title') or ''}".rstrip("：")
    if variant:
        title = f"{title} #{variant + 1}"
    text = str(payload.get("text") or title)
    url = h5_link(public_url, "approval", item.subject_id)
    if corp.platform == "wecom":
        return Message(title=title, markdown=text, url=url, kind="approval",
                       extra={"task_id": _task_source(item), "desc": stamp, "source": "CRM 审批"})
    return Message(title=f"{title} · {stamp}", markdown=f"#### {title}\n\n{text}\n\n{stamp}", url=url,
                   button_text="去审批 / Review", kind="card")


def content_hash(message: Message) -> str:
    return hashlib.sha256(f"{message.title}\0{message.markdown}\0{message.url}".encode()).hexdigest()


# --------------------------------------------------------------------------- planning one person's digest


@dataclass
class Plan:
    send: list[OutboxItem] = field(default_factory=list)
    defer: list[OutboxItem] = field(default_factory=list)
    defer_until: datetime | None = None
    reason: str | None = None


def _caps(corp: Corp) -> dict[str, int]:
    caps = dict(PLATFORM_CAPS.get(corp.platform, {}))
    for window, key in (("day", "user_daily_cap"), ("minute", "user_minute_cap"), ("hour", "user_hour_cap")):
        value = (corp.settings or {}).get(key)
        if value:
            caps[window] = min(int(value), caps.get(window, int(value)))
    return caps


def _cap_wait(session: so.Session, corp: Corp, user_id: int, now: datetime) -> tuple[datetime | None, float, str]:
    """(blocked until, spacing in seconds, reason) from the person's per-day/minute/hour caps."""
    caps = _caps(corp)
    gap = 0.0
    if "day" in caps:
        day = local_now(corp, now).strftime("%Y-%m-%d")
        today = session.execute(
            sa.select(sa.func.count()).select_from(Delivery)
            .where(Delivery.corp_id == corp.id, Delivery.recipient_user_id == user_id, Delivery.local_day == day)
        ).scalar_one()
        left = caps["day"] - today
        midnight = _next_local_midnight(corp, now)
        if left <= 0:
            return midnight, 0.0, "daily_cap"
        if today >= caps["day"] // 2:
            # Past half the cap, spread what is left over the rest of the day rather than spend it by noon.
            gap = (midnight - now).total_seconds() / left
    for window, seconds in (("minute", 60), ("hour", 3600)):
        if window not in caps:
            continue
        recent = session.execute(
            sa.select(Delivery.sent_at)
            .where(Delivery.corp_id == corp.id, Delivery.recipient_user_id == user_id,
                   Delivery.sent_at > now - timedelta(seconds=seconds))
            .order_by(Delivery.sent_at)
        ).scalars().all()
        if len(recent) >= caps[window]:
            return recent[len(recent) - caps[window]] + timedelta(seconds=seconds), 0.0, f"{window}_cap"
    return None, gap, ""


def plan(session: so.Session, corp: Corp, user_id: int, items: list[OutboxItem], now: datetime,
         spend: Budget) -> Plan:
    urgent = [i for i in items if i.priority >= Priority.APPROVAL]
    rest = [i for i in items if i.priority < Priority.APPROVAL]
    blocked_until, cap_gap, cap_reason = _cap_wait(session, corp, user_id, now)
    if blocked_until is not None:
        return Plan(defer=items, defer_until=blocked_until, reason=cap_reason)
    if spend.level == "exhausted":
        return Plan(defer=items, defer_until=_next_month_start(corp, now), reason="quota")
    quiet = quiet_until(corp, now)
    setting = corp_setting(corp, "quiet_hours_approvals")
    approvals_in_quiet = True if setting is None else bool(setting)
    if urgent and (quiet is None or approvals_in_quiet):
        # An approval goes now; whatever else is due rides along for free unless it must wait for morning.
        if quiet is None:
            return Plan(send=items)
        return Plan(send=urgent, defer=rest, defer_until=quiet, reason="quiet_hours")
    if quiet is not None:
        return Plan(defer=items, defer_until=quiet, reason="quiet_hours")
    if spend.level == "reserve":
        return Plan(defer=items, defer_until=_next_month_start(corp, now), reason="quota")
    # Within today's share of the month anyone may get a digest; past it, each person waits long enough
    # between digests that the corp's spend falls back to its daily share (merging harder, not failing).
    quota_gap = spend.per_person_gap if spend.level == "tight" else 0.0
    gap = max(cap_gap, quota_gap)
    if gap <= 0:
        return Plan(send=rest)
    last = session.execute(
        sa.select(sa.func.max(Delivery.sent_at))
        .where(Delivery.corp_id == corp.id, Delivery.recipient_user_id == user_id)
    ).scalar_one()
    if last is not None:
        earliest = last + timedelta(seconds=min(gap, 7 * 86400.0))
        if earliest > now:
            return Plan(defer=items, defer_until=earliest, reason="quota" if quota_gap >= cap_gap else "daily_cap")
    return Plan(send=rest)


# --------------------------------------------------------------------------- the worker's step


@dataclass
class StepResult:
    claimed: int = 0
    sent_messages: int = 0
    sent_items: int = 0
    deferred: int = 0
    retried: int = 0
    failed: int = 0
    dropped: int = 0
    lost_leases: int = 0

    def add(self, other: StepResult) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


class Deliverer:
    """Claims a batch, plans and sends per person. One per worker thread; `client_factory(corp)` gives the
    platform client (tests pass their own, production uses the registry)."""

    def __init__(self, database: Database, settings: Any, *, owner: str, lease_seconds: float = 120,
                 max_recipients: int = 20, client_factory: ClientFactory | None = None,
                 before_commit: Callable[[], None] | None = None) -> None:
        self.db = database
        self.settings = settings
        self.owner = owner
        self.lease_seconds = lease_seconds
        self.max_recipients = max_recipients
        self.client_factory = client_factory or self._registry_client
        self.before_commit = before_commit  # fault tests stop here, after the platform accepted
        self._rng = random.Random()

    def _registry_client(self, corp: Corp) -> PlatformClient:
        from integrations.registry import client_for

        return client_for(corp, settings=self.settings, database=self.db)

    def claim(self, now: datetime) -> Batch:
        """Lease the next batch: every due item of up to `max_recipients` people."""
        with self.db.session() as session:
            return outbox.claim(session, owner=self.owner, now=now, lease_seconds=self.lease_seconds,
                                max_recipients=self.max_recipients)

    def hand_back(self, groups: Batch) -> int:
        """Return a claimed batch unsent (the worker stops): other workers need not wait out the lease."""
        ids = [i.id for items in groups.values() for i in items]
        with self.db.session() as session:
            return outbox.release(session, self.owner, ids, state=OutboxState.PENDING)

    def step(self, now: datetime, groups: Batch | None = None, *,
             before_last: Callable[[], None] | None = None) -> StepResult:
        """Plan and send a batch (`groups` from `claim`, or claimed now). `before_last` runs as the last
        person's turn begins: a worker claims its next batch there, so that no slot passes unused between
        two batches while it waits for the database."""
        if groups is None:
            groups = self.claim(now)
        result = StepResult(claimed=sum(len(v) for v in groups.values()))
        corps: dict[int, Corp] = {}
        budgets: dict[int, Budget] = {}
        started = monotonic()
        people = list(groups.items())
        for index, ((corp_id, user_id), items) in enumerate(people):
            if before_last is not None and index == len(people) - 1:
                before_last()
            items = self._keep_leases(people[index:], now + timedelta(seconds=monotonic() - started), result)
            if not items:
                continue
            decided = None
            with self.db.session() as session:
                corp = corps.get(corp_id) or session.get(Corp, corp_id)
                corps[corp_id] = corp
                if corp_id not in budgets:
                    budgets[corp_id] = budget(session, corp, now)
                person = session.get(User, user_id)
                silent = [i for i in items if i.payload.get("todo_done")]
                items = [i for i in items if not i.payload.get("todo_done")]
                if items:
                    decided = plan(session, corp, user_id, items, now, budgets[corp_id])
                    if decided.defer:
                        result.deferred += self._defer(session, decided)
            if decided is not None and decided.send:
                requests = [i for i in decided.send if i.kind == REQUEST_KIND]
                rest = [i for i in decided.send if i.kind != REQUEST_KIND]
                for index, item in enumerate(requests):
                    if index and self._blocked(corp, user_id, [*requests[index:], *rest], now):
                        result.deferred += len(requests) - index + len(rest)
                        rest = []
                        break
                    result.add(self._send_request(corp, person, item, now, budgets[corp_id]))
                if rest and (not requests or not self._blocked(corp, user_id, rest, now)):
                    result.add(self._send(corp, person, rest, now))
                    budgets[corp_id].used += 1
                    budgets[corp_id].used_today += 1
                elif rest:
                    result.deferred += len(rest)
            # After the requests: a request settled before it went out is dropped there, so there is
            # nothing of it left to close here.
            if silent:
                result.add(self._close(corp, person, silent, now, budgets[corp_id]))
        return result

    def _keep_leases(self, people: list[tuple[tuple[int, int], list[OutboxItem]]], now: datetime,
                     result: StepResult) -> list[OutboxItem]:
        """Before the next person's turn: once half the lease is gone (a slow batch under load, or one
        claimed ahead), extend it for everything not yet sent, so it runs out only if this worker dies. Items
        another worker took meanwhile are left to it. Returns the next person's items that are still ours."""
        remaining = [i for _key, items in people for i in items]
        soonest = min((i.lease_until for i in remaining if i.lease_until is not None), default=None)
        if soonest is None or soonest - now > timedelta(seconds=self.lease_seconds / 2):
            return people[0][1]
        until = now + timedelta(seconds=self.lease_seconds)
        with self.db.session() as session:
            kept = set(session.execute(
                sa.update(OutboxItem).where(outbox.owned(self.owner, [i.id for i in remaining]))
                .values(lease_until=until).returning(OutboxItem.id)
                .execution_options(synchronize_session=False)).scalars())
        for _key, items in people:
            lost = [i for i in items if i.id not in kept]
            if lost:
                log.warning("lease lost on %d items before sending; another worker has them", len(lost))
                result.lost_leases += len(lost)
                items[:] = [i for i in items if i.id in kept]
            for i in items:
                i.lease_until = until
        return people[0][1]

    def _blocked(self, corp: Corp, user_id: int, items: list[OutboxItem], now: datetime) -> bool:
        """Before a second message to one person in one step: their caps hold, or the rest waits."""
        with self.db.session() as session:
            until, _gap, reason = _cap_wait(session, corp, user_id, now)
            if until is None:
                return False
            self._defer(session, Plan(defer=items, defer_until=until, reason=reason))
        return True

    def _defer(self, session: so.Session, decided: Plan) -> int:
        return outbox.release(
            session, self.owner, [i.id for i in decided.defer], state=OutboxState.PENDING,
            next_attempt_at=decided.defer_until, deferred_reason=decided.reason,
            deferred_count=OutboxItem.deferred_count + 1,
        )

    def _send(self, corp: Corp, person: User | None, items: list[OutboxItem], now: datetime, *,
              render: Callable[[int], Message] | None = None, delivery: dict[str, Any] | None = None,
              note: str | None = None, client: PlatformClient | None = None) -> StepResult:
        """One platform message to one person carrying `items` (a digest unless `render` says otherwise);
        `delivery` adds fields to the Delivery row, `note` stays on the items as a remark."""
        ids = [i.id for i in items]
        result = StepResult()
        if person is None or not person.active or not person.platform_userid:
            with self.db.session() as session:
                result.dropped += outbox.release(session, self.owner, ids, state=OutboxState.DROPPED,
                                                 last_error="收件人已离职或不存在 / recipient inactive")
            return result
        if render is None:
            def render(variant: int) -> Message:
                return render_digest(corp, items, now, self.settings.public_url, variant=variant)
        day = local_now(corp, now).strftime("%Y-%m-%d")
        with self.db.session() as session:
            seen = set(session.execute(
                sa.select(Delivery.content_hash)
                .where(Delivery.corp_id == corp.id, Delivery.recipient_user_id == person.id, Delivery.local_day == day)
            ).scalars())
        variant = 0
        message = render(0)
        while content_hash(message) in seen:
            variant += 1
            message = render(variant)
        try:
            client = client or self.client_factory(corp)
            receipt = client.send_message([person.platform_userid], message)
        except QuotaExceededError as exc:
            return self._quota_wait(corp, items, now, exc)
        except (RetryableError, TimeoutError, ConnectionError, _rate_limit_timeout()) as exc:
            return self._retry_later(items, now, str(exc))
        except PlatformError as exc:
            with self.db.session() as session:
                result.failed += outbox.release(session, self.owner, ids, state=OutboxState.FAILED,
                                                attempts=OutboxItem.attempts + 1, last_error=str(exc)[:500])
            return result
        if self.before_commit is not None:
            self.before_commit()
        rejected = receipt.rejected.get(person.platform_userid)
        with self.db.session() as session:
            row = Delivery(
                corp_id=corp.id, recipient_user_id=person.id, local_day=day, title=message.title[:200],
                content_hash=content_hash(message), item_count=len(items), platform_task_id=receipt.task_id,
                verdict=DeliveryVerdict.DROPPED if rejected else DeliveryVerdict.PENDING,
                verdict_reason=rejected, worker=self.owner, sent_at=now,
                response_code=getattr(receipt, "response_code", None), **(delivery or {}),
            )
            session.add(row)
            session.flush()
            state = OutboxState.DROPPED if rejected else OutboxState.SENT
            mine = outbox.release(session, self.owner, ids, state=state, delivery_id=row.id, sent_at=now,
                                  attempts=OutboxItem.attempts + 1, last_error=rejected or note)
        if mine < len(ids):
            # Our lease ran out while the platform was answering: another worker may send these again.
            log.warning("lease lost on %d of %d items after sending (possible duplicate)", len(ids) - mine, len(ids))
            result.lost_leases += len(ids) - mine
        result.sent_messages += 1
        if rejected:
            result.dropped += mine
        else:
            result.sent_items += mine
        return result

    def _quota_wait(self, corp: Corp, items: list[OutboxItem], now: datetime, exc: Exception) -> StepResult:
        result = StepResult()
        with self.db.session() as session:
            result.deferred += outbox.release(
                session, self.owner, [i.id for i in items], state=OutboxState.PENDING,
                next_attempt_at=_next_month_start(corp, now), deferred_reason="quota",
                deferred_count=OutboxItem.deferred_count + 1, last_error=str(exc)[:500])
        return result

    def _finish(self, items: list[OutboxItem], now: datetime, note: str | None, *,
                state: str = OutboxState.SENT) -> StepResult:
        """Items done without a message of their own (a to-do closed, a card updated, nothing to do)."""
        with self.db.session() as session:
            mine = outbox.release(session, self.owner, [i.id for i in items], state=state, sent_at=now,
                                  attempts=OutboxItem.attempts + 1, last_error=note)
        return StepResult(sent_items=mine) if state == OutboxState.SENT else StepResult(dropped=mine)

    # ------------------------------------------------------------------ approval requests and their closing

    def _send_request(self, corp: Corp, person: User | None, item: OutboxItem, now: datetime,
                      spend: Budget) -> StepResult:
        """The approver's own message and, on DingTalk, their 待办 — created before the message, so a failed
        send retries both without a second to-do (the source id finds the first) and never a second message."""
        source = _task_source(item)
        with self.db.session() as session:
            task = session.execute(sa.select(ApprovalTask).where(
                ApprovalTask.corp_id == corp.id, ApprovalTask.source_id == source)).scalar_one_or_none() \
                if source else None
            if task is not None and task.state != TaskState.PENDING:
                task = None
            existing = None
            if source and task is not None:
                existing = session.execute(sa.select(Delivery.todo_task_id).where(
                    Delivery.corp_id == corp.id, Delivery.source_id == source,
                    Delivery.todo_task_id.is_not(None)).limit(1)).scalar()
        if task is None:
            return self._finish([item], now, DECIDED_BEFORE_SENT, state=OutboxState.DROPPED)
        if person is None or not person.active or not person.platform_userid:
            return self._send(corp, person, [item], now)
        client = None
        note = None
        todo_id = existing
        todo = item.payload.get("todo") or {}
        if corp.platform == "dingtalk" and todo and existing is None:
            if not person.unionid:
                note = NO_UNIONID
            else:
                try:
                    client = self.client_factory(corp)
                    ref = ensure_todo(
                        client, creator_unionid=person.unionid, approver_unionids=[person.unionid],
                        source_id=str(todo.get("source_id") or source), subject=str(todo.get("title") or
                                                                                    item.payload.get("title")),
                        url=detail_url(self.settings.public_url, todo.get("url") or
                                       h5_link("", "approval", item.subject_id)),
                        description=item.payload.get("text"))
                    todo_id = ref.task_id
                except QuotaExceededError as exc:
                    return self._quota_wait(corp, [item], now, exc)
                except (RetryableError, TimeoutError, ConnectionError, _rate_limit_timeout()) as exc:
                    return self._retry_later([item], now, str(exc))
                except PlatformError as exc:
                    # The message still goes: the approver can decide from it; the admin sees why.
                    note = f"待办创建失败 / to-do not created: {exc}"[:500]
                finally:
                    spend.used += 1
                    spend.used_today += 1
        result = self._send(
            corp, person, [item], now, client=client, note=note,
            render=lambda variant: render_request(corp, item, now, self.settings.public_url, variant=variant),
            delivery={"source_id": source, "todo_task_id": todo_id})
        spend.used += 1
        spend.used_today += 1
        return result

    def _close(self, corp: Corp, person: User | None, items: list[OutboxItem], now: datetime,
               spend: Budget) -> StepResult:
        """`approval_todo_done`: the approver's task is settled. DingTalk: mark their to-do done; WeCom: replace
        the buttons of every card that carried the task. Neither is a message, so no cap or digest applies."""
        result = StepResult()
        for item in items:
            source = str(item.payload.get("todo_done"))
            with self.db.session() as session:
                request = session.execute(sa.select(OutboxItem).where(
                    OutboxItem.corp_id == corp.id,
                    OutboxItem.idempotency_key == f"approval:{item.subject_id}:request:{source}")).scalar()
                if request is not None and request.state == OutboxState.SENDING and request.lease_until:
                    # Another worker is sending the request right now: close once its send is recorded.
                    result.deferred += outbox.release(
                        session, self.owner, [item.id], state=OutboxState.PENDING,
                        next_attempt_at=max(request.lease_until, now) + timedelta(seconds=1),
                        deferred_reason="request_in_flight", deferred_count=OutboxItem.deferred_count + 1)
                    continue
                carriers = session.execute(sa.select(Delivery).where(
                    Delivery.corp_id == corp.id, Delivery.source_id == source)
                    .order_by(Delivery.id)).scalars().all()
                # A request that failed or waits for a retry may have created its to-do before the send failed.
                tried = (request is not None and request.attempts > 0
                         and request.state in (OutboxState.FAILED, OutboxState.PENDING))
                inst = session.get(ApprovalInstance, item.subject_id) if item.subject_id else None
                label = _card_label(item.payload.get("task_state"), inst.state if inst else None)
            if corp.platform == "wecom":
                result.add(self._update_cards(corp, person, item, carriers, label, now))
            else:
                result.add(self._complete_todo(corp, person, item, carriers, tried, now, spend))
        return result

    def _complete_todo(self, corp: Corp, person: User | None, item: OutboxItem, carriers: list[Delivery],
                       tried: bool, now: datetime, spend: Budget) -> StepResult:
        todo_ids = list(dict.fromkeys(d.todo_task_id for d in carriers if d.todo_task_id))
        owner = person.unionid if person is not None else None
        if not owner or not (todo_ids or tried):
            return self._finish([item], now, NOTHING_TO_CLOSE if owner else NO_UNIONID)
        if spend.level == "exhausted":
            return self._quota_wait(corp, [item], now, QuotaExceededError("本月额度已用完 / monthly quota used up"))
        try:
            client = self.client_factory(corp)
            if todo_ids:
                for todo_id in todo_ids:
                    spend.used += 1
                    spend.used_today += 1
                    try:
                        client.complete_todo(owner, todo_id)
                    except NotFoundError:
                        pass  # deleted in DingTalk: nothing left to close
                closed = True
            else:
                # The to-do may exist without a recorded send (created, then the message failed): by source id.
                spend.used += 2
                spend.used_today += 2
                closed = close_todo(client, owner_unionid=owner, source_id=str(item.payload["todo_done"]))
        except QuotaExceededError as exc:
            return self._quota_wait(corp, [item], now, exc)
        except (RetryableError, TimeoutError, ConnectionError, _rate_limit_timeout()) as exc:
            return self._retry_later([item], now, str(exc))
        except PlatformError as exc:
            with self.db.session() as session:
                failed = outbox.release(session, self.owner, [item.id], state=OutboxState.FAILED,
                                        attempts=OutboxItem.attempts + 1, last_error=str(exc)[:500])
            return StepResult(failed=failed)
        return self._finish([item], now, None if closed else NOTHING_TO_CLOSE)

    def _update_cards(self, corp: Corp, person: User | None, item: OutboxItem, carriers: list[Delivery],
                      label: str, now: datetime) -> StepResult:
        cards = [d for d in carriers if d.response_code]
        if not cards:
            return self._finish([item], now, NOTHING_TO_CLOSE)
        client = self.client_factory(corp)
        userid = person.platform_userid if person is not None else None
        stale = []
        for card in cards:
            try:
                if userid:
                    client.update_template_card(card.response_code, userids=[userid], replace_name=label)
                else:
                    client.update_template_card(card.response_code, atall=True, replace_name=label)
            except (RetryableError, TimeoutError, ConnectionError, _rate_limit_timeout()) as exc:
                return self._retry_later([item], now, str(exc))
            except PlatformError as exc:
                log.info("WeCom card of task %s not updated: %s", item.payload.get("todo_done"), exc)
                if card.sent_at < now - CARD_CODE_SAFE:
                    stale.append(card)
            with self.db.session() as session:
                # Each code works once (§6.4): a retry of this item must not spend it again.
                session.execute(sa.update(Delivery).where(Delivery.id == card.id).values(response_code=None))
        if stale and person is not None and person.active:
            # The code expired: a short message replaces the card update, so the approver is not left with
            # buttons that no longer work.
            title = str(item.payload.get("title") or "")
            return self._send(corp, person, [item], now, render=lambda variant: Message(
                title=f"{title}：{label}" + (f" #{variant + 1}" if variant else ""),
                markdown=f"「{title}」{label}，无需再处理 / already settled, nothing to do",
                url=h5_link(self.settings.public_url, "approval", item.subject_id), kind="card"))
        return self._finish([item], now, None)

    def _retry_later(self, items: list[OutboxItem], now: datetime, error: str) -> StepResult:
        result = StepResult()
        with self.db.session() as session:
            for item in items:
                attempts = item.attempts + 1
                if attempts >= outbox.MAX_ATTEMPTS:
                    result.failed += outbox.release(session, self.owner, [item.id], state=OutboxState.FAILED,
                                                    attempts=attempts, last_error=error[:500])
                else:
                    wait = outbox.backoff_seconds(attempts, self._rng)
                    result.retried += outbox.release(
                        session, self.owner, [item.id], state=OutboxState.PENDING, attempts=attempts,
                        next_attempt_at=now + timedelta(seconds=wait), last_error=error[:500])
        return result


def _rate_limit_timeout() -> type[Exception]:
    from integrations.dingtalk.ratelimit import RateLimitTimeout

    return RateLimitTimeout


# --------------------------------------------------------------------------- results, quota warnings


def poll_results(database: Database, now: datetime, client_factory: ClientFactory, *, limit: int = 100) -> dict:
    """Read the platform's per-recipient verdict of recent sends. Reading costs quota on DingTalk, so it is
    skipped while the corp's budget is not comfortable; sends older than the 24 h window become unknown."""
    counts = {"delivered": 0, "dropped": 0, "resent": 0, "unknown": 0, "skipped": 0}
    with database.session() as session:
        session.execute(
            sa.update(Delivery).where(Delivery.verdict == DeliveryVerdict.PENDING,
                                      Delivery.sent_at < now - timedelta(hours=23))
            .values(verdict=DeliveryVerdict.UNKNOWN, polled_at=now)
        )
        rows = session.execute(
            sa.select(Delivery, User.platform_userid).join(User, User.id == Delivery.recipient_user_id)
            .where(Delivery.verdict == DeliveryVerdict.PENDING, Delivery.platform_task_id.is_not(None),
                   Delivery.sent_at <= now - timedelta(seconds=30))
            .order_by(Delivery.sent_at).limit(limit)
        ).all()
        corps = {c.id: c for c in session.execute(
            sa.select(Corp).where(Corp.id.in_({d.corp_id for d, _ in rows}))).scalars()}
        comfortable = {cid: budget(session, c, now).can_poll for cid, c in corps.items()}
    for delivery, userid in rows:
        corp = corps[delivery.corp_id]
        if not comfortable[corp.id]:
            counts["skipped"] += 1
            continue
        try:
            report = client_factory(corp).delivery_report(delivery.platform_task_id)
        except PlatformError as exc:
            log.info("send result for task %s not readable yet: %s", delivery.platform_task_id, exc)
            continue
        with database.session() as session:
            row = session.get(Delivery, delivery.id)
            row.polled_at = now
            if userid in report.failed:
                reason = report.failed[userid]
                row.verdict, row.verdict_reason = DeliveryVerdict.DROPPED, reason[:64]
                if reason in RESEND_REASONS:
                    # Throttled, not refused: the items go again in the person's next digest.
                    session.execute(
                        sa.update(OutboxItem).where(OutboxItem.delivery_id == row.id)
                        .values(state=OutboxState.PENDING, next_attempt_at=now, last_error=reason,
                                delivery_id=None, updated_at=now))
                    counts["resent"] += 1
                else:
                    session.execute(
                        sa.update(OutboxItem).where(OutboxItem.delivery_id == row.id)
                        .values(state=OutboxState.DROPPED, last_error=reason, updated_at=now))
                    counts["dropped"] += 1
            elif userid in report.delivered:
                row.verdict = DeliveryVerdict.DELIVERED
                counts["delivered"] += 1
    return counts


def warn_quota(session: so.Session, corp: Corp, now: datetime, *, threshold: float = 0.8) -> int:
    """Tell the corp's admins once a month when counted calls pass `threshold` of the quota."""
    spend = budget(session, corp, now)
    if spend.quota <= 0 or spend.used < threshold * spend.quota:
        return 0
    month = local_now(corp, now).strftime("%Y-%m")
    admins = session.execute(
        sa.select(User.id).where(User.corp_id == corp.id, User.role == Role.ADMIN, User.active.is_(True))
    ).scalars().all()
    made = 0
    for admin_id in admins:
        line = (f"本月平台接口已用 {spend.used}/{spend.quota}（{spend.used * 100 // spend.quota}%），"
                f"提醒将更多合并发送 / {spend.used} of {spend.quota} API calls used this month")
        made += outbox.enqueue(
            session, corp_id=corp.id, kind="quota_warning", recipient_user_id=admin_id, subject_type="corp",
            subject_id=corp.id, due_at=now, payload={"title": "接口额度预警", "line": line},
            priority=Priority.APPROVAL, idempotency_key=f"quota_warning:{month}:{int(threshold * 100)}:{admin_id}",
        ) is not None
    return made


def usage_report(session: so.Session, corp: Corp, now: datetime) -> dict[str, Any]:
    """This month's usage against the quota per family, and what shaping merged or deferred."""
    local = local_now(corp, now)
    start = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    spend = budget(session, corp, now)
    families = month_usage(session, corp, now)
    sent = session.execute(
        sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(Delivery.item_count), 0))
        .where(Delivery.corp_id == corp.id, Delivery.sent_at >= start)
    ).one()
    deferred = session.execute(
        sa.select(OutboxItem.deferred_reason, sa.func.count())
        .where(OutboxItem.corp_id == corp.id, OutboxItem.deferred_count > 0, OutboxItem.created_at >= start)
        .group_by(OutboxItem.deferred_reason)
    ).all()
    waiting = session.execute(
        sa.select(sa.func.count()).select_from(OutboxItem)
        .where(OutboxItem.corp_id == corp.id, OutboxItem.state == OutboxState.PENDING)
    ).scalar_one()
    return {
        "month": local.strftime("%Y-%m"),
        "quota": spend.quota,
        "used": spend.used,
        "ratio": round(spend.used / spend.quota, 4) if spend.quota else None,
        "warning": bool(spend.quota and spend.used >= 0.8 * spend.quota),
        "families": {f: {"used": c, "counted": f in COUNTED_FAMILIES} for f, c in sorted(families.items())},
        "budget": spend.as_dict(),
        "messages": sent[0],
        "items_sent": int(sent[1]),
        "items_merged": int(sent[1]) - sent[0],
        "deferred": {(reason or "other"): n for reason, n in deferred},
        "waiting": waiting,
    }
