"""What `make bench` measures: the servers, the scenarios run against them, and the ratios with their targets.

Data only. bench/run.py runs every scenario once per database (SQLite, PostgreSQL), on the server it names, in
interleaved rounds, and computes every ratio whose two scenarios were measured. To add a measurement, add a Scenario
(and a Ratio if it has a target); a new kind of credential goes into seed.Fixture.credential, a new shape of data
into a ServerSpec here and seed.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DATABASES = ("sqlite", "postgres")


@dataclass(frozen=True)
class ServerSpec:
    """One gunicorn and what it serves. Keyfob's servers (`keyfob`) serve bench/wsgi_bench.py (Keyfob's app, plus
    the bench's unguarded whoami) on a database of their own: `total_keys` counts every row of api_keys, the bench
    user's key, the keys of `dashboard_users` (email label: how many keys), and filler keys of other users. The bare
    server serves bench/bare_flask.py, with no database."""

    name: str
    total_keys: int
    dashboard_users: dict[str, int] = field(default_factory=dict)
    description: str = ""
    app: str = "wsgi_bench:app"  # gunicorn's app, a module in bench/ or the repository's root
    keyfob: bool = True  # False: not Keyfob, nothing to seed, and no /readyz (bench/server.py waits for /healthz)


SERVERS = [
    ServerSpec("base", 1_000, {}, "1,000 keys in the table"),
    ServerSpec("large", 1_000_000, {"many": 10_000, "some": 1_000, "few": 10},
               "1,000,000 keys in the table; one user with 10,000 of them, one with 1,000, one with 10"),
    ServerSpec("bare", 0, {}, "a bare Flask app: one /healthz view, no database", app="bare_flask:app", keyfob=False),
]


@dataclass(frozen=True)
class Load:
    """wrk's settings for a kind of scenario."""

    threads: int
    connections: int


LOADS = {
    # As many requests as two workers take: the throughput ratios.
    "throughput": Load(threads=2, connections=16),
    # One request at a time: the latency of a page, without queueing behind other requests.
    "latency": Load(threads=1, connections=1),
}


@dataclass(frozen=True)
class Scenario:
    name: str
    server: str  # a ServerSpec name
    path: str
    # None, "valid", "bad_checksum", "verifier" (the verifier credential, and a JSON body asking about the valid
    # key) or "session:<dashboard user>" (seed.Fixture.headers and .body)
    credential: str | None
    expect_status: int  # what a single request must answer before the load is trusted
    load: str  # a LOADS name
    description: str
    method: str = "GET"
    # None: straight to gunicorn; "nginx": through the bench's nginx, to docs/proxies/nginx.conf's protected
    # location (forward auth); "nginx_plain": through the same nginx to the same upstream, without auth_request.
    via: str | None = None

    @property
    def uses_valid_key(self) -> bool:
        """Whether a 2xx answer counts a use of the bench key (the bench checks usage_count against them)."""
        return self.credential in ("valid", "verifier") and self.via != "nginx_plain"


SCENARIOS = [
    Scenario("healthz", "base", "/healthz", None, 200, "throughput",
             "GET /healthz: the liveness probe, no database"),
    Scenario("bare_healthz", "bare", "/healthz", None, 200, "throughput",
             "GET /healthz of a bare Flask app (bench/bare_flask.py) under the same gunicorn settings"),
    Scenario("whoami_valid", "base", "/api/v1/whoami", "valid", 200, "throughput",
             "GET /api/v1/whoami with a valid key, 1,000 keys in the table"),
    Scenario("whoami_unguarded", "base", "/bench/whoami-unguarded", None, 200, "throughput",
             "whoami's view without @require_api_key, on the bench key read once per worker (bench/wsgi_bench.py)"),
    Scenario("whoami_bad_checksum", "base", "/api/v1/whoami", "bad_checksum", 401, "throughput",
             "the same with the key's last checksum character changed: refused before the database"),
    Scenario("whoami_valid_1m", "large", "/api/v1/whoami", "valid", 200, "throughput",
             "GET /api/v1/whoami with a valid key, 1,000,000 keys in the table"),
    Scenario("dashboard_10k", "large", "/keys/", "session:many", 200, "latency",
             "GET /keys/ signed in as a user with 10,000 keys"),
    Scenario("dashboard_1k", "large", "/keys/", "session:some", 200, "latency",
             "GET /keys/ signed in as a user with 1,000 keys: every list on the page as full as with 10,000"),
    Scenario("dashboard_10", "large", "/keys/", "session:few", 200, "latency",
             "GET /keys/ signed in as a user with 10 keys"),
    Scenario("verify_api_valid", "base", "/api/v1/keys/verify", "verifier", 200, "throughput",
             "POST /api/v1/keys/verify with a verifier credential, asking about the valid key and read:data",
             method="POST"),
    # The service behind nginx is Keyfob's own /healthz on the same gunicorn: the cheapest route there is, no
    # process of its own to start and account for, and its CPU is in the workers' column.
    Scenario("nginx_forward_auth", "base", "/healthz", "valid", 200, "throughput",
             "GET /healthz with the valid key through nginx's protected location: auth_request asks /forward-auth",
             via="nginx"),
    Scenario("nginx_plain", "base", "/healthz", "valid", 200, "throughput",
             "the same request through the same nginx to the same upstream, without auth_request",
             via="nginx_plain"),
]


