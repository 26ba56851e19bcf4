"""Run Python code in a fresh interpreter, as a tool started outside the test would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


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
