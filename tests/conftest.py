"""Fixtures, flaskr style: `app` on a temporary database, `client`, `runner`, and an `auth` helper."""

from __future__ import annotations

import pytest

from app.extensions import db
from tests.support import PASSWORD, AuthActions, make_app

# Every key plaintext the suite makes is searched for in every database, log and temporary file it leaves.
pytest_plugins = ["tests.secret_leaks"]


@pytest.fixture
def app(tmp_path):
    app = make_app(tmp_path)
    yield app
    app.extensions["keyfob.usage"].stop()
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def auth(client):
    return AuthActions(client)


@pytest.fixture
def user(app):
    """An existing account: ada@example.com with PASSWORD."""
    from app.accounts import service

    with app.app_context():
        return service.create_user("ada@example.com", PASSWORD).id
