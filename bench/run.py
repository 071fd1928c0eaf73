"""`make bench`: throughput ratios of Keyfob under gunicorn on loopback, measured with wrk in one run.

What it does, end to end:

1. Makes a throw-away folder with a fresh SQLite database in production mode (random SECRET_KEY and KEY_PEPPER),
   migrates it, creates a user and a valid API key through the real CLI (`flask --app wsgi users/keys create`).
2. Serves the app with gunicorn, 2 workers, on 127.0.0.1:<free port>: the production gunicorn.conf.py, loaded by
   bench/gunicorn_quiet.conf.py, which switches the access log off (and gunicorn's control socket).
3. Warms every scenario up, then runs them in interleaved rounds (the order rotates each round) so that the noise of
   a small shared machine hits every scenario alike. Each scenario's throughput is the median over the rounds;
   each ratio is the ratio of the medians, printed with the ratio of every single round beside it.
   Around every wrk run it also reads the CPU time the gunicorn workers used (/proc/<pid>/stat) and the CPU time
   wrk used (its rusage), and divides them by the requests: CPU microseconds per request. Throughput on a shared
   machine moves with whatever else runs; the CPU a request costs barely does, so the CPU ratio shows the cost of
   verification even when the throughput ratio is blurred by noise.
4. Reports the resident memory (VmRSS) of each gunicorn worker after the load, stops gunicorn with SIGTERM, and
   checks that the key's usage_count in the database adds up to the successful requests wrk saw (this exercises the
   usage flush at shutdown), and the audited failed verifications to the refused bad-key requests.

It is a report, not a test: it exits 0 whether or not a target is met, and non-zero only when it cannot measure
(wrk missing, the server not starting, an endpoint answering with the wrong status). The results are printed as a
table and then as one JSON document on stdout; nothing is written into the repository.

Adding a scenario later: add a Scenario to SCENARIOS (and a Ratio to RATIOS if it has a target); a new kind of
credential goes into Fixture.credential, and a setup the scenario needs (say a million keys) into prepare().
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import secrets
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from contextlib import closing
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GUNICORN_CONFIG = ROOT / "bench" / "gunicorn_quiet.conf.py"
BENCH_EMAIL = "bench@example.com"
READY_TIMEOUT_SECONDS = 30
STOP_TIMEOUT_SECONDS = 40  # gunicorn.conf.py's graceful_timeout is 30


# -- what is measured ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Scenario:
    name: str
    path: str
    key: str | None  # which credential to send: None, "valid" or "bad_checksum" (see Fixture.credential)
    expect_status: int  # what a single request must answer before the load is trusted
    description: str


@dataclass(frozen=True)
class Ratio:
    name: str
    numerator: str
    denominator: str
    target: float
    description: str


SCENARIOS = [
    Scenario("healthz", "/healthz", None, 200, "GET /healthz: the liveness probe, no database"),
    Scenario("whoami_valid", "/api/v1/whoami", "valid", 200, "GET /api/v1/whoami with a valid key"),
    Scenario("whoami_bad_checksum", "/api/v1/whoami", "bad_checksum", 401,
             "GET /api/v1/whoami with a key whose checksum is wrong (refused before the database)"),
]

RATIOS = [
    Ratio("whoami_valid / healthz", "whoami_valid", "healthz", 0.90,
          "what key verification costs a request, against the cheapest route"),
    Ratio("whoami_bad_checksum / whoami_valid", "whoami_bad_checksum", "whoami_valid", 1.0,
          "a made-up key must not cost more than a real one"),
]


# -- the fixture: a database, a user, a key ------------------------------------------------------------------------

@dataclass
class Fixture:
    folder: Path
    env: dict[str, str]
    valid_key: str
    key_id: int

    @property
    def database(self) -> Path:
        return self.folder / "bench.db"

    def credential(self, kind: str | None) -> str | None:
        if kind is None:
            return None
        if kind == "valid":
            return self.valid_key
        if kind == "bad_checksum":
            return bad_checksum(self.valid_key)
        raise ValueError(f"unknown credential kind {kind!r}")


def bad_checksum(key: str) -> str:
    """The same key with its last checksum character changed: well formed, right length, wrong checksum."""
    last = key[-1]
    return key[:-1] + ("A" if last != "A" else "B")


def bench_environment(folder: Path, workers: int, bind: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if name != "GUNICORN_CMD_ARGS"}
    env.update({
        "KEYFOB_ENV": "production",
        "SECRET_KEY": secrets.token_urlsafe(48),
        "KEY_PEPPER": secrets.token_urlsafe(48),
        "DATABASE_URL": f"sqlite:///{folder / 'bench.db'}",
        "KEYFOB_INSTANCE_PATH": str(folder / "instance"),
        "KEYFOB_BIND": bind,
        "WEB_CONCURRENCY": str(workers),
        "PYTHONUNBUFFERED": "1",
    })
    return env


def flask_cli(env: dict[str, str], *args: str, extra_env: dict[str, str] | None = None) -> str:
    """Run `flask --app wsgi ARGS` with this interpreter; returns stdout, stops the bench on failure."""
    command = [sys.executable, "-m", "flask", "--app", "wsgi", *args]
    result = subprocess.run(  # noqa: S603 -- a fixed argv of our own, no shell
        command, cwd=ROOT, env={**env, **(extra_env or {})}, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BenchError(f"`flask --app wsgi {' '.join(args)}` failed ({result.returncode}):\n"
                         f"{result.stdout}{result.stderr}")
    return result.stdout


def prepare(folder: Path, env: dict[str, str]) -> Fixture:
    flask_cli(env, "db", "upgrade")
    flask_cli(env, "users", "create", BENCH_EMAIL, extra_env={"KEYFOB_PASSWORD": secrets.token_urlsafe(24)})
    output = flask_cli(env, "keys", "create", BENCH_EMAIL, "--name", "bench", "--expires-in-days", "30")
    valid_key = output.strip().splitlines()[-1].strip()
    with closing(sqlite3.connect(folder / "bench.db")) as connection:
        (key_id,) = connection.execute("SELECT id FROM api_keys ORDER BY id DESC LIMIT 1").fetchone()
    return Fixture(folder, env, valid_key, key_id)


# -- the server ----------------------------------------------------------------------------------------------------

class BenchError(Exception):
    """The bench cannot measure; the message says why."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def http_status(url: str, token: str | None = None, timeout: float = 2.0) -> int:
    request = urllib.request.Request(url)  # noqa: S310 -- always http://127.0.0.1
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 -- always http://127.0.0.1
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def start_gunicorn(env: dict[str, str], log_path: Path, access_log: bool) -> subprocess.Popen:
    """gunicorn with the production settings (bench/gunicorn_quiet.conf.py loads gunicorn.conf.py), its output
    into `log_path`."""
    command = [sys.executable, "-m", "gunicorn", "-c", str(GUNICORN_CONFIG), "wsgi:app"]
    env = {**env, "KEYFOB_BENCH_ACCESS_LOG": "1" if access_log else "0"}
    with log_path.open("w") as log:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log,  # noqa: S603 -- a fixed argv, no shell
                                stderr=subprocess.STDOUT)


