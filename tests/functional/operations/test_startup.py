"""Start-up through the real entry points: `flask --app wsgi` and `gunicorn wsgi:app`."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request

import pytest

from tests.functional.processes import BIN, ROOT, clean_env, flask, free_port
from tests.support import sqlite_only


@pytest.mark.parametrize(("env", "named"), [
    ({"KEYFOB_ENV": "production"}, "SECRET_KEY is required"),
    ({"KEYFOB_ENV": "development", "DATABASE_URL": "nonsense"}, "DATABASE_URL='nonsense'"),
    ({"KEYFOB_ENV": "development", "DATABASE_URL": "mysql://u@h/db"}, "DATABASE_URL cannot be used"),
    ({"KEYFOB_ENV": "development", "RATELIMIT_STORAGE_URI": "carrier-pigeon://"}, "RATELIMIT_STORAGE_URI"),
    ({"KEYFOB_ENV": "sometimes"}, "KEYFOB_ENV='sometimes'"),
])
def test_bad_configuration_is_one_clear_line(tmp_path, env, named):
    result = flask(tmp_path, "users", "list", **env)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("keyfob: configuration error: ")
    assert named in lines[0]


def test_an_instance_folder_that_cannot_hold_the_change_counter_is_one_clear_line(tmp_path):
    instance = tmp_path / "instance"
    (instance / "key-changes.generation").mkdir(parents=True)  # where the counter's file must be
    result = flask(tmp_path, "users", "list", KEYFOB_ENV="development", KEYFOB_INSTANCE_PATH=str(instance))
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("keyfob: configuration error: KEYFOB_INSTANCE_PATH="), result.stderr
    assert "key-change counter" in lines[0]


@sqlite_only("with no settings at all the database is SQLite in instance/")
def test_development_needs_no_settings_at_all(tmp_path):
    assert flask(tmp_path, "db", "upgrade", KEYFOB_ENV="development").returncode == 0
    result = flask(tmp_path, "users", "list", KEYFOB_ENV="development")
    assert result.returncode == 0, result.stderr
    assert "no users yet" in result.stdout
    assert (tmp_path / "instance" / "keyfob.db").is_file()
    assert (tmp_path / "instance" / "secret_key").is_file()


def test_gunicorn_serves_the_app(tmp_path):
    port = free_port()
    env = clean_env(tmp_path, KEYFOB_ENV="production", SECRET_KEY="k" * 48, KEY_PEPPER="p" * 48)
    assert flask(tmp_path, "db", "upgrade", **env).returncode == 0
    server = subprocess.Popen([str(BIN / "gunicorn"), "--bind", f"127.0.0.1:{port}", "--workers", "2", "wsgi:app"],
                              cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
                    body = json.load(response)
                break
            except OSError:
                assert server.poll() is None, server.stderr.read()
                assert time.monotonic() < deadline, "gunicorn did not answer within 30 s"
                time.sleep(0.2)
        assert body == {"status": "ok", "checks": {"database": "ok"}}
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=5) as response:
            assert "Log in" in response.read().decode()
    finally:
        server.terminate()
        server.communicate(timeout=30)


def test_gunicorn_stops_on_bad_configuration(tmp_path):
    result = subprocess.run([str(BIN / "gunicorn"), "--bind", f"127.0.0.1:{free_port()}", "wsgi:app"], cwd=ROOT,
                            env=clean_env(tmp_path, KEYFOB_ENV="production"), capture_output=True, text=True,
                            timeout=60)
    assert result.returncode != 0
    assert "keyfob: configuration error: SECRET_KEY is required" in result.stderr
    assert "Traceback" not in result.stderr
