"""Real-browser harness: Debian's Chromium driven by Playwright against a real app server on a free port.

The server runs the whole app (SQLite file migrated like production) in a thread; tests seed data through
the same factories as the API tests and assert on the page and on the database. In CI a missing Chromium
or Playwright is a failure, never a skip.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet
from werkzeug.serving import make_server

from app import create_app
from app.schemas import FieldDefinitionIn
from app.services.actor import Actor
from app.services.approval_defaults import install_defaults
from app.services.field_definitions import create_definition
from app.services.sandbox_corp import start_sandbox_mode
from config import Settings
from models.db import Database
from models.migrate import upgrade_engine
from models.org import Corp, Role, User

CHROMIUM = os.environ.get("CRM_CHROMIUM", "/usr/bin/chromium")
IN_CI = os.environ.get("CI", "").lower() == "true"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
VIEWPORTS = {"mobile": {"width": 375, "height": 812}, "desktop": {"width": 1280, "height": 800}}


def pytest_collection_modifyitems(items):
    for item in items:
        if Path(str(item.fspath)).parent == Path(__file__).parent:
            item.add_marker(pytest.mark.browser)


def _unavailable() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[dev]')"
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)) and not shutil.which(CHROMIUM):
        return f"Chromium not found at {CHROMIUM} (apt-get install -y chromium; `make test` does it)"
    return None


@pytest.fixture(scope="session")
def browser():
    problem = _unavailable()
    if problem:
        if IN_CI:
            pytest.fail(f"browser tests must run in CI: {problem}")
        pytest.skip(problem)
    from playwright.sync_api import sync_playwright

    args = ["--disable-gpu", "--disable-dev-shm-usage"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        args.append("--no-sandbox")  # Chromium refuses to start its sandbox as root
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        yield chromium
        chromium.close()


@dataclass
class Person:
    id: int
    userid: str
    name: str


@dataclass
class Seed:
    corp_pk: int
    corp_id: str
    alice: Person  # salesperson
    bob: Person  # salesperson
    manager: Person
    admin: Person


@dataclass
class LiveServer:
    url: str
    app: object
    database: Database
    seed: Seed
    sandbox: object

    def session(self):
        return self.database.session()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _seed(database: Database, corp_id: str) -> Seed:
    """Roles and custom fields on top of the synced sandbox corp; the people are the sandbox's own."""
    with database.session() as s:
        corp = s.execute(sa.select(Corp).where(Corp.platform_corp_id == corp_id)).scalar_one()
        users = s.execute(sa.select(User).where(User.corp_id == corp.id, User.active.is_(True))
                          .order_by(User.id).limit(4)).scalars().all()
        roles = [Role.SALESPERSON, Role.SALESPERSON, Role.MANAGER, Role.ADMIN]
        for user, role in zip(users, roles, strict=True):
            user.role = role
        admin = Actor(corp_id=corp.id, user_id=users[3].id, role=Role.ADMIN)
        create_definition(s, admin, FieldDefinitionIn(entity="customer", key="budget", label="预算（万元）",
                                                      field_type="number", min_value=0, max_value=10000))
        create_definition(s, admin, FieldDefinitionIn(entity="customer", key="channel", label="渠道",
                                                      field_type="select", options=["展会", "转介绍", "官网"]))
        # Idempotent; a new corp gets these from create_corp once the approvals work wires it in.
        install_defaults(s, corp.id)
        people = [Person(u.id, u.platform_userid, u.name) for u in users]
        return Seed(corp.id, corp_id, *people)


@pytest.fixture(scope="session")
def live_server(browser, tmp_path_factory) -> Iterator[LiveServer]:
    """The app as `crm serve` runs it beside the sandbox: the sandbox corp bound and synced over real HTTP,
    the sign-in picker on. One server for the suite; each test starts from a fresh browser context."""
    folder = tmp_path_factory.mktemp("browser")
    url = f"sqlite:///{folder / 'crm.sqlite3'}"
    engine = sa.create_engine(url)
    upgrade_engine(engine)
    engine.dispose()
    database = Database(url)
    settings = Settings(database_url=url, secret_key="browser-test-secret", master_key=Fernet.generate_key().decode(),
                        instance_path=folder, dev_login=True, sandbox=True, testing=True,
                        sandbox_port=_free_port())
    app = create_app(settings, database=database)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    app_url = f"http://127.0.0.1:{server.server_port}"
    mode = start_sandbox_mode(database, settings, app_url=app_url, users=20, seed=7)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        assert len(mode.corp_ids) == 1 and "failed" not in mode.synced[mode.corp_ids[0]], mode.synced
        yield LiveServer(url=app_url, app=app, database=database, seed=_seed(database, mode.corp_ids[0]),
                         sandbox=mode)
    finally:
        server.shutdown()
        thread.join(5)
        mode.stop()
        database.dispose()


@pytest.fixture(params=list(VIEWPORTS))
def viewport(request) -> str:
    return request.param


@pytest.fixture
def page_for(browser, live_server):
    """`page_for(viewport, **context_options)` → a page in a fresh context (no cookies), closed afterwards."""
    contexts = []

    def make(name: str = "mobile", **options):
        size = VIEWPORTS[name]
        mobile = name == "mobile"
        context = browser.new_context(viewport=size, is_mobile=mobile, has_touch=mobile, locale="zh-CN",
                                      timezone_id="Asia/Shanghai", base_url=live_server.url,
                                      service_workers="block", **options)
        context.set_default_timeout(8000)
        contexts.append(context)
        page = context.new_page()
        # The suite runs offline: anything that tries to leave the loopback server is a bug.
        outside: list[str] = []
        page.on("request", lambda req: outside.append(req.url)
                if not req.url.startswith((live_server.url, "data:", "about:")) else None)
        page.outside_requests = outside
        return page

    yield make
    for context in contexts:
        context.close()


def shot(page, viewport: str, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(SCREENSHOTS / f"{viewport}-{name}.png"), full_page=True)


def pick_employee(page, person: Person) -> None:
    """Sign in through the sandbox picker (the real code exchange against the sandbox) as `person`."""
    page.locator(f"#picker-list button[data-userid='{person.userid}']").click()


def sign_in_directly(page, live_server: LiveServer, userid: str) -> None:
    """For people who exist only in our database (seeded, not in the sandbox): the development sign-in."""
    resp = page.request.post("/api/v1/auth/dev", data={"corpId": live_server.seed.corp_id, "userid": userid})
    assert resp.ok, resp.text()
