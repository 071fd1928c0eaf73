"""`make bench`: Keyfob under gunicorn on loopback, measured with wrk, on SQLite and on PostgreSQL in one run.

What it does, for each database in turn (a phase):

1. For each server of bench/scenarios.py (SERVERS: "base" with 1,000 keys in the table, "large" with 1,000,000),
   makes a fresh database in production mode (random SECRET_KEY and KEY_PEPPER): a SQLite file, or a database in a
   throwaway PostgreSQL cluster (bench/postgres.py). Migrates it, makes the bench user, its key and the dashboard
   users with the real CLI, and bulk-inserts the remaining keys (bench/seed.py).
2. Serves each database with its own gunicorn, 2 workers, on 127.0.0.1:<free port>: the production
   gunicorn.conf.py, loaded by bench/gunicorn_quiet.conf.py (access log and control socket off), serving
   bench/wsgi_bench.py (Keyfob's app with the bench's unguarded whoami). A third gunicorn with the same settings
   serves bench/bare_flask.py, the bare Flask app Keyfob's /healthz is measured against. Signs the
   dashboard users in through the login form for their session cookies.
3. Warms every scenario up, then runs them all in interleaved rounds (the order rotates each round, across both
   servers) so that the noise of a small shared machine hits every scenario alike. Each scenario's figure is the
   median over the rounds (throughput, or p50/p99 latency); each ratio is the ratio of the medians, printed with
   every round's own ratio beside it. Around every wrk run it reads the CPU time of the gunicorn workers and of
   PostgreSQL's processes (/proc/<pid>/stat) and of wrk (its rusage): CPU microseconds per request, and each ratio
   once more from those. While wrk runs it samples the workers' resident memory (VmRSS) for its peak.
4. Stops gunicorn with SIGTERM and checks that each key's usage_count adds up to the successful requests wrk saw
   (this exercises the usage flush at shutdown), and the audited failed verifications to the refused bad keys.

It is a report, not a test: it exits 0 whether or not a target is met, and non-zero only when it cannot measure
(wrk missing, a server not starting, an endpoint answering with the wrong status). PostgreSQL missing from the
machine skips that phase with one loud line (exit 0). Tables per database, a summary of every ratio and how long
the run took, then the whole result as one JSON document on stdout; nothing is written into the repository.

    .venv/bin/python bench/run.py                          # everything (what `make bench` runs)
    .venv/bin/python bench/run.py --only sqlite            # one database
    .venv/bin/python bench/run.py --scenarios healthz,whoami_valid --rounds 3
    .venv/bin/python bench/run.py --large-keys 100000      # a smaller "large" table, for a quick look
    make bench BENCH_ARGS="--only postgres"

The scenarios, servers and ratios are data, in bench/scenarios.py.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import secrets
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import nginx  # noqa: E402  (bench/*.py: the modules of the bench)
import postgres  # noqa: E402
import report  # noqa: E402
import seed  # noqa: E402
from load import WrkResult, run_wrk  # noqa: E402,F401  (WrkResult, ratio_report, process_cpu_seconds: for
from report import ScenarioRuns, ratio_report  # noqa: E402,F401  tests/unit/test_bench_cpu.py, which loads this file)
from scenarios import DATABASES, LOADS, SCENARIOS, SERVERS, Scenario, ServerSpec  # noqa: E402
from server import (  # noqa: E402
    BenchError,
    children,
    free_port,
    http_status,
    process_cpu_seconds,  # noqa: F401
    rss_kib,
    start_gunicorn,
    stop_gunicorn,
    tail,
    wait_for_workers,
    wait_ready,
)


@dataclass
class Server:
    """A running bench server: its data (none for the bare Flask app) and its gunicorn."""

    spec: ServerSpec
    fixture: seed.Fixture | None
    env: dict[str, str]
    base_url: str
    log_path: Path
    process: object = None
    workers: list[int] | None = None
    nginx: nginx.Nginx | None = None  # in front of it, when a scenario goes through nginx

    def url(self, scenario: Scenario) -> str:
        base = self.nginx.urls[scenario.via] if scenario.via else self.base_url
        return base + scenario.path

    def headers(self, scenario: Scenario) -> dict[str, str]:
        return self.fixture.headers(scenario.credential) if self.fixture else {}

    def body(self, scenario: Scenario) -> str | None:
        return self.fixture.body(scenario.credential) if self.fixture else None

    def proxy_pids(self, scenario: Scenario) -> list[int] | None:
        return self.nginx.pids() if scenario.via else None


def _sessions_needed(scenarios: list[Scenario], spec: ServerSpec) -> list[str]:
    labels = [s.credential.removeprefix("session:") for s in scenarios
              if s.server == spec.name and s.credential and s.credential.startswith("session:")]
    return list(dict.fromkeys(labels))


def _needs_verifier(scenarios: list[Scenario], spec: ServerSpec) -> bool:
    return any(s.server == spec.name and (s.credential == "verifier" or s.via) for s in scenarios)


def prepare_servers(database: str, specs: list[ServerSpec], scenarios: list[Scenario], folder: Path,
                    args: argparse.Namespace, secrets_: dict[str, str], admin_url: str | None) -> dict[str, Server]:
    servers = {}
    for spec in specs:
        server_folder = folder / database / spec.name
        server_folder.mkdir(parents=True)
        if database == "sqlite" or not spec.keyfob:
            url = f"sqlite:///{server_folder / 'keyfob.db'}"  # the bare app never opens it
        else:
            url = postgres.create_database(admin_url, f"keyfob_bench_{spec.name}")
        port = free_port()
        # The bare app gets the same environment: gunicorn.conf.py checks Keyfob's settings before it starts.
        env = seed.bench_environment(server_folder, args.workers, f"127.0.0.1:{port}", url, **secrets_)
        fixture = None
        if spec.keyfob:
            fixture = seed.prepare(spec, database, url, server_folder, env, _sessions_needed(scenarios, spec),
                                   _needs_verifier(scenarios, spec))
        servers[spec.name] = Server(spec, fixture, env, f"http://127.0.0.1:{port}", server_folder / "gunicorn.log")
    return servers


def check_statuses(scenarios: list[Scenario], servers: dict[str, Server]) -> dict[tuple[str, str | None], int]:
    """One request per scenario, before any load: the bench only measures endpoints that answer as expected.
    Returns how many requests this sent per (server, credential) (they count in usage_count and the audit log;
    "valid" stands for every scenario that uses the valid key)."""
    sent: dict[tuple[str, str | None], int] = {}
    for scenario in scenarios:
        server = servers[scenario.server]
        status = http_status(server.url(scenario), server.headers(scenario), method=scenario.method,
                             body=server.body(scenario))
        if status != scenario.expect_status:
            raise BenchError(f"{scenario.name}: {scenario.path} answered {status}, expected {scenario.expect_status}")
        key = (scenario.server, "valid" if scenario.uses_valid_key else scenario.credential)
        sent[key] = sent.get(key, 0) + 1
    return sent


def measure(wrk: str, scenarios: list[Scenario], servers: dict[str, Server], args: argparse.Namespace,
            database_pids) -> dict[str, ScenarioRuns]:
    def once(scenario: Scenario, seconds: int):
        server, load = servers[scenario.server], LOADS[scenario.load]
        return run_wrk(wrk, server.url(scenario), server.headers(scenario), seconds, load.threads,
                       load.connections, server.workers, database_pids, method=scenario.method,
                       body=server.body(scenario), proxy_pids=server.proxy_pids(scenario))

    runs = {scenario.name: ScenarioRuns(scenario) for scenario in scenarios}
    if args.warmup > 0:
        for scenario in scenarios:
            runs[scenario.name].warmup = once(scenario, args.warmup)
    for round_index in range(args.rounds):
        shift = round_index % len(scenarios)
        order = scenarios[shift:] + scenarios[:shift]  # rotate, so no scenario always runs first or last
        print(f"round {round_index + 1}/{args.rounds}", file=sys.stderr)
        for scenario in order:
            result = once(scenario, args.duration)
            runs[scenario.name].rounds.append(result)
            print(f"  {scenario.name:<22} {result.requests_per_second:>8.1f} req/s  p50 {result.latency_p50_ms} ms "
                  f"p99 {result.latency_p99_ms} ms  ({result.requests} requests, {result.non_2xx} non-2xx, "
                  f"{result.socket_errors} socket errors; CPU µs per request: workers "
                  f"{report.us(result.server_cpu_us)}, database {report.us(result.database_cpu_us)}, nginx "
                  f"{report.us(result.proxy_cpu_us)}, wrk "
                  f"{report.us(result.client_cpu_us)})", file=sys.stderr)
    return runs


def usage_checks(servers: dict[str, Server], runs: dict[str, ScenarioRuns],
                 checks_sent: dict[tuple[str, str | None], int]) -> dict[str, dict]:
    """After shutdown, per server: the key's usage_count against the 2xx answers to the valid key (this checks the
    usage flush at worker exit), and the audited failed verifications against the refusals of the bad key."""
    found = {}
    for name, server in servers.items():
        if server.fixture is None:
            continue  # the bare app: no key, no database

        def runs_for(kind: str, server_name: str = name):
            return [(run, LOADS[r.scenario.load].connections) for r in runs.values()
                    if r.scenario.server == server_name and (r.scenario.uses_valid_key if kind == "valid" else
                                                             r.scenario.credential == kind)
                    for run in r.all_runs()]

        fixture = server.fixture
        usage_count = seed.scalar(fixture.database_url, "SELECT usage_count FROM api_keys WHERE id = :id",
                                  id=fixture.key_id)
        failures = seed.scalar(fixture.database_url,
                               "SELECT count(*) FROM audit_events WHERE event = 'key.verify_failed'")
        valid, bad = runs_for("valid"), runs_for("bad_checksum")
        found[name] = {
            "usage_count": report.counted(
                usage_count, sum(run.ok_requests for run, _ in valid) + checks_sent.get((name, "valid"), 0),
                sum(connections for _, connections in valid)),
            "audited_failures": report.counted(
                failures, sum(run.non_2xx for run, _ in bad) + checks_sent.get((name, "bad_checksum"), 0),
                sum(connections for _, connections in bad)),
        }
    return found


def run_phase(database: str, scenarios: list[Scenario], specs: list[ServerSpec], wrk: str, folder: Path,
              args: argparse.Namespace, secrets_: dict[str, str]) -> dict:
    """Everything for one database: its servers, the measurement, the checks. Returns the phase's report."""
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        admin_url, postmaster, description = None, None, "SQLite, a file per server (WAL, synchronous=NORMAL)"
        if database == "postgres":
            pg = stack.enter_context(postgres.server(args.postgres_url))
            admin_url, postmaster, description = pg.admin_url, pg.postmaster_pid, pg.description
            seed.say(f"postgres: {pg.description}")
        servers = prepare_servers(database, specs, scenarios, folder, args, secrets_, admin_url)
        try:
            for server in servers.values():
                server.process = start_gunicorn(server.env, server.log_path, args.access_log, server.spec.app)
            for name, server in servers.items():
                wait_ready(server.process, server.base_url, server.log_path,
                           "/readyz" if server.spec.keyfob else "/healthz")
                server.workers = wait_for_workers(server.process.pid, args.workers)
                for label, password in (server.fixture.passwords if server.fixture else {}).items():
                    request = functools.partial(seed.http_request, server.base_url)
                    server.fixture.sessions[label] = seed.sign_in(request, seed.dashboard_email(label), password)
                seed.say(f"{database}/{name}: gunicorn {args.workers} workers on {server.base_url}")
                if any(s.server == name and s.via for s in scenarios):
                    server.nginx = stack.enter_context(nginx.running(
                        server.fixture.folder / "nginx", server.base_url.removeprefix("http://"),
                        server.fixture.verifier))
                    seed.say(f"{database}/{name}: nginx on {', '.join(server.nginx.urls.values())}")
            checks_sent = check_statuses(scenarios, servers)
            database_pids = (lambda: [postmaster, *children(postmaster)]) if postmaster else None
            measuring = time.monotonic()
            runs = measure(wrk, scenarios, servers, args, database_pids)
            measured_s = time.monotonic() - measuring
            processes = []
            for name, server in servers.items():
                processes.append({"server": name, "role": "master", "pid": server.process.pid,
                                  "rss_kib": rss_kib(server.process.pid)})
                processes += [{"server": name, "role": "worker", "pid": pid, "rss_kib": rss_kib(pid)}
                              for pid in children(server.process.pid)]
        finally:
            for name, server in servers.items():
                if server.process is not None:
                    exit_code = stop_gunicorn(server.process)
                    if exit_code != 0:
                        print(f"bench: {database}/{name}: gunicorn exited with {exit_code} on SIGTERM:\n"
                              f"{tail(server.log_path)}", file=sys.stderr)
        checks = usage_checks(servers, runs, checks_sent)
        if args.postgres_url and database == "postgres":
            for spec in specs:
                if spec.keyfob:
                    postgres.drop_database(admin_url, f"keyfob_bench_{spec.name}")
    ratios = report.ratio_report(runs)
    report.print_phase(f"{database}: {description}", runs, ratios, processes)
    warnings = report.anomalies(runs)
    for warning in warnings:
        print(f"WARNING: {warning}")
    for name, check in checks.items():
        print(report.describe_count(f"{name}: the valid key's usage_count after shutdown",
                                    "successful valid-key requests", check["usage_count"]))
        print(report.describe_count(f"{name}: audited failed verifications after shutdown",
                                    "refused bad-key requests", check["audited_failures"]))
    return {
        "database": description,
        "servers": {spec.name: {"app": spec.app, "total_keys": spec.total_keys,
                                "dashboard_users": spec.dashboard_users} for spec in specs},
        "scenarios": {name: {"description": r.scenario.description, "server": r.scenario.server,
                             "wrk": asdict(LOADS[r.scenario.load]),
                             "median": {metric: round(r.median(metric), 3) for metric in report.METRICS},
                             "median_cpu_us_per_request": {kind: _round(r.median_cpu_us(kind))
                                                           for kind in report.CPU_KINDS},
                             "rss_peak_kib": r.rss_peak_kib(),
                             "rounds": [asdict(run) for run in r.rounds]} for name, r in runs.items()},
        "ratios": ratios,
        "warnings": warnings,
        "rss_after_load": processes,
        "usage_check": checks,
        "measured_s": round(measured_s, 1),
        "phase_s": round(time.monotonic() - started, 1),
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def machine() -> dict:
    model = "unknown"
    with contextlib.suppress(OSError):
        model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), model)
    return {"nproc": os.cpu_count(), "cpu": model, "python": sys.version.split()[0]}


