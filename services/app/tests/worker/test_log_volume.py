"""What the real api, relay, worker and migrate processes write to stdout, as CloudWatch
Logs bills it: the measured log volumes in groundwork/plan/prices.yaml (``measured_logs``)
price the ECS log groups from these numbers, so this test fails when the code logs more
than the price table says, or far less (docs/cost-model.md, "The service's log volume").

The processes run as on ECS: `groundwork-app api|worker|relay|migrate` subprocesses with
the stacks' logging settings (LOG_JSON=true, LOG_LEVEL=INFO: stacks/service_env.py), stdout
and stderr into one stream as the awslogs driver takes both. Real PostgreSQL, Redis and
RabbitMQ on loopback; the LLM is the simulated provider (it logs nothing of its own).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import sqlalchemy
from groundwork_app.settings import Settings
from sqlalchemy.ext.asyncio import AsyncEngine

from groundwork.devenv.servers import DevServers

from ..api.conftest import CLI
from .conftest import make_settings, wait_job_status
from .processes import Output, bearer, logged, process_env, start_service

pytestmark = pytest.mark.slow

JOBS = 40
HEALTH_CHECKS = 20
IDLE_SECONDS = 5.0

# The awslogs log driver sends each line a container writes to stdout/stderr as one log
# event (Docker docs, "Amazon CloudWatch Logs logging driver": the message is the line,
# without its newline). CloudWatch Logs counts an event as its UTF-8 message bytes plus
# 26 bytes (CloudWatch Logs API Reference, PutLogEvents: "the sum of all event messages
# in UTF-8, plus 26 bytes for each log event"; the CloudWatch pricing page bills "Data
# Ingested" per GB of those events). Same rule as tests/aws/test_rotation.py.
EVENT_OVERHEAD = 26


def billed(chunk: bytes) -> tuple[int, int]:
    """(billed bytes, events) of what a process wrote."""
    lines = [line for line in chunk.split(b"\n") if line]
    return sum(len(line) + EVENT_OVERHEAD for line in lines), len(lines)


# components/aws/database.py's parameter group, with RDS's default log_line_prefix (RDS User
# Guide, "PostgreSQL database log files": '%t:%r:%u@%d:[%p]:'), on the loopback server.
RDS_LOGGING = {
    "log_min_duration_statement": "500",
    "log_connections": "on",
    "log_lock_waits": "on",
    "log_line_prefix": "'%t:%r:%u@%d:[%p]:'",
}


def rds_logging(servers: DevServers, on: bool) -> None:
    for name, value in RDS_LOGGING.items():
        servers.postgres.psql(
            f"ALTER SYSTEM SET {name} = {value}" if on else f"ALTER SYSTEM RESET {name}"
        )
    servers.postgres.psql("SELECT pg_reload_conf()")


def measure_migrate(servers: DevServers, service_env: dict[str, str], tmp_path: Path) -> int:
    """Billed bytes of one `groundwork-app migrate` against an empty database: every
    revision applied, the most a deploy's migrate task logs."""
    database = f"logvol_{uuid.uuid4().hex[:10]}"
    # Owned by the service's user, as the RDS/Cloud SQL database is by the master user.
    servers.postgres.psql(f'CREATE DATABASE "{database}" OWNER "{servers.postgres.user}"')
    try:
        run = subprocess.run(
            [CLI, "migrate"],
            env={**os.environ, **service_env, "DB_NAME": database, "LOG_LEVEL": "INFO"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=120,
            check=False,
            cwd=tmp_path,
        )
        assert run.returncode == 0, run.stdout.decode()[-3000:]
        assert b"migrate.done" in run.stdout
        return billed(run.stdout)[0]
    finally:
        servers.postgres.psql(f'DROP DATABASE "{database}" WITH (FORCE)')


async def test_the_price_table_covers_what_each_process_logs(
    settings: Settings,
    engine: AsyncEngine,
    servers: DevServers,
    service_env: dict[str, str],
    tmp_path: Path,
    rabbit_ok: object,
) -> None:
    from groundwork.plan.pricing.loader import load_price_table
    from groundwork.plan.pricing.pricers_aws import JOBS_PER_PUBSUB_GIB, service_log_gb_per_month

    settings = make_settings(queue_name=settings.queue_name)
    env = process_env(service_env, settings.queue_name, LLM_SIMULATED_LATENCY_MS="20")
    # The test's own pooled connection opens before the server logs connections.
    async with engine.connect() as connection:
        await connection.execute(sqlalchemy.text("SELECT 1"))
    pg = Output(servers.postgres.workdir / "pg.log")
    reloads = pg.text().count('parameter "log_line_prefix" changed')
    rds_logging(servers, True)
    # The reload is asynchronous: its own lines are not the service's.
    await logged(pg, 'parameter "log_line_prefix" changed', reloads + 1)
    pg.mark()
    try:
        service = await start_service(env, tmp_path)
    except BaseException:
        rds_logging(servers, False)
        raise
    out = service.out
    measured: dict[str, dict[str, float]] = {}
    pg_share: dict[str, float] = {}
    try:
        slow_log = redis.Redis(
            host="127.0.0.1", port=servers.redis.port, password=servers.redis.password
        )
        # ElastiCache's slow log delivery sends an entry per command slower than
        # slowlog-log-slower-than; Redis's default, 10,000 us, set here explicitly.
        slow_log.config_set("slowlog-log-slower-than", 10_000)
        slow_log.slowlog_reset()
        pg_started = pg.since_mark()
        for output in (*out.values(), pg):
            output.mark()
        # What the three processes' pools opened: each connection's log_connections lines.
        opened = pg_started.count(b"connection received")
        assert opened > 0, "log_connections logged no connection"
        pg_share["bytes_per_connection"] = billed(pg_started)[0] / opened
        # Each task start (a deploy, a scale-out, a Spot replacement) logs these again.
        started = {
            name: billed(output.path.read_bytes()[: output.offset])[0]
            for name, output in out.items()
        }

        headers = bearer(settings, "log-volume")
        base = f"http://127.0.0.1:{service.port}"
        job_ids: list[uuid.UUID] = []
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=10) as client:
            # What a client does per job: submit it, then fetch its result (2 requests).
            # No X-Request-ID: the api makes its own (32 hex digits) and every line of
            # the request and of its job carries it.
            for i in range(JOBS):
                response = await client.post(
                    "/v1/jobs",
                    json={"prompt": f"Summarise ticket {i} in one line.", "metadata": {"n": i}},
                )
                assert response.status_code == 202, response.text
                job_ids.append(uuid.UUID(response.json()["id"]))
            for job_id in job_ids:
                await wait_job_status(engine, job_id, "succeeded", timeout=60)
            await logged(out["worker"], '"message handled"', JOBS)
            for job_id in job_ids:
                response = await client.get(f"/v1/jobs/{job_id}")
                assert response.status_code == 200
                assert response.json()["status"] == "succeeded"
            await logged(out["api"], '"http.request"', 2 * JOBS)
            work = {name: billed(output.since_mark()) for name, output in out.items()}
            slow_entries = int(slow_log.slowlog_len())
            pg_share["bytes_per_job"] = billed(pg.since_mark())[0] / JOBS
            slow_log.close()
            measured["api"] = {"bytes_per_request": work["api"][0] / (2 * JOBS)}
            measured["worker"] = {"bytes_per_job": work["worker"][0] / JOBS}
            measured["relay"] = {"bytes_per_job": work["relay"][0] / JOBS}

            # Idle: nothing but time, then the API's health checks alone.
            for output in (*out.values(), pg):
                output.mark()
            await asyncio.sleep(IDLE_SECONDS)
            pg_share["bytes_per_idle_hour"] = billed(pg.since_mark())[0] / IDLE_SECONDS * 3600
            idle = {name: billed(output.since_mark())[0] for name, output in out.items()}
            for name in ("worker", "relay"):
                # Heartbeats are files (`groundwork-app healthcheck worker|relay` reads
                # them: no line in the process), and no timer logs while all is well.
                measured[name]["bytes_per_idle_hour"] = idle[name] / IDLE_SECONDS * 3600
            out["api"].mark()
            for _ in range(HEALTH_CHECKS):
                assert (await client.get("/health/live")).status_code == 200
            await logged(out["api"], '"/health/live"', HEALTH_CHECKS)
            measured["api"]["bytes_per_health_check"] = (
                billed(out["api"].since_mark())[0] / HEALTH_CHECKS
            )
            measured["api"]["bytes_per_idle_hour"] = idle["api"] / IDLE_SECONDS * 3600
        for output in out.values():
            output.mark()
    finally:
        service.stop()
        rds_logging(servers, False)
    for name, process in service.processes.items():
        assert process.returncode == 0, out[name].text()[-2000:]  # a drained, clean stop
        stopped = billed(out[name].since_mark())[0]
        assert stopped > 0, f"{name} logged nothing when stopped"
        measured[name]["bytes_per_task_start"] = started[name] + stopped
    measured["migrate"] = {"bytes_per_run": float(measure_migrate(servers, service_env, tmp_path))}
    print("measured billed bytes:", measured, "redis slow log entries:", slow_entries)
    print("the service's share of the RDS postgresql log:", pg_share)

    table = load_price_table().data["measured_logs"]
    for process, facts in measured.items():
        for fact, value in facts.items():
            priced = float(table[process][fact])
            # The table covers the measurement, and is a rounding of it, not a guess.
            assert priced >= value, (process, fact, value, priced)
            assert priced <= max(2 * value, 500), (process, fact, value, priced)

    # What the plan prices each group at covers the measurement at the model's traffic.
    for tier in ("staging", "production"):
        usage = load_price_table().assumptions(tier)
        for process in ("api", "worker", "relay", "migrate"):
            from_measurement = service_log_gb_per_month(process, usage, _as_table(measured))
            priced_gb = service_log_gb_per_month(process, usage, table)
            assert priced_gb >= from_measurement, (tier, process)
            assert priced_gb <= 3 * from_measurement, (tier, process)

    # The RDS postgresql export stays at the per-group assumption (RDS logs its own
    # connections, checkpoints and autovacuum there too, which no loopback server shows);
    # the service's own share must stay well inside it: its connections (every pooled one
    # reconnects each 30 minutes, pool_recycle in db/engine.py; at most pool + overflow
    # per process), a deploy's restarts and what each job adds.
    for tier in ("staging", "production"):
        usage = load_price_table().assumptions(tier)
        logs = load_table_section()
        jobs = usage["pubsub_gib_per_topic"] * JOBS_PER_PUBSUB_GIB
        pool = settings.db_pool_size + settings.db_max_overflow
        reconnects = 3 * 2 * pool * 730 * 2  # 3 processes, 2 tasks each at most, 2 an hour
        share = (
            pg_share["bytes_per_job"] * jobs
            + pg_share["bytes_per_idle_hour"] * 730
            + pg_share["bytes_per_connection"] * (reconnects + 6 * pool * logs["deploys_per_month"])
        )
        assert share < usage["log_ingestion_gb_per_group"] * 1e9 / 4, (tier, share)


def _as_table(measured: dict[str, dict[str, float]]) -> dict[str, Any]:
    """The measurement in the price table's shape (its margin included)."""
    table = load_table_section()
    return {
        **{p: dict(f) for p, f in measured.items()},
        "safety_margin": table["safety_margin"],
        "deploys_per_month": table["deploys_per_month"],
    }


def load_table_section() -> dict[str, Any]:
    from groundwork.plan.pricing.loader import load_price_table

    section: dict[str, Any] = load_price_table().data["measured_logs"]
    return section
