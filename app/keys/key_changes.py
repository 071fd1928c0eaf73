"""Telling every worker that a key, its owner or a verifier credential changed in a way a cached lookup would miss.

Which changes count is decided here, once, from what the lookups read (LOOKUP_COLUMNS): an ORM flush that updates one
of those columns or deletes such a row, or a bulk UPDATE/DELETE of those tables through the session. The service code
needs no call of its own, so a new way to change a key cannot forget to tell the workers. A change:

- on PostgreSQL, sends `NOTIFY keyfob_key_changes` inside its own transaction, so other hosts hear of it when, and
  only when, it commits;
- after the commit, bumps the host's generation (app/keys/lookup_cache.Generation), before the request answers.

ChangeListener is the other hosts' side: a thread per worker process holding a LISTEN connection, which bumps the
host's generation on every notification and whenever it had to reconnect (notifications may have been lost then).
Writes outside the session (the usage buffer's counts, a quota's decrement) touch no column a lookup keeps but the
quota, which verify() takes from the database every time. A change made in the database by other means (psql) is
seen within VERIFY_CACHE_SECONDS.
"""

from __future__ import annotations

import logging
import re
import threading

from sqlalchemy import event, inspect
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import TextClause

from app.accounts.models import User
from app.keys.lookup_cache import Generation
from app.keys.models import ApiKey, Verifier
from app.process_thread import ProcessThread

log = logging.getLogger(__name__)

CHANNEL = "keyfob_key_changes"
LISTENER_NAME = "keyfob-key-changes"  # the listening connection's application_name, to find it in pg_stat_activity
# What the cached lookups read (app/keys/verification.py, app/keys/verifiers.py): a change to any of these columns,
# or a deleted row, may turn an accept into a refusal or change what a verification answers.
LOOKUP_COLUMNS = {
    ApiKey: frozenset({"user_id", "name", "display_start", "scope_text", "allowed_ip_text", "expires_at",
                       "rate_limit", "remaining_uses", "secret_hash", "previous_secret_hash",
                       "previous_secret_expires_at", "revoked_at", "disabled", "suspended_until"}),
    User: frozenset({"is_active", "email"}),
    Verifier: frozenset({"name", "secret_hash", "revoked_at"}),
}
_TABLES = frozenset(model.__table__.name for model in LOOKUP_COLUMNS)
_WRITES_A_LOOKUP_TABLE = re.compile(rf'\s*(?:update|delete\s+from)\s+"?(?:{"|".join(sorted(_TABLES))})\b', re.I)
_CHANGED = "keyfob_key_changed"     # session.info: this transaction changed what a lookup reads
_NOTIFIED = "keyfob_key_notified"   # session.info: and has sent its NOTIFY
RECONNECT_DELAYS = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0)


def _is_lookup_change(instance: object, deleted: bool) -> bool:
    columns = LOOKUP_COLUMNS.get(type(instance))
    if columns is None:
        return False
    if deleted:
        return True
    state = inspect(instance)
    return any(state.attrs[name].history.has_changes() for name in columns)


def _changed(session: Session) -> None:
    """Note a change in the session's transaction, and on PostgreSQL queue its notification in that transaction."""
    session.info[_CHANGED] = True
    if session.info.get(_NOTIFIED):
        return
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"NOTIFY {CHANNEL}")
        session.info[_NOTIFIED] = True


def _after_flush(session: Session, _context) -> None:
    # After the flush, `dirty` and `deleted` still hold what it wrote, with each attribute's history.
    if any(_is_lookup_change(obj, False) for obj in session.dirty) or any(
            _is_lookup_change(obj, True) for obj in session.deleted):
        _changed(session)


def _on_execute(state) -> None:
    statement = state.statement
    if state.is_update or state.is_delete:
        changes = getattr(statement, "table", None) is not None and statement.table.name in _TABLES
    else:  # SQL written out (session.execute(text(...))), as an operator's script might
        changes = isinstance(statement, TextClause) and _WRITES_A_LOOKUP_TABLE.match(statement.text) is not None
    if changes:
        _changed(state.session)


def _after_commit(session: Session) -> None:
    if session.info.pop(_CHANGED, False):
        Generation.current().bump()


def _after_transaction_end(session: Session, transaction) -> None:
    if transaction.parent is None:  # the outermost transaction: committed (bumped above) or rolled back
        session.info.pop(_CHANGED, None)
        session.info.pop(_NOTIFIED, None)


def watch(session_class: type[Session]) -> None:
    """Listen to every session of this class (Flask-SQLAlchemy's: every app's); idempotent."""
    hooks = (("after_flush", _after_flush), ("do_orm_execute", _on_execute), ("after_commit", _after_commit),
             ("after_transaction_end", _after_transaction_end))
    for name, hook in hooks:
        if not event.contains(session_class, name, hook):
            event.listen(session_class, name, hook)


class ChangeListener:
    """A daemon thread holding `LISTEN keyfob_key_changes` on a connection of its own (PostgreSQL), bumping the
    host's generation for every notification and after every reconnect. Started by the first cached lookup in a
    process (a thread does not survive gunicorn's fork, so it is started after it), stopped with the app."""

    def __init__(self, connect_args: tuple[list, dict], bump) -> None:
        self._connect_args = connect_args
        self._bump = bump
        self._thread = ProcessThread(LISTENER_NAME, self._run)
        self.connected = threading.Event()

    @classmethod
    def for_engine(cls, engine, connect_args: dict, bump) -> ChangeListener:
        """A listener connecting as the engine does (its URL, and the connect_args it was made with), on a
        connection outside its pool: the listener holds it for as long as the process lives."""
        args, params = engine.dialect.create_connect_args(engine.url)
        return cls((list(args), {**params, **connect_args}), bump)

    def ensure_started(self) -> None:
        self._thread.ensure_started()

    def stop(self) -> None:
        """Ask the thread to end; it does within a second, after its current wait (nobody waits for it)."""
        self._thread.stop()

    def _connect(self):
        import psycopg

        args, params = self._connect_args
        return psycopg.connect(*args, **params, autocommit=True, application_name=LISTENER_NAME)

    def _run(self, stop: threading.Event) -> None:
        attempt = 0
        while not stop.is_set():
            try:
                with self._connect() as connection:
                    connection.execute(f"LISTEN {CHANNEL}")
                    # Whatever changed while no connection listened was not heard: read everything afresh.
                    self._heard(stop)
                    self.connected.set()
                    attempt = 0
                    while not stop.is_set():
                        for _ in connection.notifies(timeout=1.0):
                            self._heard(stop)
            except Exception as error:  # any failure: the database restarted, the connection was killed, ...
                self.connected.clear()
                if stop.is_set():
                    return
                self._heard(stop)
                delay = RECONNECT_DELAYS[min(attempt, len(RECONNECT_DELAYS) - 1)]
                attempt += 1
                log.warning("keyfob: lost the key-change notifications (%s); reconnecting in %.1f s",
                            type(error).__name__, delay)
                stop.wait(delay)

    def _heard(self, stop: threading.Event) -> None:
        try:
            self._bump()
        except ValueError:  # the app has closed and let go of its generation's map: nobody is left to tell
            stop.set()
