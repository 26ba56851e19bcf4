"""Pipeline throughput: POST -> stored result through relay, RabbitMQ and the worker,
against a Celery + RabbitMQ worker doing the same work, in the same run.

Both systems call a fake OpenAI-compatible LLM server (bench/fake_llm.py, one per
consumer process) over HTTP, which waits the simulated latency and counts every call
per prompt: "every LLM call counted once" is calls = distinct prompts = jobs there.

For each simulated LLM latency (0 ms: overhead-bound; 200 ms; 2,000 ms: a real
LLM's latency, concurrency-bound) every system is first **swept** by drains: a queue
is filled with no consumer running (groundwork: one job POSTed and cloned in SQL with
its outbox row, published by the relay; Celery: published), then one consumer process
starts and drains it; the best configuration by jobs/s is kept. Each best then drains
--reps times, systems interleaved (median and range): the capacity of one worker
process. Finally the best configurations run the pipeline side by side:

* ``groundwork``: N jobs POSTed to /v1/jobs (32 connections); each goes API -> jobs +
  outbox rows -> relay (LISTEN/NOTIFY, publisher confirms) -> worker (ledger check,
  cache lookup, LLM call, result + ledger in one transaction, cache write).
  Swept: WORKER_CONCURRENCY = QUEUE_PREFETCH in --groundwork-sweep.
* ``celery-threads`` / ``celery-gevent`` / ``celery-eventlet``: N tasks published; the
  task inserts the row, calls the LLM with a synchronous httpx client, writes the
  answer. Prefetch = concurrency, swept over --celery-sweep / --celery-green-sweep.
* ``celery-prefork``: the same with Celery's out-of-the-box pool (prefork, one
  process per core).

A drain's rate is taken between 10 % and 90 % of its jobs stored (the steady state);
its CPU per job over all its jobs, from the first started. Jobs/s per vCPU = 1,000 /
CPU ms per job (bounded by slots / latency): what one process does on a vCPU of its
own. At the end: the cost per million jobs of one task at the measured rate
(groundwork/plan/prices.yaml).

    uv run python -m bench.pipeline [--reps 3] [--latencies 0,200,2000]
        [--systems groundwork,celery-threads,celery-gevent,celery-eventlet,celery-prefork]
        [--groundwork-sweep 256,1024,4096] [--celery-sweep 256,1024,4096]
        [--celery-green-sweep 1024,4096]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import asyncpg

from bench.common import (
    LOOPBACK,
    RESULTS_DIR,
    ROOT,
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
    median_of,
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

TARGET_RATIO = 3.0  # groundwork >= 3x Celery's best configuration on the same broker
TARGET_SLOW_JOBS_PER_S = 200.0  # one worker process at 2,000 ms of LLM latency
TARGET_CPU_MS_PER_JOB = 2.5  # machine CPU per job at 0 ms
SUBMIT_CONCURRENCY = 32
MODEL = "gpt-4o-mini"
SYSTEMS = ("groundwork", "celery-threads", "celery-gevent", "celery-eventlet", "celery-prefork")
CELERY_SYSTEMS = SYSTEMS[1:]
# Celery's execution pools: threads, the two green-thread pools Celery documents for
# I/O-bound work, and prefork (its default, one process per core).
CELERY_POOLS = {
    "celery-threads": "threads",
    "celery-gevent": "gevent",
    "celery-eventlet": "eventlet",
    "celery-prefork": "prefork",
}


def _free_port() -> int:
    from groundwork.devenv.servers import free_port

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
        "first_done_at": min((r["done_at"] for r in rows), default=float("nan")),
        "last_done_at": max((r["done_at"] for r in rows), default=float("nan")),
        "latencies": [r["latency"] for r in rows],
        "done_ats": [r["done_at"] for r in rows],
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
        # Completions per second once the first job came back: the rate the system
        # sustains, without the one LLM latency every run waits before anything can
        # complete (which at 2,000 ms would cap a 6 s run at 75 % of its rate).
        "sustained_rps": round((count - 1) / span, 2)
        if complete and count > 1 and (span := done["last_done_at"] - done["first_done_at"]) > 0
        else float("nan"),
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


# ------------------------------------------------------------------ process accounting


def _tree(pid: int) -> list[int]:
    """``pid`` and its live descendants (Celery prefork's children), from /proc."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(parents.get(current, []))
    return found


def _tree_cpu_seconds(pid: int) -> float:
    total = 0.0
    for member in _tree(pid):
        with contextlib.suppress(OSError, IndexError, ValueError):
            total += cpu_seconds(member)
    return total


def _tree_sched_seconds(pid: int) -> tuple[float, float]:
    """(seconds on a CPU, seconds runnable but waiting on the run queue) of every thread
    of ``pid``'s tree, from /proc/<pid>/task/<tid>/schedstat (kernel
    Documentation/scheduler/sched-stats.rst: ns on cpu, ns waiting on a runqueue).
    A thread that exits takes its counters with it (gevent's resolver threads come and
    go), so for a pool it is a lower bound."""
    ran = waited = 0
    for member in _tree(pid):
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{member}/task").iterdir():
                with contextlib.suppress(OSError, ValueError):
                    on_cpu, on_runqueue, _ = (task / "schedstat").read_text().split()
                    ran += int(on_cpu)
                    waited += int(on_runqueue)
    return ran / 1e9, waited / 1e9


def _tree_peak_rss_mib(pid: int) -> float:
    """Sum of each process's peak resident set (VmHWM): for one process its peak; for
    a pool an upper bound (the members may not peak at the same instant)."""
    total_kib = 0
    for member in _tree(pid):
        with contextlib.suppress(OSError, ValueError):
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total_kib += int(line.split()[1])
    return round(total_kib / 1024, 1)


def _llm_calls(port: int) -> float:
    """LLM provider calls the groundwork worker has made (its /metrics, every outcome)."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://{LOOPBACK}:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "llm_request_duration_seconds"
        for sample in family.samples
        if sample.name.endswith("_count")
    )


# ------------------------------------------------------------------------- systems


@dataclass(frozen=True)
class Config:
    """One system at one setting: what the sweep varies."""

    system: str
    concurrency: int

    @property
    def label(self) -> str:
        if self.system == "groundwork":
            return f"groundwork c={self.concurrency} prefetch={self.concurrency}"
        if self.system == "celery-prefork":
            return f"celery prefork c={self.concurrency} (default)"
        return f"celery {CELERY_POOLS[self.system]} c={self.concurrency}"


def sweep_configs(args: argparse.Namespace) -> dict[str, list[Config]]:
    every = {
        "groundwork": [Config("groundwork", c) for c in args.groundwork_sweep],
        "celery-threads": [Config("celery-threads", c) for c in args.celery_sweep],
        "celery-gevent": [Config("celery-gevent", c) for c in args.celery_green_sweep],
        "celery-eventlet": [Config("celery-eventlet", c) for c in args.celery_green_sweep],
        # Celery's out-of-the-box pool: prefork, one process per core.
        "celery-prefork": [Config("celery-prefork", os.cpu_count() or 1)],
    }
    return {name: every[name] for name in args.systems}


def jobs_for(config: Config, latency_ms: int, args: argparse.Namespace) -> int:
    """Pipeline runs: enough jobs for ~``args.run_seconds`` at the config's ceiling
    (slots / latency), bounded by --jobs-slow; at 0 ms, --jobs."""
    if latency_ms == 0:
        return args.jobs
    ceiling = config.concurrency / (latency_ms / 1000)
    return max(8, min(args.jobs_slow, int(ceiling * args.run_seconds)))


DRAIN_ROUNDS = 4  # a drain holds at least this many rounds of every slot


def drain_jobs_for(config: Config, latency_ms: int, args: argparse.Namespace) -> int:
    """Drains: at least DRAIN_ROUNDS rounds of every slot (so the steady state, not the
    first and last round, decides the rate; a prefork pool of 2 at 2 s: 8 jobs) and
    ~--run-seconds at the slot ceiling, the latter bounded by --jobs-drain-max; at 0 ms,
    --jobs.

    The cap never cuts a drain below DRAIN_ROUNDS rounds: a drain of one round (4,096
    jobs at 4,096 slots) has no steady state, and its 10-90 % window then measured
    different things per system: the groundwork worker's intake ramp, but a Celery
    pool's burst of deferred result writes (its tasks' INSERTs and UPDATEs queue on one
    20-connection pool, so a round's results are stored after the round's inserts, up to
    8 s after their LLM answers): 1,040 jobs/s for gevent c=4096 in one round against
    350 over four (docs/performance.md, "What capped one worker at c=4096")."""
    if latency_ms == 0:
        return args.jobs
    ceiling = config.concurrency / (latency_ms / 1000)
    rounds = DRAIN_ROUNDS * config.concurrency
    return max(rounds, min(args.jobs_drain_max, int(ceiling * args.run_seconds)))


CELERY_BASE = [
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


@dataclass
class FakeLLM:
    """The fake LLM server of one consumer (bench/fake_llm.py): it counts the calls."""

    port: int
    proc: subprocess.Popen[bytes]

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}/v1"

    def stats(self) -> dict[str, int]:
        import json
        import urllib.request

        with urllib.request.urlopen(f"http://{LOOPBACK}:{self.port}/stats", timeout=5) as r:
            data: dict[str, int] = json.loads(r.read())
        return data


@contextlib.contextmanager
def fake_llm(latency_ms: int, log_path: Path) -> Iterator[FakeLLM]:
    port = _free_port()
    command = [sys.executable, "-m", "bench.fake_llm", "--port", str(port)]
    command += ["--latency-ms", str(latency_ms)]
    with running(command, dict(os.environ), log_path) as proc:
        wait_until_ok(f"http://{LOOPBACK}:{port}/stats", timeout=30, proc=proc, log_path=log_path)
        yield FakeLLM(port, proc)


def _calls_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {
        "llm_calls": after["calls"] - before["calls"],
        "llm_distinct_prompts": after["distinct"] - before["distinct"],
        "llm_duplicate_calls": after["duplicates"] - before["duplicates"],
        "llm_peak_in_flight": after["peak_in_flight"],
    }


@dataclass
class Consumer:
    """A running consumer process (groundwork worker or Celery worker) for one config."""

    config: Config
    proc: subprocess.Popen[bytes]
    health_port: int | None
    queue: str | None
    llm: FakeLLM

    def run(self, ctx: Ctx, count: int) -> dict[str, Any]:
        if self.config.system == "groundwork":
            return run_groundwork(ctx.base, ctx.api_port, ctx.token, count, ctx.timeout)
        assert self.queue is not None
        return run_celery(ctx.base, self.queue, count, ctx.timeout)


@dataclass
class Ctx:
    base: dict[str, str]
    api_port: int
    relay_pid: int
    api_pid: int
    token: str
    timeout: float
    work: Path
    args: argparse.Namespace


@contextlib.contextmanager
def consumer(
    ctx: Ctx, config: Config, latency_ms: int, queue: str | None = None, wait_ready: bool = True
) -> Iterator[Consumer]:
    logs = ctx.work / f"logs-{latency_ms}ms"
    name = f"{config.system}-c{config.concurrency}"
    with fake_llm(latency_ms, logs / f"{name}-llm.log") as llm:
        # Both systems call the fake server over HTTP as they would call a provider.
        env = {**ctx.base, "LLM_API_KEY": "bench", "LLM_BASE_URL": llm.base_url}
        env["BENCH_LLM_URL"] = llm.base_url
        if config.system == "groundwork":
            port = _free_port()
            env.update(
                WORKER_HEALTH_PORT=str(port),
                WORKER_CONCURRENCY=str(config.concurrency),
                QUEUE_PREFETCH=str(config.concurrency),
            )
            with running(_worker_command(ctx.args), env, logs / f"{name}.log") as proc:
                if wait_ready:
                    wait_until_ok(
                        f"http://{LOOPBACK}:{port}/health/ready",
                        timeout=90,
                        proc=proc,
                        log_path=logs / f"{name}.log",
                    )
                yield Consumer(config, proc, port, None, llm)
            return
        pool = CELERY_POOLS[config.system]
        queue = queue or f"bench-{name}-{uuid.uuid4().hex[:6]}"
        env.update(BENCH_CELERY_QUEUE=queue, BENCH_CELERY_CONCURRENCY=str(config.concurrency))
        command = [
            *CELERY_BASE,
            "--pool",
            pool,
            "--concurrency",
            str(config.concurrency),
            "-Q",
            queue,
            # Distinct node names: two workers called celery@host collide on their control
            # (pidbox) queue and the second one exits.
            "-n",
            f"{name}-{uuid.uuid4().hex[:6]}@%h",
        ]
        with running(command, env, logs / f"{name}.log") as proc:
            yield Consumer(config, proc, None, queue, llm)


def measure(ctx: Ctx, cons: Consumer, count: int, latency_ms: int) -> dict[str, Any]:
    """One timed batch, with CPU per job (machine, each process) and the LLM calls made."""
    pids = {"consumer": cons.proc.pid, "llm_server": cons.llm.proc.pid}
    if cons.config.system == "groundwork":
        pids |= {"api": ctx.api_pid, "relay": ctx.relay_pid}
    before = {k: _tree_cpu_seconds(pid) for k, pid in pids.items()}
    calls_before = cons.llm.stats()
    busy = machine_busy_seconds()
    own = _tree_cpu_seconds(os.getpid())
    result = cons.run(ctx, count)
    jobs = max(result["completed"], 1)
    # Two views of CPU per job: the whole machine (everything running on it, other
    # users included) and this bench's own process tree: the servers (PostgreSQL,
    # Redis, RabbitMQ), api, relay, consumers, the fake LLM and the load generator. On
    # a shared machine the second is the one that means something.
    result["machine_cpu_ms_per_job"] = round(1000 * (machine_busy_seconds() - busy) / jobs, 3)
    result["own_cpu_ms_per_job"] = round(1000 * (_tree_cpu_seconds(os.getpid()) - own) / jobs, 3)
    for k, pid in pids.items():
        cpu_ms = 1000 * (_tree_cpu_seconds(pid) - before[k]) / jobs
        result[f"{k}_cpu_ms_per_job"] = round(cpu_ms, 3)
    result["consumer_peak_rss_mib"] = _tree_peak_rss_mib(cons.proc.pid)
    result["consumer_processes"] = len(_tree(cons.proc.pid))
    # Counted where the calls land (the fake LLM server), per prompt: one per job.
    result |= _calls_delta(calls_before, cons.llm.stats())
    result["config"] = cons.config.label
    result["concurrency"] = cons.config.concurrency
    return result


async def _wait_succeeded(env: dict[str, str], count: int, timeout: float) -> int:
    """Poll (every 10 ms) until at least ``count`` jobs succeeded; return how many had."""
    conn = await _connect_db(env)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done = int(await conn.fetchval("SELECT count(*) FROM jobs WHERE status = 'succeeded'"))
            if done >= count:
                return done
            await asyncio.sleep(0.01)
    finally:
        await conn.close()
    raise RuntimeError(f"fewer than {count} jobs succeeded in {timeout:.0f}s")


async def _wait_published(env: dict[str, str], count: int, timeout: float) -> None:
    conn = await _connect_db(env)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            sent = await conn.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NOT NULL")
            if sent >= count:
                return
            await asyncio.sleep(0.05)
    finally:
        await conn.close()
    raise RuntimeError(f"the relay published fewer than {count} jobs in {timeout:.0f}s")


# A bulk copy of one job POSTed through the API (its client, topic, headers and payload
# shape), with its own id, message id and a unique prompt per row: filling a queue of
# 10,000+ jobs through the API would take longer than draining it. The outbox trigger
# wakes the relay, which publishes them as it publishes the API's.
_CLONE_JOBS = """
WITH template AS (
    SELECT j.client_id, j.request_hash, j.model, j.metadata, j.request_id,
           o.topic, o.payload, o.headers
    FROM jobs j JOIN outbox o ON o.job_id = j.id WHERE j.id = $1
), input AS MATERIALIZED (
    SELECT gen_random_uuid() AS id, gen_random_uuid() AS message_id,
           $2 || ' job ' || g AS prompt, template.*
    FROM template, generate_series(1, $3) AS g
), job AS (
    INSERT INTO jobs (id, client_id, request_hash, prompt, model, metadata, request_id)
    SELECT id, client_id, request_hash, prompt, model, metadata, request_id FROM input
)
INSERT INTO outbox (message_id, job_id, topic, payload, headers)
SELECT message_id, id, topic,
       payload || jsonb_build_object('job_id', id::text, 'prompt', prompt), headers