@dataclass(frozen=True)
class Ratio:
    name: str
    numerator: str
    denominator: str
    metric: str  # "rps" (median requests per second), "p50" or "p99" (median of the rounds' latency percentile)
    target: float | None  # None: reported to explain another ratio, no target of its own
    at_least: bool  # True: the ratio must be >= target; False: <= target
    description: str

    def meets(self, value: float) -> bool | None:
        if self.target is None:
            return None
        return value >= self.target if self.at_least else value <= self.target

    @property
    def target_text(self) -> str:
        return "-" if self.target is None else f"{'>=' if self.at_least else '<='} {self.target:.2f}"


RATIOS = [
    Ratio("whoami_valid / whoami_unguarded", "whoami_valid", "whoami_unguarded", "rps", 0.90, True,
          "what the key guard (@require_api_key) costs a request, against the same view without it"),
    Ratio("healthz / bare_healthz", "healthz", "bare_healthz", "rps", 0.85, True,
          "what Keyfob's request handling costs its cheapest route, against a bare Flask app's"),
    Ratio("verify_api_valid / healthz", "verify_api_valid", "healthz", "rps", 0.80, True,
          "what a service's question to the verification API costs, against the cheapest route"),
    # Both requests cross nginx to the same /healthz; forward auth adds a subrequest to Keyfob.
    Ratio("nginx_forward_auth / nginx_plain", "nginx_forward_auth", "nginx_plain", "rps", 0.50, True,
          "a request through nginx with forward auth, against the same request through nginx without it"),
    # No target: reported beside whoami_valid / whoami_unguarded, what verification costs against the cheapest route.
    Ratio("whoami_valid / healthz", "whoami_valid", "healthz", "rps", None, True,
          "what key verification costs a request, against the cheapest route"),
    Ratio("whoami_valid_1m / whoami_valid", "whoami_valid_1m", "whoami_valid", "rps", 0.95, True,
          "a million keys in the table must not slow verification down"),
    Ratio("whoami_bad_checksum / whoami_valid", "whoami_bad_checksum", "whoami_valid", "rps", 1.0, True,
          "a made-up key must not cost more than a real one"),
    Ratio("dashboard_10k / dashboard_10 p50", "dashboard_10k", "dashboard_10", "p50", 1.5, False,
          "the key list of a user with 10,000 keys, against one with 10: median latency"),
    Ratio("dashboard_10k / dashboard_10 p99", "dashboard_10k", "dashboard_10", "p99", 1.5, False,
          "the same, 99th percentile latency"),
    # No target: the 10-key page shows 12 rows, the 10,000-key page 55 (25 keys, 10 ended, 20 to renew), and so does
    # the 1,000-key page. Against it, only what grows with the number of keys is left.
    Ratio("dashboard_10k / dashboard_1k p50", "dashboard_10k", "dashboard_1k", "p50", None, False,
          "the same lists, as full, over ten times the keys: what grows with the number of keys"),
]


def scenario(name: str) -> Scenario:
    return next(s for s in SCENARIOS if s.name == name)


def server_spec(name: str) -> ServerSpec:
    return next(s for s in SERVERS if s.name == name)
