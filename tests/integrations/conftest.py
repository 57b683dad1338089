"""Fixtures for the platform-integration tests (DingTalk client, callback crypto, sandbox)."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet


@pytest.fixture
def database(database):
    """The suite's database (real SQLite and real PostgreSQL, migrated) plus one DingTalk corp, whose
    primary key is `database.corp_pk`."""
    from models.org import Corp

    with database.session() as s:
        corp = Corp(platform="dingtalk", platform_corp_id="dingcorp001", name="测试公司", app_key="dingappkey")
        s.add(corp)
        s.flush()
        database.corp_pk = corp.id
    return database


@pytest.fixture
def master_key() -> str:
    return Fernet.generate_key().decode()
