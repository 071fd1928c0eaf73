"""Liveness and readiness probes for load balancers and orchestrators."""

from flask import Blueprint, jsonify

from app.counters import counter_store, is_shared
from app.database import ping, roll_back
from app.errors import RETRY_AFTER_SECONDS
from app.extensions import csrf, db

bp = Blueprint("health", __name__)
csrf.exempt(bp)


@bp.get("/healthz")
def healthz():
    """The process is up and serving. Deliberately touches nothing else, so a database outage does not get
    healthy workers restarted."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz():
    """Ready for traffic: the database answers, and so does the rate-limit store when it is a server (Redis)."""
    checks = {"database": "ok"}
    try:
        ping(db.session)
    except Exception:  # any failure to reach the database means "not ready", whatever the driver raises
        roll_back(db.session)
        checks["database"] = "unreachable"
    store = counter_store()
    if is_shared(store):
        checks["rate_limits"] = "ok" if store.check() else "unreachable"
    if "unreachable" in checks.values():
        response = jsonify(status="unavailable", checks=checks)
        response.status_code = 503
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
    return jsonify(status="ok", checks=checks)
