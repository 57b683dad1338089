"""`/openapi.json` built from the registered routes and the same pydantic models that validate input,
and `/api/docs`, a plain page that lists it (served by the app itself: no CDN, works offline)."""

from __future__ import annotations

import html
import re
from typing import Any

from flask import Blueprint, current_app, jsonify

bp = Blueprint("openapi", __name__)

_PARAM = re.compile(r"<(?:(\w+):)?(\w+)>")


def accepts(model):
    """Mark a view as taking `model` as its JSON body (for the spec)."""

    def decorate(view):
        view.body_model = model
        return view

    return decorate


def build_spec() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    schemas: dict[str, Any] = {}
    error_ref = {"$ref": "#/components/schemas/Error"}
    for rule in current_app.url_map.iter_rules():
        if not rule.rule.startswith("/api/"):
            continue
        view = current_app.view_functions[rule.endpoint]
        path = _PARAM.sub(r"{\2}", rule.rule)
        params = [{"name": name, "in": "path", "required": True,
                   "schema": {"type": "integer" if conv == "int" else "string"}}
                  for conv, name in _PARAM.findall(rule.rule)]
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            op: dict[str, Any] = {
                "operationId": rule.endpoint.split(".")[-1] + ("" if method in {"GET"} else f"_{method.lower()}"),
                "summary": (view.__doc__ or "").strip().splitlines()[0] if view.__doc__ else rule.endpoint,
                "parameters": params,
                "responses": {"200": {"description": "OK"},
                              "4XX": {"description": "Error", "content": {"application/json": {"schema": error_ref}}}},
            }
            model = getattr(view, "body_model", None)
            if model is not None and method in {"POST", "PATCH", "PUT"}:
                schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
                for name, sub in schema.pop("$defs", {}).items():
                    schemas[name] = sub
                schemas[model.__name__] = schema
                op["requestBody"] = {"required": True, "content": {"application/json": {
                    "schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}}
            paths.setdefault(path, {})[method.lower()] = op
    schemas["Error"] = {"type": "object", "properties": {"error": {"type": "object", "properties": {
        "code": {"type": "string"}, "message": {"type": "string"},
        "fields": {"type": "object", "additionalProperties": {"type": "string"}}}}}}
    return {"openapi": "3.1.0", "info": {"title": "CRM micro-app API", "version": "1"},
            "paths": dict(sorted(paths.items())), "components": {"schemas": schemas}}


@bp.get("/openapi.json")
def openapi_json():
    return jsonify(build_spec())


@bp.get("/api/docs")
def docs():
    spec = build_spec()
    rows = []
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
            ref = body.get("$ref", "").rsplit("/", 1)[-1]
            rows.append(f"<tr><td><code>{method.upper()}</code></td><td><code>{html.escape(path)}</code></td>"
                        f"<td>{html.escape(op['summary'])}</td><td>{html.escape(ref)}</td></tr>")
    return ("<!doctype html><html lang=zh-CN><meta charset=utf-8><title>API 文档 / API docs</title>"
            "<style>body{font:14px system-ui;margin:2em}td{padding:4px 10px;border-bottom:1px solid #ddd}</style>"
            "<h1>CRM API v1</h1><p>机器可读 / machine-readable: <a href=/openapi.json>/openapi.json</a></p>"
            "<table><tr><th>方法</th><th>路径</th><th>说明</th><th>请求体</th></tr>" + "".join(rows) + "</table>")
