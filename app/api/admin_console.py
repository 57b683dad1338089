"""Admin console API: corp binding and its connection test, users and roles, settings, the audit log."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from flask import Response, current_app, jsonify, request, stream_with_context
from pydantic import Field, StringConstraints

from app.api import bp
from app.api.parsing import Query, body, corp_zone
from app.auth.session import admin_required, current_actor
from app.db import get_database, get_session
from app.errors import ValidationError
from app.openapi import accepts
from app.schemas import Strict
from app.services import admin_audit, admin_corps, admin_settings, admin_stages, admin_users, audit
from app.services.opportunities import stage_dict
from app.services.pagination import parse_limit
from models.org import Corp, Role

Text = Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)]
Secret = Annotated[str, StringConstraints(strip_whitespace=True, max_length=256)]


class CorpBindIn(Strict):
    platform: Literal["dingtalk", "wecom"]
    corp_id: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
    name: Text | None = None
    app_key: Annotated[str, StringConstraints(strip_whitespace=True, max_length=128)] | None = None
    app_secret: Secret | None = None
    secret: Secret | None = None
    agent_id: Annotated[str, StringConstraints(strip_whitespace=True, max_length=64)] | None = None
    callback_token: Annotated[str, StringConstraints(strip_whitespace=True, max_length=128)] | None = None
    aes_key: Secret | None = None
    sandbox: bool = False  # point the corp at the local sandbox (sandbox mode only)


class CorpUpdateIn(Strict):
    name: Text | None = None
    app_key: Annotated[str, StringConstraints(strip_whitespace=True, max_length=128)] | None = None
    app_secret: Secret | None = None
    secret: Secret | None = None
    agent_id: Annotated[str, StringConstraints(strip_whitespace=True, max_length=64)] | None = None
    callback_token: Annotated[str, StringConstraints(strip_whitespace=True, max_length=128)] | None = None
    aes_key: Secret | None = None
    regenerate_callback: bool = False


class RoleIn(Strict):
    role: Literal["salesperson", "manager", "admin", "presales"]


StageName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]


class StageIn(Strict):
    key: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=32)]
    name: StageName
    probability: Annotated[int, Field(ge=0, le=100)] = 0
    sort_order: Annotated[int, Field(ge=0, le=10_000)] | None = None


class StagePatch(Strict):
    name: StageName | None = None
    probability: Annotated[int, Field(ge=0, le=100)] | None = None
    sort_order: Annotated[int, Field(ge=0, le=10_000)] | None = None
    active: bool | None = None


class SettingsIn(Strict):
    # Each key is checked by the settings service, which names the offending key.
    model_config = Strict.model_config | {"extra": "allow"}


def _settings():
    return current_app.config["CRM_SETTINGS"]


# ----------------------------------------------------------------------------- corps


@bp.get("/admin/corps")
@admin_required
def corp_list():
    """This corp, and corps bound from its console in sandbox/development mode; never any secret."""
    Query(set())
    settings = _settings()
    corps = admin_corps.visible_corps(get_session(), current_actor())
    return jsonify({"items": [admin_corps.corp_view(settings, c) for c in corps],
                    "can_add": admin_corps.can_add_corps(settings), "sandbox": bool(settings.sandbox)})


@bp.post("/admin/corps")
@admin_required
@accepts(CorpBindIn)
def corp_add():
    """Bind a new corp (sandbox/development mode only; otherwise `crm corp add`). The callback token and
    AES key are returned this once, to paste into the platform console."""
    data = body(CorpBindIn)
    settings = _settings()
    corp, shown = admin_corps.add_corp(get_session(), current_actor(), settings, data)
    return jsonify(admin_corps.corp_view(settings, corp, shown_once=shown)), 201


@bp.patch("/admin/corps/<int:corp_id>")
@admin_required
@accepts(CorpUpdateIn)
def corp_update(corp_id: int):
    """Re-bind: change the credentials; blank secrets keep the stored ones."""
    data = body(CorpUpdateIn)
    settings = _settings()
    corp, shown = admin_corps.update_corp(get_session(), current_actor(), settings, corp_id, data)
    return jsonify(admin_corps.corp_view(settings, corp, shown_once=shown))


@bp.post("/admin/corps/<int:corp_id>/test")
@admin_required
def corp_test(corp_id: int):
    """Fetch a token and read the root department: the platform's answer in plain words, and what to fix."""
    Query(set())
    return jsonify(admin_corps.test_corp(get_session(), current_actor(), _settings(), get_database(), corp_id))


# ----------------------------------------------------------------------------- users and settings


