"""Talking to a running sandbox's control endpoints (`/sandbox/dingtalk/...`) from the app: the
newcomer's employee picker lists the simulated org and mints real sign-in codes there."""

from __future__ import annotations

from typing import Any

import requests

from integrations.base import PlatformError

TIMEOUT = (3.0, 10.0)


class SandboxControl:
    def __init__(self, base_url: str, *, session: requests.Session | None = None) -> None:
        self.base = base_url.rstrip("/")
        self.http = session or requests.Session()
        self.http.trust_env = False  # the sandbox is on loopback; a proxy must not get in the way

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            resp = self.http.request(method, self.base + path, timeout=TIMEOUT, **kwargs)
            data = resp.json()
        except (requests.RequestException, ValueError) as exc:
            raise PlatformError(f"沙箱不可用 (sandbox unreachable: {type(exc).__name__})", code="sandbox",
                                platform="sandbox") from exc
        if resp.status_code >= 400 or not isinstance(data, dict):
            message = data.get("error") if isinstance(data, dict) else resp.status_code
            raise PlatformError(f"沙箱拒绝了请求 (sandbox refused: {message})", code=resp.status_code,
                                platform="sandbox")
        return data

    def corps(self) -> list[dict[str, Any]]:
        return self._call("GET", "/sandbox/dingtalk/corps")["corps"]

    def employees(self, corp_id: str) -> list[dict[str, Any]]:
        """Every simulated employee: userid, name, title, department names."""
        org = self._call("GET", f"/sandbox/dingtalk/corps/{corp_id}/org")
        names = {d["dept_id"]: d["name"] for d in org.get("departments", [])}
        return [{"userid": u["userid"], "name": u.get("name", ""), "title": u.get("title"),
                 "departments": [names.get(d, str(d)) for d in u.get("dept_id_list", [])]}
                for u in org.get("users", [])]

    def auth_code(self, corp_id: str, userid: str) -> str:
        """A real, single-use 免登 code for `userid`, as dd.requestAuthCode would give the page."""
        return str(self._call("POST", "/sandbox/dingtalk/authcode", json={"corpId": corp_id, "userid": userid})["code"])

    def set_callback(self, corp_id: str, url: str | None) -> None:
        self._call("POST", "/sandbox/dingtalk/callback", json={"corpId": corp_id, "url": url})
