"""bench/run.py's CPU accounting: CPU time per request, and ratios computed from it."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from tests.bench_modules import bench_run


@pytest.fixture(scope="module")
def bench():
    with bench_run("keyfob_bench_run") as module:
        yield module


def _result(bench, rps: float, requests: int, server_cpu_s: float, client_cpu_s: float):
    return bench.WrkResult(requests_per_second=rps, requests=requests, non_2xx=0, socket_errors=0,
                           latency_p50_ms=1.0, latency_p99_ms=2.0, server_cpu_s=server_cpu_s,
                           client_cpu_s=client_cpu_s)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_process_cpu_seconds_counts_the_cpu_a_process_burns(bench):
    before = bench.process_cpu_seconds([os.getpid()])
    deadline = time.process_time() + 0.3
    while time.process_time() < deadline:
        pass
    after = bench.process_cpu_seconds([os.getpid()])
    assert before is not None and after is not None
    assert 0.2 <= after - before <= 1.0  # clock ticks are 10 ms; the loop burnt 0.3 s
    assert bench.process_cpu_seconds([2 ** 22 + 7]) is None  # above Linux's highest pid: no such process


def test_cpu_per_request_and_the_ratio_from_it(bench):
    scenario = sys.modules["scenarios"].scenario
    cheap = bench.ScenarioRuns(scenario("healthz"), rounds=[
        _result(bench, 5000, 10_000, 3.0, 0.6), _result(bench, 4000, 10_000, 3.2, 0.6),
        _result(bench, 6000, 10_000, 2.8, 0.6)])
    dear = bench.ScenarioRuns(scenario("whoami_valid"), rounds=[
        _result(bench, 2500, 5_000, 2.5, 0.4), _result(bench, 1000, 5_000, 2.6, 0.4),
        _result(bench, 3000, 5_000, 2.4, 0.4)])
    assert cheap.rounds[0].server_cpu_us == pytest.approx(300)
    assert cheap.rounds[0].total_cpu_us == pytest.approx(360)
    assert cheap.median_cpu_us("total") == pytest.approx(360)
    assert dear.median_cpu_us("server") == pytest.approx(500)
    assert dear.median_cpu_us("total") == pytest.approx(580)

    runs = {"healthz": cheap, "whoami_valid": dear,
            "whoami_bad_checksum": bench.ScenarioRuns(scenario("whoami_bad_checksum"), rounds=cheap.rounds)}
    row = next(row for row in bench.ratio_report(runs) if row["name"] == "whoami_valid / healthz")
    assert row["value"] == pytest.approx(2500 / 5000, abs=0.001)  # ratio of the median throughputs
    assert row["cpu_ratio"] == pytest.approx(360 / 580, abs=0.001)  # the dearer request gets the smaller share
    assert row["cpu_per_round"] == [pytest.approx(360 / 580, abs=0.001), pytest.approx(380 / 600, abs=0.001),
                                    pytest.approx(340 / 560, abs=0.001)]


def test_without_cpu_figures_the_cpu_ratio_is_absent(bench):
    bare = bench.WrkResult(1000, 100, 0, 0, 1.0, 2.0)
    scenario = sys.modules["scenarios"].scenario
    runs = {name: bench.ScenarioRuns(scenario(name), rounds=[bare])
            for name in ("healthz", "whoami_valid", "whoami_bad_checksum")}
    assert bare.total_cpu_us is None
    assert all(row["cpu_ratio"] is None for row in bench.ratio_report(runs))