@bp.get("/admin/users")
@admin_required
def user_list():
    """Users with their roles; filters q (name or userid), role; cursor pages by id."""
    args = Query({"q", "role", "cursor", "limit"})
    role = args.str_list("role", {r.value for r in Role})
    return jsonify(admin_users.list_users(get_session(), current_actor(), q=args.str("q"),
                                          role=role[0] if role else None, cursor=args.int("cursor", minimum=1),
                                          limit=parse_limit(args.args.get("limit"), 50)))


@bp.patch("/admin/users/<int:user_id>")
@admin_required
@accepts(RoleIn)
def user_role(user_id: int):
    """Change a user's role (audited); the last active admin cannot be demoted."""
    data = body(RoleIn)
    return jsonify(admin_users.set_role(get_session(), current_actor(), user_id, data.role))


@bp.get("/admin/settings")
@admin_required
def settings_get():
    """Pool, reminder, quiet-hour, escalation, leaver and quota settings of this corp."""
    Query(set())
    corp = get_session().get(Corp, current_actor().corp_id)
    return jsonify({"settings": admin_settings.current(corp), "timezone": corp.timezone})


@bp.patch("/admin/settings")
@admin_required
@accepts(SettingsIn)
def settings_patch():
    """Change some settings; each key is validated (422 naming the key) and the change is audited."""
    data = body(SettingsIn)
    changes: dict[str, Any] = dict(data.model_extra or {})
    return jsonify({"settings": admin_settings.update(get_session(), current_actor(), changes)})


# ----------------------------------------------------------------------------- opportunity stages


@bp.get("/admin/stages")
@admin_required
def stage_list():
    """Every stage of the corp, retired ones too, in pipeline order."""
    Query(set())
    return jsonify(admin_stages.list_all(get_session(), current_actor()))


@bp.post("/admin/stages")
@admin_required
@accepts(StageIn)
def stage_add():
    """Add a stage (before won/lost unless a sort order is given)."""
    data = body(StageIn)
    stage = admin_stages.add_stage(get_session(), current_actor(), key=data.key, name=data.name,
                                   probability=data.probability, sort_order=data.sort_order)
    return jsonify(stage_dict(stage)), 201


@bp.patch("/admin/stages/<int:stage_id>")
@admin_required
@accepts(StagePatch)
def stage_update(stage_id: int):
    """Rename, reorder, set the win probability, or retire a stage (audited)."""
    data = body(StagePatch)
    changes = data.model_dump(exclude_unset=True)
    if not changes:
        raise ValidationError("没有要修改的内容 / nothing to change", fields={"body": "empty"})
    return jsonify(stage_dict(admin_stages.update_stage(get_session(), current_actor(), stage_id, changes)))


# ----------------------------------------------------------------------------- audit


def _audit_filter(args: Query) -> admin_audit.AuditFilter:
    actor = current_actor()
    return admin_audit.AuditFilter(
        actor_id=args.int("actor", minimum=1), action=args.str("action", 32), entity_type=args.str("entity", 32),
        entity_id=args.int("entity_id", minimum=1), since=args.datetime("from", corp_zone(actor)),
        until=args.datetime("to", corp_zone(actor)))


AUDIT_PARAMS = {"actor", "action", "entity", "entity_id", "from", "to"}


@bp.get("/admin/audit")
@admin_required
def audit_list():
    """Audit entries newest first; filters actor (user id), action, entity (type), entity_id, from/to."""
    args = Query(AUDIT_PARAMS | {"cursor", "limit"})
    flt = _audit_filter(args)
    actor = current_actor()
    return jsonify(admin_audit.list_entries(get_session(), actor.corp_id, corp_zone(actor)(), flt,
                                            cursor=args.int("cursor", minimum=1),
                                            limit=parse_limit(args.args.get("limit"), 50)))


@bp.get("/admin/audit.csv")
@admin_required
def audit_csv():
    """The filtered audit log as CSV (UTF-8 with BOM for Excel), streamed; the export is itself audited."""
    args = Query(AUDIT_PARAMS)
    flt = _audit_filter(args)
    actor = current_actor()
    session = get_session()
    zone = corp_zone(actor)()
    filters = {k: v for k, v in request.args.items() if v}
    if flt.since and flt.until and flt.since >= flt.until:
        raise ValidationError("结束时间应晚于开始时间 / 'to' must be after 'from'", fields={"to": "before from"})
    audit.record(session, actor, "export", "audit_log", None, {"filters": {"before": None, "after": filters}})
    lines = admin_audit.csv_lines(get_database(), actor.corp_id, zone, flt)
    return Response(stream_with_context(lines), mimetype="text/csv; charset=utf-8", headers={
        "Content-Disposition": "attachment; filename=audit-log.csv", "Cache-Control": "no-store"})
