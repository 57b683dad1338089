"""Contacts of a customer: list, add (with the corp-wide phone duplicate check), change, soft delete.

A contact is reached only through its customer, so `app.services.scope` decides who sees and writes it.
At most one live contact per customer is primary: marking one unmarks the others.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so

from app.errors import Conflict, NotFound, ValidationError
from app.schemas import ContactCreate, ContactUpdate
from app.services import audit, custom_fields, normalize
from app.services.actor import Actor
from app.services.customers import contact_dict, find_duplicate, guard_duplicate
from app.services.scope import customer_clause, load_customer
from app.services.timeutil import iso
from models.crm import Contact, Customer
from models.types import utcnow

AUDITED_FIELDS = ("name", "title", "mobile", "phone", "email", "wechat", "decision_role", "is_primary", "custom")
PHONE_FIELDS = ("mobile", "phone")


def _snapshot(contact: Contact) -> dict[str, Any]:
    return {f: getattr(contact, f) for f in AUDITED_FIELDS}


def load_contact(session: so.Session, actor: Actor, contact_id: int, *, for_write: bool = False,
                 lock: bool = False) -> Contact:
    """The live contact if the actor may see (or write) its customer; 404 otherwise."""
    stmt = (sa.select(Contact).join(Customer, Customer.id == Contact.customer_id)
            .where(Contact.id == contact_id, Contact.corp_id == actor.corp_id, Contact.deleted_at.is_(None),
                   customer_clause(session, actor, for_write=for_write)))
    if lock:
        stmt = stmt.with_for_update(of=Contact)
    contact = session.execute(stmt).scalar_one_or_none()
    if contact is None:
        raise NotFound("联系人不存在或无权访问 / contact not found", fields={"contact_id": "not found"})
    return contact


def _guard_phones(session: so.Session, actor: Actor, customer_id: int, phones: dict[str, str | None],
                  allow: bool) -> dict[str, Any] | None:
    """409 when a phone already belongs to a live contact of another customer (same rule as customers)."""
    given = {name: value for name, value in phones.items() if value}
    if not given:
        return None
    try:
        return guard_duplicate(session, actor, name_norm=None, phones=list(given.values()), allow=allow,
                                exclude_id=customer_id)
    except Conflict as exc:
        # Name the contact field that collided rather than the customer form's "contacts".
        clashing = [name for name, value in given.items()
                    if find_duplicate(session, actor.corp_id, None, [value], exclude_id=customer_id)]
        exc.fields = dict.fromkeys(clashing or given, "duplicate")
        raise


def _unset_other_primaries(session: so.Session, actor: Actor, customer_id: int, keep_id: int) -> None:
    # The customer row serialises concurrent "make primary" requests (creation already holds it).
    session.execute(sa.select(Customer.id).where(Customer.id == customer_id).with_for_update())
    others = session.execute(
        sa.select(Contact).where(Contact.customer_id == customer_id, Contact.corp_id == actor.corp_id,
                                 Contact.id != keep_id, Contact.deleted_at.is_(None), Contact.is_primary.is_(True))
    ).scalars().all()
    for other in others:
        other.is_primary = False
        audit.record(session, actor, "update", "contact", other.id, {"is_primary": {"before": True, "after": False}})


def list_contacts(session: so.Session, actor: Actor, customer_id: int) -> dict[str, Any]:
    customer = load_customer(session, actor, customer_id)
    rows = session.execute(
        sa.select(Contact).where(Contact.customer_id == customer.id, Contact.corp_id == actor.corp_id,
                                 Contact.deleted_at.is_(None))
        .order_by(Contact.is_primary.desc(), Contact.id)).scalars().all()
    return {"items": [contact_dict(c) for c in rows]}


def detail(session: so.Session, actor: Actor, contact_id: int) -> dict[str, Any]:
    return contact_dict(load_contact(session, actor, contact_id))


def create_contact(session: so.Session, actor: Actor, customer_id: int, data: ContactCreate) -> Contact:
    customer = load_customer(session, actor, customer_id, for_write=True, lock=True)
    custom = custom_fields.validate(session, actor.corp_id, "contact", data.custom)
    mobile, phone = normalize.phone(data.mobile), normalize.phone(data.phone)
    override = _guard_phones(session, actor, customer.id, {"mobile": mobile, "phone": phone}, data.allow_duplicate)
    contact = Contact(corp_id=actor.corp_id, customer_id=customer.id, name=data.name, title=data.title,
                      mobile=mobile, phone=phone, email=data.email, wechat=data.wechat,
                      decision_role=data.decision_role, is_primary=data.is_primary, custom=custom)
    session.add(contact)
    session.flush()
    if contact.is_primary:
        _unset_other_primaries(session, actor, customer.id, contact.id)
    audit.record(session, actor, "create", "contact", contact.id,
                 {"customer_id": {"before": None, "after": customer.id}, **audit.diff({}, _snapshot(contact))})
    if override:
        audit.record(session, actor, "duplicate_override", "contact", contact.id, {"match": override})
    session.flush()
    return contact


def update_contact(session: so.Session, actor: Actor, contact_id: int, patch: ContactUpdate) -> Contact:
    contact = load_contact(session, actor, contact_id, for_write=True, lock=True)
    given = patch.model_fields_set - {"allow_duplicate"}
    for required in ("name", "is_primary"):
        if required in given and getattr(patch, required) is None:
            raise ValidationError(f"{required} 不能为空 / {required} cannot be null", fields={required: "required"})
    before = _snapshot(contact)
    new_phones = {name: normalize.phone(getattr(patch, name)) for name in PHONE_FIELDS if name in given}
    changed_phones = {name: value for name, value in new_phones.items() if value != getattr(contact, name)}
    override = _guard_phones(session, actor, contact.customer_id, changed_phones, patch.allow_duplicate)
    if "custom" in given:
        contact.custom = custom_fields.validate(session, actor.corp_id, "contact", patch.custom or {},
                                                current=contact.custom)
    for simple in ("name", "title", "email", "wechat", "decision_role", "is_primary"):
        if simple in given:
            setattr(contact, simple, getattr(patch, simple))
    for name, value in new_phones.items():
        setattr(contact, name, value)
    changes = audit.diff(before, _snapshot(contact))
    if changes:
        contact.updated_at = utcnow()
        if contact.is_primary and not before["is_primary"]:
            _unset_other_primaries(session, actor, contact.customer_id, contact.id)
        audit.record(session, actor, "update", "contact", contact.id, changes)
        if override:
            audit.record(session, actor, "duplicate_override", "contact", contact.id, {"match": override})
    session.flush()
    return contact


def delete_contact(session: so.Session, actor: Actor, contact_id: int) -> None:
    contact = load_contact(session, actor, contact_id, for_write=True, lock=True)
    contact.deleted_at = utcnow()
    audit.record(session, actor, "delete", "contact", contact.id,
                 {"deleted_at": {"before": None, "after": iso(contact.deleted_at)}})
    session.flush()
