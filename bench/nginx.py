"""nginx for `make bench`: docs/proxies/nginx.conf in front of a bench gunicorn, as bench/server.py runs gunicorn.

The documented file goes in unchanged but for its placeholders (Keyfob and the service are the same gunicorn: the
service is its /healthz). A second server block, the bench's own, proxies to the same upstream without
auth_request: the same request through nginx without forward auth. nginx runs in the foreground on two free
loopback ports, its config, logs and temporary files in a folder of the bench's temporary folder.
"""

from __future__ import annotations

import os
import pwd
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from server import ROOT, BenchError, children, free_port, tail

DOCUMENTED = ROOT / "docs" / "proxies" / "nginx.conf"
PROGRAM = Path("/usr/sbin/nginx")
START_SECONDS = 15

# The bench's addition: the same upstream as the documented protected location, with the same usual headers.
PLAIN_SERVER = """
server {{
    listen {listen};

    location / {{
        proxy_pass http://protected_service;
        proxy_set_header Host $host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
    }}
}}
"""


@dataclass
class Nginx:
    """A running bench nginx: the base URL of each way through it, and its processes (master and workers)."""

    urls: dict[str, str]  # "nginx" (forward auth) and "nginx_plain": base URLs
    process: subprocess.Popen

    def pids(self) -> list[int]:
        return [self.process.pid, *children(self.process.pid)]


def site_config(keyfob_address: str, verifier: str, auth_port: int, plain_port: int) -> str:
    """docs/proxies/nginx.conf with its placeholders replaced, and the plain server block after it."""
    text = DOCUMENTED.read_text()
    placeholders = {"LISTEN_ADDRESS": f"127.0.0.1:{auth_port}", "KEYFOB_ADDRESS": keyfob_address,
                    "SERVICE_ADDRESS": keyfob_address, "KEYFOB_VERIFIER": verifier}
    for placeholder, value in placeholders.items():
        if placeholder not in text:
            raise BenchError(f"{placeholder} is no longer in {DOCUMENTED}: update bench/nginx.py")
        text = text.replace(placeholder, value)
    return text + PLAIN_SERVER.format(listen=f"127.0.0.1:{plain_port}")


def main_config(folder: Path) -> str:
    """The http block a distribution's nginx.conf would hold around the site file, everything in `folder`; no
    access log (gunicorn's is off too: a log line per request would be part of what is measured)."""
    temp_paths = "".join(f"    {kind}_temp_path {folder / kind};\n"
                         for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return f"events {{}}\nhttp {{\n    access_log off;\n{temp_paths}    include {folder / 'site.conf'};\n}}\n"


def write_configs(folder: Path, keyfob_address: str, verifier: str) -> tuple[int, int]:
    """The site and main configs in `folder` (the site file readable by its owner only: it holds the verifier
    credential); the ports of the protected server and of the plain one."""
    folder.mkdir(parents=True, exist_ok=True)
    auth_port, plain_port = free_port(), free_port()
    site = folder / "site.conf"
    site.touch(mode=0o600)
    site.write_text(site_config(keyfob_address, verifier, auth_port, plain_port))
    (folder / "nginx.conf").write_text(main_config(folder))
    return auth_port, plain_port


def command(folder: Path) -> list[str]:
    """nginx in the foreground on the configs of `folder`, its pid file and error log there too."""
    globals_ = f"daemon off; pid {folder / 'nginx.pid'}; error_log {folder / 'error.log'} warn;"
    if os.geteuid() == 0:  # nginx's workers would switch to `nobody`, who may not enter the bench's folder
        globals_ += f" user {pwd.getpwuid(0).pw_name};"
    return [str(PROGRAM), "-p", str(folder), "-c", str(folder / "nginx.conf"), "-g", globals_]


def _wait_for_port(process: subprocess.Popen, port: int, log: Path) -> None:
    deadline = time.monotonic() + START_SECONDS
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"nginx did not start on port {port}:\n{tail(log)}") from None
            time.sleep(0.05)


@contextmanager
def running(folder: Path, keyfob_address: str, verifier: str) -> Iterator[Nginx]:
    """nginx in front of the gunicorn at `keyfob_address`, stopped (SIGTERM) at the end."""
    if not PROGRAM.is_file():
        raise BenchError(f"{PROGRAM} not found: `apt-get install -y nginx`, or leave out the nginx scenarios")
    auth_port, plain_port = write_configs(folder, keyfob_address, verifier)
    log = folder / "nginx.log"
    with log.open("w") as output:
        process = subprocess.Popen(command(folder), cwd=folder, stdin=subprocess.DEVNULL,  # noqa: S603 -- fixed argv
                                   stdout=output, stderr=subprocess.STDOUT)
    try:
        for port in (auth_port, plain_port):
            _wait_for_port(process, port, log)
        yield Nginx({"nginx": f"http://127.0.0.1:{auth_port}", "nginx_plain": f"http://127.0.0.1:{plain_port}"},
                    process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
