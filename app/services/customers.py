"""Customers: create with duplicate check, read with their timeline, update, soft delete, list.

All access goes through `app.services.scope`; every write leaves an audit entry.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so
from sqlalchemy.dialects import postgresql

from app.errors import Conflict, Forbidden, ValidationError
from app.schemas import ContactIn, CustomerIn, CustomerPatch
from app.services import approvals, assignment, audit, custom_fields, normalize, pagination, rules
from app.services.actor import Actor
from app.services.scope import (
    customer_clause,
    department_and_led_paths,
    led_department_paths,
    load_customer,
    subtree_user_ids,
    within,
)
from app.services.timeutil import iso, to_utc
from models.crm import (
    Contact,
    Customer,
    CustomerCollaborator,
    CustomerTag,
    FollowUp,
    Opportunity,
    OpportunityStage,
    Tag,
    Task,
    TaskStatus,
)
from models.org import Corp, User
from models.types import utcnow

AUDITED_FIELDS = ("name", "industry", "company_size", "source", "grade", "region", "address", "status",
                  "owner_id", "in_pool", "next_contact_at", "custom")

SORTS = {
    "-updated_at": ("updated_at", True, "datetime"),
    "updated_at": ("updated_at", False, "datetime"),
    "-created_at": ("created_at", True, "datetime"),
    "created_at": ("created_at", False, "datetime"),
    "next_contact_at": ("next_contact_at", False, "datetime"),
    "-last_contact_at": ("last_contact_at", True, "datetime"),
    "last_contact_at": ("last_contact_at", False, "datetime"),
    "name": ("name", False, "str"),
}


@dataclass
class CustomerQuery:
    q: str | None = None
    tags_all: list[int] = field(default_factory=list)
    tags_any: list[int] = field(default_factory=list)
    grade: list[str] = field(default_factory=list)
    source: list[str] = field(default_factory=list)
    status: list[str] = field(default_factory=list)
    region: list[str] = field(default_factory=list)
    industry: list[str] = field(default_factory=list)
    owner_id: list[int] = field(default_factory=list)
    department_id: int | None = None
    stale_days: int | None = None
    next_contact_before: datetime | None = None
    next_contact_after: datetime | None = None
    in_pool: bool | None = False
    sort: str = "-updated_at"
    cursor: str | None = None
    limit: int = 20


def _snapshot(customer: Customer) -> dict[str, Any]:
    return {f: getattr(customer, f) for f in AUDITED_FIELDS}


def _corp(session: so.Session, actor: Actor) -> Corp:
    return session.get(Corp, actor.corp_id)


def check_users(session: so.Session, actor: Actor, ids: list[int], field_name: str) -> None:
    if not ids:
        return
    found = set(session.execute(
        sa.select(User.id).where(User.corp_id == actor.corp_id, User.id.in_(ids), User.active.is_(True))
    ).scalars())
    missing = [i for i in ids if i not in found]
    if missing:
        raise ValidationError("用户不存在或已离职 / unknown or inactive user",
                              fields={field_name: f"unknown user id(s): {missing}"})


def _check_tags(session: so.Session, actor: Actor, ids: list[int]) -> None:
    if not ids:
        return
    found = set(session.execute(
        sa.select(Tag.id).where(Tag.corp_id == actor.corp_id, Tag.id.in_(ids))).scalars())
    missing = [i for i in ids if i not in found]
    if missing:
        raise ValidationError("标签不存在 / unknown tag", fields={"tag_ids": f"unknown tag id(s): {missing}"})


def may_assign(session: so.Session, actor: Actor, owner_id: int) -> bool:
    if actor.is_admin or owner_id == actor.user_id:
        return True
    if actor.is_manager:
        paths = led_department_paths(session, actor)
        if paths:
            inside = sa.literal(owner_id).in_(subtree_user_ids(actor.corp_id, paths))
            return session.execute(sa.select(sa.literal(1)).where(inside)).first() is not None
    return False


def check_assignable(session: so.Session, actor: Actor, user_id: int, field_name: str, message: str) -> None:
    """`user_id` is an active user of the corp whom the actor may hand work to (self; a manager's subtree;
    anyone for admins): else 422/403 naming `field_name`."""
    check_users(session, actor, [user_id], field_name)
    if not may_assign(session, actor, user_id):
        raise Forbidden(message, fields={field_name: "not permitted"})


ASSIGN_CUSTOMER = "不能把客户分配给该用户 / you may not assign customers to this user"


def find_duplicate(session: so.Session, corp_id: int, name_norm: str | None, phones: list[str],
                   exclude_id: int | None = None) -> tuple[Customer, str] | None:
    live = sa.and_(Customer.corp_id == corp_id, Customer.deleted_at.is_(None))
    if exclude_id is not None:
        live = sa.and_(live, Customer.id != exclude_id)
    if name_norm:
        hit = session.execute(sa.select(Customer).where(live, Customer.name_norm == name_norm).limit(1)).scalar()
        if hit:
            return hit, "name"
    if phones:
        hit = session.execute(
            sa.select(Customer).join(Contact, Contact.customer_id == Customer.id)
            .where(live, Contact.corp_id == corp_id, Contact.deleted_at.is_(None),
                   sa.or_(Contact.mobile.in_(phones), Contact.phone.in_(phones)))
            .limit(1)
        ).scalar()
        if hit:
            return hit, "phone"
    return None


def guard_duplicate(session: so.Session, actor: Actor, *, name_norm: str | None, phones: list[str],
                     allow: bool, exclude_id: int | None = None) -> dict[str, Any] | None:
    dup = find_duplicate(session, actor.corp_id, name_norm, phones, exclude_id)
    if dup is None:
        return None
    customer, matched_on = dup
    owner = session.get(User, customer.owner_id) if customer.owner_id else None
    match = {"id": customer.id, "name": customer.name, "matched_on": matched_on,
             "owner": {"id": owner.id, "name": owner.name} if owner else None, "in_pool": customer.in_pool}
    if not allow:
        raise Conflict("疑似重复客户 / possible duplicate customer", code="duplicate", extra={"match": match},
                       fields={"name" if matched_on == "name" else "contacts": "duplicate"})
    if not (actor.is_manager or actor.is_admin):
        raise Forbidden("只有经理或管理员可以忽略重复 / only managers and admins may override a duplicate",
                        fields={"allow_duplicate": "not permitted"})
    return match


def _contact_from(actor: Actor, customer_id: int, data: ContactIn, custom: dict[str, Any]) -> Contact:
    return Contact(corp_id=actor.corp_id, customer_id=customer_id, name=data.name, title=data.title,
                   mobile=normalize.phone(data.mobile), phone=normalize.phone(data.phone), email=data.email,
                   wechat=data.wechat, decision_role=data.decision_role, is_primary=data.is_primary,
                   custom=custom)


def create_customer(session: so.Session, actor: Actor, data: CustomerIn) -> Customer:
    corp = _corp(session, actor)
    owner_id = data.owner_id if data.owner_id is not None else actor.user_id
    if owner_id is not None:
        check_assignable(session, actor, owner_id, "owner_id", ASSIGN_CUSTOMER)
    check_users(session, actor, data.collaborator_ids, "collaborator_ids")
    _check_tags(session, actor, data.tag_ids)
    custom = custom_fields.validate(session, actor.corp_id, "customer", data.custom)
    contact_customs = [
        custom_fields.validate(session, actor.corp_id, "contact", c.custom) for c in data.contacts
    ]
    name_norm = normalize.company_name(data.name)
    phones = [p for c in data.contacts for p in (normalize.phone(c.mobile), normalize.phone(c.phone)) if p]
    override = guard_duplicate(session, actor, name_norm=name_norm, phones=phones, allow=data.allow_duplicate)

    customer = Customer(
        corp_id=actor.corp_id, name=data.name, name_norm=name_norm, industry=data.industry,
        company_size=data.company_size, source=data.source, grade=data.grade, region=data.region,
        address=data.address, status=data.status, owner_id=owner_id, in_pool=owner_id is None,
        custom=custom, next_contact_at=to_utc(data.next_contact_at, corp.timezone),
        created_by_id=actor.user_id, updated_by_id=actor.user_id,
    )
    session.add(customer)
    session.flush()
    for user_id in dict.fromkeys(data.collaborator_ids):
        if user_id != owner_id:
            session.add(CustomerCollaborator(corp_id=actor.corp_id, customer_id=customer.id, user_id=user_id))
    for tag_id in dict.fromkeys(data.tag_ids):
        session.add(CustomerTag(corp_id=actor.corp_id, customer_id=customer.id, tag_id=tag_id))
    for contact_in, contact_custom in zip(data.contacts, contact_customs, strict=True):
        session.add(_contact_from(actor, customer.id, contact_in, contact_custom))
    after = _snapshot(customer)
    after.update(tag_ids=list(dict.fromkeys(data.tag_ids)), collaborator_ids=list(data.collaborator_ids))
    audit.record(session, actor, "create", "customer", customer.id, audit.diff({}, after))
    if override:
        audit.record(session, actor, "duplicate_override", "customer", customer.id, {"match": override})
    session.flush()
    assignment.assign_unowned(session, actor, customer)
    rules.fire(session, actor, "customer_created", customer)
    return customer


def update_customer(session: so.Session, actor: Actor, customer_id: int, patch: CustomerPatch) -> Customer:
    customer = load_customer(session, actor, customer_id, for_write=True, lock=True)
    corp = _corp(session, actor)
    given = patch.model_fields_set - {"allow_duplicate"}
    approvals.assert_not_locked(session, "customer", customer.id, given)
    before = _snapshot(customer)
    before_tags = sorted(session.execute(
        sa.select(CustomerTag.tag_id).where(CustomerTag.customer_id == customer.id)).scalars())
    before_collab = sorted(session.execute(
        sa.select(CustomerCollaborator.user_id).where(CustomerCollaborator.customer_id == customer.id)).scalars())

    for required in ("name", "status"):
        if required in given and getattr(patch, required) is None:
            raise ValidationError(f"{required} 不能为空 / {required} cannot be null", fields={required: "required"})
    if "name" in given and patch.name != customer.name:
        name_norm = normalize.company_name(patch.name)
        override = guard_duplicate(session, actor, name_norm=name_norm, phones=[], allow=patch.allow_duplicate,
                                    exclude_id=customer.id)
        if override:
            audit.record(session, actor, "duplicate_override", "customer", customer.id, {"match": override})
        customer.name, customer.name_norm = patch.name, name_norm
    for simple in ("industry", "company_size", "source", "grade", "region", "address", "status"):
        if simple in given:
            setattr(customer, simple, getattr(patch, simple))
    if "next_contact_at" in given:
        customer.next_contact_at = to_utc(patch.next_contact_at, corp.timezone)
    if "custom" in given:
        customer.custom = custom_fields.validate(session, actor.corp_id, "customer", patch.custom or {},
                                                 current=customer.custom)
    if "owner_id" in given and patch.owner_id != customer.owner_id:
        if patch.owner_id is None:
            raise ValidationError("负责人不能为空 / owner cannot be empty", fields={"owner_id": "required"})
        check_assignable(session, actor, patch.owner_id, "owner_id", ASSIGN_CUSTOMER)
        customer.owner_id = patch.owner_id
        customer.in_pool = False
    if "tag_ids" in given and patch.tag_ids is not None:
        _check_tags(session, actor, patch.tag_ids)
        session.execute(sa.delete(CustomerTag).where(CustomerTag.customer_id == customer.id))
        for tag_id in dict.fromkeys(patch.tag_ids):
            session.add(CustomerTag(corp_id=actor.corp_id, customer_id=customer.id, tag_id=tag_id))
    if "collaborator_ids" in given and patch.collaborator_ids is not None:
        check_users(session, actor, patch.collaborator_ids, "collaborator_ids")
        session.execute(sa.delete(CustomerCollaborator).where(CustomerCollaborator.customer_id == customer.id))
        for user_id in dict.fromkeys(patch.collaborator_ids):
            if user_id != customer.owner_id:
                session.add(CustomerCollaborator(corp_id=actor.corp_id, customer_id=customer.id, user_id=user_id))

    after = _snapshot(customer)
    changes = audit.diff(before, after)
    if "tag_ids" in given and patch.tag_ids is not None:
        changes.update(audit.diff({"tag_ids": before_tags}, {"tag_ids": sorted(set(patch.tag_ids))}))
    if "collaborator_ids" in given and patch.collaborator_ids is not None:
        changes.update(audit.diff({"collaborator_ids": before_collab},
                                  {"collaborator_ids": sorted(set(patch.collaborator_ids))}))
    if changes:
        customer.updated_by_id = actor.user_id
        customer.updated_at = utcnow()
        audit.record(session, actor, "update", "customer", customer.id, changes)
        if "owner_id" in changes:
            audit.record(session, actor, "assign", "customer", customer.id, {"owner_id": changes["owner_id"]})
    session.flush()
    if "owner_id" in changes:
        rules.fire(session, actor, "customer_assigned", customer)
    return customer


def delete_customer(session: so.Session, actor: Actor, customer_id: int) -> None:
    customer = load_customer(session, actor, customer_id, for_write=True, lock=True)
    if not (actor.is_admin or actor.is_manager or customer.owner_id == actor.user_id):
        raise Forbidden("只有负责人、经理或管理员可以删除 / only the owner, a manager or an admin may delete")
    customer.deleted_at = utcnow()
    audit.record(session, actor, "delete", "customer", customer.id, {"deleted_at": {"before": None,
                                                                                    "after": iso(customer.deleted_at)}})
    session.flush()


# ----------------------------------------------------------------------------- reading


SUMMARY_COLUMNS = (Customer.id, Customer.name, Customer.industry, Customer.company_size, Customer.source,
                   Customer.grade, Customer.region, Customer.status, Customer.in_pool, Customer.owner_id,
                   Customer.custom, Customer.last_contact_at, Customer.next_contact_at, Customer.created_at,
                   Customer.updated_at)


def user_refs(session: so.Session, ids: set[int]) -> dict[int, dict[str, Any]]:
    """{id: {"id", "name", "active"}} for the given user ids — how every record shows a person."""
    ids = {i for i in ids if i is not None}
    if not ids:
        return {}
    rows = session.execute(sa.select(User.id, User.name, User.active).where(User.id.in_(ids)))
    return {uid: {"id": uid, "name": name, "active": active} for uid, name, active in rows}


def _owners_and_tags(session: so.Session, ids: list[int]) -> tuple[dict[int, dict[str, Any] | None],
                                                                    dict[int, list[dict[str, Any]]]]:
    """Each customer's owner and tags in one round trip: a customer row per tag (or one without tags),
    owner columns repeated. Primary-key lookups for one page only."""
    owners: dict[int, dict[str, Any] | None] = dict.fromkeys(ids)
    tags: dict[int, list[dict[str, Any]]] = {i: [] for i in ids}
    if not ids:
        return owners, tags
    rows = session.execute(
        sa.select(Customer.id, User.id, User.name, User.active, Tag.id, Tag.group_name, Tag.name, Tag.color)
        .select_from(Customer)
        .outerjoin(User, User.id == Customer.owner_id)
        .outerjoin(CustomerTag, CustomerTag.customer_id == Customer.id)
        .outerjoin(Tag, Tag.id == CustomerTag.tag_id)
        .where(Customer.id.in_(ids))
        .order_by(Tag.group_name, Tag.name)
    )
    for cid, uid, uname, active, tid, group, tname, color in rows:
        if uid is not None:
            owners[cid] = {"id": uid, "name": uname, "active": active}
        if tid is not None:
            tags[cid].append({"id": tid, "group": group, "name": tname, "color": color})
    return owners, tags


def summary_dicts(session: so.Session, customers: Sequence[Any]) -> list[dict[str, Any]]:
    """List items, from Customer objects or rows of SUMMARY_COLUMNS (the list reads only those)."""
    owners, tags = _owners_and_tags(session, [c.id for c in customers])
    return [{
        "id": c.id, "name": c.name, "industry": c.industry, "company_size": c.company_size, "source": c.source,
        "grade": c.grade, "region": c.region, "status": c.status, "in_pool": c.in_pool,
        "owner": owners[c.id], "tags": tags[c.id], "custom": c.custom,
        "last_contact_at": iso(c.last_contact_at), "next_contact_at": iso(c.next_contact_at),
        "created_at": iso(c.created_at), "updated_at": iso(c.updated_at),
    } for c in customers]


def contact_dict(c: Contact) -> dict[str, Any]:
    return {"id": c.id, "customer_id": c.customer_id, "name": c.name, "title": c.title, "mobile": c.mobile,
            "phone": c.phone, "email": c.email, "wechat": c.wechat, "decision_role": c.decision_role,
            "is_primary": c.is_primary, "custom": c.custom, "created_at": iso(c.created_at),
            "updated_at": iso(c.updated_at)}


def follow_up_dict(f: FollowUp, authors: dict[int, dict[str, Any]]) -> dict[str, Any]:
    return {"id": f.id, "customer_id": f.customer_id, "contact_id": f.contact_id, "author": authors.get(f.author_id),
            "kind": f.kind, "content": f.content, "occurred_at": iso(f.occurred_at), "location": f.location,
            "latitude": f.latitude, "longitude": f.longitude, "next_contact_at": iso(f.next_contact_at),
            "created_at": iso(f.created_at)}


def detail(session: so.Session, actor: Actor, customer_id: int) -> dict[str, Any]:
    customer = load_customer(session, actor, customer_id)
    body = summary_dicts(session, [customer])[0]
    body["address"] = customer.address
    collab_ids = list(session.execute(sa.select(CustomerCollaborator.user_id)
                                      .where(CustomerCollaborator.customer_id == customer.id)).scalars())
    contacts = session.execute(
        sa.select(Contact).where(Contact.customer_id == customer.id, Contact.deleted_at.is_(None))
        .order_by(Contact.is_primary.desc(), Contact.id)).scalars().all()
    follow_ups = session.execute(
        sa.select(FollowUp).where(FollowUp.customer_id == customer.id)
        .order_by(FollowUp.occurred_at.desc(), FollowUp.id.desc()).limit(10)).scalars().all()
    opportunities = session.execute(
        sa.select(Opportunity, OpportunityStage)
        .join(OpportunityStage, OpportunityStage.id == Opportunity.stage_id)
        .where(Opportunity.customer_id == customer.id, Opportunity.deleted_at.is_(None))
        .order_by(Opportunity.id.desc())).all()
    tasks = session.execute(
        # Open tasks first (status names sort open last), so the cut at 50 never hides one behind closed ones.
        sa.select(Task).where(Task.customer_id == customer.id)
        .order_by(sa.case((Task.status == TaskStatus.OPEN, 0), else_=1), Task.due_at, Task.id)
        .limit(50)).scalars().all()
    users = user_refs(session, set(collab_ids) | {f.author_id for f in follow_ups} | {t.assignee_id for t in tasks}
                   | {o.owner_id for o, _ in opportunities})
    body["collaborators"] = [users[i] for i in collab_ids if i in users]
    body["contacts"] = [contact_dict(c) for c in contacts]
    body["follow_ups"] = [follow_up_dict(f, users) for f in follow_ups]
    body["opportunities"] = [{
        "id": o.id, "name": o.name, "amount": str(o.amount), "stage": {"key": s.key, "name": s.name,
                                                                       "probability": s.probability},
        "expected_close_date": o.expected_close_date.isoformat() if o.expected_close_date else None,
        "owner": users.get(o.owner_id)} for o, s in opportunities]
    body["tasks"] = [{"id": t.id, "title": t.title, "status": t.status, "due_at": iso(t.due_at),
                      "assignee": users.get(t.assignee_id)} for t in tasks]
    return body


def _search_clause(corp_id: int, q: str) -> sa.ColumnElement[bool]:
    """Name, contact name or phone prefix. A UNION of id lists rather than an OR over a join, so each
    branch can use its own index (trigram on names, pattern btree on phones)."""
    pattern = f"%{normalize.like_escape(q)}%"
    named = so.aliased(Customer)
    by_name = sa.select(named.id).where(named.corp_id == corp_id, named.name.ilike(pattern, escape="\\"))
    contact_match = [Contact.name.ilike(pattern, escape="\\")]
    digits = normalize.phone(q)
    if digits and len(digits) >= 3 and len(digits) >= len(q.replace(" ", "").replace("-", "")) - 1:
        prefix = f"{normalize.like_escape(digits)}%"
        contact_match += [Contact.mobile.like(prefix, escape="\\"), Contact.phone.like(prefix, escape="\\")]
    by_contact = sa.select(Contact.customer_id).where(
        Contact.corp_id == corp_id, Contact.deleted_at.is_(None), sa.or_(*contact_match)
    )
    return Customer.id.in_(sa.union(by_name, by_contact))


def _owned_in_subtree(session: so.Session, corp_id: int, path: str) -> sa.ColumnElement[bool]:
    members = subtree_user_ids(corp_id, [path])
    if session.get_bind().dialect.name != "postgresql":
        return Customer.owner_id.in_(members)
    # Members read first and sent as one array: `owner_id = ANY(<constant>)` is a hash probe on each row the
    # sort-index walk meets, before its tag probes. Left as IN (subquery), PostgreSQL joins the member list
    # back with a nested loop over all of it for every row walked — most of the time of a subtree page.
    ids = list(session.execute(members).scalars())
    return Customer.owner_id == sa.any_(sa.literal(ids, postgresql.ARRAY(sa.BigInteger)))


def list_customers(session: so.Session, actor: Actor, query: CustomerQuery) -> dict[str, Any]:
    if query.sort not in SORTS:
        raise ValidationError("不支持的排序 / unsupported sort", fields={"sort": f"one of {sorted(SORTS)}"})
    column_name, descending, kind = SORTS[query.sort]
    key = pagination.SortKey(getattr(Customer, column_name), descending, kind)
    cursor = pagination.decode_cursor(query.cursor, kind) if query.cursor else None
    conditions: list[sa.ColumnElement[bool]] = []
    scope_needed, led_paths = True, None
    if query.department_id is not None:
        path, led_paths = department_and_led_paths(session, actor, query.department_id)
        conditions.append(_owned_in_subtree(session, actor.corp_id, path))
        # A manager's own subtree: every customer owned in it is in scope, and without the scope's OR
        # the planner can walk the sort index and stop at the page.
        scope_needed = not (led_paths and within(path, led_paths))
    if scope_needed:
        conditions.append(customer_clause(session, actor, include_pool=query.in_pool is not False,
                                          led_paths=led_paths))
    else:
        conditions += [Customer.corp_id == actor.corp_id, Customer.deleted_at.is_(None)]
    if query.in_pool is not None:
        conditions.append(Customer.in_pool.is_(query.in_pool))
    for tag_id in dict.fromkeys(query.tags_all):
        conditions.append(sa.exists().where(CustomerTag.customer_id == Customer.id, CustomerTag.tag_id == tag_id))
    if query.tags_any:
        conditions.append(sa.exists().where(CustomerTag.customer_id == Customer.id,
                                            CustomerTag.tag_id.in_(query.tags_any)))
    for name, values in (("grade", query.grade), ("source", query.source), ("status", query.status),
                         ("region", query.region), ("industry", query.industry), ("owner_id", query.owner_id)):
        if values:
            conditions.append(getattr(Customer, name).in_(values))
    if query.stale_days is not None:
        cutoff = utcnow() - timedelta(days=query.stale_days)
        conditions.append(sa.or_(Customer.last_contact_at < cutoff,
                                 sa.and_(Customer.last_contact_at.is_(None), Customer.created_at < cutoff)))
    if query.next_contact_before is not None:
        conditions.append(Customer.next_contact_at < query.next_contact_before)
    if query.next_contact_after is not None:
        conditions.append(Customer.next_contact_at >= query.next_contact_after)
    if query.q:
        conditions.append(_search_clause(actor.corp_id, query.q))
    if cursor is not None:
        conditions.append(pagination.after(key, Customer.id, *cursor))

    # Plain rows of the columns shown: the page is only serialised, so no ORM identity map or change tracking.
    stmt = (sa.select(*SUMMARY_COLUMNS).where(*conditions).order_by(*pagination.order_by(key, Customer.id))
            .limit(query.limit + 1))
    rows = session.execute(stmt).all()
    has_more = len(rows) > query.limit
    rows = rows[: query.limit]
    next_cursor = None
    if has_more and rows:
        last = rows[-1]
        next_cursor = pagination.encode_cursor(getattr(last, column_name), last.id)
    return {"items": summary_dicts(session, rows), "next_cursor": next_cursor}