def wait_ready(server: subprocess.Popen, base_url: str, log_path: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise BenchError(f"gunicorn exited with {server.returncode} before it was ready:\n{tail(log_path)}")
        try:
            if http_status(base_url + "/readyz", timeout=1.0) == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise BenchError(f"gunicorn was not ready after {READY_TIMEOUT_SECONDS} s:\n{tail(log_path)}")


def stop_gunicorn(server: subprocess.Popen) -> int:
    """SIGTERM (graceful: workers finish and run worker_exit, which flushes usage counts); the exit code."""
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    return server.returncode


def wait_for_workers(master: int, count: int) -> list[int]:
    """The worker pids, once all `count` workers have started (their CPU time is measured)."""
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while True:
        pids = worker_pids(master)
        if len(pids) >= count or time.monotonic() > deadline:
            return pids
        time.sleep(0.1)


def worker_pids(master: int) -> list[int]:
    children = []
    for task in Path(f"/proc/{master}/task").iterdir():
        text = (task / "children").read_text() if (task / "children").exists() else ""
        children.extend(int(pid) for pid in text.split())
    return sorted(children)


def rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# -- the load generator --------------------------------------------------------------------------------------------

@dataclass
class WrkResult:
    requests_per_second: float
    requests: int
    non_2xx: int
    socket_errors: int
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    server_cpu_s: float | None = None  # CPU time (user + system) of all gunicorn workers during the run
    client_cpu_s: float | None = None  # CPU time of wrk itself

    @property
    def ok_requests(self) -> int:
        return self.requests - self.non_2xx

    @property
    def server_cpu_us(self) -> float | None:
        """Worker CPU microseconds per request."""
        return self.server_cpu_s / self.requests * 1e6 if self.server_cpu_s is not None and self.requests else None

    @property
    def client_cpu_us(self) -> float | None:
        return self.client_cpu_s / self.requests * 1e6 if self.client_cpu_s is not None and self.requests else None

    @property
    def total_cpu_us(self) -> float | None:
        if self.server_cpu_us is None or self.client_cpu_us is None:
            return None
        return self.server_cpu_us + self.client_cpu_us


UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _latency_ms(output: str, percentile: str) -> float | None:
    match = re.search(rf"^\s*{percentile}%\s+([\d.]+)(us|ms|s|m)\s*$", output, re.MULTILINE)
    return float(match.group(1)) * UNIT_MS[match.group(2)] if match else None


def parse_wrk(output: str) -> WrkResult:
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    total = re.search(r"(\d+) requests in", output)
    if not rate or not total:
        raise BenchError(f"cannot read wrk's output:\n{output}")
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    return WrkResult(
        requests_per_second=float(rate.group(1)),
        requests=int(total.group(1)),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(int(n) for n in errors.groups()) if errors else 0,
        latency_p50_ms=_latency_ms(output, "50"),
        latency_p99_ms=_latency_ms(output, "99"),
    )


def process_cpu_seconds(pids: list[int]) -> float | None:
    """User plus system CPU time of these processes (all their threads) so far, from /proc/<pid>/stat."""
    ticks = 0
    try:
        for pid in pids:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # utime and stime, fields 14 and 15 of proc(5)
    except (OSError, IndexError, ValueError):
        return None
    return ticks / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_wrk(wrk: str, url: str, token: str | None, seconds: int, threads: int, connections: int,
            server_pids: list[int] | None = None) -> WrkResult:
    """One wrk run; with `server_pids`, also the CPU time those processes and wrk used during it."""
    command = [wrk, f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if token is not None:
        command += ["-H", f"Authorization: Bearer {token}"]
    command.append(url)
    server_before = process_cpu_seconds(server_pids) if server_pids else None
    client_before = children_cpu_seconds()  # wrk is the only child waited for in between
    result = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603 -- fixed argv
    client_cpu = children_cpu_seconds() - client_before
    server_after = process_cpu_seconds(server_pids) if server_pids else None
    if result.returncode != 0:
        raise BenchError(f"wrk failed ({result.returncode}): {result.stderr or result.stdout}")
    parsed = parse_wrk(result.stdout)
    parsed.client_cpu_s = client_cpu
    if server_before is not None and server_after is not None:
        parsed.server_cpu_s = server_after - server_before
    return parsed


# -- the run -------------------------------------------------------------------------------------------------------

@dataclass
class ScenarioRuns:
    scenario: Scenario
    warmup: WrkResult | None = None
    rounds: list[WrkResult] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(run.requests_per_second for run in self.rounds)

    def median_cpu_us(self, kind: str) -> float | None:
        """Median over the rounds of the CPU microseconds per request: kind is "server", "client" or "total"."""
        values = [getattr(run, f"{kind}_cpu_us") for run in self.rounds]
        return statistics.median(values) if values and None not in values else None

    def all_runs(self) -> list[WrkResult]:
        return ([self.warmup] if self.warmup else []) + self.rounds


def check_statuses(base_url: str, fixture: Fixture) -> dict[str | None, int]:
    """One request per scenario, before any load: the bench only measures endpoints that answer as expected.
    Returns how many requests this sent per credential kind (they count in usage_count and the audit log)."""
    sent: dict[str | None, int] = {}
    for scenario in SCENARIOS:
        status = http_status(base_url + scenario.path, fixture.credential(scenario.key))
        if status != scenario.expect_status:
            raise BenchError(f"{scenario.name}: {scenario.path} answered {status}, expected {scenario.expect_status}")
        sent[scenario.key] = sent.get(scenario.key, 0) + 1
    return sent


def measure(wrk: str, base_url: str, fixture: Fixture, args: argparse.Namespace,
            server_pids: list[int]) -> dict[str, ScenarioRuns]:
    runs = {scenario.name: ScenarioRuns(scenario) for scenario in SCENARIOS}
    if args.warmup > 0:
        for scenario in SCENARIOS:
            runs[scenario.name].warmup = run_wrk(wrk, base_url + scenario.path, fixture.credential(scenario.key),
                                                 args.warmup, args.threads, args.connections, server_pids)
    for round_index in range(args.rounds):
        shift = round_index % len(SCENARIOS)
        order = SCENARIOS[shift:] + SCENARIOS[:shift]  # rotate, so no scenario always runs first or last
        print(f"round {round_index + 1}/{args.rounds}: " + ", ".join(s.name for s in order), file=sys.stderr)
        for scenario in order:
            result = run_wrk(wrk, base_url + scenario.path, fixture.credential(scenario.key), args.duration,
                             args.threads, args.connections, server_pids)
            runs[scenario.name].rounds.append(result)
            print(f"  {scenario.name:<22} {result.requests_per_second:>9.1f} req/s  "
                  f"({result.requests} requests, {result.non_2xx} non-2xx, {result.socket_errors} socket errors; "
                  f"CPU per request: workers {_us(result.server_cpu_us)}, wrk {_us(result.client_cpu_us)})",
                  file=sys.stderr)
    return runs


def _us(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f} us"


def anomalies(runs: dict[str, ScenarioRuns]) -> list[str]:
    """Runs whose throughput does not mean what the table says: wrong statuses under load, or socket errors."""
    found = []
    for name, scenario_runs in runs.items():
        wants_success = scenario_runs.scenario.expect_status < 300
        for index, run in enumerate(scenario_runs.rounds, start=1):
            wrong = run.non_2xx if wants_success else run.requests - run.non_2xx
            if wrong:
                found.append(f"{name} round {index}: {wrong} of {run.requests} answers had the wrong status class "
                             f"(expected {scenario_runs.scenario.expect_status})")
            if run.socket_errors:
                found.append(f"{name} round {index}: {run.socket_errors} socket errors")
    return found


def ratio_report(runs: dict[str, ScenarioRuns]) -> list[dict]:
    rows = []
    for ratio in RATIOS:
        top, bottom = runs[ratio.numerator], runs[ratio.denominator]
        value = top.median / bottom.median
        per_round = [a.requests_per_second / b.requests_per_second for a, b in zip(top.rounds, bottom.rounds,
                                                                                      strict=True)]
        # The same ratio from the CPU a request costs (workers plus wrk): what the throughput ratio would be if the
        # two cores did nothing else. Inverse, because a cheaper request means more of them.
        top_cpu, bottom_cpu = top.median_cpu_us("total"), bottom.median_cpu_us("total")
        cpu_ratio = round(bottom_cpu / top_cpu, 3) if top_cpu and bottom_cpu else None
        per_round_cpu = [round(b.total_cpu_us / a.total_cpu_us, 3) if a.total_cpu_us and b.total_cpu_us else None
                         for a, b in zip(top.rounds, bottom.rounds, strict=True)]
        rows.append({"name": ratio.name, "value": round(value, 3), "target": ratio.target,
                     "meets_target": value >= ratio.target, "per_round": [round(r, 3) for r in per_round],
                     "cpu_ratio": cpu_ratio, "cpu_per_round": per_round_cpu, "description": ratio.description})
    return rows


def print_table(runs: dict[str, ScenarioRuns], ratios: list[dict], workers: list[dict],
                args: argparse.Namespace) -> None:
    print()
    print(f"gunicorn {args.workers} sync workers, access log {'on' if args.access_log else 'off'}; "
          f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s; {args.rounds} interleaved rounds "
          f"after {args.warmup} s of warm-up per scenario; median of the rounds")
    print(f"{'scenario':<24} {'median req/s':>12}  {'rounds (req/s)':<30} {'p50 ms':>7} {'p99 ms':>7}")
    for name, scenario_runs in runs.items():
        rounds = " ".join(f"{r.requests_per_second:.0f}" for r in scenario_runs.rounds)
        p50 = statistics.median(r.latency_p50_ms or 0 for r in scenario_runs.rounds)
        p99 = statistics.median(r.latency_p99_ms or 0 for r in scenario_runs.rounds)
        print(f"{name:<24} {scenario_runs.median:>12.1f}  {rounds:<30} {p50:>7.2f} {p99:>7.2f}")
    print()
    print("CPU time per request, median of the rounds (gunicorn workers, wrk, both)")
    print(f"{'scenario':<24} {'workers':>9} {'wrk':>9} {'total':>9}  {'workers per round (us)':<30}")
    for name, scenario_runs in runs.items():
        per_round = " ".join(_us(r.server_cpu_us).removesuffix(" us") for r in scenario_runs.rounds)
        print(f"{name:<24} {_us(scenario_runs.median_cpu_us('server')):>9} "
              f"{_us(scenario_runs.median_cpu_us('client')):>9} {_us(scenario_runs.median_cpu_us('total')):>9}  "
              f"{per_round}")
    print()
    print(f"{'ratio':<36} {'value':>6} {'target':>7}  {'result':<6}  per round")
    for row in ratios:
        verdict = "PASS" if row["meets_target"] else "FAIL"
        per_round = " ".join(f"{r:.3f}" for r in row["per_round"])
        print(f"{row['name']:<36} {row['value']:>6.3f} {'>= ' + format(row['target'], '.2f'):>7}  {verdict:<6}  "
              f"{per_round}")
    print()
    print(f"{'ratio from CPU per request':<36} {'value':>6}  per round")
    for row in ratios:
        value = "n/a" if row["cpu_ratio"] is None else f"{row['cpu_ratio']:.3f}"
        per_round = " ".join("n/a" if r is None else f"{r:.3f}" for r in row["cpu_per_round"])
        print(f"{row['name']:<36} {value:>6}  {per_round}")
    print()
    for worker in workers:
        rss = f"{worker['rss_kib'] / 1024:.1f} MiB" if worker["rss_kib"] is not None else "gone"
        print(f"RSS after load: {worker['role']:<6} pid {worker['pid']:<7} {rss}")


def counted(server_count: int, client_count: int, wrk_runs: int, connections: int) -> dict:
    """Compare a count Keyfob wrote to the database with what the clients saw answered.

    wrk counts only the responses it read before its time was up; a request already sent (or queued in the listen
    backlog) when wrk stops is still served, and counted, by Keyfob. So the server's count may exceed the clients'
    by at most `connections` per wrk run; more than that, or any shortfall, means lost or double-counted events.
    """
    slack = connections * wrk_runs
    difference = server_count - client_count
    return {"database": server_count, "clients_saw": client_count, "difference": difference,
            "allowed_in_flight": slack, "consistent": 0 <= difference <= slack}


def usage_check(fixture: Fixture, runs: dict[str, ScenarioRuns], checks_sent: dict[str | None, int],
                connections: int) -> dict:
    """After shutdown: the key's usage_count against the 2xx answers to the valid key (this checks the usage flush
    at worker exit), and the audited failed verifications against the refusals of the bad key."""
    def runs_for(kind: str) -> list[WrkResult]:
        return [run for r in runs.values() if r.scenario.key == kind for run in r.all_runs()]

    with closing(sqlite3.connect(fixture.database)) as connection:
        (usage_count,) = connection.execute("SELECT usage_count FROM api_keys WHERE id = ?",
                                            (fixture.key_id,)).fetchone()
        (failures,) = connection.execute("SELECT count(*) FROM audit_events WHERE event = 'key.verify_failed'"
                                         ).fetchone()
    valid, bad = runs_for("valid"), runs_for("bad_checksum")
    return {
        "usage_count": counted(usage_count, sum(run.ok_requests for run in valid) + checks_sent.get("valid", 0),
                               len(valid), connections),
        "audited_failures": counted(failures, sum(run.non_2xx for run in bad) + checks_sent.get("bad_checksum", 0),
                                    len(bad), connections),
    }


def describe_count(label: str, what: str, check: dict) -> str:
    verdict = "consistent" if check["consistent"] else "NOT consistent"
    return (f"{label}: {check['database']} in the database, {check['clients_saw']} {what} seen by the clients, "
            f"difference {check['difference']:+d}: {verdict} (requests in flight when wrk stops are served but not "
            f"counted by wrk: at most {check['allowed_in_flight']})")


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def machine() -> dict:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu": model, "python": sys.version.split()[0]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds of every scenario (default 5)")
    parser.add_argument("--duration", type=int, default=5, help="seconds of load per scenario per round (5)")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of unrecorded load per scenario first (2)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (2)")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections (16)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers, WEB_CONCURRENCY (2)")
    parser.add_argument("--access-log", action="store_true",
                        help="keep gunicorn.conf.py's access log on (into the server log), to see what it costs")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (database, server log)")
    args = parser.parse_args(argv)

    wrk = shutil.which("wrk")
    if wrk is None:
        print("bench: wrk is not installed; install it with `apt-get install -y wrk` (Debian/Ubuntu) and run "
              "`make bench` again", file=sys.stderr)
        return 2

    folder = Path(tempfile.mkdtemp(prefix="keyfob-bench-"))
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = bench_environment(folder, args.workers, f"127.0.0.1:{port}")
    log_path = folder / "gunicorn.log"
    server = None
    try:
        print(f"bench: preparing {folder} (migrate, user, key)", file=sys.stderr)
        fixture = prepare(folder, env)
        print(f"bench: gunicorn, {args.workers} workers, on {base_url}; access log "
              f"{'on' if args.access_log else 'off'}", file=sys.stderr)
        server = start_gunicorn(env, log_path, args.access_log)
        wait_ready(server, base_url, log_path)
        checks_sent = check_statuses(base_url, fixture)
        started = time.time()
        runs = measure(wrk, base_url, fixture, args, wait_for_workers(server.pid, args.workers))
        workers = [{"role": "master", "pid": server.pid, "rss_kib": rss_kib(server.pid)}]
        workers += [{"role": "worker", "pid": pid, "rss_kib": rss_kib(pid)} for pid in worker_pids(server.pid)]
        exit_code = stop_gunicorn(server)
        if exit_code != 0:
            print(f"bench: gunicorn exited with {exit_code} on SIGTERM:\n{tail(log_path)}", file=sys.stderr)
        usage = usage_check(fixture, runs, checks_sent, args.connections)
    except BenchError as error:
        print(f"bench: {error}", file=sys.stderr)
        return 1
    finally:
        if server is not None:
            stop_gunicorn(server)
        if args.keep:
            print(f"bench: kept {folder}", file=sys.stderr)
        else:
            shutil.rmtree(folder, ignore_errors=True)

    ratios = ratio_report(runs)
    print_table(runs, ratios, workers, args)
    warnings = anomalies(runs)
    for warning in warnings:
        print(f"WARNING: {warning}")
    print(describe_count("valid key's usage_count after shutdown", "successful valid-key requests",
                         usage["usage_count"]))
    print(describe_count("audited failed verifications after shutdown", "refused bad-key requests",
                         usage["audited_failures"]))
    report = {
        "machine": machine(),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "settings": {"rounds": args.rounds, "duration_s": args.duration, "warmup_s": args.warmup,
                     "wrk_threads": args.threads, "wrk_connections": args.connections,
                     "gunicorn_workers": args.workers, "access_log": args.access_log},
        "scenarios": {name: {"description": r.scenario.description, "median_rps": round(r.median, 1),
                             "median_cpu_us_per_request": {kind: _round(r.median_cpu_us(kind))
                                                           for kind in ("server", "client", "total")},
                             "rounds": [asdict(run) for run in r.rounds]} for name, r in runs.items()},
        "ratios": ratios,
        "warnings": warnings,
        "rss_after_load": workers,
        "usage_check": usage,
    }
    print()
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