def _names(text: str, known: list[str], what: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in known]
    if unknown:
        raise SystemExit(f"bench: unknown {what}: {', '.join(unknown)} (known: {', '.join(known)})")
    return names


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(DATABASES),
                        help="databases to bench, comma-separated: sqlite, postgres (default both)")
    parser.add_argument("--scenarios", default=",".join(s.name for s in SCENARIOS),
                        help="scenarios to run, comma-separated (default all; see bench/scenarios.py)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds of every scenario (default 5)")
    parser.add_argument("--duration", type=int, default=4, help="seconds of load per scenario per round (4)")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of unrecorded load per scenario first (2)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers per server, WEB_CONCURRENCY (2)")
    parser.add_argument("--large-keys", type=int, default=None,
                        help="keys in the large server's table (default 1,000,000)")
    parser.add_argument("--postgres-url", default=os.environ.get("BENCH_POSTGRES_URL"),
                        help="a PostgreSQL superuser URL to bench on instead of a throwaway cluster (the bench "
                             "creates and drops databases keyfob_bench_* there); or BENCH_POSTGRES_URL")
    parser.add_argument("--access-log", action="store_true",
                        help="keep gunicorn.conf.py's access log on (into the server log), to see what it costs")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (databases, server logs)")
    args = parser.parse_args(argv)
    args.only = _names(args.only, list(DATABASES), "database")
    args.scenarios = _names(args.scenarios, [s.name for s in SCENARIOS], "scenario")
    return args


