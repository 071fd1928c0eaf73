"""Single-process cost of a request: WSGI calls straight into Keyfob, without gunicorn, wrk or the network.

`make bench` measures throughput under gunicorn, where the server's own work and the load generator share the CPU
with the app. This measures the app alone, so a change to the request path shows up in microseconds:

    .venv/bin/python bench/wsgi_cost.py                # CPU µs per request for each scenario of bench/run.py
    .venv/bin/python bench/wsgi_cost.py --breakdown    # also verify(), _lookup() and the guarded view, in place
    .venv/bin/python bench/wsgi_cost.py --profile whoami_valid    # cProfile of one scenario

The fixture is bench/run.py's: a fresh SQLite database in production mode, a user and a key made by the real CLI.
Each scenario runs in batches of calls, interleaved with the other scenarios; a batch's figure is the process CPU
time it took (time.process_time, so time the machine spends on other programs is not counted) divided by its calls.
The 10th percentile of the batches is reported beside the minimum and the median: on a shared machine the slow
batches are other programs' doing, the fast ones the code's.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as bench  # noqa: E402  (bench/run.py: the fixture and the scenarios)

WARMUP_CALLS = 200


def environ(path: str, token: str | None) -> dict:
    """A WSGI environ like gunicorn's for GET `path`, with the key in the Authorization header."""
    result = {
        "REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": "", "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000", "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(),
        "wsgi.errors": sys.stderr, "wsgi.multithread": False, "wsgi.multiprocess": True, "wsgi.run_once": False,
        "wsgi.version": (1, 0), "REMOTE_ADDR": "127.0.0.1", "HTTP_HOST": "127.0.0.1:8000", "HTTP_USER_AGENT": "wrk",
    }
    if token is not None:
        result["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return result


def caller(app, path: str, token: str | None) -> tuple[Callable[[], None], list[str]]:
    """A function making one request, and the list its statuses go into (the last one is kept)."""
    statuses: list[str] = [""]

    def start_response(status, headers, exc_info=None):
        statuses[0] = status

    def call() -> None:
        body = app(environ(path, token), start_response)
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


def breakdown(app, call: Callable[[], None], calls: int) -> dict[str, list[float]]:
    """Wall µs spent in verify(), _lookup() and the guarded whoami view during `calls` whoami requests."""
    from app.keys import service

    names = ("guarded whoami view (decorator, verify, view)", "service.verify()", "  of which service._lookup()")
    spent: dict[str, list[float]] = {name: [] for name in names}

    def timed(name: str, function: Callable) -> Callable:
        def wrapper(*args, **kwargs):
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                spent[name].append((time.perf_counter() - started) * 1e6)
        return wrapper

    originals = service.verify, service._lookup, app.view_functions["api.whoami"]
    app.view_functions["api.whoami"] = timed(names[0], originals[2])
    service.verify = timed(names[1], service.verify)
    service._lookup = timed(names[2], service._lookup)
    try:
        for _ in range(calls):
            call()
    finally:
        service.verify, service._lookup, app.view_functions["api.whoami"] = originals
    return spent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=80, help="batches per scenario (80)")
    parser.add_argument("--batch", type=int, default=250, help="calls per batch (250)")
    parser.add_argument("--breakdown", action="store_true", help="time verify(), _lookup() and the whoami view")
    parser.add_argument("--profile", choices=[scenario.name for scenario in bench.SCENARIOS],
                        help="print a cProfile of this scenario instead")
    args = parser.parse_args(argv)

    folder = Path(tempfile.mkdtemp(prefix="keyfob-wsgi-cost-"))
    try:
        env = bench.bench_environment(folder, 1, "127.0.0.1:0")
        fixture = bench.prepare(folder, env)
        os.environ.update(env)
        os.chdir(bench.ROOT)
        sys.path.insert(0, str(bench.ROOT))
        import wsgi

        app = wsgi.app
        calls, statuses = {}, {}
        for scenario in bench.SCENARIOS:
            calls[scenario.name], statuses[scenario.name] = caller(app, scenario.path,
                                                                   fixture.credential(scenario.key))
        for scenario in bench.SCENARIOS:
            for _ in range(WARMUP_CALLS):
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
        print(f"{'scenario':<24} {'min':>7} {'p10':>7} {'median':>7}  {'p10 - healthz':>13}")
        base = percentile(results["healthz"], 0.1)
        for name, values in results.items():
            p10 = percentile(values, 0.1)
            print(f"{name:<24} {min(values):>7.1f} {p10:>7.1f} {statistics.median(values):>7.1f}  "
                  f"{p10 - base:>+13.1f}")
        if args.breakdown:
            spent = breakdown(app, calls["whoami_valid"], args.batches * args.batch // 4)
            print()
            print("inside a valid whoami request, wall µs per request")
            print(f"{'part':<48} {'min':>7} {'p10':>7} {'median':>7}")
            for name, values in spent.items():
                print(f"{name:<48} {min(values):>7.1f} {percentile(values, 0.1):>7.1f} "
                      f"{statistics.median(values):>7.1f}")
        return 0
    finally:
        usage = sys.modules.get("wsgi") and sys.modules["wsgi"].app.extensions.get("keyfob.usage")
        if usage:
            usage.stop()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
