"""DingTalk work to-dos (待办) for approvals, on the v1.0 to-do API (fact sheet §10).

Through the plain-requests `DingTalkClient`, not `alibabacloud_dingtalk`: that SDK is not installed in
this project, covers only the v1.0 half of what the CRM calls, defaults to plain http, sends requests to
the proxy in HTTP(S)_PROXY even for loopback (ignoring NO_PROXY), never retries, and raises its own
exception type (sdk notes §1.3–1.6); the client here already has the DB token cache, the shared rate
limiter, usage tally and error mapping, and `CRM_DINGTALK_API_BASE` for the host.

The to-do is keyed by our own `source_id` (unique per corp): creating it twice — a retried delivery —
finds the first one instead of failing, and closing it needs only the source id, so callers never have to
keep DingTalk's task id.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from integrations.base import NotFoundError, PlatformError
from integrations.dingtalk.client import DingTalkClient

_DUPLICATE = "task exist"


@dataclass(frozen=True)
class TodoRef:
    task_id: str
    created: bool  # False: a task with this source id already existed


def detail_url(public_url: str, path: str) -> str:
    """`path` is the H5 route, e.g. `/h5/#/approvals/42`; DingTalk opens it in its webview (app) or the
    side panel (PC)."""
    return f"{public_url.rstrip('/')}/{path.lstrip('/')}"


def ensure_todo(client: DingTalkClient, *, creator_unionid: str, approver_unionids: list[str], source_id: str,
                subject: str, url: str, description: str | None = None, due_time_ms: int | None = None,
                priority: int | None = None) -> TodoRef:
    """Create the approver's to-do once: an existing task with the same `source_id` is returned instead."""
    try:
        task = client.create_todo(creator_unionid, subject=subject, executor_unionids=approver_unionids,
                                  detail_url=url, source_id=source_id, description=description,
                                  due_time_ms=due_time_ms, priority=priority)
        return TodoRef(str(task["id"]), created=True)
    except PlatformError as exc:
        message = (exc.detail or {}).get("message") if isinstance(exc.detail, dict) else None
        if exc.code != "todo.taskCreate.paramError" or _DUPLICATE not in str(message or exc.cause):
            raise
    task = client.get_todo_by_source_id(creator_unionid, source_id)
    return TodoRef(str(task["id"]), created=False)


def close_todo(client: DingTalkClient, *, owner_unionid: str, source_id: str) -> bool:
    """Mark the to-do done (the approval was decided here or elsewhere). False when no such task exists
    any more (deleted in DingTalk): there is nothing left to close."""
    try:
        task = client.get_todo_by_source_id(owner_unionid, source_id)
    except NotFoundError:
        return False
    if task.get("done"):
        return True
    return client.complete_todo(owner_unionid, str(task["id"]))


def update_todo(client: DingTalkClient, *, owner_unionid: str, source_id: str, **fields: Any) -> bool:
    """Change subject / description / dueTime / executorIds of the task with `source_id`."""
    task = client.get_todo_by_source_id(owner_unionid, source_id)
    return client.update_todo(owner_unionid, str(task["id"]), **fields)
