"""Liveness and readiness probes."""

from __future__ import annotations

import logging

from flask import Blueprint, jsonify

from app.db import get_database

bp = Blueprint("health", __name__)
log = logging.getLogger(__name__)


@bp.get("/healthz")
def healthz():
    """The process is up."""
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz():
    """The database answers."""
    try:
        get_database().ping()
    except Exception as exc:  # any driver error means "not ready"; the reason goes to the log only
        log.warning("readiness check failed: %s", type(exc).__name__)
        return jsonify({"status": "unavailable", "database": "unreachable"}), 503
    return jsonify({"status": "ok", "database": "ok"})
