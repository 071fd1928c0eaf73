"""nginx for `make bench`: docs/proxies/nginx.conf in front of a bench gunicorn, as bench/server.py runs gunicorn.

The documented file goes in unchanged but for its placeholders (Keyfob and the service are the same gunicorn: the
service is its /healthz). A second server block, the bench's own, proxies to the same upstream without
auth_request: the same request through nginx without forward auth. nginx runs in the foreground on two free
loopback ports, its config, logs and temporary files in a folder of the bench's temporary folder.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from server import ROOT, BenchError, children, free_port

sys.path.insert(0, str(ROOT))  # the repository, for tests/loopback_proxies.py (as bench/postgres.py for pg_cluster)
from tests.loopback_proxies import NGINX as PROGRAM  # noqa: E402
from tests.loopback_proxies import (  # noqa: E402
    ProxyError,
    documented_config,
    nginx_command,
    nginx_main_config,
    stop,
    wait_for_port,
)

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
    text = documented_config("nginx.conf", LISTEN_ADDRESS=f"127.0.0.1:{auth_port}", KEYFOB_ADDRESS=keyfob_address,
                             SERVICE_ADDRESS=keyfob_address, KEYFOB_VERIFIER=verifier)
    return text + PLAIN_SERVER.format(listen=f"127.0.0.1:{plain_port}")


def write_configs(folder: Path, keyfob_address: str, verifier: str) -> tuple[int, int]:
    """The site and main configs in `folder` (the site file readable by its owner only: it holds the verifier
    credential; no access log, as gunicorn's is off: a log line per request would be part of what is measured);
    the ports of the protected server and of the plain one."""
    folder.mkdir(parents=True, exist_ok=True)
    auth_port, plain_port = free_port(), free_port()
    site = folder / "site.conf"
    site.touch(mode=0o600)
    site.write_text(site_config(keyfob_address, verifier, auth_port, plain_port))
    (folder / "nginx.conf").write_text(nginx_main_config(folder, site, "off"))
    return auth_port, plain_port


def command(folder: Path) -> list[str]:
    """nginx in the foreground on the configs of `folder`, its pid file and error log there too."""
    return nginx_command(folder, folder / "nginx.conf", "warn")


@contextmanager
def running(folder: Path, keyfob_address: str, verifier: str) -> Iterator[Nginx]:
    """nginx in front of the gunicorn at `keyfob_address`, stopped (SIGTERM) at the end."""
    if not PROGRAM.is_file():
        raise BenchError(f"{PROGRAM} not found: `apt-get install -y nginx`, or leave out the nginx scenarios")
    try:
        auth_port, plain_port = write_configs(folder, keyfob_address, verifier)
        log = folder / "nginx.log"
        with log.open("w") as output:
            process = subprocess.Popen(command(folder), cwd=folder, stdin=subprocess.DEVNULL,  # noqa: S603 -- fixed
                                       stdout=output, stderr=subprocess.STDOUT)
        for port in (auth_port, plain_port):
            wait_for_port(process, port, log, "nginx")
    except ProxyError as error:
        raise BenchError(str(error)) from None
    try:
        yield Nginx({"nginx": f"http://127.0.0.1:{auth_port}", "nginx_plain": f"http://127.0.0.1:{plain_port}"},
                    process)
    finally:
        stop(process)
