"""The checked-in migrations build exactly the models' schema, so the two can never drift apart."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade

from app.extensions import db
from tests.support import sqlite_only


def schema_differences(app) -> list:
    with app.app_context(), db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return compare_metadata(context, db.metadata)


def test_migrations_match_the_models(app):
    # `app` was built by running every migration (tests.support.make_app).
    assert schema_differences(app) == []


def test_migrations_go_down_and_up_again(app):
    with app.app_context():
        downgrade(revision="base")
        assert sa.inspect(db.engine).get_table_names() == ["alembic_version"]
        upgrade()
        assert "users" in sa.inspect(db.engine).get_table_names()
    assert schema_differences(app) == []


def test_flask_db_check_agrees(runner):
    result = runner.invoke(args=["db", "check"])
    assert result.exit_code == 0, result.output


@sqlite_only("WAL, the busy timeout and foreign keys are SQLite's own settings")
def test_sqlite_is_tuned_for_concurrent_use(app):
    with app.app_context(), db.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 5000
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
