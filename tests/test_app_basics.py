"""Factory, configuration, probes, sessions, OpenAPI, secrets at rest and the append-only audit log."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from app import create_app
from app.services.corps import SecretBox
from config.settings import ConfigError, load_settings
from models.audit import AppendOnlyError, AuditLog
from models.db import Database
from models.org import Corp, User
from tests import factories as f


def test_embedded_defaults_are_generated_once_and_reused(tmp_path):
    first = load_settings({}, instance_path=tmp_path)
    second = load_settings({}, instance_path=tmp_path)
    assert first.database_url == f"sqlite:///{tmp_path / 'crm.sqlite3'}"
    assert first.secret_key == second.secret_key and len(first.secret_key) >= 40
    assert first.master_key == second.master_key
    assert oct((tmp_path / "master_key").stat().st_mode & 0o777) == "0o600"
    assert first.dev_login is False


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"CRM_MASTER_KEY": "short"}, "CRM_MASTER_KEY"),
        ({"CRM_TIMEZONE": "Mars/Base"}, "CRM_TIMEZONE"),
        ({"CRM_PUBLIC_URL": "ftp://x"}, "CRM_PUBLIC_URL"),
        ({"CRM_SANDBOX": "perhaps"}, "CRM_SANDBOX"),
    ],
)
def test_bad_configuration_is_refused_by_name(tmp_path, env, name):
    with pytest.raises(ConfigError, match=name):
        load_settings(env, instance_path=tmp_path)


def test_env_overrides_and_postgres_driver(tmp_path):
    s = load_settings(
        {
            "CRM_DATABASE_URL": "postgresql://u@h/db",
            "CRM_DINGTALK_OAPI_BASE": "http://127.0.0.1:9/",
            "CRM_SECRET_KEY": "k",
            "CRM_TIMEZONE": "Asia/Urumqi",
        },
        instance_path=tmp_path,
    )
    assert s.database_url == "postgresql+psycopg://u@h/db"
    assert s.dingtalk_oapi_base == "http://127.0.0.1:9"
    assert s.secret_key == "k" and s.timezone == "Asia/Urumqi"


def test_probes(client, settings, tmp_path):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    assert client.get("/readyz").get_json()["database"] == "ok"
    broken = create_app(settings, database=Database("postgresql+psycopg://nobody@127.0.0.1:1/none"))
    resp = broken.test_client().get("/readyz")
    assert resp.status_code == 503 and resp.get_json()["database"] == "unreachable"
    assert broken.test_client().get("/healthz").status_code == 200


def test_dev_login_is_off_unless_enabled(settings, database):
    with database.session() as s:
        org = f.org(s)
    prod = create_app(settings.with_overrides(dev_login=False), database=database).test_client()
    resp = prod.post(
        "/api/v1/auth/dev", json={"corpId": org.corp.platform_corp_id, "userid": org.alice.platform_userid}
    )
    assert resp.status_code == 404


def test_session_ends_when_user_is_deactivated(client, database):
    with database.session() as s:
        org = f.org(s)
    f.login(client, org.alice, org.corp)
    assert client.get("/api/v1/me").get_json()["user"]["name"] == "张三"
    with database.session() as s:
        s.get(User, org.alice.id).active = False
    assert client.get("/api/v1/me").status_code == 401


def test_openapi_documents_the_validated_bodies(client):
    spec = client.get("/openapi.json").get_json()
    create = spec["paths"]["/api/v1/customers"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/CustomerIn")
    customer_in = spec["components"]["schemas"]["CustomerIn"]
    assert customer_in["additionalProperties"] is False and "name" in customer_in["required"]
    assert "/api/v1/customers/{customer_id}" in spec["paths"]
    assert "/api/v1/customers" in client.get("/api/docs").get_data(as_text=True)


def test_corp_secrets_are_encrypted_at_rest_and_never_shown(client, database, settings):
    box = SecretBox(settings.master_key)
    with database.session() as s:
        org = f.org(s, secrets={"app_secret": "TOP-SECRET-VALUE-123"}, box=box)
    with database.engine.connect() as conn:
        raw = conn.execute(sa.text("SELECT secrets_ciphertext FROM corps WHERE id = :i"), {"i": org.corp.id}).scalar()
    assert "TOP-SECRET" not in raw
    with database.session() as s:
        corp = s.get(Corp, org.corp.id)
        assert box.open(corp.secrets_ciphertext) == {"app_secret": "TOP-SECRET-VALUE-123"}
        assert "TOP-SECRET" not in repr(corp)
    f.login(client, org.admin, org.corp)
    assert "TOP-SECRET" not in client.get("/api/v1/me").get_data(as_text=True)


def test_audit_log_is_append_only(database):
    with database.session() as s:
        org = f.org(s)
        s.add(AuditLog(corp_id=org.corp.id, action="create", entity_type="customer", entity_id=1))
    with pytest.raises(AppendOnlyError), database.session() as s:
        s.execute(sa.select(AuditLog)).scalar_one().action = "tampered"
        s.flush()
    with pytest.raises(AppendOnlyError), database.session() as s:
        s.delete(s.execute(sa.select(AuditLog)).scalar_one())
        s.flush()
