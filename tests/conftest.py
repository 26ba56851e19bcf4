"""Fixtures shared by the infrastructure tests.

Shared helpers live here as fixtures, not as importable ``tests.<module>`` modules: the
service's suite (services/app/tests) is a regular package also named ``tests``, so which
``tests`` a top-level import resolves to depends on collection order.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest


def run_python(code: str, cwd: Path | str) -> subprocess.CompletedProcess[str]:
    """``python -c code`` in ``cwd`` without PYTHONPATH: only what that directory and the
    interpreter's site-packages provide is importable (plus what ``code`` adds)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env=env,
        check=False,
    )


RunPython = Callable[[str, Path | str], "subprocess.CompletedProcess[str]"]


@pytest.fixture(name="run_python")
def _run_python_fixture() -> RunPython:
    return run_python
