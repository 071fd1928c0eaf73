"""Single-process cost of a request: WSGI calls straight into Keyfob, without gunicorn, wrk or the network.

`make bench` measures throughput under gunicorn, where the server's own work and the load generator share the CPU
with the app. This measures the app alone, so a change to the request path shows up in microseconds:

    .venv/bin/python bench/wsgi_cost.py                # CPU µs per request for each scenario of bench/run.py
    .venv/bin/python bench/wsgi_cost.py --breakdown    # also verify(), cached_lookup() and the guarded view, in place
    .venv/bin/python bench/wsgi_cost.py --profile whoami_valid    # cProfile of one scenario
    .venv/bin/python bench/wsgi_cost.py --database postgres       # the same on PostgreSQL
    .venv/bin/python bench/wsgi_cost.py --server large --breakdown    # the key list pages: queries, render, SQL

Through nginx, only the forward-auth subrequest is Keyfob's work: `nginx_forward_auth` here is the request nginx's
protected location sends to /forward-auth (as docs/proxies/nginx.conf builds it), and `nginx_plain` is left out.

The fixture is one of `make bench`'s servers (bench/seed.py): a fresh database in production mode with 1,000 keys
(base), or 1,000,000 (large, with the dashboard users; --large-keys for fewer), the bench user's key made by the real
CLI; SQLite, or with `--database postgres` a throwaway PostgreSQL cluster. The app is bench/wsgi_bench.py's (Keyfob's,
with the unguarded whoami); with base, bench/bare_flask.py's healthz is measured beside it.
Each scenario runs in batches of calls, interleaved with the other scenarios; a batch's figure is the process CPU
time it took (time.process_time, so time the machine spends on other programs is not counted) divided by its calls.
The 10th percentile of the batches is reported beside the minimum and the median: on a shared machine the slow
batches are other programs' doing, the fast ones the code's.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import functools
import io
import os
import pstats
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import postgres  # noqa: E402  (bench/*.py: the fixture and the scenarios of `make bench`)
import seed  # noqa: E402
from scenarios import SCENARIOS, server_spec  # noqa: E402
from server import ROOT  # noqa: E402

# The app alone: every scenario sent straight to gunicorn, and of those through nginx the forward-auth subrequest
# (FORWARD_AUTH): nginx's own share is not Keyfob's, and the plain one is healthz again.
APP_SCENARIOS = [s for s in SCENARIOS if s.via in (None, "nginx")]

WARMUP_CALLS = 200


def environ(path: str, headers: dict[str, str], method: str = "GET", body: bytes = b"") -> dict:
    """A WSGI environ like gunicorn's for `method` `path` (with its query string), these request headers and body."""
    path, _, query = path.partition("?")
    result = {
        "REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query, "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000", "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body), "wsgi.errors": sys.stderr, "wsgi.multithread": False,
        "wsgi.multiprocess": True, "wsgi.run_once": False, "wsgi.version": (1, 0), "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1:8000", "HTTP_USER_AGENT": "wrk",
    }
    if body:
        result["CONTENT_LENGTH"] = str(len(body))
    for name, value in headers.items():
        key = name.upper().replace("-", "_")
        result[key if key == "CONTENT_TYPE" else "HTTP_" + key] = value
    return result


def forward_auth_request(scenario, fixture: seed.Fixture) -> tuple[str, dict[str, str]]:
    """The path and headers of the subrequest nginx's protected location sends to Keyfob for `scenario`
    (docs/proxies/nginx.conf's `location = /_keyfob`): the client's key, the verifier, the original request."""
    headers = {**fixture.headers(scenario.credential), "X-Keyfob-Verifier": fixture.verifier,
               "X-Original-Method": scenario.method, "X-Original-URI": scenario.path,
               "X-Forwarded-For": "127.0.0.1", "X-Forwarded-Proto": "http", "X-Forwarded-Host": "127.0.0.1"}
    return "/forward-auth?for=nginx", headers


def caller(app, path: str, headers: dict[str, str], method: str = "GET",
           body: str | None = None) -> tuple[Callable[[], None], list[str]]:
    """A function making one request, and the list its statuses go into (the last one is kept)."""
    statuses: list[str] = [""]
    data = (body or "").encode()

    def start_response(status, headers, exc_info=None):
        statuses[0] = status

    def call() -> None:
        body = app(environ(path, headers, method, data), start_response)
        for _ in body:
            pass
        if hasattr(body, "close"):
            body.close()

    return call, statuses


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[int(fraction * (len(ordered) - 1))]


def measure(calls: dict[str, Callable[[], None]], batches: int, batch: int) -> dict[str, list[float]]:
    """CPU µs per call of each batch, scenarios interleaved batch by batch."""
    results: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(batches):
        for name, call in calls.items():
            started = time.process_time()
            for _ in range(batch):
                call()
            results[name].append((time.process_time() - started) / batch * 1e6)
    return results


