"""The data a bench server serves: a migrated database, the bench user and key, dashboard users, filler keys.

Users and the keys the bench sends are made by the real CLI (`flask --app wsgi users/keys create`). The rest of the
table is bulk-inserted: filler users each with FILLER_KEYS_PER_USER keys, and the dashboard users' keys, until
api_keys has the ServerSpec's total. Every bulk key is a well-formed key (prefix, 27 random base62 characters,
checksum) stored as the app stores one: its HMAC-SHA256 digest under the run's KEY_PEPPER and its display start,
so the unique index on secret_hash holds a million real digests. Their states are mixed like a real table's (see
key_state). SQLite gets one executemany in one transaction, PostgreSQL one COPY per table, then VACUUM ANALYZE.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import os
import re
import secrets
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode, urlsplit

from scenarios import ServerSpec
from server import ROOT, BenchError

sys.path.insert(0, str(ROOT))
from app.keys import tokens  # noqa: E402  (pure functions: the key format)

BENCH_EMAIL = "bench@example.com"
FILLER_KEYS_PER_USER = 100
SESSION_COOKIE = "keyfob_session"  # app/config.py's SESSION_COOKIE_NAME
KEY_PREFIX = "kf"  # the default KEY_PREFIX; bench_environment does not change it
BENCH_SCOPE = "read:data"  # the bench key's scope: what the verification scenarios ask for
# The forward-auth rules of the bench's servers: nginx's protected location asks about GET /healthz.
FORWARD_AUTH_RULES = f"GET,HEAD    /healthz    {BENCH_SCOPE}\n"

KEY_COLUMNS = ("user_id", "name", "description", "scopes", "secret_hash", "display_start", "created_at",
               "expires_at", "revoked_at", "revoked_reason", "disabled", "usage_count", "allowed_ips")
USER_COLUMNS = ("email", "password_hash", "is_admin", "is_active", "session_nonce", "created_at")


@dataclass
class Fixture:
    """One bench server's database and what the bench sends to it."""

    spec: ServerSpec
    database: str  # "sqlite" or "postgres"
    database_url: str
    folder: Path
    env: dict[str, str]
    valid_key: str
    key_id: int
    verifier: str | None = None  # a verifier credential (kfv_...), for the verification API and nginx
    passwords: dict[str, str] = field(default_factory=dict)  # dashboard user label: password
    sessions: dict[str, str] = field(default_factory=dict)  # dashboard user label: session cookie value

    def headers(self, kind: str | None) -> dict[str, str]:
        """The request headers for a scenario's credential (see scenarios.Scenario.credential)."""
        if kind is None:
            return {}
        if kind == "valid":
            return {"Authorization": f"Bearer {self.valid_key}"}
        if kind == "bad_checksum":
            return {"Authorization": f"Bearer {bad_checksum(self.valid_key)}"}
        if kind == "verifier":
            return {"Authorization": f"Bearer {self.verifier}", "Content-Type": "application/json"}
        if kind.startswith("session:"):
            return {"Cookie": f"{SESSION_COOKIE}={self.sessions[kind.removeprefix('session:')]}"}
        raise ValueError(f"unknown credential kind {kind!r}")

    def body(self, kind: str | None) -> str | None:
        """The request body for a scenario's credential: the verifier's question about the valid key, or none."""
        return json.dumps({"key": self.valid_key, "scopes": [BENCH_SCOPE]}) if kind == "verifier" else None


def bad_checksum(key: str) -> str:
    """The same key with its last checksum character changed: well formed, right length, wrong checksum."""
    last = key[-1]
    return key[:-1] + ("A" if last != "A" else "B")


def dashboard_email(label: str) -> str:
    return f"{label}@example.com"


