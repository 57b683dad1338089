"""JSON API under /api/v1. Views parse and authorise; services do the work."""

from flask import Blueprint

bp = Blueprint("api", __name__, url_prefix="/api/v1")

from app.api import auth, customers, org, records  # noqa: E402,F401  (register routes)
