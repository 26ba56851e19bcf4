"""API throughput and latency: POST /v1/jobs and GET /v1/jobs/{id} vs a FastAPI hello-world.

Both servers are real uvicorn subprocesses with the same settings, pinned to one core;
the load generator runs here, pinned to the other. Per repetition the scenarios are
interleaved (hello, POST, GET) so machine noise hits them alike; each is a closed loop
of ``--concurrency`` keep-alive connections, warm-up excluded. Then each is run open
loop at half its measured peak to get latency at a sustainable load.

    uv run python -m bench.api [--reps 3] [--duration 8] [--concurrency 32] [--profile]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import (
    LOOPBACK,
    RESULTS_DIR,
    CpuPlan,
    aggregate,
    app_command,
    auth_for,
    batch_sizes,
    bench_servers,
    build_request,
    closed_loop,
    cpu_plan,
    cpu_seconds,
    migrate,
    open_loop,
    pin_self,
    positive_float,
    positive_int,
    print_table,
    ratio,
    run_async,
    running,
    service_env,
    target_verdict,
    wait_until_ok,
    write_results,
)

POST_SHARE_TARGET = 0.30  # POST /v1/jobs throughput >= 30 % of hello-world's
P99_TARGET_MS = 50.0  # ... with p99 under 50 ms at half its peak
SEED_JOBS = 200


def _free_port() -> int:
    from groundwork.devenv.servers import free_port

    return free_port()


def hello_request(_: int) -> bytes:
    return build_request("GET", "/")


def post_factory(token: str) -> Callable[[int], bytes]:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    prefix = build_request("POST", "/v1/jobs", headers=headers)  # to size the head once

    def make(i: int) -> bytes:
        body = b'{"prompt":"bench prompt %d","metadata":{"bench":true}}' % i
        head = prefix[: -len(b"Content-Length: 0\r\n\r\n")]
        return head + b"Content-Length: %d\r\n\r\n" % len(body) + body

    return make


def get_factory(token: str, job_ids: list[str]) -> Callable[[int], bytes]:
    requests = [
        build_request("GET", f"/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {token}"})
        for job_id in job_ids
    ]
    return lambda i: requests[i % len(requests)]


async def seed_jobs(port: int, token: str, count: int) -> list[str]:
    ids: list[str] = []

    def collect(status: int, body: bytes) -> None:
        if status == 202 and len(ids) < count:
            ids.append(json.loads(body)["id"])

    await closed_loop(
        port, post_factory(token), concurrency=8, duration_s=0.5, warmup_s=0, on_response=collect
    )
    if not ids:
        raise RuntimeError("could not create any job to read back (POST /v1/jobs failed)")
    return ids


def measure(
    args: argparse.Namespace, ports: dict[str, int], token: str, pids: dict[int, int]
) -> dict[str, Any]:
    """``pids`` maps a port to its server's pid, to report server CPU per request."""
    scenarios: dict[str, tuple[int, Callable[[int], bytes]]] = {
        "hello_get": (ports["hello"], hello_request)
    }
    if "api" in ports:
        job_ids = run_async(seed_jobs(ports["api"], token, SEED_JOBS))
        scenarios["post_jobs"] = (ports["api"], post_factory(token))
        scenarios["get_job"] = (ports["api"], get_factory(token, job_ids))

    if args.only:
        wanted = {"hello_get", *args.only.split(",")}
        scenarios = {k: v for k, v in scenarios.items() if k in wanted}
    peak: dict[str, list[dict[str, Any]]] = {name: [] for name in scenarios}
    half: dict[str, list[dict[str, Any]]] = {name: [] for name in scenarios}
    # Per repetition and scenario: the peak (closed loop), then at once half of *that*
    # peak (open loop), so both see the same machine; shared machines drift by 2x
    # within minutes and half of a stale peak can be over capacity.
    for rep in range(args.reps):
        for name, (port, factory) in scenarios.items():
            load_before = os.getloadavg()[0]
            cpu_before = cpu_seconds(pids[port])
            result = run_async(
                closed_loop(
                    port,
                    factory,
                    concurrency=args.concurrency,
                    duration_s=args.duration,
                    warmup_s=args.warmup,
                )
            )
            # Server CPU per request (warm-up included in both terms, so it cancels out):
            # near 1000/throughput means the server process itself is the bottleneck.
            served = (result.ok / args.duration) * (args.duration + args.warmup)
            cpu_ms = 1000 * (cpu_seconds(pids[port]) - cpu_before) / max(served, 1)
            peak[name].append(
                {
                    **result.summary(),
                    "loadavg_1m": round(load_before, 2),
                    "server_cpu_ms_per_request": round(cpu_ms, 3),
                }
            )
            rate = result.throughput / 2
            slow = run_async(
                open_loop(
                    port,
                    factory,
                    rate_rps=rate,
                    duration_s=args.duration,
                    warmup_s=args.warmup,
                    connections=args.concurrency,
                )
            )
            half[name].append({**slow.summary(), "loadavg_1m": round(os.getloadavg()[0], 2)})
            print(
                f"  rep {rep + 1} {name}: peak {result.throughput:,.0f} req/s "
                f"(p99 {result.summary()['p99_ms']:.1f} ms); at {rate:,.0f} req/s p50 "
                f"{slow.summary()['p50_ms']:.1f} ms, p99 {slow.summary()['p99_ms']:.1f} ms",
                flush=True,
            )
    return {
        "peak": {name: {"median": aggregate(reps), "reps": reps} for name, reps in peak.items()},
        "half_peak": {
            name: {"median": aggregate(reps), "reps": reps} for name, reps in half.items()
        },
    }


