"""Rendering a neutral `Message` as a DingTalk work notification `msg` (fact sheet §9.2).

The whole `msg` object must fit in 2048 bytes (§9.1). A body that is too long is shortened with an
ellipsis rather than refused: a reminder with a trimmed note is more useful than no reminder. Only
when the fixed parts (title, links, buttons, form) alone are too big is the message refused.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from integrations.base import Message, PlatformError
from integrations.dingtalk.errors import PLATFORM

MAX_MSG_BYTES = 2048
ELLIPSIS = "…"


class MessageTooLargeError(PlatformError):
    """The message cannot be made to fit DingTalk's 2048-byte limit; retrying will not help."""


def msg_size(msg: dict[str, Any]) -> int:
    return len(json.dumps(msg, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))


def in_app_link(url: str) -> str:
    """Open http(s) links in DingTalk's side panel on PC instead of the external browser (§9.2);
    the mobile client opens this scheme in its webview as well."""
    if not url.startswith(("http://", "https://")):
        return url
    return f"dingtalk://dingtalkclient/page/link?url={quote(url, safe='')}&pc_slide=true"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(0, limit - 1)] + ELLIPSIS


def _render(message: Message, body: str) -> dict[str, Any]:
    title = _clip(message.title, 64)
    url = in_app_link(message.url) if message.url else None
    kind = message.kind
    buttons = message.extra.get("buttons") or []
    if kind == "approval" and buttons:
        return {
            "msgtype": "action_card",
            "action_card": {
                "title": title,
                "markdown": body,
                "btn_orientation": "1",
                "btn_json_list": [
                    {"title": _clip(b["title"], 20), "action_url": in_app_link(b["url"])} for b in buttons
                ],
            },
        }
    if kind in {"card", "approval"} and url:
        return {
            "msgtype": "action_card",
            "action_card": {
                "title": title,
                "markdown": body,
                "single_title": _clip(message.button_text, 20),
                "single_url": url,
            },
        }
    if kind == "oa":
        oa: dict[str, Any] = {
            "head": {"bgcolor": message.extra.get("bgcolor", "FF1677FF"), "text": title},
            "body": {"title": title, "content": body},
        }
        if url:
            oa["message_url"] = url
            oa["pc_message_url"] = url
        form = message.extra.get("form")
        if form:
            oa["body"]["form"] = [{"key": f"{k}：", "value": str(v)} for k, v in form]
        return {"msgtype": "oa", "oa": oa}
    text = body
    if url:
        text = f"{body}\n\n[{message.button_text}]({url})"
    return {"msgtype": "markdown", "markdown": {"title": title, "text": text}}


def render_message(message: Message, max_bytes: int = MAX_MSG_BYTES) -> dict[str, Any]:
    msg = _render(message, message.markdown)
    if msg_size(msg) <= max_bytes:
        return msg
    # Binary search the longest body prefix that fits.
    lo, hi = 0, len(message.markdown)
    best: dict[str, Any] | None = None
    while lo <= hi:
        mid = (lo + hi) // 2
        candidate = _render(message, message.markdown[:mid] + ELLIPSIS)
        if msg_size(candidate) <= max_bytes:
            best, lo = candidate, mid + 1
        else:
            hi = mid - 1
    if best is None:
        raise MessageTooLargeError(
            "消息超过 2048 字节，标题或链接过长 (message exceeds 2048 bytes even without its body)",
            code="msg_too_large", platform=PLATFORM,
        )
    return best
