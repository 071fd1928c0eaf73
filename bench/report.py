"""The numbers `make bench` reports: medians over the rounds, ratios against their targets, the count checks, and
the tables printed for a database's phase and for the whole run."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from load import WrkResult
from scenarios import LOADS, RATIOS, Scenario

METRICS = {"rps": "requests_per_second", "p50": "latency_p50_ms", "p99": "latency_p99_ms"}
CPU_KINDS = ("server", "database", "proxy", "client", "total")


@dataclass
class ScenarioRuns:
    scenario: Scenario
    warmup: WrkResult | None = None
    rounds: list[WrkResult] = field(default_factory=list)

    def values(self, metric: str) -> list[float]:
        return [getattr(run, METRICS[metric]) or 0.0 for run in self.rounds]

    def median(self, metric: str = "rps") -> float:
        return statistics.median(self.values(metric))

    def median_cpu_us(self, kind: str) -> float | None:
        """Median over the rounds of the CPU microseconds per request: kind is one of CPU_KINDS."""
        values = [getattr(run, f"{kind}_cpu_us") for run in self.rounds]
        return statistics.median(values) if values and None not in values else None

    def rss_peak_kib(self) -> list[int]:
        """Each worker's largest resident memory over the rounds."""
        return [max(sizes) for sizes in zip(*(run.rss_peak_kib for run in self.rounds), strict=True)]

    def all_runs(self) -> list[WrkResult]:
        return ([self.warmup] if self.warmup else []) + self.rounds


def ratio_report(runs: dict[str, ScenarioRuns]) -> list[dict]:
    """Every ratio of RATIOS whose two scenarios ran: the ratio of the medians, each round's own ratio, and the same
    from the CPU a request costs (workers, database server, nginx and wrk together)."""
    rows = []
    for ratio in RATIOS:
        if ratio.numerator not in runs or ratio.denominator not in runs:
            continue
        top, bottom = runs[ratio.numerator], runs[ratio.denominator]
        value = top.median(ratio.metric) / bottom.median(ratio.metric)
        per_round = [a / b if b else None for a, b in zip(top.values(ratio.metric), bottom.values(ratio.metric),
                                                          strict=True)]
        inverse = ratio.metric == "rps"
        cpu_ratio = _from_cpu(top.median_cpu_us("total"), bottom.median_cpu_us("total"), inverse)
        cpu_per_round = [_from_cpu(a.total_cpu_us, b.total_cpu_us, inverse)
                         for a, b in zip(top.rounds, bottom.rounds, strict=True)]
        rows.append({"name": ratio.name, "metric": ratio.metric, "value": round(value, 3), "target": ratio.target,
                     "target_text": ratio.target_text, "meets_target": ratio.meets(value),
                     "per_round": [None if r is None else round(r, 3) for r in per_round],
                     "cpu_ratio": cpu_ratio, "cpu_per_round": cpu_per_round, "description": ratio.description})
    return rows


def _from_cpu(numerator: float | None, denominator: float | None, inverse: bool) -> float | None:
    """A ratio from CPU per request. For throughput (`inverse`), the ratio the two cores would give if they did
    nothing else: a cheaper request means more of them. For latency, the ratio of what the two requests cost."""
    if not numerator or not denominator:
        return None
    return round(denominator / numerator if inverse else numerator / denominator, 3)


def counted(server_count: int, client_count: int, slack: int) -> dict:
    """Compare a count Keyfob wrote to the database with what the clients saw answered.

    wrk counts only the responses it read before its time was up; a request already sent (or queued in the listen
    backlog) when wrk stops is still served, and counted, by Keyfob. So the server's count may exceed the clients'
    by at most its connections per wrk run (`slack`, summed over the runs); more than that, or any shortfall, means
    lost or double-counted events.
    """
    difference = server_count - client_count
    return {"database": server_count, "clients_saw": client_count, "difference": difference,
            "allowed_in_flight": slack, "consistent": 0 <= difference <= slack}


def describe_count(label: str, what: str, check: dict) -> str:
    verdict = "consistent" if check["consistent"] else "NOT consistent"
    return (f"{label}: {check['database']} in the database, {check['clients_saw']} {what} seen by the clients, "
            f"difference {check['difference']:+d}: {verdict} (requests in flight when wrk stops are served but not "
            f"counted by wrk: at most {check['allowed_in_flight']})")


def anomalies(runs: dict[str, ScenarioRuns]) -> list[str]:
    """Runs whose figures do not mean what the table says: wrong statuses under load, or socket errors."""
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


