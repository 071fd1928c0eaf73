"""gunicorn serving Keyfob in production mode, with a user and a key made by the real CLI: the set-up the
multi-process tests share."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import Any

from prometheus_client.multiprocess import MultiProcessCollector

from tests.functional.processes import BIN, ROOT, clean_env, flask, free_port
from tests.support import PASSWORD, csrf_token_from


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


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


_NOT_FOLLOWING = urllib.request.build_opener(_NoRedirects)


def http(method: str, url: str, headers: dict | None = None, body: Any = None, timeout: float = 30, *,
         form: dict | None = None, follow_redirects: bool = True) -> Answer:
    """One request on a connection of its own (so threads share nothing), `body` sent as JSON or `form` as a page's
    form would be; an error status is an answer like any other, and so is a redirect when not followed (a form's
    302 says it worked)."""
    headers = dict(headers or {})
    data = None
    if body is not None:
        headers["Content-Type"] = "application/json"
        data = json.dumps(body).encode()
    elif form is not None:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        data = urllib.parse.urlencode(form).encode()
    open_url = urllib.request.urlopen if follow_redirects else _NOT_FOLLOWING.open
    try:
        with open_url(urllib.request.Request(url, data, headers, method=method), timeout=timeout) as response:
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


# -- a signed-in person, as a browser would be ----------------------------------------------------------------------

def _session_of(answer: Answer, cookie: str | None) -> str | None:
    """The session cookie to send next: the one the answer set, else the one sent. (Production marks it Secure, so
    urllib's cookie jar would not send it back over http: it is carried by hand.)"""
    set_cookie = answer.headers.get("Set-Cookie")
    return set_cookie.split(";")[0] if set_cookie else cookie


def form_token(base: str, path: str, cookie: str | None = None) -> tuple[str, str]:
    """Open the page at `path` with the session `cookie`: (the session cookie to send next, the page's CSRF token)."""
    page = http("GET", base + path, {"Cookie": cookie} if cookie else {}, follow_redirects=False)
    assert page.status == 200, (path, page.status)
    return _session_of(page, cookie), csrf_token_from(page.body.decode())


def signed_in_cookie(base: str, email: str = "ada@example.com") -> str:
    """Sign `email` (password PASSWORD) in through the real form: the session cookie to send."""
    cookie, token = form_token(base, "/login")
    answer = http("POST", f"{base}/login", {"Cookie": cookie}, follow_redirects=False,
                  form={"csrf_token": token, "email": email, "password": PASSWORD})
    assert answer.status == 302, answer.body
    return _session_of(answer, cookie)


# -- which worker did what ------------------------------------------------------------------------------------------

def pid_of(path: Path) -> int:
    return int(path.stem.rsplit("_", 1)[1])


def counts_by_worker(folder: Path, sample: str, label: str, **only: str) -> dict[int, Counter]:
    """Each gunicorn worker's count of one Prometheus sample (`keyfob_key_verifications_total`,
    `keyfob_request_duration_seconds_count`), by the value of one of its labels, of the samples whose other labels
    are `only`; read from the worker's own file in PROMETHEUS_MULTIPROC_DIR (`folder`): which worker did what, where
    /metrics gives only the sum."""
    by_worker: dict[int, Counter] = {}
    for path in Path(folder).glob("*.db"):
        counts = by_worker.setdefault(pid_of(path), Counter())
        for metric in MultiProcessCollector.merge([str(path)], accumulate=True):
            for found in metric.samples:
                if found.name == sample and only.items() <= found.labels.items():
                    counts[found.labels[label]] += int(found.value)
    return by_worker
