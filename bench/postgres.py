"""PostgreSQL for `make bench`: a throwaway cluster, or a server you name, and a database per bench server.

    with postgres.server(url=None) as pg:             # starts a cluster in a temp folder, stops and removes it after
        url = postgres.create_database(pg.admin_url, "keyfob_bench_base")

The cluster is the test suite's (tests/pg_cluster.py: the machine's PostgreSQL 15 from `/usr/lib/postgresql/15/bin`
or PG_BIN, run as `nobody` under root, data directory and unix socket in one temporary folder, no TCP, durability
off), with the bench's own changes to its settings below.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from server import ROOT

sys.path.insert(0, str(ROOT))  # the repository, for tests/pg_cluster.py
from tests.pg_cluster import DEFAULT_BIN, Cluster  # noqa: E402

# Over the tests' settings: no autovacuum run in the middle of a measurement (the bench runs VACUUM ANALYZE itself
# after seeding), and the server's time zone UTC, as a server usually has, rather than the tests' far-off one.
SETTINGS = {"autovacuum": "off", "timezone": "'UTC'"}


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
    cluster = Cluster(bin_dir(), SETTINGS)
    try:
        admin_url = cluster.start()
        yield PostgresServer(admin_url, cluster.postmaster_pid(),
                             f"PostgreSQL {bin_dir().parent.name}, a throwaway cluster (tests/pg_cluster.py) on a "
                             f"unix socket in {cluster.folder}")
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
