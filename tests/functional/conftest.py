"""Fixtures the functional tests share (the suite-wide ones, `app`, `client` and `auth`, are in tests/conftest.py)."""

from __future__ import annotations

import pytest

from tests.functional.keyhelpers import AppFactory


@pytest.fixture
def apps(tmp_path):
    """Builds apps on fresh migrated databases, with only the flushes a test asks for (`AppFactory`), and closes
    every one of them at the end of the test."""
    factory = AppFactory(tmp_path)
    yield factory
    factory.close()