def breakdown(app, call: Callable[[], None], calls: int, parts: dict[str, tuple[object, str]],
              sql: bool = False) -> dict[str, list[float]]:
    """Wall µs per request spent in each part during `calls` requests. A part is a function, named by its owner (a
    module, or a dict such as app.view_functions) and its name there, swapped for a timed wrapper meanwhile; with
    `sql`, also the time in the driver's cursor.execute() for every statement."""
    from sqlalchemy import event

    from app.extensions import db

    current = dict.fromkeys(parts, 0.0)
    spent: dict[str, list[float]] = {name: [] for name in parts}

    def timed(name: str, function: Callable) -> Callable:
        def wrapper(*args, **kwargs):
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                current[name] += (time.perf_counter() - started) * 1e6
        return wrapper

    def get(owner, name):
        return owner[name] if isinstance(owner, dict) else getattr(owner, name)

    def put(owner, name, value):
        if isinstance(owner, dict):
            owner[name] = value
        else:
            setattr(owner, name, value)

    originals = {label: get(owner, name) for label, (owner, name) in parts.items()}
    for label, (owner, name) in parts.items():
        put(owner, name, timed(label, originals[label]))
    statement_started: list[float] = []
    sql_label = "SQL: the driver's execute(), every statement"

    def before(*_args):
        statement_started.append(time.perf_counter())

    def after(*_args):
        current[sql_label] += (time.perf_counter() - statement_started.pop()) * 1e6

    if sql:
        current[sql_label], spent[sql_label] = 0.0, []
        with app.app_context():
            engine = db.engine
        event.listen(engine, "before_cursor_execute", before)
        event.listen(engine, "after_cursor_execute", after)
    try:
        for _ in range(calls):
            call()
            for name in current:
                spent[name].append(current[name])
                current[name] = 0.0
    finally:
        for label, (owner, name) in parts.items():
            put(owner, name, originals[label])
        if sql:
            event.remove(engine, "before_cursor_execute", before)
            event.remove(engine, "after_cursor_execute", after)
    return spent


def print_breakdown(title: str, spent: dict[str, list[float]]) -> None:
    print()
    print(title)
    print(f"{'part':<52} {'min':>8} {'p10':>8} {'median':>8}")
    for name, values in spent.items():
        print(f"{name:<52} {min(values):>8.1f} {percentile(values, 0.1):>8.1f} {statistics.median(values):>8.1f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=None, help="batches per scenario (80; 30 with --server large)")
    parser.add_argument("--batch", type=int, default=None, help="calls per batch (250; 20 with --server large)")
    parser.add_argument("--breakdown", action="store_true", help="time verify(), cached_lookup() and the whoami view")
    parser.add_argument("--profile", choices=[scenario.name for scenario in APP_SCENARIOS],
                        help="print a cProfile of this scenario instead")
    parser.add_argument("--server", choices=["base", "large"], default="base",
                        help="make bench's server to build and whose scenarios to run: base (1,000 keys: healthz, "
                             "whoami, the verification API, forward auth) or large (1,000,000 keys: whoami, the "
                             "dashboards)")
    parser.add_argument("--large-keys", type=int, default=None, help="keys in the large server's table (1,000,000)")
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite",
                        help="SQLite (default) or a throwaway PostgreSQL cluster (or BENCH_POSTGRES_URL's server)")
    args = parser.parse_args(argv)
    # The bare Flask app's healthz beside the base server's: what Keyfob's request handling costs, without gunicorn.
    scenarios = [s for s in APP_SCENARIOS if s.server == args.server or (args.server == "base" and s.server == "bare")]
    large = args.server == "large"  # pages of 20 ms rather than requests of 0.2 ms
    args.batches = args.batches or (30 if large else 80)
    args.batch = args.batch or (20 if large else 250)
    if args.profile and args.profile not in {s.name for s in scenarios}:
        parser.error(f"{args.profile} runs on the {server_spec(args.profile).server} server: add --server")
    spec = server_spec(args.server)
    if args.server == "large" and args.large_keys is not None:
        spec = replace(spec, total_keys=args.large_keys)

    folder = Path(tempfile.mkdtemp(prefix="keyfob-wsgi-cost-"))
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, folder, ignore_errors=True)
        if args.database == "postgres":
            postgres_url = os.environ.get("BENCH_POSTGRES_URL")
            postgres.check_available(postgres_url)
            pg = stack.enter_context(postgres.server(postgres_url))
            url = postgres.create_database(pg.admin_url, "keyfob_wsgi_cost")
            if postgres_url:
                stack.callback(postgres.drop_database, pg.admin_url, "keyfob_wsgi_cost")
        else:
            url = f"sqlite:///{folder / 'keyfob.db'}"
        env = seed.bench_environment(folder, 1, "127.0.0.1:0", url, secret_key=secrets.token_urlsafe(48),
                                     key_pepper=secrets.token_urlsafe(48))
        fixture = seed.prepare(spec, args.database, url, folder, env, list(spec.dashboard_users),
                               verifier=any(s.credential == "verifier" or s.via for s in scenarios))
        stack.callback(_stop_usage_buffer)
        return _run(args, env, fixture, scenarios)