FROM input
"""


def _fill_groundwork(ctx: Ctx, count: int) -> None:
    headers = {"Authorization": f"Bearer {ctx.token}", "Content-Type": "application/json"}
    run_id = uuid.uuid4().hex[:8]
    body = f'{{"prompt":"drain {run_id} job 0","model":"{MODEL}"}}'.encode()

    async def fill() -> None:
        await _truncate(ctx.base)
        submitted = await submit_n(
            ctx.api_port,
            lambda _: build_request("POST", "/v1/jobs", body=body, headers=headers),
            count=1,
            concurrency=1,
        )
        if submitted.ok != 1:
            raise RuntimeError(f"POST /v1/jobs: {submitted.summary()['statuses']}")
        conn = await _connect_db(ctx.base)
        try:
            template = await conn.fetchval("SELECT id FROM jobs")
            if count > 1:
                await conn.execute(_CLONE_JOBS, template, f"drain {run_id}", count - 1)
        finally:
            await conn.close()
        await _wait_published(ctx.base, count, ctx.timeout)

    run_async(fill())


def _fill_celery(ctx: Ctx, queue: str, count: int) -> None:
    from bench.celery_baseline import TASK_NAME, broker_url, make_app

    celery = make_app(broker_url(ctx.base))
    run_async(_truncate(ctx.base))
    run_id = uuid.uuid4().hex[:8]
    with celery.producer_or_acquire() as producer:
        for i in range(count):
            celery.send_task(
                TASK_NAME,
                args=[str(uuid.uuid4()), f"drain {run_id} job {i}", MODEL, time.time()],
                queue=queue,
                producer=producer,
            )


WINDOW = (0.1, 0.9)  # the drain's steady state: from 10 % to 90 % of the jobs stored


async def _watch_drain(env: dict[str, str], count: int, pid: int, timeout: float) -> float:
    """Poll the jobs table; return the consumer's CPU seconds when its first job started
    (claimed by the groundwork worker, inserted by a Celery task)."""
    conn = await _connect_db(env)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            started = await conn.fetchval(
                "SELECT count(*) FROM jobs WHERE status IN ('processing', 'succeeded')"
            )
            if started:
                return _tree_cpu_seconds(pid)
            await asyncio.sleep(0.02)
    finally:
        await conn.close()
    raise RuntimeError(f"the consumer started no job in {timeout:.0f}s")


def measure_backlog(ctx: Ctx, config: Config, latency_ms: int, count: int) -> dict[str, Any]:
    """One worker process alone against a queue already holding ``count`` jobs.

    The jobs are queued with no consumer running (groundwork: rows cloned from one
    POSTed job and published by the relay; Celery: published), then one consumer process
    starts and drains them. The rate is taken over the steady state, from 10 % to 90 %
    of the jobs stored (completion times from the database), without the start-up and
    the first and last rounds; the CPU per job is the consumer's process tree from its
    first job started to its last stored, over all jobs (a window would miss the work
    of jobs all started at once when the slots hold the whole queue). It is the capacity
    of one worker process, without the API, the relay or the producer in the way: the
    figure the targets, the cost and the autoscaling targets use.
    """
    queue = None
    if config.system == "groundwork":
        _fill_groundwork(ctx, count)
    else:
        queue = f"bench-drain-{uuid.uuid4().hex[:6]}"
        _fill_celery(ctx, queue, count)
    # Watched from the process's start, as the Celery workers are: the groundwork worker
    # consumes as soon as it is connected, and with thousands of messages prefetched its
    # readiness probe can answer after most of the queue is drained.
    with consumer(ctx, config, latency_ms, queue=queue, wait_ready=False) as cons:
        # The fake LLM started with this consumer: its totals are this drain's calls.
        cpu_started = run_async(_watch_drain(ctx.base, count, cons.proc.pid, ctx.timeout))
        sched_started = _tree_sched_seconds(cons.proc.pid)
        done = run_async(_wait_done(ctx.base, count, ctx.timeout))
        cpu = _tree_cpu_seconds(cons.proc.pid) - cpu_started
        sched = [
            b - a for a, b in zip(sched_started, _tree_sched_seconds(cons.proc.pid), strict=True)
        ]
        rss = _tree_peak_rss_mib(cons.proc.pid)
        zero = {"calls": 0, "distinct": 0, "duplicates": 0, "peak_in_flight": 0}
        calls = _calls_delta(zero, cons.llm.stats())
    times = sorted(done["done_ats"])
    complete = done["completed"] >= count
    lo, hi = (math.ceil(count * w) - 1 for w in WINDOW)
    span = times[hi] - times[lo] if complete else math.nan
    window_jobs = hi - lo
    return {
        "config": config.label,
        "concurrency": config.concurrency,
        "jobs": count,
        "completed": done["completed"],
        "sustained_rps": round(window_jobs / span, 2) if complete and span > 0 else math.nan,
        "rounds": round(count / config.concurrency, 2),
        "consumer_cpu_ms_per_job": round(1000 * cpu / max(done["completed"], 1), 3),
        # Run-queue wait per second on a CPU: > 0.5 means the consumer was runnable
        # more than it ran, i.e. its jobs/s is the CPU share this shared machine gave
        # it (0.45 s/s ran, 0.55 waited for the groundwork worker at load 6 on 2
        # cores), not a limit of its own.
        "consumer_runqueue_wait_per_cpu_s": round(sched[1] / sched[0], 2)
        if sched[0] > 0
        else math.nan,
        "consumer_peak_rss_mib": rss,
        **calls,
    }


def _warm_up(ctx: Ctx, cons: Consumer, latency_ms: int) -> None:
    """Imports, connections, queue declarations; not timed."""
    cons.run(ctx, max(8, min(40, cons.config.concurrency)))


def _best(runs: list[dict[str, Any]]) -> int:
    return max(
        range(len(runs)),
        key=lambda i: -1.0 if math.isnan(runs[i]["sustained_rps"]) else runs[i]["sustained_rps"],
    )


def sweep(ctx: Ctx, latency_ms: int) -> dict[str, Any]:
    """One drain per configuration, one consumer process at a time; the best wins."""
    found: dict[str, Any] = {}
    for system, configs in sweep_configs(ctx.args).items():
        runs = []
        for config in configs:
            try:
                result = measure_backlog(
                    ctx, config, latency_ms, drain_jobs_for(config, latency_ms, ctx.args)
                )
            except RuntimeError as exc:
                # A configuration that cannot finish (a pool that does not start, a
                # drain past the timeout) loses the sweep; the others still run.
                print(f"  {latency_ms} ms sweep {config.label}: failed: {exc}", flush=True)
                result = {"config": config.label, "concurrency": config.concurrency}
                result |= {"sustained_rps": math.nan, "error": str(exc)[-500:]}
            runs.append(result)
            print(
                f"  {latency_ms} ms sweep {config.label}: {result['sustained_rps']} jobs/s "
                f"({result.get('completed')}/{result.get('jobs')}), peak RSS "
                f"{result.get('consumer_peak_rss_mib')} MiB, CPU "
                f"{result.get('consumer_cpu_ms_per_job')} ms/job (run-queue wait "
                f"{result.get('consumer_runqueue_wait_per_cpu_s')} s per CPU s, "
                f"{result.get('rounds')} rounds), LLM calls "
                f"{result.get('llm_calls')} (distinct {result.get('llm_distinct_prompts')})",
                flush=True,
            )
        found[system] = {"runs": runs, "best": configs[_best(runs)]}
    return found


def _spread(reps: list[dict[str, Any]], key: str) -> str:
    values = [r[key] for r in reps if not math.isnan(r.get(key, math.nan))]
    return f"{min(values):g}-{max(values):g}" if values else "-"


def measure_latency(ctx: Ctx, latency_ms: int) -> dict[str, Any]:
    swept = sweep(ctx, latency_ms)
    best: dict[str, Config] = {name: s["best"] for name, s in swept.items()}
    print(
        f"  {latency_ms} ms best: " + "; ".join(c.label for c in best.values()),
        flush=True,
    )
    # The capacity of one process: the best configurations' drains, repetitions
    # interleaved so drift on the shared machine hits every system alike.
    backlog_reps: dict[str, list[dict[str, Any]]] = {name: [] for name in ctx.args.systems}
    if ctx.args.backlog:
        for rep in range(ctx.args.reps):
            for name in ctx.args.systems:
                config = best[name]
                try:
                    result = measure_backlog(
                        ctx, config, latency_ms, drain_jobs_for(config, latency_ms, ctx.args)
                    )
                except RuntimeError as exc:
                    print(f"  {latency_ms} ms drain {config.label}: failed: {exc}", flush=True)
                    continue
                backlog_reps[name].append(result)
                print(
                    f"  {latency_ms} ms drain rep {rep + 1}, one {config.label} process "
                    f"alone: {result['sustained_rps']} jobs/s ({result['completed']}/"
                    f"{result['jobs']}), CPU {result['consumer_cpu_ms_per_job']} ms/job "
                    f"(run-queue wait {result['consumer_runqueue_wait_per_cpu_s']} s per CPU "
                    f"s, {result['rounds']} rounds), "
                    f"LLM calls {result['llm_calls']} (distinct "
                    f"{result['llm_distinct_prompts']})",
                    flush=True,
                )
    backlog: dict[str, dict[str, Any]] = {}
    for name, runs in backlog_reps.items():
        if not runs:
            continue
        backlog[name] = {
            "config": best[name].label,
            "concurrency": best[name].concurrency,
            "reps": len(runs),
            "sustained_rps": round(median_of(runs, "sustained_rps"), 2),
            "sustained_rps_spread": _spread(runs, "sustained_rps"),
            "consumer_cpu_ms_per_job": round(median_of(runs, "consumer_cpu_ms_per_job"), 3),
            "consumer_cpu_ms_per_job_spread": _spread(runs, "consumer_cpu_ms_per_job"),
            "consumer_runqueue_wait_per_cpu_s": round(
                median_of(runs, "consumer_runqueue_wait_per_cpu_s"), 2
            ),
            "consumer_peak_rss_mib": max(r["consumer_peak_rss_mib"] for r in runs),
            "llm_calls": sum(r["llm_calls"] for r in runs),
            "llm_distinct_prompts": sum(r["llm_distinct_prompts"] for r in runs),
            "jobs": sum(r["jobs"] for r in runs),
            "runs": runs,
        }
    # The pipeline, POST -> stored result, best configurations side by side.
    reps: dict[str, list[dict[str, Any]]] = {name: [] for name in ctx.args.systems}
    with contextlib.ExitStack() as stack:
        running_ = {
            n: stack.enter_context(consumer(ctx, best[n], latency_ms)) for n in ctx.args.systems
        }
        for cons in running_.values():
            _warm_up(ctx, cons, latency_ms)
        for rep in range(ctx.args.pipeline_reps):
            for name, cons in running_.items():
                result = measure(ctx, cons, jobs_for(cons.config, latency_ms, ctx.args), latency_ms)
                reps[name].append(result)
                print(
                    f"  {latency_ms} ms pipeline rep {rep + 1} {cons.config.label}: "
                    f"{result['sustained_rps']} jobs/s ({result['completed']}/{result['jobs']}), "
                    f"LLM calls {result['llm_calls']}",
                    flush=True,
                )
        gw = running_["groundwork"]
        batches = {**batch_sizes(ctx.api_port), **batch_sizes(gw.health_port or 0)}
    medians = {name: aggregate(r) for name, r in reps.items()}
    for name in ctx.args.systems:
        medians[name]["sustained_rps"] = round(median_of(reps[name], "sustained_rps"), 2)
        medians[name]["sustained_rps_spread"] = _spread(reps[name], "sustained_rps")
        medians[name]["consumer_peak_rss_mib"] = max(r["consumer_peak_rss_mib"] for r in reps[name])
        medians[name]["llm_calls"] = sum(r["llm_calls"] for r in reps[name])
        medians[name]["llm_distinct_prompts"] = sum(r["llm_distinct_prompts"] for r in reps[name])
        medians[name]["jobs"] = sum(r["completed"] for r in reps[name])
        medians[name]["config"] = best[name].label
        medians[name]["concurrency"] = best[name].concurrency
    return {
        "latency_ms": latency_ms,
        "batch_sizes": batches,
        "sweep": {name: {"best": s["best"].label, "runs": s["runs"]} for name, s in swept.items()},
        "systems": {n: {"median": medians[n], "reps": reps[n]} for n in ctx.args.systems},
        "backlog": backlog,
    }


# ------------------------------------------------------------------ SQS (--sqs)

SQS_SYSTEM = "groundwork-sqs"


@contextlib.contextmanager
def moto_sqs(work: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """moto's standalone server (``moto_server``, as in the SQS adapter tests) in its
    own process on a free loopback port, so its CPU is not counted as the bench's."""
    port = _free_port()
    command = [sys.executable, "-m", "moto.server", "-H", LOOPBACK, "-p", str(port)]
    log = work / "moto.log"
    with running(command, dict(os.environ), log) as proc:
        # /moto-api/ is moto's own dashboard: 200 once the server accepts requests.
        wait_until_ok(f"http://{LOOPBACK}:{port}/moto-api/", timeout=60, proc=proc, log_path=log)
        yield f"http://{LOOPBACK}:{port}", proc


