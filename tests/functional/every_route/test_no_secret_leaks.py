"""A key's plaintext is shown once and kept nowhere: not in the database, not in the logs, not on any later page.

The search itself lives in tests/secret_leaks.py (its docstring gives the design). As a pytest plugin it checks every
test of the suite; here it is used directly on one deployment that makes keys every way there is (key core,
dashboard, API, CLI; created and rotated) and uses them every way that gets them recorded (valid, refused for each
reason, rate limited to suspension, put in a URL), with every logger capturing at DEBUG. The first test proves the
search finds what it looks for, so that finding nothing means something.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from app.database import utcnow
from app.keys import service, tokens
from tests import secret_leaks
from tests.functional.dashboard_helpers import HTMX, create_key, post_action
from tests.functional.keyhelpers import act_on_key, bearer, flush, new_key
from tests.functional.route_matrix import FILES, ROUTES, build_world, csrf_token
from tests.support import close_app

WHOAMI = "/api/v1/whoami"


PLUGIN = "tests.secret_leaks"


@pytest.fixture
def recording(request):
    """Record minted keys even when the plugin is not loaded for the session."""
    secret_leaks.install()
    yield secret_leaks.MINTED
    if not request.config.pluginmanager.has_plugin(PLUGIN):
        secret_leaks.uninstall()


def test_the_search_finds_a_key_wherever_it_is_kept(recording):
    known = tokens.generate("kf")  # recorded
    stranger = secret_leaks._original_generate("acme")  # as a child process would make it: found by its shape
    # Planted outside pytest's temporary folder, or the whole-suite check would rightly find them there too.
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        url = f"sqlite:///{folder / 'planted.db'}"
        engine = sa.create_engine(url)
        with engine.begin() as connection:
            connection.exec_driver_sql("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT, other TEXT)")
            connection.exec_driver_sql("INSERT INTO notes (text) VALUES (?)", (f"pasted: {known}.",))
            connection.exec_driver_sql("INSERT INTO notes (other) VALUES (?)", (f"x{stranger}@example.com",))
        engine.dispose()
        leaks, unread = secret_leaks.leaks_in_databases([url])
        assert sorted(leaks) == sorted([f"notes: {known}", f"notes: {stranger}"]) and unread == []
        (folder / "server.log").write_text(f"GET /x?api_key={known} 200\n")
        assert sorted(secret_leaks.leaks_in_files(folder)) == sorted(
            [f"{folder / 'planted.db'}: {known}", f"{folder / 'planted.db'}: {stranger}",
             f"{folder / 'server.log'}: {known}"])
    # Key-shaped text that is no key is not taken for one: the display start, a digest, a wrong checksum.
    start = tokens.parse(known, "kf").display_start
    assert secret_leaks.find_keys(f"{start} {tokens.digest(b'pepper', known)} kf_{'A' * 33} {known[:-1]}") == []


def test_no_key_made_or_used_any_way_is_kept_anywhere(tmp_path, recording, caplog):
    caplog.set_level(logging.DEBUG)  # every logger, every level
    world = build_world(tmp_path)
    app, client = world.app, world.client("attacker")
    shown = [world.admin_token, world.attacker_token, world.victim_token]
    try:
        # Made every way: the key core, the dashboard (a form and htmx), the API, the CLI; and rotated each way.
        dashboard_key, token = create_key(client, name="from the form")
        shown.append(token)
        response = post_action(client, f"/keys/{dashboard_key}/rotate", grace="1h")
        shown += re.findall(tokens.scanner_regex("kf"), response.get_data(as_text=True))
        api = bearer(world.attacker_token)
        made = client.post("/api/v1/api-keys", json={"name": "from the api", "scopes": ["read:data"],
                                                     "allowed_ips": ["203.0.113.0/24"], "rate_limit": 1},
                           headers=api).get_json()
        rotated = client.post(f"/api/v1/api-keys/{made['key']['id']}/rotate", json={"grace": "24h"},
                              headers=api).get_json()
        shown += [made["secret"], rotated["secret"]]
        runner = app.test_cli_runner()
        result = runner.invoke(args=["keys", "create", "mallory@example.com", "--name", "from the cli"])
        shown.append(result.stdout.strip().splitlines()[-1])
        listed = json.loads(runner.invoke(args=["keys", "list", "--json"]).stdout)
        cli_key = next(key["id"] for key in listed if key["name"] == "from the cli")
        result = runner.invoke(args=["keys", "rotate", str(cli_key), "--grace", "none"])
        shown.append(result.stdout.strip().splitlines()[-1])
        revoked_id, revoked = new_key(app, world.attacker, name="to revoke")
        act_on_key(app, revoked_id, service.revoke, "leaked")
        expired_id, expired = new_key(app, world.attacker, name="expired", now=utcnow() - timedelta(days=40))
        shown += [revoked, expired]
        assert set(shown) <= recording, "the registry missed a key: the plugin would not look for it"

        # Used every way that leaves a trace: valid, refused for each reason, rate limited, in a URL.
        anyone = app.test_client()
        for token in shown:
            anyone.get(WHOAMI, headers={**bearer(token), "User-Agent": f"agent {token[:8]}"})
        limited = bearer(rotated["secret"])
        for _ in range(5):  # outside its allowlist, then over its limit of 1 a minute
            anyone.get(WHOAMI, headers=limited, environ_base={"REMOTE_ADDR": "203.0.113.9"})
            anyone.get(WHOAMI, headers=limited)
        for token in (made["secret"], revoked):
            anyone.get(WHOAMI, query_string={"api_key": token})
            anyone.get(WHOAMI, query_string={"q": token}, headers=bearer(token))
            anyone.get(WHOAMI, headers=bearer(token[:-1] + ("A" if token[-1] != "A" else "B")))  # a typo
        anyone.get(WHOAMI, headers=bearer("kf_" + made["secret"][3:] + "x"))  # too long
        post_action(client, f"/keys/{dashboard_key}/disable", headers=HTMX)
        flush(app)

        # Nowhere: no table, no log record, no page or API answer shown after the one that made it.
        leaks, unread = secret_leaks.leaks_in_databases([app.config["SQLALCHEMY_DATABASE_URI"]])
        assert (leaks, unread) == ([], [])
        assert secret_leaks.find_keys(caplog.text) == []
        assert [record for record in caplog.records if secret_leaks.find_keys(str(record.__dict__))] == []
        admin = world.client("admin")
        for route in ROUTES:
            if route.method != "GET" or route.endpoint in FILES:
                continue
            headers = bearer(world.admin_token) if route.endpoint.startswith("api.") else {}
            ids = {"key_id": world.victim_key if route.endpoint.startswith("admin.") else world.admin_key,
                   "alert_id": world.alert, "user_id": world.victim, "passkey_id": world.passkeys["admin"]}
            page = admin.get(route.path(**ids), headers=headers).get_data(as_text=True)
            # Only keys made here: the OpenAPI document shows a well-formed example key, on purpose.
            assert [key for key in secret_leaks.find_keys(page) if key in recording] == [], str(route)
        assert csrf_token(admin)  # still signed in: the pages above were the real ones
    finally:
        close_app(app)
    assert secret_leaks.leaks_in_files(tmp_path) == []  # the SQLite file itself, its journal and free pages


def test_the_suite_wide_check_is_on(request):
    """The plugin is loaded for the session (tests/conftest.py's pytest_plugins) and records every key minted here."""
    assert request.config.pluginmanager.get_plugin(PLUGIN) is secret_leaks, (
        "the whole-suite leak check is off: add pytest_plugins = [\"tests.secret_leaks\"] to tests/conftest.py "
        "(or run pytest -p tests.secret_leaks)")
    assert tokens.generate("kf") in secret_leaks.MINTED
