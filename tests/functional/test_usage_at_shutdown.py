"""Usage counted by gunicorn workers reaches the database when gunicorn stops: nothing buffered is lost."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import sqlalchemy as sa

from tests.functional.test_startup import BIN, ROOT, clean_env, flask, free_port
from tests.support import database_url

KEY_LINE = "kf_"


def wait_until_ready(server: subprocess.Popen, base: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"{base}/readyz", timeout=2):
                return
        except OSError:
            assert server.poll() is None, server.stderr.read()
            assert time.monotonic() < deadline, "gunicorn did not answer within 30 s"
            time.sleep(0.2)


def status_of(url: str, headers: dict) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_every_use_and_refusal_is_written_when_gunicorn_stops(tmp_path):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    # An hour between flushes: whatever reaches the database got there through the flush at worker exit.
    env = clean_env(tmp_path, KEYFOB_ENV="production", SECRET_KEY="k" * 48, KEY_PEPPER="p" * 48,
                    USAGE_FLUSH_SECONDS="3600", KEYFOB_BIND=f"127.0.0.1:{port}", WEB_CONCURRENCY="2",
                    KEYFOB_PASSWORD="a sturdy passphrase")
    assert flask(tmp_path, "db", "upgrade", **env).returncode == 0
    assert flask(tmp_path, "users", "create", "ada@example.com", **env).returncode == 0
    created = flask(tmp_path, "keys", "create", "ada@example.com", "--name", "load", **env)
    token = created.stdout.strip().splitlines()[-1]
    assert token.startswith(KEY_LINE)

    server = subprocess.Popen([str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", "wsgi:app"], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_until_ready(server, base)
        valid = {"Authorization": f"Bearer {token}"}
        wrong = {"Authorization": f"Bearer {token[:-1]}{'A' if token[-1] != 'A' else 'B'}"}
        with ThreadPoolExecutor(max_workers=8) as pool:
            statuses = list(pool.map(lambda n: status_of(f"{base}/api/v1/whoami", valid if n % 4 else wrong),
                                     range(400)))
    finally:
        server.terminate()  # SIGTERM: a graceful stop, each worker flushing on its way out
        server.communicate(timeout=60)
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
