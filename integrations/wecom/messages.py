"""Rendering a neutral `Message` as a WeCom application message (fact sheet §6.3).

WeCom truncates over-long fields itself; we clip first (on UTF-8 byte budgets) so what people read ends
with an ellipsis instead of a cut character, and so a card never exceeds its documented limits.
Approval requests become a `button_interaction` template card with 同意 / 驳回 callback buttons: the
card's `task_id` identifies the approval step, the button `key` the decision.
"""

from __future__ import annotations

import re
from typing import Any

from integrations.base import Message

ELLIPSIS = "…"
MARKDOWN_BYTES = 2048
TEXTCARD_TITLE_BYTES = 128
TEXTCARD_DESC_BYTES = 512
APPROVE_KEY = "approve"
REJECT_KEY = "reject"
_TASK_ID_OK = re.compile(r"^[0-9A-Za-z_\-@]{1,128}$")


def clip_bytes(text: str, limit: int) -> str:
    """The longest prefix (plus an ellipsis) whose UTF-8 encoding fits in `limit` bytes."""
    if len(text.encode("utf-8")) <= limit:
        return text
    budget = limit - len(ELLIPSIS.encode("utf-8"))
    out, used = [], 0
    for ch in text:
        size = len(ch.encode("utf-8"))
        if used + size > budget:
            break
        out.append(ch)
        used += size
    return "".join(out) + ELLIPSIS


def clip_chars(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(0, limit - 1)] + ELLIPSIS


def valid_task_id(task_id: str) -> bool:
    return bool(_TASK_ID_OK.match(task_id))


def approval_card(message: Message, task_id: str) -> dict[str, Any]:
    """A `button_interaction` card: title, the form rows, a link to the H5 page and 同意 / 驳回."""
    if not valid_task_id(task_id):
        raise ValueError("task_id must be 1-128 characters of [0-9a-zA-Z_-@]")
    card: dict[str, Any] = {
        "card_type": "button_interaction",
        "task_id": task_id,
        "source": {"desc": clip_chars(message.extra.get("source", "CRM"), 20), "desc_color": 1},
        "main_title": {"title": clip_chars(message.title, 36)},
        "button_list": [
            {"text": "同意", "style": 1, "key": APPROVE_KEY},
            {"text": "驳回", "style": 2, "key": REJECT_KEY},
        ],
    }
    if message.extra.get("desc"):
        card["main_title"]["desc"] = clip_chars(str(message.extra["desc"]), 44)
    if message.markdown:
        card["sub_title_text"] = clip_chars(message.markdown, 160)
    rows = [
        {"keyname": clip_chars(str(k), 5), "value": clip_chars(str(v), 30)}
        for k, v in (message.extra.get("form") or [])[:6]
    ]
    if rows:
        card["horizontal_content_list"] = rows
    if message.url:
        card["card_action"] = {"type": 1, "url": message.url}
    return card


def outcome_card(card: dict[str, Any], outcome: str) -> dict[str, Any]:
    """The same card with its buttons replaced by one greyed-out outcome line, for update_template_card."""
    return {**card, "button_list": [{"text": clip_chars(outcome, 10), "style": 4, "key": "done"}]}


def render_message(message: Message) -> dict[str, Any]:
    """The `msgtype` + payload part of a `message/send` body."""
    if message.kind == "approval":
        task_id = message.extra.get("task_id")
        if not task_id:
            raise ValueError("an approval card needs extra['task_id'] (unique per approval step)")
        return {"msgtype": "template_card", "template_card": approval_card(message, str(task_id))}
    if message.kind in {"card", "oa"} and message.url:
        return {
            "msgtype": "textcard",
            "textcard": {
                "title": clip_bytes(message.title, TEXTCARD_TITLE_BYTES),
                "description": clip_bytes(message.markdown, TEXTCARD_DESC_BYTES),
                "url": message.url,
                "btntxt": clip_chars(message.button_text, 4),
            },
        }
    head = f"**{message.title}**\n"
    tail = f"\n[{message.button_text}]({message.url})" if message.url else ""
    budget = MARKDOWN_BYTES - len(head.encode("utf-8")) - len(tail.encode("utf-8"))
    body = clip_bytes(message.markdown, max(budget, 0))
    return {"msgtype": "markdown", "markdown": {"content": head + body + tail}}