def _verdict(meets: bool | None) -> str:
    return "info" if meets is None else "PASS" if meets else "FAIL"


def us(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}"


def _mib(kib: int | None) -> str:
    return "gone" if kib is None else f"{kib / 1024:.1f}"


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def print_phase(title: str, runs: dict[str, ScenarioRuns], ratios: list[dict], processes: list[dict]) -> None:
    print()
    print(f"== {title} ==")
    print(f"{'scenario':<22} {'server':<6} {'wrk':<7} {'median req/s':>12}  {'rounds (req/s)':<32} {'p50 ms':>7} "
          f"{'p99 ms':>7}  rounds p50 ms / p99 ms")
    for name, r in runs.items():
        load = LOADS[r.scenario.load]
        rounds = " ".join(f"{v:.0f}" for v in r.values("rps"))
        latencies = " ".join(f"{a:.1f}/{b:.1f}" for a, b in zip(r.values("p50"), r.values("p99"), strict=True))
        print(f"{name:<22} {r.scenario.server:<6} {f'-c{load.connections}':<7} {r.median('rps'):>12.1f}  "
              f"{rounds:<32} {r.median('p50'):>7.2f} {r.median('p99'):>7.2f}  {latencies}")
    print()
    print("CPU µs per request, median of the rounds: gunicorn workers, database server (PostgreSQL's processes; "
          "SQLite runs inside the workers), nginx (its master and workers, for the requests through it), wrk")
    print(f"{'scenario':<22} {'workers':>8} {'database':>8} {'nginx':>6} {'wrk':>6} {'total':>7}  "
          f"{'workers per round':<30} RSS peak per worker under load, MiB")
    for name, r in runs.items():
        per_round = " ".join(us(run.server_cpu_us) for run in r.rounds)
        database, proxy = r.median_cpu_us("database"), r.median_cpu_us("proxy")
        rss = " ".join(_mib(kib) for kib in r.rss_peak_kib())
        print(f"{name:<22} {us(r.median_cpu_us('server')):>8} {'-' if database is None else us(database):>8} "
              f"{'-' if proxy is None else us(proxy):>6} {us(r.median_cpu_us('client')):>6} "
              f"{us(r.median_cpu_us('total')):>7}  {per_round:<30} {rss}")
    print()
    print(f"{'ratio':<36} {'value':>6} {'target':>7}  {'result':<6}  {'per round':<36} {'CPU':>6}  CPU per round")
    for row in ratios:
        verdict = _verdict(row["meets_target"])
        per_round = " ".join(_ratio(r) for r in row["per_round"])
        cpu_per_round = " ".join(_ratio(r) for r in row["cpu_per_round"])
        print(f"{row['name']:<36} {row['value']:>6.3f} {row['target_text']:>7}  {verdict:<6}  {per_round:<36} "
              f"{_ratio(row['cpu_ratio']):>6}  {cpu_per_round}")
    print()
    for process in processes:
        print(f"RSS after the load: {process['server']:<6} {process['role']:<6} pid {process['pid']:<7} "
              f"{_mib(process['rss_kib'])} MiB")


def print_summary(phases: dict[str, dict], elapsed_s: float) -> None:
    databases = list(phases)
    print()
    print("== Summary: every ratio, each database ==")
    print(f"{'ratio':<36} {'target':>7}  " + "  ".join(f"{d:<22}" for d in databases))
    measured = {row["name"] for phase in phases.values() for row in phase["ratios"]}
    names = [ratio.name for ratio in RATIOS if ratio.name in measured]
    for name in names:
        cells = []
        for database in databases:
            row = next((r for r in phases[database]["ratios"] if r["name"] == name), None)
            verdict = "" if row is None else _verdict(row["meets_target"])
            cells.append("not measured" if row is None else
                         f"{row['value']:.3f} {verdict} (CPU {_ratio(row['cpu_ratio'])})")
        target = next(r.target_text for r in RATIOS if r.name == name)
        print(f"{name:<36} {target:>7}  " + "  ".join(f"{cell:<22}" for cell in cells))
    for database in databases:
        workers = [p["rss_kib"] for p in phases[database]["rss_after_load"] if p["role"] == "worker" and p["rss_kib"]]
        if workers:
            print(f"{database}: worker RSS after the load {min(workers) / 1024:.1f} to {max(workers) / 1024:.1f} MiB")
    minutes, seconds = divmod(round(elapsed_s), 60)
    print(f"The whole run took {minutes} min {seconds} s.")
