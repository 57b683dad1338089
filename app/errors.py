"""One error shape for the API: `{"error": {"code", "message", "fields"}}`, never a stack trace.

Services raise these; the handlers registered in `register_error_handlers` turn them into responses
(JSON under /api, and for the API-less pages a plain-words HTML page).
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)


class ApiError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, fields: dict[str, str] | None = None, code: str | None = None,
                 extra: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        self.fields = fields or {}
        if code:
            self.code = code
        self.extra = extra or {}

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message, "fields": self.fields}
        body.update(self.extra)
        return {"error": body}


class ValidationError(ApiError):
    status = 422
    code = "invalid"


class NotFound(ApiError):
    status = 404
    code = "not_found"


class Forbidden(ApiError):
    status = 403
    code = "forbidden"


class Unauthorized(ApiError):
    status = 401
    code = "unauthorized"


class Conflict(ApiError):
    status = 409
    code = "conflict"


_HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 413: "too_large", 415: "unsupported_media_type",
               429: "too_many_requests"}


def _wants_json() -> bool:
    return request.path.startswith("/api/") or request.accept_mimetypes.best == "application/json"


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(err: ApiError):
        return jsonify(err.to_dict()), err.status

    @app.errorhandler(HTTPException)
    def _http_error(err: HTTPException):
        status = err.code or 500
        if _wants_json():
            body = {"error": {"code": _HTTP_CODES.get(status, "error"), "message": err.description or err.name,
                              "fields": {}}}
            return jsonify(body), status
        return (f"<!doctype html><meta charset=utf-8><title>{status}</title>"
                f"<p>出错了（{status}）：{err.name}</p><p>Something went wrong ({status}).</p>"), status

    @app.errorhandler(Exception)
    def _unexpected(err: Exception):
        # Logged with the request id; the client only sees a plain message.
        log.exception("unhandled error on %s %s", request.method, request.path)
        if _wants_json():
            return jsonify({"error": {"code": "internal", "message": "服务器内部错误 / internal error",
                                      "fields": {}}}), 500
        return "<!doctype html><meta charset=utf-8><p>服务器内部错误，请稍后再试。</p>", 500
