"""scripts/drift_issue.py: drift opens/updates the issue, clean closes it, errors do neither."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "drift_issue.py"
# What `pulumi refresh --preview-only --expect-no-changes` ends with when it finds drift.
DRIFTED = """Previewing refresh (production):
    ~ aws:ecs/service:Service groundwork-production-app-api update [diff: ~desiredCount]
Resources:
    ~ 1 to update
error: no changes were expected for refresh but changes were proposed
"""


def decide(tmp_path: Path, outputs: dict[str, tuple[str, str]]) -> tuple[str, str]:
    for stack, (status, text) in outputs.items():
        (tmp_path / f"drift-{stack}.status").write_text(status)
        (tmp_path / f"drift-{stack}.txt").write_text(text)
    body = tmp_path / "body.md"
    done = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            str(tmp_path),
            "--run-url",
            "https://run",
            "--out",
            str(body),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip(), body.read_text()


def test_drift_in_one_stack_opens_the_issue_with_its_diff(tmp_path: Path) -> None:
    state, body = decide(
        tmp_path, {"staging": ("0\n", "no changes"), "production": ("255\n", DRIFTED)}
    )
    assert state == "drift"
    assert body.startswith("<!-- groundwork-drift -->")
    assert "### production: drift" in body and "~desiredCount" in body
    assert "### staging: clean" in body


def test_clean_everywhere_closes_and_a_failed_refresh_decides_nothing(tmp_path: Path) -> None:
    assert decide(tmp_path, {"staging": ("0", ""), "production": ("0", "")})[0] == "clean"
    failed = "error: failed to decrypt the stack's secrets: AccessDenied"
    assert decide(tmp_path, {"staging": ("0", ""), "production": ("255", failed)})[0] == "unknown"
    missing = tmp_path / "missing"
    missing.mkdir()
    assert decide(missing, {})[0] == "unknown"  # no artifacts at all: leave the issue alone
