#!/usr/bin/env python3
"""Decide drift.yml's issue: print drift | clean | unknown, write the issue body.

Usage: python3 scripts/drift_issue.py DIR --run-url URL --out BODY.md

DIR holds, per stack, ``drift-STACK.txt`` (the `pulumi refresh --preview-only
--expect-no-changes` output) and ``drift-STACK.status`` (its exit code). With
``--expect-no-changes`` the exit code alone cannot tell drift from a failure (both are
non-zero), so the output decides: Pulumi ends with "no changes were expected for
refresh but changes were proposed" when the refresh found a difference
(pulumi/pulumi pkg/backend/backenderr: NoChangesExpectedError{Operation: "refresh"}).
A stack whose refresh failed for another reason makes the result ``unknown``: the
issue is neither opened nor closed.
Standard library only; the body stays under GitHub's 65,536-character limit.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

MARKER = "<!-- groundwork-drift -->"
STACKS = ("staging", "production")
DRIFT_SIGN = re.compile(r"no changes were expected( for \w+)? but changes were proposed")
PER_STACK = 28_000


def classify(status: str, output: str) -> str:
    if status.strip() == "0":
        return "clean"
    if DRIFT_SIGN.search(output.lower()):
        return "drift"
    return "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--run-url", required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    results = {}
    body = [MARKER, "Drift between the cloud and the Pulumi state", ""]
    for stack in STACKS:
        status_file = args.directory / f"drift-{stack}.status"
        output_file = args.directory / f"drift-{stack}.txt"
        status = status_file.read_text() if status_file.exists() else ""
        output = output_file.read_text(errors="replace") if output_file.exists() else ""
        results[stack] = classify(status, output) if status else "unknown"
        body.append(f"### {stack}: {results[stack]}")
        if results[stack] != "clean":
            text = output[-PER_STACK:]
            body += ["", "```", text.replace("```", "'''"), "```", ""]
    body.append(
        f"From {args.run_url}. Adopt intended changes with `pulumi refresh --stack STACK`, "
        "or undo them with the next deploy (`pulumi up`); see docs/runbook.md (Drift)."
    )
    args.out.write_text("\n".join(body) + "\n")
    values = set(results.values())
    state = "drift" if "drift" in values else ("unknown" if "unknown" in values else "clean")
    print(state)
    return 0


if __name__ == "__main__":
    sys.exit(main())