def bench_environment(folder: Path, workers: int, bind: str, database_url: str,
                      secret_key: str, key_pepper: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if name != "GUNICORN_CMD_ARGS"}
    metrics = folder / "metrics"
    metrics.mkdir(parents=True, exist_ok=True)
    rules = folder / "forward-auth.rules"
    rules.write_text(FORWARD_AUTH_RULES)
    env.update({
        "KEYFOB_ENV": "production",
        "SECRET_KEY": secret_key,
        "KEY_PEPPER": key_pepper,
        "DATABASE_URL": database_url,
        "KEYFOB_INSTANCE_PATH": str(folder / "instance"),
        "KEYFOB_BIND": bind,
        "WEB_CONCURRENCY": str(workers),
        "PROMETHEUS_MULTIPROC_DIR": str(metrics),  # one folder per server: gunicorn empties it at start
        "PYTHONUNBUFFERED": "1",
        # As docs/proxies/nginx.conf says Keyfob runs behind it (every server, so all scenarios see the same app).
        "TRUSTED_PROXIES": "1",
        "FORWARD_AUTH_RULES": str(rules),
    })
    return env


def flask_cli(env: dict[str, str], *args: str, extra_env: dict[str, str] | None = None) -> str:
    """Run `flask --app wsgi ARGS` with this interpreter; returns stdout, stops the bench on failure."""
    command = [sys.executable, "-m", "flask", "--app", "wsgi", *args]
    result = subprocess.run(  # noqa: S603 -- a fixed argv of our own, no shell
        command, cwd=ROOT, env={**env, **(extra_env or {})}, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BenchError(f"`flask --app wsgi {' '.join(args)}` failed ({result.returncode}):\n"
                         f"{result.stdout}{result.stderr}")
    return result.stdout


def say(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


# -- the bulk rows -------------------------------------------------------------------------------------------------

_BASE62_BYTES = bytes(ord(tokens.ALPHABET[i % 62]) for i in range(256))


def key_digests(pepper: bytes, count: int) -> Iterator[tuple[str, str]]:
    """`count` fresh well-formed keys as (stored digest, display start). The random part comes from os.urandom
    mapped onto base62 (slightly uneven, which no index notices); about 7 µs a key, mostly the checksum and HMAC."""
    mac = hmac.new(pepper, digestmod=hashlib.sha256)
    chunk = 10_000
    for start in range(0, count, chunk):
        randoms = os.urandom(tokens.RANDOM_LENGTH * chunk).translate(_BASE62_BYTES).decode()
        for n in range(min(chunk, count - start)):
            body = f"{KEY_PREFIX}_{randoms[n * tokens.RANDOM_LENGTH:(n + 1) * tokens.RANDOM_LENGTH]}"
            token = body + tokens.checksum(body)
            digest = mac.copy()
            digest.update(token.encode())
            yield digest.hexdigest(), token[:len(KEY_PREFIX) + 1 + tokens.DISPLAY_RANDOM_CHARS]


def key_state(n: int, now: datetime) -> tuple[datetime, datetime | None, datetime | None]:
    """(created_at, expires_at, revoked_at) of the n-th bulk key of an owner: keys made over the last year, one in
    20 revoked, one in 20 expired in the last month, one in 50 expiring within two weeks, the rest valid for 30 to
    365 more days. Deterministic, so the 10-key user and the 10,000-key user have the same mix."""
    created = now - timedelta(days=n % 365, seconds=n)
    if n % 20 == 0:
        return created, created + timedelta(days=365), created + timedelta(hours=1)
    if n % 20 == 1:
        return created, now - timedelta(days=n % 30 + 1), None
    if n % 50 == 2:
        return created, now + timedelta(days=n % 14 + 1), None
    return created, now + timedelta(days=30 + n % 335), None


def key_rows(owners: list[tuple[int, int]], pepper: bytes, now: datetime) -> Iterator[tuple]:
    """Rows for KEY_COLUMNS: for each (owner id, how many keys), that many keys."""
    digests = key_digests(pepper, sum(count for _, count in owners))
    for owner_id, count in owners:
        for n in range(count):
            digest, display = next(digests)
            created, expires, revoked = key_state(n, now)
            yield (owner_id, f"service {n}", "", "read:data", digest, display, created, expires, revoked,
                   "bench" if revoked else None, False, 0, "")


def user_rows(count: int, now: datetime) -> Iterator[tuple]:
    for n in range(count):
        yield (f"filler-{n}@example.com", "!", False, True, secrets.token_urlsafe(16), now - timedelta(days=400))


# -- writing them --------------------------------------------------------------------------------------------------

def _sqlite_time(value: datetime | None) -> str | None:
    """How SQLAlchemy stores an aware UTC datetime in SQLite (app.database.UTCDateTime): naive, microseconds."""
    return None if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _sqlite_row(row: tuple) -> tuple:
    return tuple(_sqlite_time(value) if isinstance(value, datetime) else value for value in row)


class SQLiteWriter:
    def __init__(self, url: str) -> None:
        self.connection = sqlite3.connect(url.removeprefix("sqlite:///"))
        self.connection.execute("PRAGMA synchronous=OFF")

    def user_ids(self, emails: list[str] | None = None, like: str | None = None) -> list[int]:
        if like is not None:
            rows = self.connection.execute("SELECT id FROM users WHERE email LIKE ? ORDER BY id", (like,))
        else:
            rows = [self.connection.execute("SELECT id FROM users WHERE email = ?", (email,)).fetchone()
                    for email in emails or []]
        return [row[0] for row in rows]

    def insert(self, table: str, columns: tuple[str, ...], rows: Iterator[tuple]) -> None:
        marks = ", ".join("?" for _ in columns)
        with self.connection:
            self.connection.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})",  # noqa: S608
                                        (_sqlite_row(row) for row in rows))

    def finish(self) -> None:
        self.connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.connection.close()


