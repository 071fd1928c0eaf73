"""bench/wsgi_cost.py runs end to end on a fresh production-mode fixture and reports every scenario."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.functional.processes import ROOT


def test_wsgi_cost_reports_every_scenario_and_the_whoami_breakdown():
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "wsgi_cost.py"), "--batches", "2", "--batch", "5",
                             "--breakdown"], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    figures = dict(re.findall(r"^(\S+)\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+([+-][\d.]+)$", result.stdout, re.MULTILINE))
    assert set(figures) == {"healthz", "bare_healthz", "whoami_valid", "whoami_unguarded", "whoami_bad_checksum",
                            "verify_api_valid", "nginx_forward_auth"}
    assert float(figures["healthz"]) == 0.0
    assert "verification.verify()" in result.stdout and "of which verification.cached_lookup()" in result.stdout
