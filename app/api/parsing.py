"""Turning request bodies and query strings into typed values, or a 4xx naming the field."""

from __future__ import annotations

from datetime import datetime
from typing import TypeVar

import pydantic
from flask import request

from app.errors import ApiError, ValidationError

M = TypeVar("M", bound=pydantic.BaseModel)


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
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        fields = {}
        for err in exc.errors(include_url=False):
            name = ".".join(str(p) for p in err["loc"]) or "body"
            fields.setdefault(name, err["msg"])
        raise ValidationError("输入有误 / invalid input", fields=fields) from None


class Query:
    """Strict reader of query parameters: unknown parameters are rejected, not ignored."""

    def __init__(self, allowed: set[str]):
        unknown = sorted(set(request.args) - allowed)
        if unknown:
            raise ValidationError("未知的查询参数 / unknown query parameter",
                                  fields=dict.fromkeys(unknown, "unknown parameter"))
        self.args = request.args

    def str(self, name: str, max_length: int = 100) -> str | None:
        value = self.args.get(name)
        if value is None or value.strip() == "":
            return None
        if len(value) > max_length:
            raise ValidationError(f"{name} 过长 / too long", fields={name: f"at most {max_length} characters"})
        return value.strip()

    def int(self, name: str, minimum: int | None = None, maximum: int | None = None) -> int | None:
        raw = self.str(name)
        if raw is None:
            return None
        try:
            value = int(raw)
        except ValueError:
            raise ValidationError(f"{name} 应为整数 / must be an integer", fields={name: "not an integer"}) from None
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            raise ValidationError(f"{name} 超出范围 / out of range", fields={name: "out of range"})
        return value

    def int_list(self, name: str) -> list[int]:
        raw = self.str(name, max_length=2000)
        if raw is None:
            return []
        try:
            return [int(part) for part in raw.split(",") if part.strip()]
        except ValueError:
            raise ValidationError(f"{name} 应为逗号分隔的整数 / comma-separated integers",
                                  fields={name: "invalid"}) from None

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

    def datetime(self, name: str, tz: str) -> datetime | None:
        from app.services.timeutil import to_utc

        raw = self.str(name)
        if raw is None:
            return None
        try:
            return to_utc(datetime.fromisoformat(raw.replace("Z", "+00:00")), tz)
        except ValueError:
            raise ValidationError(f"{name} 应为 ISO 时间 / must be an ISO date-time",
                                  fields={name: "invalid"}) from None