def report(data: dict[str, Any]) -> dict[str, Any]:
    peak, half = data["peak"], data["half_peak"]
    hello = peak["hello_get"]["median"]["throughput_rps"]
    rows = []
    for name in peak:
        p, h = peak[name]["median"], half[name]["median"]
        rows.append(
            [
                name,
                p["throughput_rps"],
                f"{ratio(p['throughput_rps'], hello):.3f}",
                f"{p.get('server_cpu_ms_per_request', float('nan')):.3f}",
                p["p50_ms"],
                p["p99_ms"],
                h["throughput_rps"],
                h["p50_ms"],
                h["p95_ms"],
                h["p99_ms"],
                p["errors"] + p["non_2xx"] + h["errors"] + h["non_2xx"],
            ]
        )
    print_table(
        "API (median of reps; ratio = throughput / hello-world's in this run)",
        [
            "scenario",
            "peak req/s",
            "x hello",
            "server CPU ms/req",
            "p50 ms",
            "p99 ms",
            "half-peak req/s",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "errors",
        ],
        rows,
    )
    targets: dict[str, Any] = {}
    if "post_jobs" in peak:
        share = ratio(peak["post_jobs"]["median"]["throughput_rps"], hello)
        p99 = half["post_jobs"]["median"]["p99_ms"]
        targets = {
            "post_share_of_hello": {
                "value": round(share, 3),
                "target": POST_SHARE_TARGET,
                "met": share >= POST_SHARE_TARGET,
            },
            "post_p99_at_half_peak_ms": {
                "value": p99,
                "target": P99_TARGET_MS,
                "met": p99 < P99_TARGET_MS,
            },
        }
        for name, t in targets.items():
            print(f"target {name}: {t['value']} (target {t['target']}): {target_verdict(t['met'])}")
    return {
        "ratios": {n: round(ratio(peak[n]["median"]["throughput_rps"], hello), 3) for n in peak},
        "targets": targets,
    }


SCENARIOS = ("post_jobs", "get_job")


