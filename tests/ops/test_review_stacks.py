"""scripts/review_stacks.py: the TTL sweeper's choice, with a fake `gh` on PATH answering
as `gh pr view N --json state --jq .state` does (OPEN / CLOSED / MERGED)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FAKE_GH = """#!/bin/sh
case "$3" in
  1) echo OPEN ;;
  2) echo CLOSED ;;
  3) echo MERGED ;;
  4) echo OPEN ;;
  *) echo "GraphQL: Could not resolve to a PullRequest with the number of $3." >&2; exit 1 ;;
esac
"""


def sweep(tmp_path: Path, stacks: list[dict[str, object]]) -> subprocess.CompletedProcess[str]:
    (tmp_path / "gh").write_text(FAKE_GH)
    (tmp_path / "gh").chmod(0o755)
    (tmp_path / "stacks.json").write_text(json.dumps(stacks))
    return subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "review_stacks.py"),
            str(tmp_path / "stacks.json"),
            "--ttl-hours",
            "72",
            "--now",
            "2026-12-04T12:00:00Z",
        ],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}"},
    )


def test_closed_merged_and_idle_review_stacks_expire_others_stay(tmp_path: Path) -> None:
    fresh, old = "2026-12-04T10:00:00.000Z", "2026-11-30T10:00:00.000Z"
    done = sweep(
        tmp_path,
        [
            {"name": "staging", "lastUpdate": old},
            {"name": "production", "lastUpdate": old},
            {"name": "review-pr-1", "lastUpdate": fresh},  # open, recent: kept
            {"name": "review-pr-2", "lastUpdate": fresh},  # closed
            {"name": "acme/groundwork/review-pr-3", "lastUpdate": fresh},  # merged
            {"name": "review-pr-4", "lastUpdate": old},  # open but idle > 72 h
            {"name": "review-pr-5", "lastUpdate": old},  # state unknown: kept
            {"name": "review-mine"},
        ],
    )
    assert done.stdout.split() == ["review-pr-2", "review-pr-3", "review-pr-4"]
    assert "review-pr-5: pull request state unknown; kept" in done.stderr


def test_no_stacks_nothing_to_do(tmp_path: Path) -> None:
    assert sweep(tmp_path, []).stdout == ""
