"""Prometheus metrics at /metrics: verifications by outcome, request latency, active keys and open alerts.

Under gunicorn each worker is its own process, so counters and histograms use prometheus-client's multiprocess
mode: gunicorn.conf.py points PROMETHEUS_MULTIPROC_DIR at a fresh folder before the workers start, each worker
writes its samples there, and a scrape adds them up whichever worker answers. Without that variable (flask run,
tests) the process's own registry is used. Active keys and open alerts are read from the database at scrape time,
so every worker reports the same truth.

Protected: an admin's session, or `Authorization: Bearer <METRICS_TOKEN>` for the Prometheus server.
"""

from __future__ import annotations

import hmac
import os
import time
from functools import lru_cache

from flask import Blueprint, Flask, Response, current_app, request
from flask_login import current_user
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

from app.accounts.two_factor import must_enrol
from app.bearer import bearer_token
from app.errors import error_response

bp = Blueprint("metrics", __name__)

# `via`: "keyfob" for Keyfob's own routes (@require_api_key), else the name of the verifier that asked.
VERIFICATIONS = Counter("keyfob_key_verifications", "API key verifications, by outcome and by who asked",
                        ["outcome", "via"])
REQUEST_SECONDS = Histogram("keyfob_request_duration_seconds", "Time to answer a request, by route and method",
                            ["route", "method"],
                            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))


# Where Keyfob.request_context() notes when a request began (a hook of its own would cost more than the clock).
REQUEST_STARTED = "keyfob.request_started"


def count_verification(outcome: str, via: str = "keyfob") -> None:
    _verifications(outcome, via).inc()


# Bounded: eleven outcomes, and one `via` per verifier credential.
@lru_cache(maxsize=4096)
def _verifications(outcome: str, via: str):
    return VERIFICATIONS.labels(outcome, via)


# labels() takes a lock and builds its key on every call; a route's series is the same object every time. Bounded:
# the method is whatever a client sends.
@lru_cache(maxsize=512)
def _request_seconds(route: str, method: str):
    return REQUEST_SECONDS.labels(route, method)


class DatabaseGauges:
    """Gauges read from the database when Prometheus scrapes: the same in every worker."""

    def __init__(self, app: Flask) -> None:
        self._app = app

    def collect(self):
        from app.audit.queries import open_alert_count
        from app.database import utcnow
        from app.keys import queries

        with self._app.app_context():
            active = GaugeMetricFamily("keyfob_active_keys", "Keys that would be accepted now")
            active.add_metric([], queries.accepted_key_count(utcnow()))
            alerts = GaugeMetricFamily("keyfob_open_alerts", "Admin alerts not yet acknowledged")
            alerts.add_metric([], open_alert_count())
        yield active
        yield alerts


def _registry() -> CollectorRegistry:
    """What a scrape reports: every worker's samples (multiprocess mode) or this process's, plus the gauges."""
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)
    else:
        for collector in (VERIFICATIONS, REQUEST_SECONDS):
            registry.register(collector)
    registry.register(DatabaseGauges(current_app._get_current_object()))
    return registry


def _allowed() -> bool:
    token = current_app.config["METRICS_TOKEN"]
    presented = bearer_token()
    if token and presented is not None:
        return hmac.compare_digest(presented.encode(), token.encode())
    # An admin the policy asks for a second factor reads them once it is set up, as with every admin page.
    return current_user.is_authenticated and current_user.is_admin and not must_enrol(current_user)


@bp.get("/metrics")
def metrics():
    if not _allowed():
        if current_user.is_authenticated and "HTTP_AUTHORIZATION" not in request.environ:
            if current_user.is_admin:
                return error_response(403, "two_factor_required", "Set up two-factor sign-in (your account page) "
                                                                  "to read the metrics.")
            return error_response(403, "forbidden", "Only admins may read the metrics.")
        return error_response(401, "unauthorized", "Send the metrics token: Authorization: Bearer <METRICS_TOKEN>.",
                              headers={"WWW-Authenticate": 'Bearer realm="keyfob-metrics"'})
    return Response(generate_latest(_registry()), mimetype=CONTENT_TYPE_LATEST)


def init_metrics(app: Flask) -> None:
    app.register_blueprint(bp)

    @app.teardown_request
    def _observe(_error=None):
        current = request._get_current_object()
        started = current.environ.get(REQUEST_STARTED)
        if started is not None:
            # The rule, not the path: /keys/7 and /keys/8 are one series, and a scanner's junk paths are "unmatched".
            rule = current.url_rule
            route = rule.rule if rule is not None else "unmatched"
            _request_seconds(route, current.method).observe(time.perf_counter() - started)
