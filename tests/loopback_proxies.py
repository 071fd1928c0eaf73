"""Reverse proxies on loopback from docs/proxies/, for the tests (tests/functional/reverse_proxies.py) and the bench
(bench/nginx.py): the documented file with its placeholders filled, the http block a distribution's nginx.conf would
put around it, the command that runs it in the foreground, and waiting for its port. Standard library only, so that
the bench can import it as it imports tests/pg_cluster.py.
"""

from __future__ import annotations

import os
import pwd
import socket
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "proxies"
NGINX = Path("/usr/sbin/nginx")
START_SECONDS = 15


class ProxyError(Exception):
    """A proxy could not be configured or did not start; the message says why (with its log)."""


def documented_config(name: str, **placeholders: str) -> str:
    """docs/proxies/<name> with each placeholder replaced; a placeholder no longer in the file is an error."""
    text = (DOCS / name).read_text()
    for placeholder, value in placeholders.items():
        if placeholder not in text:
            raise ProxyError(f"{placeholder} is not in docs/proxies/{name}")
        text = text.replace(placeholder, value)
    return text


def nginx_main_config(folder: Path, site: Path, access_log: str) -> str:
    """The http block around the site file, with every temporary path in `folder`; `access_log` is a path or
    `off`."""
    temp_paths = "".join(f"    {kind}_temp_path {folder / kind};\n"
                         for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return f"events {{}}\nhttp {{\n    access_log {access_log};\n{temp_paths}    include {site};\n}}\n"


def nginx_command(folder: Path, main_config: Path, log_level: str, program: Path = NGINX) -> list[str]:
    """nginx in the foreground on `main_config`, its pid file and error log in `folder`."""
    globals_ = f"daemon off; pid {folder / 'nginx.pid'}; error_log {folder / 'error.log'} {log_level};"
    if os.geteuid() == 0:  # nginx's workers would switch to `nobody`, who may not enter the folder
        globals_ += f" user {pwd.getpwuid(0).pw_name};"
    return [str(program), "-p", str(folder), "-c", str(main_config), "-g", globals_]


def stop(process: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL after 10 s."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def wait_for_port(process: subprocess.Popen, port: int, log: Path, name: str) -> None:
    """Until `port` on loopback accepts a connection; a process that exits or takes longer than START_SECONDS is
    stopped and raises ProxyError with its log."""
    deadline = time.monotonic() + START_SECONDS
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                stop(process)
                text = log.read_text(errors="replace") if log.is_file() else ""
                raise ProxyError(f"{name} did not start on port {port}:\n{text}") from None
            time.sleep(0.05)
