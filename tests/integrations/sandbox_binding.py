"""Shared set-up for tests that run the app against the sandbox over real HTTP: a bound sandbox corp."""

from __future__ import annotations

from app.services.corps import SecretBox
from app.services.sandbox_corp import bind_sandbox_corp
from integrations.sandbox.corpgen import SandboxCorp


def credentials(corp: SandboxCorp) -> dict:
    return corp.credentials()


def bind(database, settings, server, corp: SandboxCorp, **corp_settings) -> int:
    """Bind `corp` (a sandbox corp) pointing at `server`; returns our primary key."""
    with database.session() as s:
        row = bind_sandbox_corp(s, SecretBox(settings.master_key), credentials=corp.credentials(), base_url=server.url)
        if corp_settings:
            row.settings = {**row.settings, **corp_settings}
        s.flush()
        return row.id
