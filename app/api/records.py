"""Contacts, follow-ups, opportunities, tags, tasks and custom field definitions."""

from __future__ import annotations

from flask import jsonify

from app.api import bp
from app.api.parsing import Query, body, corp_zone
from app.auth.session import current_actor, login_required
from app.db import get_session
from app.errors import ValidationError
from app.openapi import accepts
from app.schemas import (
    ContactCreate,
    ContactUpdate,
    FieldDefinitionIn,
    FieldDefinitionPatch,
    FollowUpIn,
    OpportunityCreate,
    OpportunityPatch,
    TagIn,
    TagPatch,
    TaskIn,
    TaskPatch,
)
from app.services import contacts, field_definitions, follow_ups, opportunities, tags, tasks
from app.services.pagination import parse_limit

ENTITIES = {"customer", "contact", "opportunity"}
TASK_STATUSES = {"open", "done", "cancelled"}


# ----------------------------------------------------------------------------- contacts


@bp.get("/customers/<int:customer_id>/contacts")
@login_required
def list_contacts(customer_id: int):
    """A customer's live contacts, primary first."""
    Query(set())
    return jsonify(contacts.list_contacts(get_session(), current_actor(), customer_id))


@bp.post("/customers/<int:customer_id>/contacts")
@login_required
@accepts(ContactCreate)
def create_contact(customer_id: int):
    """Add a contact; 409 with the match when the phone belongs to another customer's contact."""
    data = body(ContactCreate)
    session, actor = get_session(), current_actor()
    contact = contacts.create_contact(session, actor, customer_id, data)
    return jsonify(contacts.detail(session, actor, contact.id)), 201


@bp.get("/contacts/<int:contact_id>")
@login_required
def get_contact(contact_id: int):
    """One contact."""
    return jsonify(contacts.detail(get_session(), current_actor(), contact_id))


@bp.patch("/contacts/<int:contact_id>")
@login_required
@accepts(ContactUpdate)
def update_contact(contact_id: int):
    """Change some fields of a contact; marking it primary unmarks the customer's other contacts."""
    data = body(ContactUpdate)
    session, actor = get_session(), current_actor()
    contacts.update_contact(session, actor, contact_id, data)
    return jsonify(contacts.detail(session, actor, contact_id))


@bp.delete("/contacts/<int:contact_id>")
@login_required
def delete_contact(contact_id: int):
    """Soft delete a contact."""
    contacts.delete_contact(get_session(), current_actor(), contact_id)
    return "", 204


# ----------------------------------------------------------------------------- follow-ups


@bp.get("/customers/<int:customer_id>/follow-ups")
@login_required
def list_follow_ups(customer_id: int):
    """A customer's follow-up timeline, newest first, one cursor page at a time."""
    args = Query({"cursor", "limit"})
    return jsonify(follow_ups.list_follow_ups(get_session(), current_actor(), customer_id,
                                              cursor=args.str("cursor", max_length=500),
                                              limit=parse_limit(args.args.get("limit"))))


@bp.post("/customers/<int:customer_id>/follow-ups")
@login_required
@accepts(FollowUpIn)
def create_follow_up(customer_id: int):
    """Record a follow-up; moves the customer's last contact time and, when given, the next one."""
    data = body(FollowUpIn)
    session, actor = get_session(), current_actor()
    follow_up = follow_ups.create_follow_up(session, actor, customer_id, data)
    return jsonify(follow_ups.detail(session, actor, follow_up.id)), 201


@bp.get("/follow-ups/<int:follow_up_id>")
@login_required
def get_follow_up(follow_up_id: int):
    """One follow-up."""
    return jsonify(follow_ups.detail(get_session(), current_actor(), follow_up_id))


@bp.delete("/follow-ups/<int:follow_up_id>")
@login_required
def delete_follow_up(follow_up_id: int):
    """Delete a follow-up (its author, or a manager/admin in scope); the audit log keeps its content."""
    follow_ups.delete_follow_up(get_session(), current_actor(), follow_up_id)
    return "", 204


# ----------------------------------------------------------------------------- opportunities


@bp.get("/opportunity-stages")
@login_required
def list_opportunity_stages():
    """The corp's active opportunity stages, in pipeline order."""
    Query(set())
    return jsonify(opportunities.list_stages(get_session(), current_actor()))


@bp.get("/opportunities")
@login_required
def list_opportunities():
    """Opportunities of customers in the caller's scope, most recently changed first, cursor-paged."""
    args = Query({"stage_key", "owner_id", "customer_id", "cursor", "limit"})
    query = opportunities.OpportunityQuery(
        stage_keys=args.str_list("stage_key"), owner_ids=args.int_list("owner_id"),
        customer_id=args.int("customer_id"), cursor=args.str("cursor", max_length=500),
        limit=parse_limit(args.args.get("limit")))
    return jsonify(opportunities.list_opportunities(get_session(), current_actor(), query))


@bp.post("/opportunities")
@login_required
@accepts(OpportunityCreate)
def create_opportunity():
    """Create an opportunity for a customer the caller may write; stage defaults to the first open one."""
    data = body(OpportunityCreate)
    session, actor = get_session(), current_actor()
    opp = opportunities.create_opportunity(session, actor, data)
    return jsonify(opportunities.detail(session, actor, opp.id)), 201


@bp.get("/opportunities/<int:opportunity_id>")
@login_required
def get_opportunity(opportunity_id: int):
    """One opportunity with its stage, customer and owner."""
    return jsonify(opportunities.detail(get_session(), current_actor(), opportunity_id))


