"""JSON API under /api/v1. Views parse and authorise; services do the work."""

from flask import Blueprint

bp = Blueprint("api", __name__, url_prefix="/api/v1")

from app.api import (  # noqa: E402,F401  (importing the modules registers their routes)
    admin_console,
    admin_delivery,
    admin_org,
    admin_rules,
    approvals,
    auth,
    auth_dingtalk,
    auth_sandbox,
    auth_wecom,
    customers,
    dashboard,
    org,
    pool_assignment,
    records,
)
