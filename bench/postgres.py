"""PostgreSQL for `make bench`: a throwaway cluster, or a server you name, and a database per bench server.

    with postgres.server(url=None) as admin_url:      # starts a cluster in a temp folder, stops and removes it after
        url = postgres.create_database(admin_url, "keyfob_bench_base")

The cluster runs with the machine's PostgreSQL 15 (`/usr/lib/postgresql/15/bin`, or PG_BIN); `initdb` and `pg_ctl`
refuse to run as root, so under root they run as `nobody` (or PG_USER). Data directory and unix socket live in one
temporary folder, no TCP. The test suite's helper (tests/pg_cluster.py) does the same for `make test`; once it has
landed, `_Cluster` here can be replaced by it (the bench only needs start() -> URL and remove()).

Durability is off (fsync, full_page_writes, synchronous_commit), as in the tests' cluster: the data lives minutes,
and the measured requests only read (the usage buffer writes once a second per worker).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

DEFAULT_BIN = "/usr/lib/postgresql/15/bin"
SUPERUSER = "keyfob"
SETTINGS = {
    "listen_addresses": "''",
    "fsync": "off",
    "full_page_writes": "off",
    "synchronous_commit": "off",
    "max_connections": "200",
    # No autovacuum run in the middle of a measurement: the bench runs VACUUM ANALYZE itself after seeding.
    "autovacuum": "off",
}


class PostgresUnavailable(Exception):
    """No PostgreSQL to bench against; the message says why and what to install."""


def bin_dir() -> Path:
    return Path(os.environ.get("PG_BIN", DEFAULT_BIN))


def check_available(url: str | None) -> None:
    """Raise PostgresUnavailable when the PostgreSQL phase cannot run on this machine."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise PostgresUnavailable("psycopg is not installed in this Python: pip install -e '.[postgres]'") from None
    if url is None and not all((bin_dir() / program).is_file() for program in ("initdb", "pg_ctl", "postgres")):
        raise PostgresUnavailable(f"no PostgreSQL in {bin_dir()} (Debian: apt-get install postgresql-15; or set "
                                  "PG_BIN, or pass --postgres-url)")


class _Cluster:
    def __init__(self, programs: Path) -> None:
        self.programs = programs
        self.folder = Path(tempfile.mkdtemp(prefix="keyfob-bench-pg-", dir="/tmp"))  # a socket path is short
        self.data = self.folder / "data"
        self.log = self.folder / "server.log"
        self.account = None
        if os.geteuid() == 0:
            self.account = pwd.getpwnam(os.environ.get("PG_USER", "nobody"))
            os.chown(self.folder, self.account.pw_uid, self.account.pw_gid)
        self.folder.chmod(0o755)
        self.started = False

    def run(self, program: str, *args: str) -> None:
        account = {}
        if self.account is not None:
            account = {"user": self.account.pw_uid, "group": self.account.pw_gid, "extra_groups": []}
        environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8", "TZ": "UTC"}
        result = subprocess.run([str(self.programs / program), *args], cwd=self.folder, env=environment,  # noqa: S603
                                stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False, **account)
        if result.returncode != 0:
            log = self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""
            raise RuntimeError(f"{program} {' '.join(args)} failed ({result.returncode}):\n"
                               f"{result.stdout}{result.stderr}{log}")

    def start(self) -> str:
        self.run("initdb", "--pgdata", str(self.data), "--username", SUPERUSER, "--auth", "trust",
                 "--encoding", "UTF8", "--locale", "C.UTF-8", "--no-sync")
        options = " ".join(f"-c {name}={value}" for name, value in SETTINGS.items())
        options += f" -c unix_socket_directories='{self.folder}'"
        self.run("pg_ctl", "start", "--pgdata", str(self.data), "--log", str(self.log), "--wait", "--timeout", "60",
                 "--options", options)
        self.started = True
        return f"postgresql+psycopg://{SUPERUSER}@/postgres?host={self.folder}"

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def remove(self) -> None:
        if self.started:
            try:
                self.run("pg_ctl", "stop", "--pgdata", str(self.data), "--mode", "fast", "--wait", "--timeout", "60")
            except RuntimeError:
                self.run("pg_ctl", "stop", "--pgdata", str(self.data), "--mode", "immediate", "--wait")
        shutil.rmtree(self.folder, ignore_errors=True)


@dataclass(frozen=True)
class PostgresServer:
    admin_url: str  # a superuser on the `postgres` database: creates and drops the bench's databases
    postmaster_pid: int | None  # the bench's own cluster (its processes' CPU time is measured); None for --postgres-url
    description: str


@contextmanager
def server(url: str | None = None) -> Iterator[PostgresServer]:
    """The server in `url` (a superuser URL), or else a throwaway cluster, stopped and removed afterwards."""
    if url is not None:
        yield PostgresServer(url, None, "the server in --postgres-url")
        return
    cluster = _Cluster(bin_dir())
    try:
        admin_url = cluster.start()
        yield PostgresServer(admin_url, cluster.postmaster_pid(),
                             f"PostgreSQL {bin_dir().parent.name}, a throwaway cluster on a unix socket in "
                             f"{cluster.folder}")
    finally:
        cluster.remove()


def _conninfo(url: str) -> str:
    """libpq's form of an SQLAlchemy URL (postgresql+psycopg://... -> postgresql://...)."""
    from sqlalchemy.engine import make_url

    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def connect(url: str, autocommit: bool = False):
    import psycopg

    return psycopg.connect(_conninfo(url), autocommit=autocommit)


def create_database(admin_url: str, name: str) -> str:
    """A fresh, empty database `name` (dropped first if it exists); its SQLAlchemy URL."""
    with connect(admin_url, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')
    from sqlalchemy.engine import make_url

    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def drop_database(admin_url: str, name: str) -> None:
    with connect(admin_url, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
