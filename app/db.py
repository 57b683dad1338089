"""Per-request SQLAlchemy session: one transaction per request, committed only if the view succeeded."""

from __future__ import annotations

import sqlalchemy.orm as so
from flask import Flask, current_app, g

from models.db import Database


def init_app(app: Flask, database: Database) -> None:
    app.extensions["crm.db"] = database

    @app.after_request
    def _commit(response):
        session: so.Session | None = g.pop("db_session", None)
        if session is not None:
            try:
                if response.status_code < 400:
                    session.commit()
                else:
                    session.rollback()
            finally:
                session.close()
        return response

    @app.teardown_request
    def _close(_exc):
        # Reached with a session still open only when the view raised: nothing is committed.
        session: so.Session | None = g.pop("db_session", None)
        if session is not None:
            session.rollback()
            session.close()


def get_database() -> Database:
    return current_app.extensions["crm.db"]


def get_session() -> so.Session:
    if "db_session" not in g:
        g.db_session = get_database().sessionmaker()
    return g.db_session
