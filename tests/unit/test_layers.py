"""The layers of app/, checked: the core (keys, accounts, audit) reads no request and imports no face, and no import
cycle exists. `make lint` runs this file and import-linter's contracts (pyproject.toml, [tool.importlinter])."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CORE = ("keys", "accounts", "audit", "mail")
# What a web request is made of: the core is given values, never these.
REQUEST_NAMES = {("flask", "request"), ("flask", "g"), ("flask", "session"), ("flask_login", "current_user")}
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _core_modules(root: Path) -> list[Path]:
    return [path for package in CORE for path in sorted((root / "app" / package).rglob("*.py"))]


def test_no_core_module_reads_the_request():
    found = []
    for path in _core_modules(ROOT):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                found += [f"{path.relative_to(ROOT)}:{node.lineno} {node.module}.{alias.name}" for alias in node.names
                          if (node.module, alias.name) in REQUEST_NAMES]
    assert found == []


def _lint_imports(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=root, capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root)})


def test_the_app_keeps_its_import_contracts():
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "0 broken" in result.stdout


def test_the_contracts_break_on_a_core_module_importing_a_face(tmp_path):
    """The contracts can fail: the same tree with one core module importing the API face breaks two of them (the
    face rule, and the cycle it makes: the API imports that module)."""
    shutil.copytree(ROOT / "app", tmp_path / "app", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    policy = tmp_path / "app" / "keys" / "policy.py"
    policy.write_text(policy.read_text() + "\nfrom app.api.json_io import ApiError  # noqa: E402,F401\n")
    try:
        result = _lint_imports(tmp_path)
    finally:
        # The copy holds the OpenAPI document's example key, which the suite's leak check would report.
        shutil.rmtree(tmp_path / "app")
    assert result.returncode == 1, result.stdout[-3000:]
    assert "The core (keys, accounts, audit) imports no face and no web plumbing BROKEN" in result.stdout
    assert "app.keys.policy -> app.api.json_io" in result.stdout