def _env_pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def _scenarios(text: str) -> str:
    unknown = sorted(set(filter(None, text.split(","))) - set(SCENARIOS))
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown scenario {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}"
        )
    return text


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=positive_int, default=3)
    parser.add_argument(
        "--duration", type=positive_float, default=8.0, help="measured seconds per run"
    )
    parser.add_argument("--warmup", type=float, default=2.0, help="excluded seconds per run")
    parser.add_argument("--concurrency", type=positive_int, default=32)
    parser.add_argument(
        "--baseline-only",
        action="store_true",
        help="only the hello-world (no database; used by the smoke test)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="run the API under pyinstrument; the report goes to bench/results/api-profile.txt",
    )
    parser.add_argument(
        "--api-env",
        action="append",
        type=_env_pair,
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for the API process (e.g. DB_STATEMENT_CACHE_SIZE=100), to "
        "measure a setting's effect; repeatable",
    )
    parser.add_argument(
        "--only", default="", type=_scenarios, help="comma list of post_jobs,get_job"
    )
    parser.add_argument("--name", default="api", help="result file name (bench/results/NAME.json)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan: CpuPlan = cpu_plan()
    print(
        f"api bench: {plan.describe()}; {args.reps} reps x ({args.warmup}s warm-up + "
        f"{args.duration}s), concurrency {args.concurrency}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="gw-bench-api-") as tmp:
        work = Path(tmp)
        ports = {"hello": _free_port()}
        hello_env = service_env({}, work, PORT=str(ports["hello"]))
        with running(
            [sys.executable, "-m", "bench.hello"], hello_env, work / "hello.log", cpus=plan.server
        ) as hello:
            wait_until_ok(
                f"http://{LOOPBACK}:{ports['hello']}/health/ready",
                timeout=60,
                proc=hello,
                log_path=work / "hello.log",
            )
            pids = {ports["hello"]: hello.pid}
            if args.baseline_only:
                pin_self(plan.load)
                data = measure(args, ports, token="", pids=pids)
            else:
                data = _with_api(args, plan, work, ports, pids)
    summary = report(data)
    if data.get("batch_sizes"):
        sizes = ", ".join(f"{name} {size}" for name, size in data["batch_sizes"].items())
        print(f"mean requests per batch (whole run): {sizes}")
    path = write_results(
        args.name,
        {
            "config": dict(vars(args)),
            "cpu_plan": plan.describe(),
            **data,
            **summary,
        },
    )
    print(f"wrote {path}")
    return 0


def _with_api(
    args: argparse.Namespace,
    plan: CpuPlan,
    work: Path,
    ports: dict[str, int],
    pids: dict[int, int],
) -> dict[str, Any]:
    with bench_servers() as servers:
        ports["api"] = _free_port()
        extra = dict(args.api_env)
        env = service_env(servers.env(), work, PORT=str(ports["api"]), **extra)
        migrate(env, work / "migrate.log")
        command = app_command("api")
        if args.profile:
            RESULTS_DIR.mkdir(parents=True, exist_ok=True)
            command = [
                sys.executable,
                "-m",
                "pyinstrument",
                "-r",
                "text",
                "--show-all",
                "-o",
                str(RESULTS_DIR / "api-profile.txt"),
                "-m",
                "groundwork_app.cli",
                "api",
            ]
        with running(command, env, work / "api.log", cpus=plan.server) as api:
            wait_until_ok(
                f"http://{LOOPBACK}:{ports['api']}/health/ready",
                timeout=90,
                proc=api,
                log_path=work / "api.log",
            )
            pin_self(plan.load)
            try:
                pids[ports["api"]] = api.pid
                data = measure(args, ports, auth_for(env).token(), pids)
                data["batch_sizes"] = batch_sizes(ports["api"])
                return data
            finally:
                pin_self(set(range(256)) & _all_cpus())


def _all_cpus() -> set[int]:
    return set(range(os.cpu_count() or 1))


if __name__ == "__main__":
    raise SystemExit(main())
