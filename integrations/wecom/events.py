"""Decrypted WeCom callback events → neutral `OrgEvent`s and card clicks (fact sheet §5.5, §5.6).

WeCom events carry no event id. Redeliveries (3 tries when we do not answer within 5 s) repeat the
same XML, so the de-duplication key is derived from the event's own fields: `CreateTime` plus a hash of
everything else. Card clicks use the safer business key the fact sheet suggests: TaskId + clicker + key.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from integrations.base import OrgEvent

# ChangeType → OrgEvent.kind
_KINDS = {
    "create_user": "user_upsert",
    "update_user": "user_upsert",
    "delete_user": "user_leave",
    "create_party": "dept_upsert",
    "update_party": "dept_upsert",
    "delete_party": "dept_remove",
    # A tag of the visible range gained or lost members: who is in range now is asked, not inferred.
    "update_tag": "user_recheck",
}


def _fingerprint(fields: dict[str, str]) -> str:
    return hashlib.sha1(json.dumps(fields, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:20]


def _items(*values: str | None) -> tuple[str, ...]:
    """Comma lists ("a,b,,c") joined, trimmed and de-duplicated in order."""
    return tuple(dict.fromkeys(i.strip() for v in values for i in str(v or "").split(",") if i.strip()))


def org_event(fields: dict[str, str]) -> OrgEvent | None:
    """A `change_contact` event as an `OrgEvent`; None for anything else (other events, a tag change that
    names nobody).

    Only ids are taken: events for Contacts-Sync URLs set after 2022-08-15 are slimmed to ids anyway
    (§5.5), so the applier re-reads the person or department through the API.
    """
    if fields.get("Event") != "change_contact":
        return None
    change = fields.get("ChangeType") or ""
    kind = _KINDS.get(change)
    if kind is None:
        return None
    event_id = f"wecom:{change}:{fields.get('CreateTime', '')}:{_fingerprint(fields)}"
    if kind == "user_recheck":
        # Added and removed alike: being named by a tag is one way into the range among several, so
        # only the platform can say whether each person is still in it.
        user_ids = _items(fields.get("AddUserItems"), fields.get("DelUserItems"))
        dept_ids = _items(fields.get("AddPartyItems"), fields.get("DelPartyItems"))
        if not (user_ids or dept_ids):
            return None
        return OrgEvent(event_id=event_id, kind=kind, user_ids=user_ids, dept_ids=dept_ids, raw=dict(fields))
    if kind in {"user_upsert", "user_leave"}:
        userid = fields.get("UserID")
        new_userid = fields.get("NewUserID") if change == "update_user" else None
        if new_userid and userid and new_userid != userid:
            # The admin changed this person's userid (§5.5): the same person, to be renamed in place. A full
            # sync cannot tell a rename from a leaver plus a newcomer, so this event is the only chance.
            return OrgEvent(event_id=event_id, kind="user_rename", user_ids=(str(new_userid), str(userid)),
                            raw=dict(fields))
        userid = new_userid or userid
        if not userid:
            return None
        return OrgEvent(event_id=event_id, kind=kind, user_ids=(str(userid),), raw=dict(fields))
    dept_id = fields.get("Id")
    if not dept_id:
        return None
    return OrgEvent(event_id=event_id, kind=kind, dept_ids=(str(dept_id),), raw=dict(fields))


@dataclass(frozen=True)
class CardClick:
    """Someone pressed a callback button on a template card."""

    corp_id: str
    userid: str
    task_id: str
    key: str
    response_code: str
    card_type: str
    agent_id: str

    @property
    def event_id(self) -> str:
        return f"wecom:card:{self.task_id}:{self.userid}:{self.key}"[:128]


def card_click(fields: dict[str, str]) -> CardClick | None:
    if fields.get("Event") != "template_card_event":
        return None
    if not (fields.get("TaskId") and fields.get("FromUserName") and fields.get("EventKey")):
        return None
    return CardClick(corp_id=fields.get("ToUserName") or "", userid=fields["FromUserName"],
                     task_id=fields["TaskId"], key=fields["EventKey"],
                     response_code=fields.get("ResponseCode") or "", card_type=fields.get("CardType") or "",
                     agent_id=fields.get("AgentID") or "")
