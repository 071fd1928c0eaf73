"""Database plumbing shared by every model: UTC timestamps, SQLite tuning, and telling an outage from a bug."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from flask import Flask
from sqlalchemy import DateTime, Engine, event, make_url, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, scoped_session
from sqlalchemy.types import TypeDecorator

SQLITE_BUSY_TIMEOUT_MS = 5000
# PostgreSQL's counterpart: a statement waits this long for a row or table lock another session holds, then fails
# (an outage: 503) instead of holding its request, and its worker, for as long as the other transaction lasts.
POSTGRES_LOCK_TIMEOUT_MS = 5000
# The largest id an Integer primary key holds on every backend: 32 bits on PostgreSQL (SQLite's are 64). A larger
# id (from a URL, a form or a cursor) names no row, and must not reach the driver, which would fail on it.
MAX_ID = 2**31 - 1
# How long opening a PostgreSQL connection may take: a server that is unreachable without refusing (a dropped route,
# a firewall, a host that hangs) must give a 503 within seconds, not hold the worker for the system's TCP timeout
# (minutes). A connect_timeout in DATABASE_URL wins.
POSTGRES_CONNECT_TIMEOUT_SECONDS = 5


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend (SQLite stores no zone, so we put it back)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; Keyfob stores aware UTC datetimes only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def upsert_insert(dialect) -> Callable:
    """The insert() of this dialect that has ON CONFLICT: PostgreSQL's or SQLite's, the two databases Keyfob runs
    on."""
    return postgresql.insert if dialect.name == "postgresql" else sqlite.insert


def engine_options(database_url: str) -> dict:
    """Engine options per backend: pre-ping so a restarted database is picked up again without a restart, and a
    bounded wait for locks."""
    if database_url.startswith("sqlite"):
        return {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}}
    if database_url.startswith("postgresql"):
        # Added to any options the URL gives (?options=...), which connect_args would otherwise replace.
        given = make_url(database_url).query.get("options", "")
        given = given if isinstance(given, str) else " ".join(given)
        options = f"{given} -c lock_timeout={POSTGRES_LOCK_TIMEOUT_MS}".strip()
        connect_args = {"options": options}
        if "connect_timeout" not in make_url(database_url).query:
            connect_args["connect_timeout"] = POSTGRES_CONNECT_TIMEOUT_SECONDS
        return {"pool_pre_ping": True, "connect_args": connect_args}
    return {"pool_pre_ping": True}


def tune_sqlite(engine: Engine) -> None:
    """WAL lets readers run beside a writer; the busy timeout makes writers wait rather than fail at once."""
    if engine.dialect.name != "sqlite":
        return

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()


def is_outage(error: Exception) -> bool:
    """True when the error means the database cannot be reached or is locked, not that our SQL is wrong."""
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return True
    if isinstance(error, OperationalError):
        message = str(error.orig).lower()
        return any(sign in message for sign in (
            "database is locked", "unable to open database", "connection", "could not connect",
            "server closed", "terminating connection", "the database system is", "timeout",
        ))
    return False


def _or_drop_connections(session: Session, step: Callable[[], None]) -> None:
    """Run the session's rollback or close. When the database went away mid-transaction the ROLLBACK in it fails too
    (PostgreSQL: "terminating connection"): then the session's connections are dropped instead, as dead ones must
    be, so that the request can still give its answer (a 503) rather than fail again with a bare 500."""
    try:
        step()
    except SQLAlchemyError as error:
        if not is_outage(error):
            raise
        session.invalidate()


def roll_back(scoped: scoped_session) -> None:
    """Roll the request's session back, surviving a database that has gone away."""
    session = scoped()
    _or_drop_connections(session, session.rollback)


def commit(scoped: scoped_session) -> None:
    """Commit the session; when the commit fails, roll back (safely: see roll_back) and raise the commit's error,
    the one worth answering."""
    try:
        scoped.commit()
    except Exception:
        roll_back(scoped)
        raise


def end_sessions_safely(app: Flask, scoped: scoped_session) -> None:
    """Close the request's session at teardown, surviving a database that has gone away, ahead of Flask-SQLAlchemy's
    own close (which would then find nothing to do)."""

    @app.teardown_appcontext
    def _end_session(_error) -> None:
        if not scoped.registry.has():
            return
        session = scoped.registry()
        _or_drop_connections(session, session.close)
        scoped.registry.clear()


def ping(session) -> None:
    """One round trip to the database; raises when it is unreachable."""
    session.execute(text("SELECT 1"))
