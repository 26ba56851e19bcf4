#!/usr/bin/env python3
"""Which review stacks the TTL sweeper of review.yml destroys (standard library only).

Usage: pulumi stack ls --json > stacks.json
       python3 scripts/review_stacks.py stacks.json --ttl-hours 72 > expired.txt

A stack named ``review-pr-<n>`` expires when pull request <n> is no longer open (closed
or merged; the `closed` event's destroy may have failed or been skipped) or when its
last update is older than the TTL (a forgotten label). The pull request's state comes
from ``gh pr view <n> --json state`` (GH_TOKEN needs pull-requests: read). A stack whose
state cannot be read is kept and reported: destroying on a lookup error would throw
away an environment someone is using.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

REVIEW = re.compile(r"^review-pr-(\d{1,6})$")


def pr_state(number: str) -> str | None:
    # The number matched REVIEW (digits only); gh is the runner's, found on PATH.
    argv = ["gh", "pr", "view", number, "--json", "state", "--jq", ".state"]
    done = subprocess.run(  # noqa: S603
        argv,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        return None
    return done.stdout.strip() or None


def parse_time(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def expired(stacks: list[dict], ttl: timedelta, now: datetime) -> list[str]:
    out: list[str] = []
    for stack in stacks:
        # `pulumi stack ls` qualifies names on some backends (organization/project/name).
        name = str(stack.get("name", "")).rsplit("/", 1)[-1]
        match = REVIEW.match(name)
        if not match:
            continue
        state = pr_state(match.group(1))
        if state is None:
            print(f"::warning::{name}: pull request state unknown; kept", file=sys.stderr)
            continue
        last = stack.get("lastUpdate")
        stale = bool(last) and now - parse_time(str(last)) > ttl
        if state != "OPEN" or stale:
            reason = f"pull request {state.lower()}" if state != "OPEN" else f"idle > {ttl}"
            print(f"{name}: {reason}", file=sys.stderr)
            out.append(name)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stacks", type=Path, help="output of `pulumi stack ls --json`")
    parser.add_argument("--ttl-hours", type=float, required=True)
    parser.add_argument("--now", help="ISO time (tests); default: now")
    args = parser.parse_args(argv)
    now = parse_time(args.now) if args.now else datetime.now(UTC)
    stacks = json.loads(args.stacks.read_text() or "[]")
    for name in expired(stacks, timedelta(hours=args.ttl_hours), now):
        print(name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