def sqs_env(
    base: dict[str, str], endpoint: str, work: Path, create_database: Callable[[str], None]
) -> dict[str, str]:
    """The service env on SQS: its own database (the RabbitMQ relay, polling the same
    outbox, would otherwise publish the SQS API's jobs to RabbitMQ) and a work queue +
    DLQ created on moto as the AWS stack creates them."""
    import boto3
    from groundwork_app.adapters.sqs import create_queue_pair

    database = f"{base['DB_NAME']}_sqs"
    create_database(database)  # as PostgreSQL's superuser, owned by the service's role
    credentials = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench"}
    client = boto3.client(
        "sqs",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=credentials["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=credentials["AWS_SECRET_ACCESS_KEY"],
    )
    queue_url, dlq_url = create_queue_pair(
        client, f"bench-{uuid.uuid4().hex[:6]}", delivery_limit=5, visibility_timeout=300
    )
    env = {
        **base,
        **credentials,
        "DB_NAME": database,
        "QUEUE_BACKEND": "sqs",
        "SQS_ENDPOINT_URL": endpoint,
        "SQS_QUEUE_URL": queue_url,
        "SQS_DLQ_URL": dlq_url,
        "AWS_REGION": "us-east-1",
        "HEARTBEAT_FILE": str(work / "heartbeat-sqs"),
    }
    migrate(env, work / "migrate-sqs.log")
    return env


def _median_summary(reps: list[dict[str, Any]]) -> dict[str, Any]:
    out = aggregate(reps)
    out["sustained_rps"] = round(median_of(reps, "sustained_rps"), 2)
    out["llm_calls"] = sum(r["llm_calls"] for r in reps)
    out["jobs"] = sum(r["completed"] for r in reps)
    return out


def run_sqs(
    ctx: Ctx, results: list[dict[str, Any]], create_database: Callable[[str], None]
) -> list[dict[str, Any]]:
    """groundwork on SQS vs on RabbitMQ, per latency, at RabbitMQ's best configuration."""
    out: list[dict[str, Any]] = []
    with moto_sqs(ctx.work) as (endpoint, moto):
        env = sqs_env(ctx.base, endpoint, ctx.work, create_database)
        api_port, relay_port = _free_port(), _free_port()
        api_env = {**env, "PORT": str(api_port)}
        relay_env = {**env, "WORKER_HEALTH_PORT": str(relay_port)}
        with (
            running(app_command("api"), api_env, ctx.work / "sqs-api.log") as api,
            running(app_command("relay"), relay_env, ctx.work / "sqs-relay.log") as relay,
        ):
            for url, proc, log in (
                (f"http://{LOOPBACK}:{api_port}/health/ready", api, "sqs-api.log"),
                (f"http://{LOOPBACK}:{relay_port}/health/ready", relay, "sqs-relay.log"),
            ):
                wait_until_ok(url, timeout=90, proc=proc, log_path=ctx.work / log)
            sqs_ctx = replace(
                ctx,
                base=env,
                api_port=api_port,
                api_pid=api.pid,
                relay_pid=relay.pid,
                token=auth_for(api_env).token(),
            )
            for res in results:
                latency_ms = res["latency_ms"]
                config = Config("groundwork", res["systems"]["groundwork"]["median"]["concurrency"])
                count = jobs_for(config, latency_ms, ctx.args)
                reps: dict[str, list[dict[str, Any]]] = {"rabbitmq": [], "sqs": []}
                with (
                    consumer(ctx, config, latency_ms) as rabbit,
                    consumer(sqs_ctx, config, latency_ms) as sqs,
                ):
                    pairs = (("rabbitmq", ctx, rabbit), ("sqs", sqs_ctx, sqs))
                    for _, c, cons in pairs:
                        _warm_up(c, cons, latency_ms)
                    for rep in range(ctx.args.reps):
                        for name, c, cons in pairs:
                            moto_before = _tree_cpu_seconds(moto.pid)
                            result = measure(c, cons, count, latency_ms)
                            jobs = max(result["completed"], 1)
                            moto_ms = 1000 * (_tree_cpu_seconds(moto.pid) - moto_before) / jobs
                            result["moto_cpu_ms_per_job"] = round(moto_ms, 3)
                            reps[name].append(result)
                            print(
                                f"  {latency_ms} ms SQS rep {rep + 1} groundwork on {name}: "
                                f"{result['sustained_rps']} jobs/s ({result['completed']}/"
                                f"{result['jobs']}), LLM calls {result['llm_calls']}",
                                flush=True,
                            )
                medians = {name: _median_summary(r) for name, r in reps.items()}
                out.append(
                    {
                        "latency_ms": latency_ms,
                        "config": config.label,
                        "systems": {
                            n: {"median": medians[n], "reps": reps[n]} for n in ("rabbitmq", "sqs")
                        },
                    }
                )
    return out


def report_sqs(sqs_results: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The SQS table and its ratio next to RabbitMQ's (reported, not a target)."""
    rows: list[list[Any]] = []
    targets: dict[str, dict[str, Any]] = {}
    for res in sqs_results:
        med = {n: res["systems"][n]["median"] for n in ("rabbitmq", "sqs")}
        value = round(ratio(med["sqs"]["sustained_rps"], med["rabbitmq"]["sustained_rps"]), 3)
        for name, m in med.items():
            rows.append(
                [
                    f"{res['latency_ms']} ms",
                    f"{res['config']} on {name}",
                    m["sustained_rps"],
                    value if name == "sqs" else 1.0,
                    m["p50_ms"],
                    m["p99_ms"],
                    " / ".join(
                        f"{m.get(f'{k}_cpu_ms_per_job', math.nan):.2f}"
                        for k in ("api", "relay", "consumer")
                    ),
                    m.get("moto_cpu_ms_per_job", math.nan) if name == "sqs" else "",
                    f"{m['llm_calls']}/{m['jobs']}",
                ]
            )
        latency = res["latency_ms"]
        targets[f"sqs_vs_rabbitmq_at_{latency}ms"] = {
            "value": value,
            "target": None,
            "met": None,
        }
        sqs = med["sqs"]
        targets[f"sqs_llm_calls_once_at_{latency}ms"] = {
            "value": f"{sqs['llm_calls']}/{sqs['jobs']}",
            "target": "calls = jobs",
            "met": sqs["llm_calls"] == sqs["jobs"],
        }
    print_table(
        "groundwork on SQS (moto on loopback) vs on RabbitMQ, same configuration, "
        "reps interleaved (median)",
        [
            "LLM latency",
            "configuration",
            "sustained jobs/s",
            "x RabbitMQ",
            "p50 ms",
            "p99 ms",
            "api / relay / worker CPU ms/job",
            "moto CPU ms/job",
            "LLM calls / jobs",
        ],
        rows,
    )
    for name, t in targets.items():
        print(f"target {name}: {t['value']} (target {t['target']}): {target_verdict(t['met'])}")
    return targets


# --------------------------------------------------------------------------- cost


# Fargate task sizes (vCPU, GiB choices): the AWS Fargate task-size table.
FARGATE_SIZES: tuple[tuple[float, tuple[float, ...]], ...] = (
    (0.25, (0.5, 1, 2)),
    (0.5, (1, 2, 3, 4)),
    (1, (2, 3, 4, 5, 6, 7, 8)),
    (2, tuple(range(4, 17))),
    (4, tuple(range(8, 31))),
)
CPU_TARGET = 0.7  # size so the measured load is at most 70 % of the task's vCPU
MEMORY_HEADROOM = 0.75  # and its peak RSS at most 75 % of its memory


def fargate_task(vcpus_needed: float, rss_mib: float) -> tuple[float, float] | None:
    gib_needed = rss_mib / 1024 / MEMORY_HEADROOM
    for vcpu, memories in FARGATE_SIZES:
        if vcpu * CPU_TARGET < vcpus_needed:
            continue
        for gib in memories:
            if gib >= gib_needed:
                return vcpu, gib
    return None


def cloud_run_instance(vcpus_needed: float, rss_mib: float) -> tuple[float, float]:
    # Concurrency > 1 needs at least 1 vCPU; memory in 256 MiB steps, 512 MiB minimum.
    vcpu = float(max(1, math.ceil(vcpus_needed / CPU_TARGET)))
    gib = max(0.5, math.ceil(rss_mib / MEMORY_HEADROOM / 256) / 4)
    return vcpu, gib


def cost_per_million(median: dict[str, Any], prices: dict[str, Any]) -> dict[str, Any]:
    """Worker compute per million jobs at list price, one task at the measured rate.

    The task is the smallest that holds the measured peak RSS (75 %) and the measured
    CPU at that rate (70 %); rate = the measured jobs/s of one consumer process (a
    lower bound when the API, not the worker, capped the run).
    """
    rate = median["sustained_rps"]
    if not rate or math.isnan(rate):
        return {}
    vcpus_needed = median.get("consumer_cpu_ms_per_job", math.nan) * rate / 1000
    rss = median["consumer_peak_rss_mib"]
    out: dict[str, Any] = {"jobs_per_s": rate, "vcpus_used": round(vcpus_needed, 3)}
    task = fargate_task(vcpus_needed, rss)
    fg = prices["fargate"]
    if task is not None:
        vcpu, gib = task
        hourly = vcpu * fg["vcpu_hourly"] + gib * fg["gb_hourly"]
        out["fargate_task"] = f"{vcpu:g} vCPU / {gib:g} GB"
        out["fargate_usd_per_million"] = round(hourly / (rate * 3600) * 1e6, 4)
    vcpu, gib = cloud_run_instance(vcpus_needed, rss)
    cr = prices["cloud_run"]
    per_second = vcpu * cr["vcpu_second"] + gib * cr["gib_second"]
    out["cloud_run_instance"] = f"{vcpu:g} vCPU / {gib:g} GiB"
    out["cloud_run_usd_per_million"] = round(per_second / rate * 1e6, 4)
    return out


def load_prices() -> dict[str, Any]:
    """List prices and the LLM token assumptions from groundwork plan's price table."""
    import yaml

    # The file `groundwork plan` prices from, read directly: importing the plan package
    # would load Pulumi's gRPC runtime into this process, which then forks the servers.
    data = yaml.safe_load((ROOT / "groundwork" / "plan" / "prices.yaml").read_text())
    aws = data["aws"]["us-east-1"]
    gcp = data["gcp"]["europe-west1"]
    llm = data.get("llm", {})
    usage = data["assumptions"]["production"]
    model = llm.get("models", {}).get(MODEL, {})
    tokens = {
        "input_tokens_per_job": usage.get("llm_input_tokens_per_job"),
        "output_tokens_per_job": usage.get("llm_output_tokens_per_job"),
    }
    llm_cost = None
    if model and None not in tokens.values():
        llm_cost = round(
            tokens["input_tokens_per_job"] * model["input_per_million_tokens"]
            + tokens["output_tokens_per_job"] * model["output_per_million_tokens"],
            2,
        )
    return {
        "fargate": aws["fargate"]["x86_64"],
        "cloud_run": gcp["cloud_run"]["instance_based"],
        "as_of": {"aws": aws.get("as_of"), "gcp": gcp.get("as_of"), "llm": llm.get("as_of")},
        "llm_model": MODEL,
        "llm_usd_per_million_jobs": llm_cost,
        **tokens,
    }


# ------------------------------------------------------------------------- report


def report(results: list[dict[str, Any]], prices: dict[str, Any] | None = None) -> dict[str, Any]:
    sweep_rows: list[list[Any]] = []
    for res in results:
        for name in res["sweep"]:
            best = res["sweep"][name]["best"]
            for run in res["sweep"][name]["runs"]:
                sweep_rows.append(
                    [
                        f"{res['latency_ms']} ms",
                        run["config"] + (" *" if run["config"] == best else ""),
                        run["sustained_rps"],
                        run.get("consumer_peak_rss_mib", math.nan),
                        run.get("consumer_cpu_ms_per_job", math.nan),
                        f"{run.get('llm_calls', '-')}/{run.get('llm_distinct_prompts', '-')}"
                        f"/{run.get('jobs', '-')}",
                    ]
                )
    print_table(
        "Sweep: one process alone draining a pre-filled queue, one drain per configuration "
        "(* = best, used below)",
        [
            "LLM latency",
            "configuration",
            "jobs/s (10-90 %)",
            "peak RSS MiB",
            "CPU ms/job",
            "LLM calls / distinct / jobs",
        ],
        sweep_rows,
    )
    rows: list[list[Any]] = []
    backlog_rows: list[list[Any]] = []
    targets: dict[str, dict[str, Any]] = {}
    costs: dict[str, Any] = {}
    for res in results:
        med = {n: res["systems"][n]["median"] for n in res["systems"]}
        celery_best = max(
            (med[n]["sustained_rps"] for n in CELERY_SYSTEMS if n in med),
            key=lambda v: -1.0 if math.isnan(v) else v,
            default=math.nan,
        )
        for name in med:
            m = med[name]
            rows.append(
                [
                    f"{res['latency_ms']} ms",
                    m["config"],
                    m["sustained_rps"],
                    ratio(m["sustained_rps"], celery_best),
                    m["throughput_rps"],
                    m["p50_ms"],
                    m["p99_ms"],
                    m["consumer_peak_rss_mib"],
                    m.get("consumer_cpu_ms_per_job", math.nan),
                    m.get("llm_server_cpu_ms_per_job", math.nan),
                    m.get("own_cpu_ms_per_job", math.nan),
                    m.get("machine_cpu_ms_per_job", math.nan),
                    " / ".join(
                        f"{m.get(f'{k}_cpu_ms_per_job', float('nan')):.2f}"
                        for k in ("api", "relay", "consumer")
                    )
                    if name == "groundwork"
                    else "",
                    f"{m['llm_calls']}/{m['jobs']}",
                ]
            )
            if prices is not None and not res.get("backlog"):
                costs.setdefault(str(res["latency_ms"]), {})[name] = cost_per_million(m, prices)
        gw = med["groundwork"]
        latency = res["latency_ms"]
        slow = latency >= 2000
        value = ratio(gw["sustained_rps"], celery_best)
        targets[f"pipeline_vs_celery_best_at_{latency}ms"] = {
            "value": round(value, 3),
            # The targets are about one worker process (the backlog drain below); the
            # pipeline's ratio also carries the API's POST rate and is reported as is.
            "target": None,
            "met": None,
        }
        targets[f"llm_calls_once_at_{latency}ms"] = {
            "value": f"{gw['llm_calls']}/{gw['llm_distinct_prompts']}/{gw['jobs']}",
            "target": "calls = distinct prompts = jobs (counted by the fake LLM)",
            "met": gw["llm_calls"] == gw["llm_distinct_prompts"] == gw["jobs"],
        }
        backlog = res.get("backlog") or {}
        if backlog:
            worker = backlog["groundwork"]["sustained_rps"]
            celery_alone = max(
                (backlog[n]["sustained_rps"] for n in CELERY_SYSTEMS if n in backlog),
                key=lambda v: -1.0 if math.isnan(v) else v,
                default=math.nan,
            )
            value = ratio(worker, celery_alone)
            targets[f"worker_vs_celery_best_at_{latency}ms"] = {
                "value": round(value, 3),
                "target": TARGET_RATIO if slow else None,
                "met": value >= TARGET_RATIO if slow else None,
            }
            # On a shared machine a process's jobs/s is also its share of the cores (a
            # pool of 1,024 threads is 1,024 schedulable threads); per vCPU of its own,
            # as on Fargate or Cloud Run, one process does 1,000 / CPU ms per job.
            per_vcpu = {n: _per_vcpu(backlog[n], latency) for n in backlog}
            celery_per_vcpu = max(
                (per_vcpu[n] for n in CELERY_SYSTEMS if n in per_vcpu),
                key=lambda v: -1.0 if math.isnan(v) else v,
                default=math.nan,
            )
            value = ratio(per_vcpu["groundwork"], celery_per_vcpu)
            targets[f"worker_vs_celery_best_per_vcpu_at_{latency}ms"] = {
                "value": round(value, 3),
                "target": TARGET_RATIO if slow else None,
                "met": value >= TARGET_RATIO if slow else None,
            }
            if slow:
                targets[f"worker_jobs_per_s_at_{latency}ms"] = {
                    "value": worker,
                    "target": TARGET_SLOW_JOBS_PER_S,
                    "met": worker >= TARGET_SLOW_JOBS_PER_S,
                }
            b = backlog["groundwork"]
            targets[f"worker_llm_calls_once_at_{latency}ms"] = {
                "value": f"{b['llm_calls']}/{b['llm_distinct_prompts']}/{b['jobs']}",
                "target": "calls = distinct prompts = jobs (counted by the fake LLM)",
                "met": b["llm_calls"] == b["llm_distinct_prompts"] == b["jobs"],
            }
            for name in med:
                if name not in backlog:
                    continue
                b = backlog[name]
                backlog_rows.append(
                    [
                        f"{latency} ms",
                        b["config"],
                        b["sustained_rps"],
                        b["sustained_rps_spread"],
                        ratio(b["sustained_rps"], celery_alone),
                        b["consumer_peak_rss_mib"],
                        b["consumer_cpu_ms_per_job"],
                        b["consumer_cpu_ms_per_job_spread"],
                        round(per_vcpu[name], 1),
                        ratio(per_vcpu[name], celery_per_vcpu),
                        f"{b['llm_calls']}/{b['llm_distinct_prompts']}/{b['jobs']}",
                    ]
                )
                if prices is not None:
                    costs.setdefault(str(latency), {})[name] = cost_per_million(b, prices)
        if latency == 0:
            value = gw.get("own_cpu_ms_per_job", math.nan)
            targets["own_cpu_ms_per_job_at_0ms"] = {
                "value": value,
                "target": TARGET_CPU_MS_PER_JOB,
                "met": value <= TARGET_CPU_MS_PER_JOB,
            }
    print_table(
        "Pipeline POST -> stored result, best configuration of each system (median of reps)",
        [
            "LLM latency",
            "configuration",
            "sustained jobs/s",
            "x celery best",
            "end-to-end jobs/s",
            "p50 ms",
            "p99 ms",
            "peak RSS MiB",
            "consumer CPU ms/job",
            "fake LLM CPU ms/job",
            "bench CPU ms/job",
            "machine CPU ms/job",
            "api / relay / worker CPU ms/job",
            "LLM calls / jobs",
        ],
        rows,
    )
    if backlog_rows:
        print_table(
            "One consumer process alone draining a pre-filled queue (its capacity; "
            "median and range of the reps, 10-90 % window)",
            [
                "LLM latency",
                "configuration",
                "jobs/s",
                "range",
                "x celery best",
                "peak RSS MiB",
                "CPU ms/job",
                "range",
                "jobs/s per vCPU",
                "x celery best per vCPU",
                "LLM calls / distinct / jobs",
            ],
            backlog_rows,
        )
    if prices is not None:
        cost_rows = []
        for latency, by_system in costs.items():
            for name, c in by_system.items():
                cost_rows.append(
                    [
                        f"{latency} ms",
                        name,
                        c.get("jobs_per_s", math.nan),
                        c.get("vcpus_used", math.nan),
                        c.get("fargate_task", "-"),
                        f"{c.get('fargate_usd_per_million', math.nan):.4f}",
                        c.get("cloud_run_instance", "-"),
                        f"{c.get('cloud_run_usd_per_million', math.nan):.4f}",
                    ]
                )
        print_table(
            f"Worker compute per million jobs, USD list price (Fargate x86 us-east-1 as of "
            f"{prices['as_of']['aws']}, Cloud Run instance-based europe-west1 as of "
            f"{prices['as_of']['gcp']})",
            [
                "LLM latency",
                "system",
                "jobs/s per task",
                "vCPU used",
                "Fargate task",
                "Fargate $/M jobs",
                "Cloud Run instance",
                "Cloud Run $/M jobs",
            ],
            cost_rows,
        )
        print(
            f"LLM tokens per million jobs ({prices['llm_model']}, "
            f"{prices['input_tokens_per_job']} in + {prices['output_tokens_per_job']} out per "
            f"job, groundwork plan's production assumptions, prices as of "
            f"{prices['as_of']['llm']}): ${prices['llm_usd_per_million_jobs']}",
            flush=True,
        )
    for name, t in targets.items():
        print(f"target {name}: {t['value']} (target {t['target']}): {target_verdict(t['met'])}")
    return {"targets": targets, "costs": costs}


def _per_vcpu(drain: dict[str, Any], latency_ms: int) -> float:
    """Jobs/s one process sustains on a vCPU of its own: 1,000 / CPU ms per job (for a
    prefork pool, its processes together), bounded by its slots at the latency."""
    cpu = drain.get("consumer_cpu_ms_per_job", math.nan)
    if not cpu or math.isnan(cpu):
        return math.nan
    by_cpu = 1000 / cpu
    if latency_ms == 0:
        return by_cpu
    return min(by_cpu, drain["concurrency"] / (latency_ms / 1000))


def _whole_numbers(text: str, *, minimum: int, unit: str, example: str, what: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated whole {unit} (e.g. {example}), got {text!r}"
        ) from None
    if not values or any(v < minimum for v in values):
        raise argparse.ArgumentTypeError(f"expected one or more {what} >= {minimum}, got {text!r}")
    return values


def _latencies(text: str) -> list[int]:
    return _whole_numbers(text, minimum=0, unit="milliseconds", example="0,200", what="latencies")


def _systems(text: str) -> list[str]:
    names = [x.strip() for x in text.split(",") if x.strip()]
    unknown = sorted(set(names) - set(SYSTEMS))
    if "groundwork" not in names or unknown:
        raise argparse.ArgumentTypeError(
            f"expected groundwork and any of {', '.join(SYSTEMS[1:])} (comma-separated), "
            f"got {text!r}"
        )
    return [name for name in SYSTEMS if name in names]


def _counts(text: str) -> list[int]:
    return _whole_numbers(text, minimum=1, unit="numbers", example="16,128", what="numbers")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--reps", type=positive_int, default=3, help="drains of each best configuration"
    )
    parser.add_argument("--jobs", type=positive_int, default=2000, help="jobs per run at 0 ms")
    parser.add_argument(
        "--jobs-slow",
        type=positive_int,
        default=2000,
        help="most jobs per run at slower latencies (fewer for configurations whose "
        "ceiling, slots / latency, reaches --run-seconds sooner)",
    )
    parser.add_argument(
        "--run-seconds",
        type=positive_float,
        default=6.0,
        help="target length of a run at slower latencies",
    )
    parser.add_argument(
        "--latencies",
        default="0,200,2000",
        type=_latencies,
        help="simulated LLM latencies (ms)",
    )
    parser.add_argument(
        "--groundwork-sweep",
        default="256,1024,4096",
        type=_counts,
        help="groundwork worker concurrency (= prefetch) values to try",
    )
    parser.add_argument(
        "--celery-sweep",
        default="256,1024,4096",
        type=_counts,
        help="Celery threads-pool concurrency values to try",
    )
    parser.add_argument(
        "--celery-green-sweep",
        default="1024,4096",
        type=_counts,
        help="Celery gevent and eventlet pool concurrency values to try",
    )
    parser.add_argument(
        "--systems",
        default=",".join(SYSTEMS),
        type=_systems,
        help="systems to measure (groundwork and the Celery pools to compare with)",
    )
    parser.add_argument(
        "--jobs-drain-max",
        type=positive_int,
        default=16000,
        help="most jobs in one drain of a pre-filled queue beyond its rounds (a drain "
        "always holds 4 rounds of the slots: 16,384 jobs at 4,096 slots)",
    )
    parser.add_argument(
        "--pipeline-reps",
        type=positive_int,
        default=1,
        help="repetitions of the pipeline (POST -> stored result) side by side",
    )
    parser.add_argument(
        "--no-backlog",
        dest="backlog",
        action="store_false",
        help="skip the drain of a pre-filled queue by one consumer process alone",
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
        help="also run groundwork on SQS (moto's server on loopback) against groundwork on "
        "RabbitMQ at its best configuration, and report the ratio",
    )
    parser.add_argument("--name", default="pipeline")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(
        f"pipeline bench: latencies {args.latencies} ms; systems {', '.join(args.systems)}; "
        f"sweep by drains of a pre-filled queue (groundwork {args.groundwork_sweep}, Celery "
        f"threads {args.celery_sweep}, gevent/eventlet {args.celery_green_sweep}, prefork "
        f"default), then {args.reps} drains of each best (>= {DRAIN_ROUNDS} rounds of its "
        f"slots, beyond them at most {args.jobs_drain_max} jobs; {args.jobs} at 0 ms) and "
        f"{args.pipeline_reps} pipeline run(s) side by side; processes unpinned",
        flush=True,
    )
    work = log_dir(args.name)
    prices = load_prices()
    with bench_servers() as servers:
        base = service_env(servers.env(), work)
        migrate(base, work / "migrate.log")
        api_port, relay_port = _free_port(), _free_port()
        api_env = {**base, "PORT": str(api_port)}
        relay_env = {**base, "WORKER_HEALTH_PORT": str(relay_port)}
        with (
            running(app_command("api"), api_env, work / "api.log") as api,
            running(app_command("relay"), relay_env, work / "relay.log") as relay,
        ):
            for url, proc, log in (
                (f"http://{LOOPBACK}:{api_port}/health/ready", api, "api.log"),
                (f"http://{LOOPBACK}:{relay_port}/health/ready", relay, "relay.log"),
            ):
                wait_until_ok(url, timeout=90, proc=proc, log_path=work / log)
            ctx = Ctx(
                base=base,
                api_port=api_port,
                relay_pid=relay.pid,
                api_pid=api.pid,
                token=auth_for(api_env).token(),
                timeout=args.timeout,
                work=work,
                args=args,
            )
            results = [measure_latency(ctx, ms) for ms in args.latencies]
            sqs_results = (
                run_sqs(ctx, results, servers.postgres.create_database) if args.sqs else []
            )
    summary = report(results, prices)
    if sqs_results:
        summary["targets"].update(report_sqs(sqs_results))
    path = write_results(
        args.name,
        {
            "config": vars(args),
            "prices": prices,
            "results": results,
            "sqs": sqs_results,
            "targets": summary["targets"],
            "cost_per_million_jobs": summary["costs"],
        },
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
