"""Pipeline throughput: POST -> stored result through relay, RabbitMQ and the worker,
against a Celery + RabbitMQ worker doing the same work, in the same run.

For each simulated LLM latency (0 ms: overhead-bound; 200 ms: concurrency-bound) the
groundwork processes (api, relay, worker) and two Celery workers run side by side on
one RabbitMQ and one PostgreSQL, and the repetitions are interleaved:

* ``groundwork``: N jobs POSTed to /v1/jobs (32 connections); each goes API -> jobs +
  outbox rows -> relay (LISTEN/NOTIFY, publisher confirms) -> worker (ledger check,
  cache lookup, simulated LLM, result + ledger in one transaction, cache write).
  WORKER_CONCURRENCY 16, prefetch 16 (the defaults).
* ``celery-threads``: N tasks published; the task inserts the row, computes the same
  simulated answer and writes the result. Threads pool, concurrency 16, prefetch 16:
  the same concurrency as the groundwork worker.
* ``celery-prefork``: the same with Celery's out-of-the-box pool (prefork, one
  process per core).

* ``groundwork-sqs`` (with ``--sqs``): the same groundwork processes with
  QUEUE_BACKEND=sqs against moto's SQS server on loopback (in this process), reported
  next to ``groundwork`` on RabbitMQ. moto is a stand-in, not SQS: the ratio shows what
  the SQS adapter (long polls, batched sends and deletes, HTTP per call) costs against
  AMQP on the same machine, not AWS's latencies.

Throughput = N / (last completed_at - first submission); latency = completed_at -
submission per job (database clock, same host). Warm-up batches are excluded.

    uv run python -m bench.pipeline [--reps 3] [--jobs 1000] [--jobs-slow 320] [--sqs]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg

from bench.common import (
    LOOPBACK,
    RESULTS_DIR,
    aggregate,
    app_command,
    auth_for,
    batch_sizes,
    bench_servers,
    build_request,
    cpu_seconds,
    latency_summary,
    log_dir,
    machine_busy_seconds,
    migrate,
    positive_float,
    positive_int,
    print_table,
    ratio,
    run_async,
    running,
    service_env,
    submit_n,
    target_verdict,
    wait_until_ok,
    write_results,
)

TARGET_RATIO = 2.0  # groundwork >= 2x Celery on the same broker
SUBMIT_CONCURRENCY = 32
WORKER_CONCURRENCY = 16
MODEL = "gpt-4o-mini"
SYSTEMS = ("groundwork", "celery-threads", "celery-prefork")
SQS_SYSTEM = "groundwork-sqs"


def _systems(args: argparse.Namespace) -> tuple[str, ...]:
    return (*SYSTEMS, SQS_SYSTEM) if getattr(args, "sqs", False) else SYSTEMS


def _sqs_env(endpoint: str, latency_ms: int) -> dict[str, str]:
    """The work queue + DLQ on moto's server, created as the AWS stack creates them."""
    import boto3
    from groundwork_app.adapters.sqs import create_queue_pair

    credentials = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench"}
    client = boto3.client(
        "sqs",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=credentials["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=credentials["AWS_SECRET_ACCESS_KEY"],
    )
    queue_url, dlq_url = create_queue_pair(
        client,
        f"bench-{latency_ms}ms-{uuid.uuid4().hex[:6]}",
        delivery_limit=5,
        visibility_timeout=300,
    )
    return {
        **credentials,
        "QUEUE_BACKEND": "sqs",
        "SQS_ENDPOINT_URL": endpoint,
        "SQS_QUEUE_URL": queue_url,
        "SQS_DLQ_URL": dlq_url,
        "AWS_REGION": "us-east-1",
    }


def _free_port() -> int:
    from groundwork.devservers import free_port

    return free_port()


async def _connect_db(env: dict[str, str]) -> asyncpg.Connection:
    return await asyncpg.connect(
        host=env["DB_HOST"],
        port=int(env["DB_PORT"]),
        user=env["DB_USER"],
        password=env["DB_PASSWORD"],
        database=env["DB_NAME"],
        ssl=False,
    )


async def _truncate(env: dict[str, str]) -> None:
    conn = await _connect_db(env)
    try:
        await conn.execute("TRUNCATE jobs, outbox, processed_messages RESTART IDENTITY CASCADE")
    finally:
        await conn.close()


async def _wait_done(env: dict[str, str], count: int, timeout: float) -> dict[str, Any]:
    """Poll until ``count`` jobs succeeded; return completion time and per-job latencies."""
    conn = await _connect_db(env)
    try:
        deadline = time.monotonic() + timeout
        done = 0
        while time.monotonic() < deadline:
            done = await conn.fetchval("SELECT count(*) FROM jobs WHERE status = 'succeeded'")
            if done >= count:
                break
            await asyncio.sleep(0.05)
        rows = await conn.fetch(
            "SELECT extract(epoch FROM completed_at)::float8 AS done_at, "
            "extract(epoch FROM completed_at - created_at)::float8 AS latency "
            "FROM jobs WHERE status = 'succeeded'"
        )
    finally:
        await conn.close()
    return {
        "completed": len(rows),
        "last_done_at": max((r["done_at"] for r in rows), default=float("nan")),
        "latencies": [r["latency"] for r in rows],
    }


def _summarize(count: int, t0: float, done: dict[str, Any], submit_s: float) -> dict[str, Any]:
    elapsed = done["last_done_at"] - t0
    complete = done["completed"] >= count
    return {
        "jobs": count,
        "completed": done["completed"],
        "complete": complete,
        "elapsed_s": round(elapsed, 3),
        "submit_s": round(submit_s, 3),
        "throughput_rps": round(count / elapsed, 2) if complete and elapsed > 0 else float("nan"),
        **latency_summary(done["latencies"]),
    }


def run_groundwork(
    env: dict[str, str], port: int, token: str, count: int, timeout: float
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    run_id = uuid.uuid4().hex[:8]

    def make(i: int) -> bytes:
        # Unique prompts: a repeated prompt would be served from the answer cache.
        body = f'{{"prompt":"pipeline {run_id} job {i}","model":"{MODEL}"}}'.encode()
        return build_request("POST", "/v1/jobs", body=body, headers=headers)

    async def go() -> dict[str, Any]:
        await _truncate(env)
        t0 = time.time()
        submitted = await submit_n(port, make, count=count, concurrency=SUBMIT_CONCURRENCY)
        if submitted.ok != count:
            raise RuntimeError(
                f"POST /v1/jobs: {submitted.summary()['statuses']}, {submitted.errors} errors"
            )
        done = await _wait_done(env, count, timeout)
        return _summarize(count, t0, done, submitted.duration_s)

    return run_async(go())


def run_celery(env: dict[str, str], queue: str, count: int, timeout: float) -> dict[str, Any]:
    from bench.celery_baseline import TASK_NAME, broker_url, make_app

    celery = make_app(broker_url(env))
    run_id = uuid.uuid4().hex[:8]
    run_async(_truncate(env))
    t0 = time.time()
    with celery.producer_or_acquire() as producer:  # one connection for the whole batch
        for i in range(count):
            celery.send_task(
                TASK_NAME,
                args=[str(uuid.uuid4()), f"pipeline {run_id} job {i}", MODEL, time.time()],
                queue=queue,
                producer=producer,
            )
    submit_s = time.time() - t0
    done = run_async(_wait_done(env, count, timeout))
    return _summarize(count, t0, done, submit_s)


def _worker_command(args: argparse.Namespace) -> list[str]:
    if not args.profile_worker:
        return app_command("worker")
    out = RESULTS_DIR / "worker-profile.txt"
    return [
        sys.executable,
        "-m",
        "pyinstrument",
        "-r",
        "text",
        "-o",
        str(out),
        "-m",
        "groundwork_app.cli",
        "worker",
    ]


def measure_latency(
    args: argparse.Namespace,
    servers: Any,
    work: Path,
    latency_ms: int,
    sqs_endpoint: str | None = None,
) -> dict[str, Any]:
    count = args.jobs if latency_ms == 0 else args.jobs_slow
    api_port, relay_port, worker_port = _free_port(), _free_port(), _free_port()
    base = service_env(
        servers.env(),
        work,
        LLM_SIMULATED_LATENCY_MS=str(latency_ms),
        WORKER_CONCURRENCY=str(WORKER_CONCURRENCY),
        QUEUE_PREFETCH=str(WORKER_CONCURRENCY),
    )
    api_env = {**base, "PORT": str(api_port)}
    relay_env = {**base, "WORKER_HEALTH_PORT": str(relay_port)}
    worker_env = {**base, "WORKER_HEALTH_PORT": str(worker_port)}
    celery_cmd = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "bench.celery_baseline",
        "worker",
        "--loglevel",
        "WARNING",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]
    queues = {"celery-threads": "bench-celery-threads", "celery-prefork": "bench-celery-prefork"}
    threads_env = {**base, "BENCH_CELERY_QUEUE": queues["celery-threads"]}
    prefork_env = {**base, "BENCH_CELERY_QUEUE": queues["celery-prefork"]}
    logs = work / f"logs-{latency_ms}ms"
    systems = _systems(args)
    sqs_port = _free_port()
    with (
        _sqs_processes(base, sqs_endpoint, sqs_port, latency_ms, logs),
        running(app_command("api"), api_env, logs / "api.log") as api,
        running(app_command("relay"), relay_env, logs / "relay.log") as relay,
        running(_worker_command(args), worker_env, logs / "worker.log") as worker,
        running(
            [
                *celery_cmd,
                "--pool",
                "threads",
                "--concurrency",
                str(WORKER_CONCURRENCY),
                "-Q",
                queues["celery-threads"],
                # Distinct node names: two workers called celery@host collide on their
                # control (pidbox) queue and the second one exits.
                "-n",
                "threads@%h",
            ],
            threads_env,
            logs / "celery-threads.log",
        ),
        running(
            [
                *celery_cmd,
                "--pool",
                "prefork",
                "--concurrency",
                str(os.cpu_count() or 1),
                "-Q",
                queues["celery-prefork"],
                "-n",
                "prefork@%h",
            ],
            prefork_env,
            logs / "celery-prefork.log",
        ),
    ):
        for url, proc, log in (
            (f"http://{LOOPBACK}:{api_port}/health/ready", api, "api.log"),
            (f"http://{LOOPBACK}:{relay_port}/health/ready", relay, "relay.log"),
            (f"http://{LOOPBACK}:{worker_port}/health/ready", worker, "worker.log"),
        ):
            wait_until_ok(url, timeout=90, proc=proc, log_path=logs / log)
        token = auth_for(api_env).token()
        timeout = args.timeout
        runners: dict[str, Callable[[int], dict[str, Any]]] = {
            "groundwork": lambda n: run_groundwork(base, api_port, token, n, timeout),
            "celery-threads": lambda n: run_celery(base, queues["celery-threads"], n, timeout),
            "celery-prefork": lambda n: run_celery(base, queues["celery-prefork"], n, timeout),
        }
        if SQS_SYSTEM in systems:
            runners[SQS_SYSTEM] = lambda n: run_groundwork(base, sqs_port, token, n, timeout)
        # Prefork runs one job per process: at 200 ms it manages ~5 jobs/s per core, so
        # it gets a smaller batch to keep the run short (throughput is a rate).
        sizes = dict.fromkeys(systems, count)
        if latency_ms:
            sizes["celery-prefork"] = max(20, count // 8)
        for name, run in runners.items():  # warm-up: imports, connections, queues
            run(max(20, sizes[name] // 10))
        reps: dict[str, list[dict[str, Any]]] = {name: [] for name in systems}
        own = {"api": api.pid, "relay": relay.pid, "worker": worker.pid}
        for rep in range(args.reps):
            for name, run in runners.items():
                before = {k: cpu_seconds(pid) for k, pid in own.items()}
                busy = machine_busy_seconds()
                result = run(sizes[name])
                # CPU per job: the whole machine (servers, load generator and all) and,
                # for groundwork, each of its processes: where the time goes.
                jobs = max(result["completed"], 1)
                result["machine_cpu_ms_per_job"] = round(
                    1000 * (machine_busy_seconds() - busy) / jobs, 3
                )
                if name == "groundwork":
                    for k, pid in own.items():
                        cpu_ms = 1000 * (cpu_seconds(pid) - before[k]) / jobs
                        result[f"{k}_cpu_ms_per_job"] = round(cpu_ms, 3)
                reps[name].append(result)
                print(
                    f"  {latency_ms} ms rep {rep + 1} {name}: "
                    f"{result['throughput_rps']} jobs/s ({result['completed']}/{result['jobs']})",
                    flush=True,
                )
        batches = {**batch_sizes(api_port), **batch_sizes(worker_port)}
    medians = {name: aggregate(r) for name, r in reps.items()}
    sizes_text = ", ".join(f"{name} {size}" for name, size in batches.items())
    print(f"  {latency_ms} ms: mean calls per batch (whole run): {sizes_text}", flush=True)
    return {
        "latency_ms": latency_ms,
        "batch_sizes": batches,
        "sizes": sizes,
        "systems": {n: {"median": medians[n], "reps": reps[n]} for n in systems},
    }


def report(results: list[dict[str, Any]]) -> dict[str, Any]:
    rows: list[list[Any]] = []
    targets: dict[str, dict[str, Any]] = {}
    for res in results:
        med = {n: res["systems"][n]["median"] for n in res["systems"]}
        for name in med:
            rows.append(
                [
                    f"{res['latency_ms']} ms",
                    name,
                    med[name]["throughput_rps"],
                    ratio(med[name]["throughput_rps"], med["celery-threads"]["throughput_rps"]),
                    ratio(med[name]["throughput_rps"], med["celery-prefork"]["throughput_rps"]),
                    med[name]["p50_ms"],
                    med[name]["p99_ms"],
                    med[name].get("machine_cpu_ms_per_job", float("nan")),
                    " / ".join(
                        f"{med[name].get(f'{k}_cpu_ms_per_job', float('nan')):.2f}"
                        for k in ("api", "relay", "worker")
                    )
                    if name == "groundwork"
                    else "",
                ]
            )
        value = ratio(med["groundwork"]["throughput_rps"], med["celery-threads"]["throughput_rps"])
        targets[f"vs_celery_threads_at_{res['latency_ms']}ms"] = {
            "value": round(value, 3),
            "target": TARGET_RATIO,
            "met": value >= TARGET_RATIO,
        }
        value = ratio(med["groundwork"]["throughput_rps"], med["celery-prefork"]["throughput_rps"])
        targets[f"vs_celery_default_at_{res['latency_ms']}ms"] = {
            "value": round(value, 3),
            "target": TARGET_RATIO,
            "met": value >= TARGET_RATIO,
        }
        if SQS_SYSTEM in med:
            # Not a target: how SQS (moto on loopback) compares with RabbitMQ, same run.
            value = ratio(med[SQS_SYSTEM]["throughput_rps"], med["groundwork"]["throughput_rps"])
            print(f"  {res['latency_ms']} ms: groundwork-sqs = {value:.2f} x groundwork (RabbitMQ)")
    print_table(
        "Pipeline POST -> stored result (median of reps)",
        [
            "LLM latency",
            "system",
            "jobs/s",
            "x celery-threads",
            "x celery-prefork",
            "p50 ms",
            "p99 ms",
            "machine CPU ms/job",
            "api / relay / worker CPU ms/job",
        ],
        rows,
    )
    for name, t in targets.items():
        print(f"target {name}: {t['value']} (target {t['target']}x): {target_verdict(t['met'])}")
    return targets


def _latencies(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated whole milliseconds (e.g. 0,200), got {text!r}"
        ) from None
    if not values or any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected one or more latencies >= 0, got {text!r}")
    return values


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=positive_int, default=3)
    parser.add_argument("--jobs", type=positive_int, default=1000, help="jobs per run at 0 ms")
    parser.add_argument(
        "--jobs-slow", type=positive_int, default=320, help="jobs per run at 200 ms"
    )
    parser.add_argument(
        "--latencies", default="0,200", type=_latencies, help="simulated LLM latencies (ms)"
    )
    parser.add_argument("--timeout", type=positive_float, default=180.0, help="per run")
    parser.add_argument(
        "--profile-worker",
        action="store_true",
        help="run the worker under pyinstrument; report in bench/results/worker-profile.txt",
    )
    parser.add_argument(
        "--sqs",
        action="store_true",
        help="also run groundwork with QUEUE_BACKEND=sqs (moto's server on loopback)",
    )
    parser.add_argument("--name", default="pipeline")
    return parser.parse_args(argv)


@contextlib.contextmanager
def _sqs_processes(
    base: dict[str, str], endpoint: str | None, port: int, latency_ms: int, logs: Path
) -> Iterator[None]:
    """api + relay + worker on SQS, beside the RabbitMQ ones (nothing without --sqs)."""
    with contextlib.ExitStack() as stack:
        if endpoint is not None:
            env = {**base, **_sqs_env(endpoint, latency_ms)}
            for process, extra in (
                ("api", {"PORT": str(port)}),
                ("relay", {"WORKER_HEALTH_PORT": str(_free_port())}),
                ("worker", {"WORKER_HEALTH_PORT": str(_free_port())}),
            ):
                stack.enter_context(
                    running(app_command(process), {**env, **extra}, logs / f"sqs-{process}.log")
                )
            wait_until_ok(f"http://{LOOPBACK}:{port}/health/ready", timeout=90)
        yield


@contextlib.contextmanager
def _moto_server() -> Iterator[str]:
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access-log line per call
    port = _free_port()
    server = ThreadedMotoServer(ip_address=LOOPBACK, port=port, verbose=False)
    server.start()
    try:
        yield f"http://{LOOPBACK}:{port}"
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    latencies = args.latencies
    print(
        f"pipeline bench: {args.reps} reps, {args.jobs} jobs at 0 ms / {args.jobs_slow} at "
        f"slower latencies; processes unpinned (6 processes share the cores)",
        flush=True,
    )
    work = log_dir(args.name)
    with bench_servers() as servers, contextlib.ExitStack() as stack:
        migrate(service_env(servers.env(), work), work / "migrate.log")
        endpoint = stack.enter_context(_moto_server()) if args.sqs else None
        results = [measure_latency(args, servers, work, ms, endpoint) for ms in latencies]
    targets = report(results)
    path = write_results(args.name, {"config": vars(args), "results": results, "targets": targets})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
