"""bench/scenarios.py is consistent, states issue 15's targets, and the bare Flask app answers as Keyfob's /healthz."""

from __future__ import annotations

import importlib.util
import sys

import pytest

from tests.bench_modules import RUN_PY, bench_run


@pytest.fixture(scope="module")
def scenarios():
    with bench_run("keyfob_bench_run_scenarios"):
        yield sys.modules["scenarios"]


def test_every_scenario_names_a_server_and_every_ratio_two_scenarios(scenarios):
    servers = {spec.name for spec in scenarios.SERVERS}
    names = {scenario.name for scenario in scenarios.SCENARIOS}
    assert all(scenario.server in servers for scenario in scenarios.SCENARIOS)
    assert all({ratio.numerator, ratio.denominator} <= names for ratio in scenarios.RATIOS)


def test_the_ratios_of_issue_15_have_their_targets(scenarios):
    targets = {ratio.name: ratio.target for ratio in scenarios.RATIOS if ratio.at_least}
    assert targets["whoami_valid / whoami_unguarded"] == 0.90
    assert targets["healthz / bare_healthz"] == 0.85
    assert targets["verify_api_valid / healthz"] == 0.80
    assert targets["nginx_forward_auth / nginx_plain"] == 0.50
    assert targets["whoami_valid_1m / whoami_valid"] == 0.95
    assert targets["whoami_valid / healthz"] is None  # reported beside them


def test_only_keyfob_servers_are_seeded_and_the_comparisons_share_a_server(scenarios):
    bare = scenarios.server_spec("bare")
    assert not bare.keyfob and bare.app == "bare_flask:app"
    assert all(spec.keyfob and spec.app == "wsgi_bench:app" for spec in scenarios.SERVERS if spec is not bare)
    assert scenarios.scenario("bare_healthz").server == "bare"
    assert scenarios.scenario("whoami_unguarded").server == scenarios.scenario("whoami_valid").server == "base"


def test_the_bare_app_answers_as_keyfobs_healthz(client):
    spec = importlib.util.spec_from_file_location("bench_bare_flask", RUN_PY.parent / "bare_flask.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    bare = module.app.test_client().get("/healthz")
    ours = client.get("/healthz")
    assert bare.status_code == ours.status_code == 200
    assert bare.get_json() == ours.get_json() == {"status": "ok"}
