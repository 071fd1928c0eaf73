"""Helpers for the tests that run Keyfob in real processes: the `flask` CLI and gunicorn, in a bare environment."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from tests.support import database_url, on_postgres

ROOT = Path(__file__).resolve().parents[2]  # the repository: where `wsgi` and gunicorn.conf.py are
BIN = Path(sys.executable).parent


def clean_env(tmp_path, **values) -> dict:
    """A bare environment: nothing from the developer's shell or a .env file leaks in. The database is the default
    SQLite file in the instance folder, or in the PostgreSQL run that folder's PostgreSQL database."""
    database = {"DATABASE_URL": database_url(tmp_path / "instance")} if on_postgres() else {}
    return {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "KEYFOB_INSTANCE_PATH": str(tmp_path / "instance"),
            **database, **values}


def flask(tmp_path, *args, **env):
    """`flask --app wsgi <args>` in the repository, with clean_env(tmp_path, **env)."""
    return subprocess.run([str(BIN / "flask"), "--app", "wsgi", *args], cwd=ROOT, env=clean_env(tmp_path, **env),
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def worker_pids(master: int) -> list[int]:
    """The gunicorn master's children: its workers."""
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return [int(pid) for pid in children]