@bp.patch("/opportunities/<int:opportunity_id>")
@login_required
@accepts(OpportunityPatch)
def update_opportunity(opportunity_id: int):
    """Change some fields or move the stage; won/lost close it, lost needs lost_reason."""
    data = body(OpportunityPatch)
    session, actor = get_session(), current_actor()
    opportunities.update_opportunity(session, actor, opportunity_id, data)
    return jsonify(opportunities.detail(session, actor, opportunity_id))


@bp.delete("/opportunities/<int:opportunity_id>")
@login_required
def delete_opportunity(opportunity_id: int):
    """Soft delete an opportunity (its owner, the customer's owner, a manager or an admin)."""
    opportunities.delete_opportunity(get_session(), current_actor(), opportunity_id)
    return "", 204


# ----------------------------------------------------------------------------- tags


@bp.get("/tags")
@login_required
def list_tags():
    """The corp's tags, grouped."""
    Query(set())
    return jsonify(tags.list_tags(get_session(), current_actor()))


@bp.post("/tags")
@login_required
@accepts(TagIn)
def create_tag():
    """Create a tag (managers and admins); 409 when the group already has that name."""
    data = body(TagIn)
    tag = tags.create_tag(get_session(), current_actor(), data)
    return jsonify(tags.tag_dict(tag)), 201


@bp.patch("/tags/<int:tag_id>")
@login_required
@accepts(TagPatch)
def update_tag(tag_id: int):
    """Rename, regroup or recolour a tag (admins)."""
    data = body(TagPatch)
    tag = tags.update_tag(get_session(), current_actor(), tag_id, data)
    return jsonify(tags.tag_dict(tag))


@bp.delete("/tags/<int:tag_id>")
@login_required
def delete_tag(tag_id: int):
    """Delete a tag and remove it from every customer (admins)."""
    tags.delete_tag(get_session(), current_actor(), tag_id)
    return "", 204


# ----------------------------------------------------------------------------- tasks


@bp.get("/tasks")
@login_required
def list_tasks():
    """My tasks by default; managers/admins may ask for a team member's, anyone for a visible customer's."""
    actor, session = current_actor(), get_session()
    args = Query({"assignee_id", "customer_id", "status", "due_before", "cursor", "limit"})
    query = tasks.TaskQuery(
        assignee_id=args.int("assignee_id"), customer_id=args.int("customer_id"),
        status=args.str_list("status", TASK_STATUSES), due_before=args.datetime("due_before", corp_zone(actor)),
        cursor=args.str("cursor", max_length=500), limit=parse_limit(args.args.get("limit")))
    return jsonify(tasks.list_tasks(session, actor, query))


@bp.post("/tasks")
@login_required
@accepts(TaskIn)
def create_task():
    """Create a task; the assignee defaults to the caller."""
    data = body(TaskIn)
    session, actor = get_session(), current_actor()
    task = tasks.create_task(session, actor, data)
    return jsonify(tasks.detail(session, actor, task.id)), 201


@bp.get("/tasks/<int:task_id>")
@login_required
def get_task(task_id: int):
    """One task."""
    return jsonify(tasks.detail(get_session(), current_actor(), task_id))


@bp.patch("/tasks/<int:task_id>")
@login_required
@accepts(TaskPatch)
def update_task(task_id: int):
    """Change, reassign, complete or cancel a task."""
    data = body(TaskPatch)
    session, actor = get_session(), current_actor()
    tasks.update_task(session, actor, task_id, data)
    return jsonify(tasks.detail(session, actor, task_id))


@bp.delete("/tasks/<int:task_id>")
@login_required
def delete_task(task_id: int):
    """Delete a task (its creator, a manager or an admin)."""
    tasks.delete_task(get_session(), current_actor(), task_id)
    return "", 204


# ----------------------------------------------------------------------------- custom field definitions


@bp.get("/fields")
@login_required
def list_fields():
    """Active custom field definitions, optionally of one entity (admins may include inactive ones)."""
    args = Query({"entity", "include_inactive"})
    entity = args.str("entity")
    if entity is not None and entity not in ENTITIES:
        raise ValidationError("entity 取值无效 / invalid entity", fields={"entity": f"one of {sorted(ENTITIES)}"})
    return jsonify(field_definitions.list_definitions(get_session(), current_actor(), entity=entity,
                                                      include_inactive=bool(args.bool("include_inactive"))))


@bp.post("/fields")
@login_required
@accepts(FieldDefinitionIn)
def create_field():
    """Define a custom field (admins); 409 when the entity already has that key."""
    data = body(FieldDefinitionIn)
    d = field_definitions.create_definition(get_session(), current_actor(), data)
    return jsonify(field_definitions.field_dict(d)), 201


@bp.patch("/fields/<int:field_id>")
@login_required
@accepts(FieldDefinitionPatch)
def update_field(field_id: int):
    """Change a custom field's label, rules, options or order, or reactivate it (admins)."""
    data = body(FieldDefinitionPatch)
    d = field_definitions.update_definition(get_session(), current_actor(), field_id, data)
    return jsonify(field_definitions.field_dict(d))


@bp.delete("/fields/<int:field_id>")
@login_required
def delete_field(field_id: int):
    """Deactivate a custom field (admins); stored values are kept."""
    field_definitions.deactivate_definition(get_session(), current_actor(), field_id)
    return "", 204
