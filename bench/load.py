"""One wrk run, and what the bench measures around it: CPU time of the workers, the database server, nginx (when
the request goes through it) and wrk, and the workers' resident memory while the load runs."""

from __future__ import annotations

import re
import resource
import subprocess
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from server import BenchError, cpu_seconds, rss_kib

RSS_SAMPLE_SECONDS = 0.5


@dataclass
class WrkResult:
    requests_per_second: float
    requests: int
    non_2xx: int
    socket_errors: int
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    server_cpu_s: float | None = None  # CPU time (user + system) of the serving gunicorn's workers during the run
    database_cpu_s: float | None = None  # CPU time of the database server's processes (PostgreSQL; None for SQLite)
    proxy_cpu_s: float | None = None  # CPU time of nginx's processes (None when the request does not cross it)
    client_cpu_s: float | None = None  # CPU time of wrk itself
    rss_peak_kib: list[int] = field(default_factory=list)  # each worker's largest VmRSS seen during the run

    @property
    def ok_requests(self) -> int:
        return self.requests - self.non_2xx

    def _per_request_us(self, seconds: float | None) -> float | None:
        return seconds / self.requests * 1e6 if seconds is not None and self.requests else None

    @property
    def server_cpu_us(self) -> float | None:
        """Worker CPU microseconds per request."""
        return self._per_request_us(self.server_cpu_s)

    @property
    def database_cpu_us(self) -> float | None:
        return self._per_request_us(self.database_cpu_s)

    @property
    def proxy_cpu_us(self) -> float | None:
        return self._per_request_us(self.proxy_cpu_s)

    @property
    def client_cpu_us(self) -> float | None:
        return self._per_request_us(self.client_cpu_s)

    @property
    def total_cpu_us(self) -> float | None:
        """Workers, database server, nginx and wrk: all the CPU one request costs on this machine."""
        if self.server_cpu_us is None or self.client_cpu_us is None:
            return None
        return self.server_cpu_us + (self.database_cpu_us or 0.0) + (self.proxy_cpu_us or 0.0) + self.client_cpu_us


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


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class _RssSampler(threading.Thread):
    """Reads the workers' VmRSS every RSS_SAMPLE_SECONDS while wrk runs and keeps each one's peak."""

    def __init__(self, pids: list[int]) -> None:
        super().__init__(daemon=True)
        self.pids = pids
        self.peak = dict.fromkeys(pids, 0)
        self.done = threading.Event()

    def sample(self) -> None:
        for pid in self.pids:
            self.peak[pid] = max(self.peak[pid], rss_kib(pid) or 0)

    def run(self) -> None:
        while not self.done.wait(RSS_SAMPLE_SECONDS):
            self.sample()

    def stop(self) -> list[int]:
        self.done.set()
        self.join()
        self.sample()
        return [self.peak[pid] for pid in self.pids]


def _spent(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds spent between two readings, by the processes present in both."""
    return sum(after[pid] - before[pid] for pid in before.keys() & after.keys())


def wrk_script(method: str, body: str | None) -> str:
    """A wrk Lua script sending every request with this method and body (headers still come from -H)."""
    lines = [f'wrk.method = "{method}"']
    if body is not None:
        if "]==]" in body:
            raise ValueError("the body would end the Lua long string")
        lines.append(f"wrk.body = [==[{body}]==]")
    return "\n".join(lines) + "\n"


def run_wrk(wrk: str, url: str, headers: dict[str, str], seconds: int, threads: int, connections: int,
            workers: list[int], database_pids: Callable[[], list[int]] | None = None, method: str = "GET",
            body: str | None = None, proxy_pids: list[int] | None = None) -> WrkResult:
    """One wrk run against `url` (a `method` other than GET, or a `body`, through a Lua script), with the CPU time
    the `workers`, the database server's processes, nginx's (`proxy_pids`) and wrk used during it, and the workers'
    peak resident memory."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", prefix="keyfob-bench-") as script:
        command = [wrk, f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency"]
        if method != "GET" or body is not None:
            script.write(wrk_script(method, body))
            script.flush()
            command += ["-s", script.name]
        for name, value in headers.items():
            command += ["-H", f"{name}: {value}"]
        command.append(url)
        database, proxy = database_pids() if database_pids else [], proxy_pids or []
        server_before, database_before, proxy_before = cpu_seconds(workers), cpu_seconds(database), cpu_seconds(proxy)
        client_before = children_cpu_seconds()  # wrk is the only child waited for in between
        sampler = _RssSampler(workers)
        sampler.start()
        result = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603 -- fixed argv
        rss_peak = sampler.stop()
        client_cpu = children_cpu_seconds() - client_before
        server_after, database_after, proxy_after = cpu_seconds(workers), cpu_seconds(database), cpu_seconds(proxy)
    if result.returncode != 0:
        raise BenchError(f"wrk failed ({result.returncode}): {result.stderr or result.stdout}")
    parsed = parse_wrk(result.stdout)
    parsed.client_cpu_s = client_cpu
    parsed.server_cpu_s = _spent(server_before, server_after) if len(server_after) == len(workers) else None
    parsed.database_cpu_s = _spent(database_before, database_after) if database_pids else None
    parsed.proxy_cpu_s = _spent(proxy_before, proxy_after) if proxy_pids else None
    parsed.rss_peak_kib = rss_peak
    return parsed
