"""Per-corp settings the console edits (pool, reminders, quiet hours, quota), each key validated on its own
so a rejected value names its key and nothing of the request is stored."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import sqlalchemy.orm as so

from app.errors import ValidationError
from app.services import audit
from app.services.actor import Actor
from app.services.corps import DEFAULT_SETTINGS
from models.org import Corp

_CLOCK = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


def _int(low: int, high: int) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int):
            return "must be a whole number"
        return None if low <= value <= high else f"must be {low}–{high}"
    return check


def _clock(value: Any) -> str | None:
    return None if isinstance(value, str) and _CLOCK.match(value) else "must be HH:MM (00:00–23:59)"


def _window(value: Any) -> str | None:
    if value is None:
        return None  # no quiet hours
    if not isinstance(value, list) or len(value) != 2 or any(_clock(v) for v in value):
        return "must be [start, end] as HH:MM, or null"
    return None if value[0] != value[1] else "start and end must differ"


def _bool(value: Any) -> str | None:
    return None if isinstance(value, bool) else "must be true or false"


def _choice(*choices: str) -> Callable[[Any], str | None]:
    return lambda value: None if value in choices else f"one of {', '.join(choices)}"


RULES: dict[str, Callable[[Any], str | None]] = {
    "stale_days": _int(1, 365),
    "pool_reclaim_days": _int(1, 730),
    "pool_warn_days": _int(0, 60),
    "approval_escalate_hours": _int(1, 720),
    "agenda_time": _clock,
    "quiet_hours": _window,
    "quiet_hours_approvals": _bool,
    "leaver_policy": _choice("leader", "pool"),
    "monthly_api_quota": _int(1, 1_000_000_000),
    "org_sync_time": _clock,
    "pool_hold_cap": _int(1, 100_000),
    "pool_daily_claims": _int(0, 10_000),
    "pool_reclaim_ban_days": _int(0, 365),
}


def current(corp: Corp) -> dict[str, Any]:
    own = corp.settings or {}
    return {key: own.get(key, DEFAULT_SETTINGS.get(key)) for key in RULES}


def update(session: so.Session, actor: Actor, changes: dict[str, Any]) -> dict[str, Any]:
    if not changes:
        raise ValidationError("没有要修改的设置 / nothing to change", fields={"body": "empty"})
    problems = {key: "unknown setting" for key in changes if key not in RULES}
    problems.update({key: msg for key, value in changes.items() if key in RULES and (msg := RULES[key](value))})
    corp = session.get(Corp, actor.corp_id)
    merged = {**current(corp), **changes}
    if not problems and merged["pool_warn_days"] >= merged["pool_reclaim_days"]:
        problems["pool_warn_days"] = "must be fewer than pool_reclaim_days"
    if problems:
        raise ValidationError("设置有误 / invalid settings", fields=problems)
    before = current(corp)
    corp.settings = {**(corp.settings or {}), **changes}
    session.flush()
    changed = audit.diff(before, current(corp))
    if changed:
        audit.record(session, actor, "update", "settings", corp.id, changed)
    return current(corp)
