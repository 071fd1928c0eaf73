"""The pieces of `make bench` that its verification scenarios need, checked without putting load on anything: the wrk
script that sends the verification API's POST, the question it sends, and the nginx config it runs (the documented
recipe, unchanged but for its placeholders, and the plain server beside it), which nginx itself must accept."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bench_modules import bench_run
from tests.loopback_proxies import DOCS


@pytest.fixture(scope="module")
def bench():
    with bench_run("keyfob_bench_run_forward_auth") as module:
        yield module


def test_the_wrk_script_sends_the_method_and_the_body_unescaped(bench):
    load = sys.modules["load"]
    body = json.dumps({"key": "kf_x", "scopes": ["read:data"]})
    assert load.wrk_script("POST", body) == f'wrk.method = "POST"\nwrk.body = [==[{body}]==]\n'
    assert load.wrk_script("HEAD", None) == 'wrk.method = "HEAD"\n'
    with pytest.raises(ValueError):
        load.wrk_script("POST", "]==]")


def test_the_verifier_asks_about_the_valid_key_with_its_scope(bench):
    spec = bench.SERVERS[0]
    fixture = bench.seed.Fixture(spec, "sqlite", "sqlite://", Path("."), {}, "kf_valid", 1, verifier="kfv_v")
    assert fixture.headers("verifier") == {"Authorization": "Bearer kfv_v", "Content-Type": "application/json"}
    assert json.loads(fixture.body("verifier")) == {"key": "kf_valid", "scopes": [bench.seed.BENCH_SCOPE]}
    assert fixture.body("valid") is None
    assert bench.seed.BENCH_SCOPE in bench.seed.FORWARD_AUTH_RULES


def test_only_the_requests_that_verify_the_key_count_its_uses(bench):
    using = {s.name for s in bench.SCENARIOS if s.uses_valid_key}
    assert {"whoami_valid", "verify_api_valid", "nginx_forward_auth"} <= using
    assert not {"nginx_plain", "healthz", "bare_healthz", "whoami_unguarded", "whoami_bad_checksum"} & using


def test_the_nginx_config_is_the_documented_recipe_and_a_plain_server_nginx_accepts(bench, tmp_path):
    nginx = bench.nginx
    auth_port, plain_port = nginx.write_configs(tmp_path, "127.0.0.1:8000", "kfv_bench")
    site = (tmp_path / "site.conf").read_text()
    documented = (DOCS / "nginx.conf").read_text()
    for placeholder, value in {"LISTEN_ADDRESS": f"127.0.0.1:{auth_port}", "KEYFOB_ADDRESS": "127.0.0.1:8000",
                               "SERVICE_ADDRESS": "127.0.0.1:8000", "KEYFOB_VERIFIER": "kfv_bench"}.items():
        documented = documented.replace(placeholder, value)
    assert site.startswith(documented)
    plain = site.removeprefix(documented)
    assert f"listen 127.0.0.1:{plain_port};" in plain and "proxy_pass http://protected_service;" in plain
    assert "auth_request" not in plain
    assert (tmp_path / "site.conf").stat().st_mode & 0o077 == 0
    if not nginx.PROGRAM.is_file():
        pytest.skip(f"{nginx.PROGRAM} not installed: the config was not checked by nginx -t")
    result = subprocess.run([*nginx.command(tmp_path), "-t"], capture_output=True, text=True, timeout=30,
                            check=False)
    assert result.returncode == 0, result.stderr
