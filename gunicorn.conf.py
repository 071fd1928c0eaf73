"""gunicorn settings for Keyfob: `gunicorn -c gunicorn.conf.py wsgi:app` (what `make serve` runs)."""

import os
import tempfile
from pathlib import Path

from gunicorn.glogging import Logger

bind = os.environ.get("KEYFOB_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
graceful_timeout = 30
accesslog = "-"
# Never log query strings: a client that wrongly puts a key in a URL must not have it written to disk. The path is
# written by AccessLogger below, without the token of a calendar feed's secret URL.
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(L)ss'


class AccessLogger(Logger):
    """gunicorn's logger, writing each request's path as Keyfob's own logs do (app/log_redaction.py)."""

    def atoms(self, resp, req, environ, request_time):
        # Imported here, in the worker that serves the app: this file is read before gunicorn puts the working
        # folder on sys.path.
        from app.log_redaction import logged_path

        atoms = super().atoms(resp, req, environ, request_time)
        atoms["U"] = logged_path(atoms["U"])
        return atoms


logger_class = AccessLogger


# Prometheus multiprocess mode: each worker writes its metric samples into this folder and a scrape of /metrics
# adds them up, whichever worker answers. Set before any worker starts (and imports prometheus_client).
metrics_folder = Path(os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="keyfob-metrics-")))


def post_fork(server, worker):
    """Give each new worker empty database connection pools.

    Without preload_app (the default) each worker builds the app after the fork and has nothing to drop. With
    `--preload` the master built the app, and any connection it opened sits in the pool the worker inherits: two
    processes on one connection corrupt each other's conversation with the database. close=False drops the
    inherited connections without closing them, which would close them under the master (SQLAlchemy's advice for
    os.fork). Redis connections need nothing: the redis client opens new ones when it finds itself in a new process.
    """
    app = server.app.callable  # the preloaded app, or None until the worker loads its own
    if app is None or "sqlalchemy" not in getattr(app, "extensions", {}):
        return
    from app.extensions import db

    with app.app_context():
        for engine in db.engines.values():
            engine.dispose(close=False)


def post_worker_init(worker):
    """Start the worker's mail sender with the worker, so that mail waiting in the outbox (queued before a restart,
    or by another process) goes out without waiting for this worker to queue some of its own."""
    mail = getattr(getattr(worker, "wsgi", None), "extensions", {}).get("keyfob.mail")
    if mail is not None and mail.sender is not None:
        mail.sender.start()


def worker_exit(server, worker):
    """Write the worker's buffered usage counts before it goes (graceful stop, restart, max-requests)."""
    usage = getattr(getattr(worker, "wsgi", None), "extensions", {}).get("keyfob.usage")
    if usage is not None:
        usage.stop()


def on_starting(server):
    """Check the settings once in the master, before any worker forks: a bad one stops gunicorn with one line.
    (A worker failing to load the app also stops it, but gunicorn then sometimes prints its own traceback.)"""
    from app.config import ConfigError, exit_for, load_settings, read_environment

    try:
        settings = load_settings(read_environment(os.environ, Path.cwd() / ".env"))
    except ConfigError as error:
        exit_for(error)
    if settings["RATELIMIT_STORAGE_URI"].startswith("memory://") and server.cfg.workers > 1:
        server.log.warning("RATELIMIT_STORAGE_URI is memory://: each of the %d workers counts rate limits and failed "
                           "logins on its own, so a key gets up to %d times its limit; set redis://... to share them",
                           server.cfg.workers, server.cfg.workers)
    # Counts from an earlier run of the server must not be added to this one's.
    metrics_folder.mkdir(parents=True, exist_ok=True)
    for stale in metrics_folder.glob("*.db"):
        stale.unlink()


def child_exit(server, worker):
    """A worker that is gone stops counting towards the live gauges (counters keep its totals)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
