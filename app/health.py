"""Liveness and readiness probes for load balancers and orchestrators."""

from flask import Blueprint, jsonify

from app.database import ping
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
    """Ready for traffic: the database answers."""
    try:
        ping(db.session)
    except Exception:  # any failure to reach the database means "not ready", whatever the driver raises
        db.session.rollback()
        response = jsonify(status="unavailable", checks={"database": "unreachable"})
        response.status_code = 503
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
    return jsonify(status="ok", checks={"database": "ok"})
