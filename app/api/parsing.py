"""Turning request bodies, query strings and URL ids into typed values, or a 4xx naming the field.

Besides the pydantic models' own rules, every value is checked against what the databases can hold: an
id beyond BIGINT, a NUL character (PostgreSQL text and jsonb reject it), a lone surrogate (not encodable
as UTF-8), NaN or infinity (not JSON), a time outside 1900–2999 (its UTC conversion may overflow) or a
32-bit column given a larger number would otherwise make the database raise — a 500 instead of a 4xx.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import pydantic
from flask import request

from app.api import bp
from app.db import get_session
from app.errors import ApiError, NotFound, ValidationError
from app.services.actor import Actor
from app.services.pagination import MAX_ID, YEARS
from models.org import Corp

M = TypeVar("M", bound=pydantic.BaseModel)

INT32_MAX = 2**31 - 1
# Numbers in free JSON (custom field values): beyond this the H5 app's JavaScript rounds them silently, and
# much beyond it a float conversion overflows.
JSON_INT_MAX = 2**53 - 1
INT32_FIELDS = frozenset({"sort_order"})  # INTEGER columns that take any number the client sends


@bp.url_value_preprocessor
def guard_url_ids(_endpoint: str | None, values: dict[str, Any] | None) -> None:
    """An id in the URL that no BIGINT can hold names no row: 404 naming it, before any query runs."""
    for name, value in (values or {}).items():
        if isinstance(value, int) and abs(value) > MAX_ID:
            raise NotFound("不存在 / not found", fields={name: "not found"})


def _string_problem(value: str) -> str | None:
    if "\x00" in value:
        return "contains a NUL character"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "contains an invalid character"
    return None


def _problems(value: Any, path: str, int_limit: int, out: dict[str, str]) -> None:
    """Collect unstorable values under `path`. `int_limit` is the bound for integers that end up in an
    integer column (model fields and their lists); integers inside free JSON (custom values) get JSON_INT_MAX."""
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, int):
        if abs(value) > int_limit:
            out[path] = "out of range"
    elif isinstance(value, float):
        if not math.isfinite(value):
            out[path] = "must be a finite number"
    elif isinstance(value, str):
        problem = _string_problem(value)
        if problem:
            out[path] = problem
    elif isinstance(value, datetime):
        try:
            year = value.astimezone(UTC).year if value.tzinfo else value.year
        except OverflowError:
            year = value.year
        if not YEARS[0] <= year <= YEARS[1] or not YEARS[0] <= value.year <= YEARS[1]:
            out[path] = f"year must be {YEARS[0]}–{YEARS[1]}"
    elif isinstance(value, pydantic.BaseModel):
        model_problems(value, f"{path}.", out)
    elif isinstance(value, dict):
        for key, item in value.items():
            if _string_problem(str(key)):
                out[f"{path}.{key!r}"] = "invalid character in key"
                continue
            _problems(item, f"{path}.{key}", JSON_INT_MAX, out)
    elif isinstance(value, list | tuple | set):
        for i, item in enumerate(value):
            _problems(item, f"{path}.{i}", int_limit, out)


def model_problems(data: pydantic.BaseModel, prefix: str = "", out: dict[str, str] | None = None) -> dict[str, str]:
    out = {} if out is None else out
    for name in type(data).model_fields:
        _problems(getattr(data, name), f"{prefix}{name}", INT32_MAX if name in INT32_FIELDS else MAX_ID, out)
    return out


def body(model: type[M]) -> M:
    if not request.is_json:
        raise ApiError("请求体应为 JSON / body must be JSON (Content-Type: application/json)",
                       code="unsupported_media_type", fields={"body": "not json"})
    data = request.get_json(silent=True)
    if data is None:
        raise ApiError("JSON 格式错误 / malformed JSON", code="malformed_json", fields={"body": "malformed"})
    if not isinstance(data, dict):
        raise ValidationError("请求体应为 JSON 对象 / body must be a JSON object", fields={"body": "not an object"})
    try:
        parsed = model.model_validate(data)
    except pydantic.ValidationError as exc:
        fields = {}
        for err in exc.errors(include_url=False):
            name = ".".join(str(p) for p in err["loc"]) or "body"
            fields.setdefault(name, err["msg"])
        raise ValidationError("输入有误 / invalid input", fields=fields) from None
    problems = model_problems(parsed)
    if problems:
        raise ValidationError("输入有误 / invalid input", fields=problems)
    return parsed


def corp_zone(actor: Actor) -> Callable[[], str]:
    """The actor's corp's time zone, looked up only if a date-time parameter needs it."""
    return lambda: get_session().get(Corp, actor.corp_id).timezone


class Query:
    """Strict reader of query parameters: unknown parameters are rejected, not ignored."""

    def __init__(self, allowed: set[str]):
        unknown = sorted(set(request.args) - allowed)
        if unknown:
            raise ValidationError("未知的查询参数 / unknown query parameter",
                                  fields=dict.fromkeys(unknown, "unknown parameter"))
        bad = sorted(k for k, values in request.args.lists() if any("\x00" in v for v in values))
        if bad:
            raise ValidationError("查询参数含非法字符 / invalid character in query parameter",
                                  fields=dict.fromkeys(bad, "contains a NUL character"))
        self.args = request.args

    def str(self, name: str, max_length: int = 100) -> str | None:
        value = self.args.get(name)
        if value is None or value.strip() == "":
            return None
        if len(value) > max_length:
            raise ValidationError(f"{name} 过长 / too long", fields={name: f"at most {max_length} characters"})
        return value.strip()

    def int(self, name: str, minimum: int | None = None, maximum: int | None = None) -> int | None:
        """An integer; unbounded ones are still held to BIGINT, as every integer ends up compared with a column."""
        raw = self.str(name)
        if raw is None:
            return None
        try:
            value = int(raw)
        except ValueError:
            raise ValidationError(f"{name} 应为整数 / must be an integer", fields={name: "not an integer"}) from None
        low = -MAX_ID if minimum is None else minimum
        high = MAX_ID if maximum is None else maximum
        if not low <= value <= high:
            raise ValidationError(f"{name} 超出范围 / out of range", fields={name: "out of range"})
        return value

    def int_list(self, name: str) -> list[int]:
        raw = self.str(name, max_length=2000)
        if raw is None:
            return []
        try:
            values = [int(part) for part in raw.split(",") if part.strip()]
        except ValueError:
            raise ValidationError(f"{name} 应为逗号分隔的整数 / comma-separated integers",
                                  fields={name: "invalid"}) from None
        if any(abs(v) > MAX_ID for v in values):
            raise ValidationError(f"{name} 超出范围 / out of range", fields={name: "out of range"})
        return values

    def str_list(self, name: str, choices: set[str] | None = None) -> list[str]:
        raw = self.str(name, max_length=1000)
        if raw is None:
            return []
        values = [part.strip() for part in raw.split(",") if part.strip()]
        if choices is not None:
            bad = [v for v in values if v not in choices]
            if bad:
                raise ValidationError(f"{name} 取值无效 / invalid value", fields={name: f"one of {sorted(choices)}"})
        return values

    def bool(self, name: str) -> bool | None:
        raw = self.str(name)
        if raw is None:
            return None
        if raw.lower() in {"1", "true", "yes"}:
            return True
        if raw.lower() in {"0", "false", "no"}:
            return False
        raise ValidationError(f"{name} 应为 true/false / must be true or false", fields={name: "invalid"})

    def datetime(self, name: str, tz: str | Callable[[], str]) -> datetime | None:
        """An ISO date-time; without a zone it is the corp's local time. `tz` may be a function, called
        only when the parameter is given, so the common request pays no query for the corp's zone."""
        from app.services.timeutil import to_utc

        raw = self.str(name)
        if raw is None:
            return None
        try:
            value = to_utc(datetime.fromisoformat(raw.replace("Z", "+00:00")), tz if isinstance(tz, str) else tz())
        except ValueError:
            raise ValidationError(f"{name} 应为 ISO 时间 / must be an ISO date-time",
                                  fields={name: "invalid"}) from None
        except OverflowError:
            value = None
        if value is None or not YEARS[0] <= value.year <= YEARS[1]:
            raise ValidationError(f"{name} 超出范围 / out of range",
                                  fields={name: f"year must be {YEARS[0]}–{YEARS[1]}"})
        return value
