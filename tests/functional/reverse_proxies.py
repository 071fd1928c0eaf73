"""Real reverse proxies in front of Keyfob, run from the documented configs in docs/proxies/, and a service behind
them that echoes what reaches it.

Each proxy runs as the current user on a free loopback port, its config written to a test folder from the
documented file with only the placeholders replaced: the config the tests check is the one the docs give. Without
the proxy's program, the tests that need it are skipped with one line, except under CI=true, where they fail: CI
must install it (.ci/run).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.functional.processes import free_port
from tests.loopback_proxies import NGINX, documented_config, nginx_command, nginx_main_config, stop, wait_for_port


def proxy_program(name: str, debian_path: str) -> Path:
    """The proxy's program (Debian's, or another on PATH); the test is skipped without it, or fails under CI=true."""
    found = debian_path if Path(debian_path).is_file() else shutil.which(name)
    if found:
        return Path(found)
    missing = f"{name} not found (apt-get install {name}): the {name} forward-auth tests did NOT run"
    if os.environ.get("CI") == "true":
        pytest.fail(missing + " (CI=true: it must)", pytrace=False)
    pytest.skip(missing)


@dataclass(frozen=True)
class Seen:
    """A request as the service behind the proxy received it."""

    method: str
    path: str
    headers: dict[str, str]  # names in lower case; a header sent more than once has its values joined by ", "


class EchoService:
    """An HTTP service on a free loopback port that answers every request with what it received, as JSON, and
    keeps each request in `seen`."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        seen = self.seen

        class Handler(BaseHTTPRequestHandler):
            def _echo(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                headers: dict[str, str] = {}
                for name, value in self.headers.items():
                    headers[name.lower()] = f"{headers[name.lower()]}, {value}" if name.lower() in headers else value
                request = Seen(self.command, self.path, headers)
                seen.append(request)
                body = json.dumps({"method": request.method, "path": request.path,
                                   "headers": request.headers}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _echo

            def log_message(self, format, *args) -> None:  # noqa: A002 (the base class's name)
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> EchoService:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=10)


@contextmanager
def _running(command: list[str], folder: Path, port: int, name: str, env: dict | None = None,
             secret_config: Path | None = None) -> Iterator[str]:
    """The proxy, started; `secret_config` (a config holding the verifier credential) is removed once read, since
    the suite's leak check (tests/secret_leaks.py) fails on any credential left in a file."""
    log = folder / f"{name}.log"
    try:
        with log.open("w") as output:
            process = subprocess.Popen(command, cwd=folder, env=env, stdin=subprocess.DEVNULL, stdout=output,
                                       stderr=subprocess.STDOUT)
        wait_for_port(process, port, log, name)
    finally:
        if secret_config is not None:
            secret_config.unlink()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(process)


@contextmanager
def running_nginx(folder: Path, **placeholders: str) -> Iterator[str]:
    """nginx with docs/proxies/nginx.conf (placeholders replaced, LISTEN_ADDRESS a free loopback port) inside a
    minimal http block, in the foreground; its base URL. Everything it writes stays in `folder`."""
    program = proxy_program("nginx", str(NGINX))
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    site = folder / "keyfob.conf"
    site.write_text(documented_config("nginx.conf", LISTEN_ADDRESS=f"127.0.0.1:{port}", **placeholders))
    (folder / "nginx.conf").write_text(nginx_main_config(folder, site, str(folder / "access.log")))
    command = nginx_command(folder, folder / "nginx.conf", "info", program)
    with _running(command, folder, port, "nginx", secret_config=folder / "keyfob.conf") as base:
        yield base


@contextmanager
def running_caddy(folder: Path, verifier: str, **placeholders: str) -> Iterator[str]:
    """Caddy with docs/proxies/Caddyfile (placeholders replaced, SITE_ADDRESS a free loopback port) after global
    options that keep it to loopback and off the admin port, and the verifier credential in its environment, as
    the file says; its base URL. Everything it writes stays in `folder`."""
    program = proxy_program("caddy", "/usr/bin/caddy")
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    (folder / "keyfob.caddy").write_text(documented_config("Caddyfile", SITE_ADDRESS=f"http://127.0.0.1:{port}",
                                                           **placeholders))
    # No admin endpoint (it would want port 2019, maybe taken) and only the loopback interface.
    (folder / "Caddyfile").write_text(
        f"{{\n\tadmin off\n\tdefault_bind 127.0.0.1\n}}\n\nimport {folder / 'keyfob.caddy'}\n")
    env = {"PATH": os.environ["PATH"], "HOME": str(folder), "XDG_CONFIG_HOME": str(folder / "config"),
           "XDG_DATA_HOME": str(folder / "data"), "KEYFOB_VERIFIER": verifier}
    command = [str(program), "run", "--config", str(folder / "Caddyfile"), "--adapter", "caddyfile"]
    with _running(command, folder, port, "caddy", env) as base:
        yield base
