"""gunicorn serving Keyfob in production mode, with a user and a key made by the real CLI: the set-up the
multi-process tests share."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import Any

from tests.functional.processes import BIN, ROOT, clean_env, flask, free_port
from tests.support import PASSWORD


@dataclass(frozen=True)
class Served:
    base: str                    # http://127.0.0.1:<port>
    token: str                   # the key made for ada@example.com
    env: dict                    # the servers' environment, for later `flask` calls on the same database
    server: subprocess.Popen     # the gunicorn master
    log: Path                    # gunicorn's stderr (its own log and the app's)


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Message
    body: bytes
    at: float = field(default_factory=time.monotonic)  # when it came

    def json(self) -> Any:
        return json.loads(self.body or b"null")


def http(method: str, url: str, headers: dict | None = None, body: Any = None, timeout: float = 30) -> Answer:
    """One request on a connection of its own (so threads share nothing), `body` sent as JSON; an error status is
    an answer like any other."""
    headers = dict(headers or {})
    data = None
    if body is not None:
        headers["Content-Type"] = "application/json"
        data = json.dumps(body).encode()
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data, headers, method=method),
                                    timeout=timeout) as response:
            return Answer(response.status, response.headers, response.read())
    except urllib.error.HTTPError as error:
        with error:
            return Answer(error.code, error.headers, error.read())


def status_of(url: str, headers: dict | None = None) -> int:
    return http("GET", url, headers).status


def wait_until_ready(server: subprocess.Popen, base: str, log: Path) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"{base}/readyz", timeout=2):
                return
        except OSError:
            assert server.poll() is None, log.read_text(errors="replace")
            assert time.monotonic() < deadline, "gunicorn did not answer within 30 s"
            time.sleep(0.2)


@contextmanager
def gunicorn(env: dict, log: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    """Start gunicorn with gunicorn.conf.py in `env` (whose KEYFOB_BIND says where) and wait until it is ready: its
    base URL and process; stop it (SIGTERM, a graceful stop) on the way out. Its stderr goes to `log`: a pipe nobody
    reads until the end fills up (64 KiB) and then blocks every worker that logs."""
    base = f"http://{env['KEYFOB_BIND']}"
    server = start_gunicorn(env, base, log)
    try:
        yield base, server
    finally:
        server.terminate()
        server.wait(timeout=60)


@contextmanager
def gunicorn_with_a_key(tmp_path, *key_options: str, **settings: str) -> Iterator[Served]:
    """Migrate, make ada@example.com and a key (`keys create` options in `key_options`), start gunicorn (2 workers
    unless `settings` say otherwise) and wait until it is ready; stop it on the way out."""
    port = free_port()
    env = clean_env(tmp_path, **{"KEYFOB_ENV": "production", "SECRET_KEY": "k" * 48, "KEY_PEPPER": "p" * 48,
                                 "KEYFOB_BIND": f"127.0.0.1:{port}", "WEB_CONCURRENCY": "2",
                                 "KEYFOB_PASSWORD": PASSWORD, **settings})
    assert flask(tmp_path, "db", "upgrade", **env).returncode == 0
    assert flask(tmp_path, "users", "create", "ada@example.com", **env).returncode == 0
    created = flask(tmp_path, "keys", "create", "ada@example.com", "--name", "load", *key_options, **env)
    token = created.stdout.strip().splitlines()[-1]
    assert token.startswith("kf_"), created.stderr
    log = tmp_path / "gunicorn.log"
    with gunicorn(env, log) as (base, server):
        yield Served(base, token, env, server, log)


def start_gunicorn(env: dict, base: str, log: Path) -> subprocess.Popen:
    """`gunicorn -c gunicorn.conf.py wsgi:app` with `env` (its KEYFOB_BIND at `base`), ready; its stderr appended
    to `log` (a restarted server adds to the same log)."""
    with log.open("a") as output:
        server = subprocess.Popen([str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", "wsgi:app"], cwd=ROOT, env=env,
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=output)
    try:
        wait_until_ready(server, base, log)
    except BaseException:
        server.kill()
        server.wait(timeout=60)
        raise
    return server