def _stop_usage_buffer() -> None:
    usage = sys.modules.get("wsgi") and sys.modules["wsgi"].app.extensions.get("keyfob.usage")
    if usage:
        usage.stop()


def wsgi_request(app, method: str, path: str, cookie: str | None,
                 form: dict | None = None) -> tuple[int, str | None, str]:
    """seed.http_request's answer, straight through the WSGI app (for seed.sign_in)."""
    client = app.test_client(use_cookies=False)
    headers = {"Cookie": f"{seed.SESSION_COOKIE}={cookie}"} if cookie else {}
    response = client.open(path, method=method, data=form, headers=headers)
    return response.status_code, seed._cookie(response.headers.getlist("Set-Cookie")), response.get_data(as_text=True)


def _run(args: argparse.Namespace, env: dict[str, str], fixture: seed.Fixture, scenarios: list) -> int:
    os.environ.update(env)
    os.chdir(ROOT)
    sys.path.insert(0, str(ROOT))
    import bare_flask
    import wsgi_bench

    app = wsgi_bench.app
    for label, password in fixture.passwords.items():
        fixture.sessions[label] = seed.sign_in(functools.partial(wsgi_request, app), seed.dashboard_email(label),
                                               password)
    calls, statuses = {}, {}
    for scenario in scenarios:
        if scenario.via == "nginx":
            path, headers = forward_auth_request(scenario, fixture)
            calls[scenario.name], statuses[scenario.name] = caller(app, path, headers)
        else:
            calls[scenario.name], statuses[scenario.name] = caller(
                bare_flask.app if scenario.server == "bare" else app, scenario.path,
                fixture.headers(scenario.credential), scenario.method, fixture.body(scenario.credential))
    for scenario in scenarios:
        for _ in range(min(WARMUP_CALLS, 2 * args.batch)):
            calls[scenario.name]()
        if not statuses[scenario.name][0].startswith(str(scenario.expect_status)):
            print(f"wsgi_cost: {scenario.name} answered {statuses[scenario.name][0]}, expected "
                  f"{scenario.expect_status}", file=sys.stderr)
            return 1

    if args.profile:
        profiler = cProfile.Profile()
        profiler.runcall(lambda: [calls[args.profile]() for _ in range(args.batches * args.batch // 4)])
        stats = pstats.Stats(profiler)
        stats.sort_stats("cumulative").print_stats(40)
        stats.sort_stats("tottime").print_stats(25)
        return 0

    results = measure(calls, args.batches, args.batch)
    print(f"CPU µs per request, {args.batches} interleaved batches of {args.batch} calls")
    print(f"{'scenario':<24} {'min':>7} {'p10':>7} {'median':>7}  {'p10 - ' + scenarios[0].name:>13}")
    base = percentile(results[scenarios[0].name], 0.1)
    for name, values in results.items():
        p10 = percentile(values, 0.1)
        print(f"{name:<24} {min(values):>7.1f} {p10:>7.1f} {statistics.median(values):>7.1f}  "
              f"{p10 - base:>+13.1f}")
    if args.breakdown:
        from app.dashboard import routes
        from app.keys import queries, verification

        if "whoami_valid" in calls:
            parts = {"guarded whoami view (decorator, verify, view)": (app.view_functions, "api.whoami"),
                     "verification.verify()": (verification, "verify"),
                     "  of which verification.cached_lookup()": (verification, "cached_lookup")}
            spent = breakdown(app, calls["whoami_valid"], args.batches * args.batch // 4, parts)
            print_breakdown("inside a valid whoami request, wall µs per request", spent)
        parts = {"the key list view (queries and page)": (app.view_functions, "dashboard.index"),
                 "  queries.key_page(), twice: live keys, ended keys": (queries, "key_page"),
                 "  queries.expiring(): the keys to renew": (queries, "expiring"),
                 "  render_template()": (routes, "render_template")}
        for name in (s.name for s in scenarios if s.path == "/keys/"):
            spent = breakdown(app, calls[name], args.batches * args.batch // 4, parts, sql=True)
            print_breakdown(f"inside {name}, wall µs per request", spent)
    return 0


if __name__ == "__main__":
    sys.exit(main())
