"""Program evaluation: time to build each stack's resource graph under Pulumi mocks.

Each repetition runs in a fresh interpreter (``--child``) and reports the import time,
the first ``run_program`` (what `groundwork plan` and the test suite pay: it includes
the provider SDK modules the stack imports lazily) and a second run in the same
process (the graph build alone). The baseline is a one-resource program under the
same mocks, measured the same way in the same run.

    uv run python -m bench.stack_eval [--reps 3]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from typing import Any

from bench.common import (
    ROOT,
    median_of,
    positive_int,
    print_table,
    ratio,
    target_verdict,
    write_results,
)

TARGET_SECONDS = 3.0
# The AWS stack refuses to serve the API without HTTPS: give it a domain and certificate.
_AWS = {
    "groundwork:cloud": "aws",
    "aws:region": "us-east-1",
    "groundwork:domain": "api.example.com",
    "groundwork:certificateArn": "arn:aws:acm:us-east-1:123456789012:certificate/bench",
}
CASES: dict[str, dict[str, str]] = {
    "baseline": {},
    "aws/staging": {**_AWS, "groundwork:environment": "staging"},
    "aws/production": {**_AWS, "groundwork:environment": "production"},
    "gcp/staging": {
        "groundwork:cloud": "gcp",
        "gcp:project": "groundwork-bench",
        "gcp:region": "europe-west1",
        "groundwork:environment": "staging",
    },
    "gcp/production": {
        "groundwork:cloud": "gcp",
        "gcp:project": "groundwork-bench",
        "gcp:region": "europe-west1",
        "groundwork:environment": "production",
    },
}


def _baseline_program() -> None:
    import pulumi_random

    pulumi_random.RandomPet("baseline")


def child(case: str) -> dict[str, Any]:
    """Runs inside the fresh interpreter: import, first run, second run."""
    started = time.perf_counter()
    from groundwork.mockrun import run_program

    program: Any = _baseline_program
    if case != "baseline":
        try:
            from stacks import program as stack_program
        except ImportError as exc:
            return {"case": case, "skipped": f"stacks.program is not importable yet: {exc}"}
        program = stack_program
    imported = time.perf_counter()
    config = CASES[case]
    stack = config.get("groundwork:environment", "dev")
    try:
        first_run = run_program(program, stack=stack, config=config)
    except ImportError as exc:
        return {"case": case, "skipped": f"the {case.split('/')[0]} stack is not there yet: {exc}"}
    first = time.perf_counter()
    run_program(program, stack=stack, config=config)
    second = time.perf_counter()
    return {
        "case": case,
        "resources": len(first_run.resources),
        "import_s": round(imported - started, 3),
        "first_run_s": round(first - imported, 3),
        "second_run_s": round(second - first, 3),
    }


def run_case(case: str) -> dict[str, Any]:
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "bench.stack_eval", "--child", case],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    wall = time.perf_counter() - started
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"case": case, "error": (proc.stderr or proc.stdout)[-1500:]}
    result: dict[str, Any] = json.loads(lines[-1])
    result["process_wall_s"] = round(wall, 3)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=positive_int, default=3)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--name", default="stack_eval")
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child)))
        return 0
    cases = [c for c in args.cases.split(",") if c]
    unknown = sorted(set(cases) - set(CASES))
    if unknown:
        parser.error(f"unknown case(s) {unknown}; choose from {', '.join(CASES)}")
    reps: dict[str, list[dict[str, Any]]] = {c: [] for c in cases}
    for rep in range(args.reps):
        for case in cases:  # interleaved so noise hits every case alike
            result = run_case(case)
            reps[case].append(result)
            note = (
                result.get("skipped")
                or result.get("error", "")[-200:]
                or (f"{result['first_run_s']} s, {result['resources']} resources")
            )
            print(f"  rep {rep + 1} {case}: {note}", flush=True)
    summary: dict[str, Any] = {}
    for case, runs in reps.items():
        good = [r for r in runs if "first_run_s" in r]
        if not good:
            reason = runs[0].get("skipped") or "failed: " + runs[0].get("error", "")[-500:]
            summary[case] = {"skipped": reason}
            continue
        summary[case] = {
            "resources": good[0]["resources"],
            **{
                k: round(median_of(good, k), 3)
                for k in ("import_s", "first_run_s", "second_run_s", "process_wall_s")
            },
            "reps": len(good),
        }
    base = summary.get("baseline", {})
    rows = []
    targets: dict[str, Any] = {}
    for case, s in summary.items():
        if "skipped" in s:
            rows.append([case, "-", "-", "-", "-", "-", s["skipped"][:60]])
            continue
        rows.append(
            [
                case,
                s["resources"],
                s["import_s"],
                s["first_run_s"],
                s["second_run_s"],
                ratio(s["first_run_s"], base.get("first_run_s", float("nan"))),
                "" if case == "baseline" else target_verdict(s["first_run_s"] < TARGET_SECONDS),
            ]
        )
        if case != "baseline":
            targets[case] = {
                "value": s["first_run_s"],
                "target": TARGET_SECONDS,
                "met": s["first_run_s"] < TARGET_SECONDS,
            }
    print_table(
        f"Program evaluation under mocks (median of {args.reps}; target: first run < "
        f"{TARGET_SECONDS:g} s)",
        ["case", "resources", "import s", "first run s", "second run s", "x baseline", "target"],
        rows,
    )
    path = write_results(
        args.name, {"config": vars(args), "summary": summary, "reps": reps, "targets": targets}
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