def main(argv: list[str] | None = None) -> int:
    started = time.monotonic()
    args = parse_args(argv)
    wrk = shutil.which("wrk")
    if wrk is None:
        print("bench: wrk is not installed; install it with `apt-get install -y wrk` (Debian/Ubuntu) and run "
              "`make bench` again", file=sys.stderr)
        return 2
    scenarios = [s for s in SCENARIOS if s.name in args.scenarios]
    specs = [spec for spec in SERVERS if any(s.server == spec.name for s in scenarios)]
    if args.large_keys is not None:
        specs = [replace(spec, total_keys=args.large_keys) if spec.name == "large" else spec for spec in specs]
    secrets_ = {"secret_key": secrets.token_urlsafe(48), "key_pepper": secrets.token_urlsafe(48)}
    folder = Path(tempfile.mkdtemp(prefix="keyfob-bench-"))
    started_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    phases, skipped = {}, {}
    try:
        for database in args.only:
            if database == "postgres":
                try:
                    postgres.check_available(args.postgres_url)
                except postgres.PostgresUnavailable as error:
                    print(f"\n*** SKIPPED: the bench did NOT run on PostgreSQL: {error} ***\n", file=sys.stderr)
                    skipped[database] = str(error)
                    continue
            phases[database] = run_phase(database, scenarios, specs, wrk, folder, args, secrets_)
    except BenchError as error:
        print(f"bench: {error}", file=sys.stderr)
        return 1
    finally:
        if args.keep:
            print(f"bench: kept {folder}", file=sys.stderr)
        else:
            shutil.rmtree(folder, ignore_errors=True)

    elapsed = time.monotonic() - started
    report.print_summary(phases, elapsed)
    result = {
        "machine": machine(),
        "started_at": started_at,
        "elapsed_s": round(elapsed, 1),
        "settings": {"rounds": args.rounds, "duration_s": args.duration, "warmup_s": args.warmup,
                     "gunicorn_workers": args.workers, "access_log": args.access_log,
                     "loads": {name: asdict(load) for name, load in LOADS.items()}},
        "phases": phases,
        "skipped": skipped,
    }
    print()
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
