"""bench/run.py loaded as a module for the tests of the bench's pieces (it puts bench/ on sys.path, so its own modules,
`load`, `seed`, `nginx` and the rest, are importable once it is loaded)."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

RUN_PY = Path(__file__).resolve().parents[1] / "bench" / "run.py"


@contextmanager
def bench_run(name: str) -> Iterator[object]:
    """bench/run.py as the module `name`, registered in sys.modules while in use (dataclasses look it up there)."""
    spec = importlib.util.spec_from_file_location(name, RUN_PY)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[spec.name]
