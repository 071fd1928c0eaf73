"""Fixtures the functional tests share (the suite-wide ones, `apps`, `app`, `client` and `auth`, are in
tests/conftest.py)."""

from __future__ import annotations

import pytest

from tests.functional.route_matrix import build_world
from tests.support import close_app


@pytest.fixture(scope="module")
def world(tmp_path_factory, request):
    """The route matrix's world (an admin, an attacker, a victim and their keys: route_matrix.build_world), one per
    module that asks for it. A module that needs another kind of world defines its own `world`."""
    world = build_world(tmp_path_factory.mktemp(request.module.__name__.rpartition(".")[2]))
    yield world
    close_app(world.app)
