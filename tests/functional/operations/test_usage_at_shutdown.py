"""Usage counted by gunicorn workers reaches the database when gunicorn stops: nothing buffered is lost."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import sqlalchemy as sa

from tests.functional.processes import flask
from tests.functional.served import gunicorn_with_a_key, status_of
from tests.support import database_url


def test_every_use_and_refusal_is_written_when_gunicorn_stops(tmp_path):
    # An hour between flushes: whatever reaches the database got there through the flush at worker exit.
    with gunicorn_with_a_key(tmp_path, USAGE_FLUSH_SECONDS="3600") as served:
        valid = {"Authorization": f"Bearer {served.token}"}
        wrong = {"Authorization": f"Bearer {served.token[:-1]}{'A' if served.token[-1] != 'A' else 'B'}"}
        with ThreadPoolExecutor(max_workers=8) as pool:
            statuses = list(pool.map(lambda n: status_of(f"{served.base}/api/v1/whoami", valid if n % 4 else wrong),
                                     range(400)))
    env = served.env
    assert statuses.count(200) == 300 and statuses.count(401) == 100

    [key] = json.loads(flask(tmp_path, "keys", "list", "--json", **env).stdout)
    assert key["usage_count"] == 300
    engine = sa.create_engine(database_url(tmp_path / "instance"))  # the servers' database (clean_env's)
    try:
        with engine.connect() as database:
            refused = database.scalar(sa.text("SELECT count(*) FROM audit_events WHERE event = 'key.verify_failed'"))
            daily = database.scalar(sa.text("SELECT sum(requests) FROM daily_key_usage"))
    finally:
        engine.dispose()
    assert refused == 100
    assert daily == 300
