"""No API key's plaintext is ever kept: not in any table of any test database, not in any log. A pytest plugin.

Keyfob shows a key's plaintext once, in the answer to create or rotate, and stores only its HMAC. This plugin checks
that across the whole test suite, whatever each test does:

1. Which secrets. `app.keys.tokens.generate`, the one function that mints a key, is wrapped for the whole session,
   so every plaintext made in the pytest process (through the service, the dashboard, the API, the CLI runner or a
   test's own call) is recorded. Keys minted in child processes (gunicorn workers, CLI subprocesses) are never seen
   being made, so text is also searched by shape: `<prefix>_` and 33 base62 characters whose last 6 are the right
   checksum. A leak is either, so a key we know of is found under any prefix, and any well-formed key at all.
2. Per test. Right after a test's body runs, before its fixtures are torn down (a PostgreSQL test database is
   dropped then), every database any app of that test used (any app that pushed an app context) is read in full,
   every table and row as text, and so is what the test printed or logged (pytest's captured stdout, stderr and
   log records, of setup and call). A hit fails the test at teardown, naming the table or stream.
3. At the end of the session, every file under pytest's base temporary directory is read as bytes: gunicorn's
   logs, and the SQLite files themselves with their journals and free pages.

Enable it for the suite with `pytest_plugins = ["tests.secret_leaks"]` in tests/conftest.py, or `-p
tests.secret_leaks`. tests/functional/every_route/test_no_secret_leaks.py uses the same functions directly for its
own end-to-end check, and proves the search finds a planted key.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import flask
import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from app.keys import tokens

MINTED: set[str] = set()
_BY_TAIL: dict[str, str] = {}  # the 33 characters after the underscore -> the whole key
TAIL = tokens.RANDOM_LENGTH + tokens.CHECKSUM_LENGTH
# An underscore, then exactly 33 base62 characters not followed by another: where any key's tail would be.
CANDIDATE = re.compile(rf"_([0-9A-Za-z]{{{TAIL}}})(?![0-9A-Za-z])")
CANDIDATE_BYTES = re.compile(CANDIDATE.pattern.encode())
PREFIX = re.compile(r"[a-z][a-z0-9]{0,15}\Z")
_original_generate = tokens.generate


def remember(token: str) -> str:
    MINTED.add(token)
    _BY_TAIL[token.rsplit("_", 1)[1]] = token
    return token


def _recording_generate(prefix: str) -> str:
    return remember(_original_generate(prefix))


def install() -> None:
    """Record every key minted from now on in this process (idempotent)."""
    tokens.generate = _recording_generate


def uninstall() -> None:
    tokens.generate = _original_generate


def find_keys(text: str) -> list[str]:
    """The keys in `text`: minted ones we know of, and any well-formed key (right checksum) under any prefix."""
    found = []
    for match in CANDIDATE.finditer(text):
        tail = match.group(1)
        known = _BY_TAIL.get(tail)
        before = text[max(0, match.start() - 16):match.start()]
        if known is not None and text.endswith(known.rsplit("_", 1)[0], 0, match.start()):
            found.append(known)
            continue
        # Any prefix, 1 to 16 lower-case letters and digits: a wrong one passes the 36-bit checksum by chance
        # about once in 3 billion tries, so trying all 16 finds no key where there is none.
        for length in range(1, len(before) + 1):
            prefix = before[-length:]
            if not PREFIX.match(prefix):
                continue
            body = f"{prefix}_{tail[:tokens.RANDOM_LENGTH]}"
            if tokens.checksum(body) == tail[tokens.RANDOM_LENGTH:]:
                found.append(body + tail[tokens.RANDOM_LENGTH:])
                break
    return found


def find_keys_in_bytes(data: bytes) -> list[str]:
    """find_keys over raw bytes (a database file, a log): only the stretches around candidates are decoded."""
    found = []
    for match in CANDIDATE_BYTES.finditer(data):
        window = data[max(0, match.start() - 16):match.end()].decode("ascii", "replace")
        found.extend(find_keys(window))
    return found


# -- reading databases -----------------------------------------------------------------------------------------------

def _readable_url(url: str) -> sa.URL | None:
    """The URL to read the database by without changing it: SQLite opened read-only (never created)."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = parsed.database
        if not path or path == ":memory:" or not Path(path).exists():
            return None
        return sa.make_url(f"sqlite:///file:{Path(path).resolve()}?mode=ro&uri=true")
    return parsed


