"""Fixtures, flaskr style: `app` on a temporary database (built by `apps`), `client`, `runner`, and an `auth`
helper."""

from __future__ import annotations

import pytest

from tests.support import PASSWORD, POSTGRES, AppFactory, AuthActions

# Every key plaintext the suite makes is searched for in every database, log and temporary file it leaves.
pytest_plugins = ["tests.secret_leaks"]


def pytest_report_header(config) -> str:
    if POSTGRES is None:
        return "database: SQLite, a file per test (set TEST_DATABASE_URL to run on PostgreSQL)"
    return (f"database: PostgreSQL at {POSTGRES.describe()} (TEST_DATABASE_URL), "
            "a database per test copied from a migrated template")


# In the PostgreSQL run a test database lives as long as the folder it was made for: one in the test's tmp_path is
# dropped when the test ends, one in a tmp_path_factory folder (a module-scoped fixture's, or a world a module builds
# once and shares) when the module ends, and the template when the session ends.

@pytest.fixture(scope="session", autouse=True)
def _postgres_session():
    yield
    if POSTGRES is not None:
        POSTGRES.drop_all()


@pytest.fixture(scope="module", autouse=True)
def _postgres_module():
    if POSTGRES is None:
        yield
        return
    before = POSTGRES.names()
    yield
    POSTGRES.drop(POSTGRES.names() - before)


@pytest.fixture(autouse=True)
def _postgres_test(request):
    if POSTGRES is None or "tmp_path" not in request.fixturenames:
        yield
        return
    folder = request.getfixturevalue("tmp_path")
    yield
    POSTGRES.drop_inside(folder)


@pytest.fixture
def apps(tmp_path):
    """Builds apps for this test, each with the settings it asks for (tests.support.AppFactory), and closes every
    one of them at the end: for a test that needs other settings, or two apps on one database."""
    factory = AppFactory(tmp_path)
    yield factory
    factory.close()


@pytest.fixture
def app(apps):
    """The app most tests need: apps() with the test configuration as it is."""
    return apps()


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
