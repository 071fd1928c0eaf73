"""Keyfob's app as wsgi.py builds it, plus one route of the bench's own: `gunicorn wsgi_bench:app` (with bench/ on
the Python path) for `make bench`'s Keyfob servers. Never part of the product.

GET /bench/whoami-unguarded runs whoami's own view function (the one under `@require_api_key()`) without the guard:
instead of the key the guard verifies, the view is handed the bench key as read once per worker (one query, on the
first request). So `whoami_valid / whoami_unguarded` is what the guard costs a request (parsing the key, its HMAC,
the lookup, the checks, the usage count), with the same answer and the same hooks around it.
"""

from types import SimpleNamespace

from flask import g
from sqlalchemy import select

from app.extensions import db
from app.keys.models import ApiKey
from wsgi import app

BENCH_KEY_NAME = "bench"  # bench/seed.py makes the bench user's key with this name
_guarded_whoami = app.view_functions["api.whoami"].__wrapped__  # functools.wraps in app/api/decorator.py
_bench_key: list[SimpleNamespace] = []


def _read_bench_key() -> SimpleNamespace:
    """What whoami reads from a verified key, for the bench key: read once per worker."""
    if not _bench_key:
        key = db.session.scalar(select(ApiKey).where(ApiKey.name == BENCH_KEY_NAME))
        _bench_key.append(SimpleNamespace(id=key.id, user_id=key.user_id, display_start=key.display_start,
                                          scopes=key.scopes))
    return _bench_key[0]


def whoami_unguarded():
    """whoami's answer for the bench key, without @require_api_key."""
    g.api_key = _read_bench_key()
    return _guarded_whoami()


app.add_url_rule("/bench/whoami-unguarded", endpoint="bench_whoami_unguarded", view_func=whoami_unguarded)
