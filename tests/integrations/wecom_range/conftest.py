"""A WeCom sandbox corp (seed 11, 40 people) per test, served over real HTTP, with the app bound to it: for
the tests of visible ranges (subtrees, named people, tags) and the events that change them."""

from __future__ import annotations

import pytest
import requests

from integrations.sandbox import SandboxServer
from integrations.sandbox.wecom_api import create_wecom_blueprint
from integrations.sandbox.wecom_state import WeComWorld
from tests.integrations import wecom_binding
from tests.integrations.wecom_range import seed11


@pytest.fixture
def world():
    # Per test: renames, tags and range changes must not leak into the next test.
    return WeComWorld(seed=11, users=40)


@pytest.fixture
def server(world):
    with SandboxServer(extra_blueprints=(create_wecom_blueprint(world),)) as srv:
        yield srv


@pytest.fixture
def sbx(world):
    return world.app()


@pytest.fixture
def http():
    s = requests.Session()
    s.trust_env = False
    yield s
    s.close()


@pytest.fixture
def wsettings(settings, server):
    return wecom_binding.wecom_settings(settings, server)


@pytest.fixture
def corp_pk(database, wsettings, sbx):
    return wecom_binding.bind(database, wsettings, sbx)


@pytest.fixture
def tag_range(http, server, sbx):
    """The app sees one tag: two people from different departments and the 华北大区 subtree (seed11)."""
    tagid = wecom_binding.put_tag(http, server, sbx, seed11.PEOPLE, [seed11.TAG_DEPT])["tag"]["tagid"]
    wecom_binding.set_range(http, server, sbx, tags=[tagid])
    return tagid
