"""The wire: one `requests.Session` for both DingTalk hosts, errors mapped, nothing retried here.

OLD (`oapi`) answers HTTP 200 with an `errcode`; NEW (`api`, v1.0) answers 2xx with the object or
4xx/5xx with `{code, message}` (fact sheet §0.3). Both are turned into plain dicts or `PlatformError`s.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import requests

from integrations.base import RetryableError
from integrations.dingtalk.errors import PLATFORM, new_api_error, old_api_error, unexpected_body_error

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 3.0
READ_TIMEOUT = 10.0

_TOKEN_IN_URL = re.compile(r"(access_token=)[^&\s\"']+")


class RedactAccessTokens(logging.Filter):
    """OLD APIs carry the token in the query string (§0.3), and urllib3 logs request lines at DEBUG:
    mask the token there so turning on debug logging never leaks it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and record.args:
            record.args = tuple(
                _TOKEN_IN_URL.sub(r"\1***", a) if isinstance(a, str) else a for a in record.args
            )
        if isinstance(record.msg, str) and "access_token=" in record.msg:
            record.msg = _TOKEN_IN_URL.sub(r"\1***", record.msg)
        return True


_urllib3_log = logging.getLogger("urllib3.connectionpool")
if not any(isinstance(f, RedactAccessTokens) for f in _urllib3_log.filters):
    _urllib3_log.addFilter(RedactAccessTokens())


def make_session() -> requests.Session:
    session = requests.Session()
    # HTTP(S)_PROXY from the environment must not silently reroute calls (e.g. to the loopback
    # sandbox); a deployment that needs a proxy passes a configured session instead.
    session.trust_env = False
    session.headers["User-Agent"] = "crm-microapp/0.1 (+dingtalk)"
    return session


def _encode(body: Any) -> bytes:
    # ensure_ascii=False: Chinese as UTF-8 (3 bytes), not \\uXXXX (6 bytes), so the 2048-byte message
    # budget we check is the one we send.
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class DingTalkHttp:
    def __init__(
        self,
        oapi_base: str,
        api_base: str,
        *,
        session: requests.Session | None = None,
        timeout: tuple[float, float] = (CONNECT_TIMEOUT, READ_TIMEOUT),
    ) -> None:
        self.oapi_base = oapi_base.rstrip("/")
        self.api_base = api_base.rstrip("/")
        self.session = session or make_session()
        self.timeout = timeout

    def _send(self, method: str, url: str, path: str, **kwargs) -> requests.Response:
        try:
            return self.session.request(method, url, timeout=self.timeout, **kwargs)
        except requests.Timeout as exc:
            # A read timeout on a send may still have been delivered: callers that must not duplicate
            # (work notifications) rely on DingTalk's same-content dedupe and their idempotency keys.
            raise RetryableError(
                f"连接钉钉超时 (timed out calling DingTalk {path})", retry_after=2.0, code="timeout",
                platform=PLATFORM,
            ) from exc
        except requests.RequestException as exc:
            raise RetryableError(
                f"无法连接钉钉 (cannot reach DingTalk: {type(exc).__name__})", retry_after=2.0,
                code="network", platform=PLATFORM,
            ) from exc

    @staticmethod
    def _json(resp: requests.Response) -> Any:
        try:
            return resp.json()
        except ValueError:
            return None

    def oapi(self, path: str, token: str | None, body: dict[str, Any] | None = None,
             *, method: str = "POST", params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Call an OLD API; return the whole body (callers read `result` or top-level fields)."""
        query = dict(params or {})
        if token is not None:
            query["access_token"] = token
        kwargs: dict[str, Any] = {"params": query}
        if method != "GET":
            kwargs["data"] = _encode(body or {})
            kwargs["headers"] = {"Content-Type": "application/json; charset=utf-8"}
        resp = self._send(method, self.oapi_base + path, path, **kwargs)
        data = self._json(resp)
        if resp.status_code >= 500:
            raise new_api_error(resp.status_code, data)
        if not isinstance(data, dict) or "errcode" not in data:
            raise unexpected_body_error(data, status=resp.status_code)
        err = old_api_error(data)
        if err is not None:
            log.info("dingtalk %s failed: errcode=%s request_id=%s", path, err.code, data.get("request_id"))
            raise err
        return data

    def api(self, method: str, path: str, token: str | None, body: dict[str, Any] | None = None,
            *, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Call a NEW (v1.0) API; return the JSON object (empty dict for an empty 2xx body)."""
        headers = {"Content-Type": "application/json; charset=utf-8"}
        if token is not None:
            headers["x-acs-dingtalk-access-token"] = token
        kwargs: dict[str, Any] = {"params": params or None, "headers": headers}
        if body is not None:
            kwargs["data"] = _encode(body)
        resp = self._send(method, self.api_base + path, path, **kwargs)
        data = self._json(resp)
        if 200 <= resp.status_code < 300:
            if data is None and resp.content:
                raise unexpected_body_error(None, status=resp.status_code)
            return data if isinstance(data, dict) else {}
        err = new_api_error(resp.status_code, data)
        log.info("dingtalk %s failed: HTTP %s code=%s", path, resp.status_code, err.code)
        raise err