class PostgresWriter:
    def __init__(self, url: str) -> None:
        import postgres

        self.connection = postgres.connect(url)
        # The cluster runs with synchronous_commit off; VACUUM cannot mark rows visible to all (for index-only
        # scans) until their commit is on disk, so this session's commits wait for it.
        self.connection.execute("SET synchronous_commit TO on")
        self.connection.commit()

    def user_ids(self, emails: list[str] | None = None, like: str | None = None) -> list[int]:
        with self.connection.cursor() as cursor:
            if like is not None:
                cursor.execute("SELECT id FROM users WHERE email LIKE %s ORDER BY id", (like,))
                return [row[0] for row in cursor.fetchall()]
            found = []
            for email in emails or []:
                cursor.execute("SELECT id FROM users WHERE email = %s", (email,))
                found.append(cursor.fetchone()[0])
            return found

    def insert(self, table: str, columns: tuple[str, ...], rows: Iterator[tuple]) -> None:
        with self.connection.cursor() as cursor, cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        self.connection.commit()

    def finish(self) -> None:
        self.connection.autocommit = True
        self.connection.execute("VACUUM ANALYZE")  # what autovacuum would do, now rather than during a measurement
        self.connection.execute("CHECKPOINT")
        self.connection.close()


def bulk_fill(fixture: Fixture, pepper: bytes, dashboard: dict[str, int]) -> int:
    """Add the dashboard users' keys and filler users' keys until api_keys holds spec.total_keys; returns how many
    keys were inserted."""
    writer_class = SQLiteWriter if fixture.database == "sqlite" else PostgresWriter
    writer = writer_class(fixture.database_url)
    now = datetime.now(UTC)
    existing = 1  # the bench key, made by the CLI
    filler = fixture.spec.total_keys - existing - sum(dashboard.values())
    if filler < 0:
        raise BenchError(f"{fixture.spec.name}: {fixture.spec.total_keys} keys cannot hold the dashboard users' keys")
    filler_users = max(1, -(-filler // FILLER_KEYS_PER_USER))
    writer.insert("users", USER_COLUMNS, user_rows(filler_users, now))
    filler_ids = writer.user_ids(like="filler-%")
    owners = list(zip(writer.user_ids([dashboard_email(label) for label in dashboard]), dashboard.values(),
                      strict=True))
    per_user, extra = divmod(filler, filler_users)
    owners += [(owner, per_user + (1 if n < extra else 0)) for n, owner in enumerate(filler_ids)]
    writer.insert("api_keys", KEY_COLUMNS, key_rows(owners, pepper, now))
    writer.finish()
    return sum(count for _, count in owners)


# -- a whole server's data -----------------------------------------------------------------------------------------

def prepare(spec: ServerSpec, database: str, database_url: str, folder: Path, env: dict[str, str],
            dashboard_labels: list[str], verifier: bool = False) -> Fixture:
    """Migrate, make the bench user and key, the dashboard users and (if `verifier`) a verifier credential with the
    CLI, then bulk-fill the table."""
    started = time.monotonic()
    flask_cli(env, "db", "upgrade")
    flask_cli(env, "users", "create", BENCH_EMAIL, extra_env={"KEYFOB_PASSWORD": secrets.token_urlsafe(24)})
    output = flask_cli(env, "keys", "create", BENCH_EMAIL, "--name", "bench", "--expires-in-days", "30",
                       "--scope", BENCH_SCOPE)
    valid_key = output.strip().splitlines()[-1].strip()
    passwords = {}
    for label in dashboard_labels:
        passwords[label] = secrets.token_urlsafe(24)
        flask_cli(env, "users", "create", dashboard_email(label), extra_env={"KEYFOB_PASSWORD": passwords[label]})
    credential = flask_cli(env, "verifiers", "create", "bench").strip().splitlines()[-1].strip() if verifier else None
    fixture = Fixture(spec, database, database_url, folder, env, valid_key, key_id=0, verifier=credential,
                      passwords=passwords)
    say(f"{database}/{spec.name}: migrated, users and key made by the CLI in {time.monotonic() - started:.1f} s")
    started = time.monotonic()
    dashboard = {label: spec.dashboard_users[label] for label in dashboard_labels}
    inserted = bulk_fill(fixture, env["KEY_PEPPER"].encode(), dashboard)
    say(f"{database}/{spec.name}: {inserted:,} keys bulk-inserted in {time.monotonic() - started:.1f} s")
    fixture.key_id = scalar(database_url, "SELECT id FROM api_keys WHERE name = 'bench'")
    return fixture


def scalar(database_url: str, sql: str, **params) -> int:
    """One value from the database (the bench's own reads: ids, counts after the run)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return connection.execute(text(sql), params).scalar_one()
    finally:
        engine.dispose()


# -- signing in ----------------------------------------------------------------------------------------------------

def _cookie(set_cookie_headers: list[str] | None) -> str | None:
    for header in set_cookie_headers or []:
        name, _, rest = header.partition("=")
        if name.strip() == SESSION_COOKIE:
            return rest.split(";", 1)[0]
    return None


def http_request(base_url: str, method: str, path: str, cookie: str | None,
                 form: dict | None = None) -> tuple[int, str | None, str]:
    """One request to a bench server: (status, the session cookie it set or None, the body)."""
    parts = urlsplit(base_url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    headers = {"Cookie": f"{SESSION_COOKIE}={cookie}"} if cookie else {}
    data = None
    if form is not None:
        data = urlencode(form)
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    try:
        connection.request(method, path, body=data, headers=headers)
        response = connection.getresponse()
        body = response.read().decode(errors="replace")
        return response.status, _cookie(response.headers.get_all("Set-Cookie")), body
    finally:
        connection.close()


def sign_in(request: Callable[..., tuple[int, str | None, str]], email: str, password: str) -> str:
    """Log in through the real form (CSRF token and all); the session cookie a browser would then hold, after its
    first visit to the key list (which stores the page's CSRF token in the session). `request` is http_request
    bound to a server's URL, or the same over WSGI (bench/wsgi_cost.py)."""
    status, cookie, page = request("GET", "/login", None)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page)
    if status != 200 or cookie is None or token is None:
        raise BenchError(f"GET /login answered {status} without a session cookie or a CSRF token")
    status, cookie, _ = request("POST", "/login", cookie,
                                {"csrf_token": token.group(1), "email": email, "password": password, "next": ""})
    if status != 302 or cookie is None:
        raise BenchError(f"logging in as {email} answered {status}")
    status, newer, _ = request("GET", "/keys/", cookie)
    if status != 200:
        raise BenchError(f"GET /keys/ as {email} answered {status}")
    return newer or cookie
