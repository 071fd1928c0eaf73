"""gunicorn serving Keyfob in production mode, with a user and a key made by the real CLI: the set-up the
multi-process tests share."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from tests.functional.test_startup import BIN, ROOT, clean_env, flask, free_port
from tests.support import PASSWORD


@dataclass(frozen=True)
class Served:
    base: str                    # http://127.0.0.1:<port>
    token: str                   # the key made for ada@example.com
    env: dict                    # the servers' environment, for later `flask` calls on the same database
    server: subprocess.Popen     # the gunicorn master


@contextmanager
def gunicorn_with_a_key(tmp_path, *key_options: str, **settings: str) -> Iterator[Served]:
    """Migrate, make ada@example.com and a key (`keys create` options in `key_options`), start gunicorn with
    gunicorn.conf.py (2 workers unless `settings` say otherwise) and wait until it is ready; stop it (SIGTERM,
    a graceful stop) on the way out."""
    from tests.functional.test_usage_at_shutdown import wait_until_ready

    port = free_port()
    env = clean_env(tmp_path, **{"KEYFOB_ENV": "production", "SECRET_KEY": "k" * 48, "KEY_PEPPER": "p" * 48,
                                 "KEYFOB_BIND": f"127.0.0.1:{port}", "WEB_CONCURRENCY": "2",
                                 "KEYFOB_PASSWORD": PASSWORD, **settings})
    assert flask(tmp_path, "db", "upgrade", **env).returncode == 0
    assert flask(tmp_path, "users", "create", "ada@example.com", **env).returncode == 0
    created = flask(tmp_path, "keys", "create", "ada@example.com", "--name", "load", *key_options, **env)
    token = created.stdout.strip().splitlines()[-1]
    assert token.startswith("kf_"), created.stderr
    server = subprocess.Popen([str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", "wsgi:app"], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_ready(server, base)
        yield Served(base, token, env, server)
    finally:
        server.terminate()
        server.communicate(timeout=60)