def dump_database(url: str) -> Iterable[tuple[str, str]]:
    """(table, row as text) for every row of every table of the database at `url`."""
    readable = _readable_url(url)
    if readable is None:
        return
    # A server that never answers (a test's hung database host) is reported unreadable in seconds, not minutes.
    waiting = {"connect_timeout": 5} if readable.get_backend_name() == "postgresql" else {}
    engine = sa.create_engine(readable, poolclass=NullPool, connect_args=waiting)
    try:
        with engine.connect() as connection:
            metadata = sa.MetaData()
            metadata.reflect(connection)
            for table in metadata.sorted_tables:
                for row in connection.execute(table.select()):
                    yield table.name, " ".join(str(value) for value in row if value is not None)
    finally:
        engine.dispose()


def leaks_in_databases(urls: Iterable[str]) -> tuple[list[str], list[str]]:
    """(leaks as "table: key", databases that could not be read) over these databases."""
    leaks, unread = [], []
    for url in urls:
        try:
            for table, text in dump_database(url):
                leaks.extend(f"{table}: {key}" for key in find_keys(text))
        except sa.exc.SQLAlchemyError as error:  # a test that broke or removed its database on purpose
            unread.append(f"{sa.make_url(url).render_as_string(hide_password=True)}: {error.__class__.__name__}")
    return leaks, unread


def leaks_in_files(folder: Path) -> list[str]:
    leaks = []
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.is_symlink():
            try:
                data = path.read_bytes()
            except OSError:
                continue
            leaks.extend(f"{path}: {key}" for key in find_keys_in_bytes(data))
    return leaks


# -- the plugin ------------------------------------------------------------------------------------------------------

class _Tracker:
    def __init__(self) -> None:
        self.urls: dict[str, None] = {}  # the databases of apps that pushed a context during the current test
        self.unread: list[str] = []
        self.session_leaks: list[str] = []
        self.basetemp: Path | None = None

    def app_pushed(self, app, **_extra) -> None:
        url = app.config.get("SQLALCHEMY_DATABASE_URI")
        if url:
            self.urls[url] = None


_tracker = _Tracker()


def pytest_configure(config) -> None:
    install()
    flask.appcontext_pushed.connect(_tracker.app_pushed, weak=False)


def pytest_unconfigure(config) -> None:
    flask.appcontext_pushed.disconnect(_tracker.app_pushed)
    uninstall()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    _tracker.urls.clear()
    return (yield)


@pytest.fixture(scope="session", autouse=True)
def _secret_leaks_basetemp(tmp_path_factory):
    _tracker.basetemp = tmp_path_factory.getbasetemp()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    # Before the fixtures go (and a PostgreSQL database with them): the databases and the captured output.
    leaks, unread = leaks_in_databases(list(_tracker.urls))
    _tracker.unread.extend(f"{item.nodeid}: {name}" for name in unread)
    for when, stream, text in _captured(item):
        leaks.extend(f"captured {stream} ({when}): {key}" for key in find_keys(text))
    result = yield
    if leaks:
        raise AssertionError("an API key's plaintext was kept:\n  " + "\n  ".join(sorted(set(leaks))))
    return result


def _captured(item):
    """(phase, stream, text) of what pytest captured so far: stdout, stderr and log records of setup and call."""
    return getattr(item, "_report_sections", [])


def pytest_sessionfinish(session) -> None:
    if _tracker.basetemp is not None and _tracker.basetemp.exists():
        _tracker.session_leaks = leaks_in_files(_tracker.basetemp)
        if _tracker.session_leaks:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter) -> None:
    if _tracker.session_leaks:
        terminalreporter.section("API key plaintext found in the tests' files", red=True)
        for leak in sorted(set(_tracker.session_leaks)):
            terminalreporter.line(leak)
    terminalreporter.line(f"secret leaks: {len(MINTED)} keys minted in-process; every test database, captured "
                          f"output and temporary file searched"
                          + (f"; {len(_tracker.unread)} databases unreadable (broken on purpose)"
                             if _tracker.unread else ""))
