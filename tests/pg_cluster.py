"""Run a command against a throwaway PostgreSQL cluster: `python tests/pg_cluster.py COMMAND...`.

The command (the test suite) gets TEST_DATABASE_URL pointing at the cluster's `postgres` database as a superuser;
the tests create and drop their own databases there. The cluster lives in a temporary folder (data directory and
unix socket, no TCP), runs with the machine's PostgreSQL (`/usr/lib/postgresql/15/bin`, or PG_BIN), and is stopped
and removed afterwards, whatever the command's outcome. PostgreSQL refuses to run as root, so under root the server
runs as the unprivileged user `nobody` (or PG_USER).

- TEST_DATABASE_URL already set: the command runs against that server, no cluster is started.
- No PostgreSQL on the machine: one loud line and exit 0, unless CI=true, where that is a failure (exit 3).

Durability is switched off (fsync, full_page_writes): the data lives minutes. The server's time zone is set far from
UTC on purpose, so that a query leaning on the server's zone instead of UTC shows up in the tests.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_BIN = "/usr/lib/postgresql/15/bin"
SUPERUSER = "keyfob"
SERVER_TIMEZONE = "Pacific/Chatham"  # UTC+12:45 (+13:45 in summer): a day boundary nowhere near UTC's
SETTINGS = {
    "listen_addresses": "''",
    "fsync": "off",
    "full_page_writes": "off",
    "synchronous_commit": "off",
    "max_connections": "300",
    "timezone": f"'{SERVER_TIMEZONE}'",
    "log_timezone": "'UTC'",
}


def say(message: str) -> None:
    print(f"pg_cluster: {message}", file=sys.stderr, flush=True)


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


class Cluster:
    def __init__(self, bin_dir: Path, settings: dict[str, str] | None = None) -> None:
        """A cluster to be made by start(); `settings` are server settings added to (or replacing) SETTINGS."""
        self.bin_dir = bin_dir
        self.settings = {**SETTINGS, **(settings or {})}
        self.folder = Path(tempfile.mkdtemp(prefix="keyfob-pg-"))
        if len(str(self.folder)) > 80:  # the socket's full name must fit in 107 bytes
            shutil.rmtree(self.folder)
            raise SystemExit(f"pg_cluster: {self.folder} is too long a path for a unix socket: set TMPDIR=/tmp")
        self.data = self.folder / "data"
        self.log = self.folder / "server.log"
        self.account = None
        if os.geteuid() == 0:
            self.account = pwd.getpwnam(os.environ.get("PG_USER", "nobody"))
            os.chown(self.folder, self.account.pw_uid, self.account.pw_gid)
        self.folder.chmod(0o755)  # the socket lives here; the data directory inside is the server's own (0700)

    def run(self, program: str, *args: str) -> None:
        """Run one of PostgreSQL's programs, as the unprivileged account when we are root."""
        account = {}
        if self.account is not None:
            account = {"user": self.account.pw_uid, "group": self.account.pw_gid, "extra_groups": []}
        environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8", "TZ": "UTC"}
        result = subprocess.run([str(self.bin_dir / program), *args], cwd=self.folder, env=environment,
                                stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False, **account)
        if result.returncode != 0:
            log = self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""
            raise RuntimeError(f"{program} {' '.join(args)} failed ({result.returncode}):\n"
                               f"{result.stdout}{result.stderr}{log}")

    def start(self) -> str:
        """Make the cluster and start its server; the URL of its `postgres` database as the superuser."""
        self.run("initdb", "--pgdata", str(self.data), "--username", SUPERUSER, "--auth", "trust",
                 "--encoding", "UTF8", "--locale", "C.UTF-8", "--no-sync")
        self.serve()
        return f"postgresql+psycopg://{SUPERUSER}@/postgres?host={self.folder}"

    def serve(self) -> None:
        """Start the server of the cluster made by start() (again, after halt())."""
        options = " ".join(f"-c {name}={value}" for name, value in self.settings.items())
        options += f" -c unix_socket_directories='{self.folder}'"
        self.run("pg_ctl", "start", "--pgdata", str(self.data), "--log", str(self.log), "--wait", "--timeout", "60",
                 "--options", options)

    def halt(self, mode: str = "fast") -> None:
        """Stop the server, keeping the cluster: "fast" ends every session at once, "immediate" as a crash would."""
        self.run("pg_ctl", "stop", "--pgdata", str(self.data), "--mode", mode, "--wait", "--timeout", "60")

    def postmaster_pid(self) -> int | None:
        """The pid of the server's main process (every session's process is its child); None when it is down."""
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def remove(self) -> None:
        """Stop the server if one runs (also one whose start timed out), then delete the folder."""
        if (self.data / "postmaster.pid").exists():
            try:
                self.run("pg_ctl", "stop", "--pgdata", str(self.data), "--mode", "fast", "--wait", "--timeout", "60")
            except RuntimeError as error:
                say(f"stopping the cluster failed, stopping it hard: {error}")
                try:
                    self.run("pg_ctl", "stop", "--pgdata", str(self.data), "--mode", "immediate", "--wait")
                except RuntimeError as again:
                    say(f"could not stop the cluster in {self.data}: {again}")
        shutil.rmtree(self.folder, ignore_errors=True)


def _stop_on_signal(signum, _frame) -> None:
    raise SystemExit(128 + signum)


def main(command: list[str]) -> int:
    if not command:
        say("usage: python tests/pg_cluster.py COMMAND [ARGS...]")
        return 2
    if os.environ.get("TEST_DATABASE_URL"):
        say("using the PostgreSQL server in TEST_DATABASE_URL")
        return run(command, dict(os.environ))

    bin_dir = Path(os.environ.get("PG_BIN", DEFAULT_BIN))
    if not all((bin_dir / program).is_file() for program in ("initdb", "pg_ctl", "postgres")):
        missing = (f"no PostgreSQL in {bin_dir} (Debian: apt-get install postgresql-15; or set PG_BIN, "
                   "or TEST_DATABASE_URL to a server where the tests may create databases)")
        if in_ci():
            say(f"ERROR: {missing}; CI=true needs the PostgreSQL run")
            return 3
        print(f"*** SKIPPED: the test suite did NOT run on PostgreSQL: {missing} ***", file=sys.stderr, flush=True)
        return 0

    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _stop_on_signal)
    cluster = Cluster(bin_dir)
    try:
        started = time.monotonic()
        url = cluster.start()
        say(f"PostgreSQL {bin_dir.parent.name} cluster up in {time.monotonic() - started:.1f} s at {cluster.folder}")
        return run(command, {**os.environ, "TEST_DATABASE_URL": url})
    finally:
        cluster.remove()


def run(command: list[str], environment: dict[str, str]) -> int:
    """The command's exit status; stopped first (SIGTERM, then SIGKILL) when we are stopped while it runs."""
    child = subprocess.Popen(command, env=environment)
    try:
        return child.wait()
    finally:
        if child.poll() is None:
            child.terminate()
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
