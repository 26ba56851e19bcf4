"""The real `groundwork-app worker` process: SIGKILL mid-job, SIGTERM drain, healthcheck."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from groundwork_app.adapters.rabbitmq import RabbitPublisher
from groundwork_app.relay.outbox import OutboxRelay
from groundwork_app.settings import Settings
from sqlalchemy.ext.asyncio import AsyncEngine

from groundwork.devenv.servers import free_port

from .conftest import insert_job, job_row, kill_while_processing, ledger_count, wait_job_status

pytestmark = pytest.mark.slow


def worker_env(
    settings: Settings, service_env: dict[str, str], tmp_path: Path, **extra: str
) -> dict[str, str]:
    env = {**os.environ, **service_env}
    env.update(
        QUEUE_NAME=settings.queue_name,
        QUEUE_RETRY_DELAYS_MS="100,200",
        QUEUE_DELIVERY_LIMIT="3",
        WORKER_HEALTH_PORT=str(free_port()),
        HEARTBEAT_FILE=str(tmp_path / "hb"),
        SHUTDOWN_TIMEOUT_SECONDS="10",
        LLM_TIMEOUT_SECONDS="30",
    )
    env.update(extra)
    return env


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "groundwork_app.cli", "worker"],
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


def healthcheck(env: dict[str, str], target: str = "worker") -> int:
    return subprocess.run(
        [sys.executable, "-m", "groundwork_app.cli", "healthcheck", target],
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    ).returncode


async def publish_outbox(engine: AsyncEngine, settings: Settings) -> None:
    publisher = RabbitPublisher(settings)
    relay = OutboxRelay(publisher, settings)
    try:
        result = await relay.publish_batch()
        assert result.failed == 0
    finally:
        await relay.close()
        await publisher.close()


async def test_sigkill_mid_job_redelivers_and_completes_exactly_once(
    settings: Settings,
    engine: AsyncEngine,
    service_env: dict[str, str],
    tmp_path: Path,
    rabbit_ok: object,
) -> None:
    job_id, message_id = await insert_job(
        engine, settings, f"sigkill {uuid.uuid4()}", request_id="req-sigkill-1"
    )
    await publish_outbox(engine, settings)
    log = tmp_path / "worker.log"

    first = start_worker(
        worker_env(settings, service_env, tmp_path, LLM_SIMULATED_LATENCY_MS="4000"), log
    )
    await kill_while_processing(first, engine, job_id, log)
    assert (await job_row(engine, job_id)).status == "processing"
    assert await ledger_count(engine, job_id) == 0

    env = worker_env(settings, service_env, tmp_path, LLM_SIMULATED_LATENCY_MS="50")
    second = start_worker(env, log)
    try:
        row = await wait_job_status(engine, job_id, "succeeded", timeout=60)
        assert row.attempts == 2  # the killed attempt and the redelivery
        assert await ledger_count(engine, job_id) == 1
        assert healthcheck(env) == 0
        second.send_signal(signal.SIGTERM)
        assert second.wait(30) == 0
    finally:
        if second.poll() is None:
            second.kill()
    assert healthcheck(env) == 1  # the heartbeat is removed on a clean exit
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    handled = [ln for ln in lines if ln.get("event") == "message handled"]
    assert handled, log.read_text()[-2000:]
    assert {ln["request_id"] for ln in handled} == {"req-sigkill-1"}
    assert {ln["message_id"] for ln in handled} == {str(message_id)}


async def test_sigterm_drains_the_in_flight_job_before_exiting(
    settings: Settings,
    engine: AsyncEngine,
    service_env: dict[str, str],
    tmp_path: Path,
    rabbit_ok: object,
) -> None:
    job_id, _ = await insert_job(engine, settings)
    await publish_outbox(engine, settings)
    worker = start_worker(
        worker_env(settings, service_env, tmp_path, LLM_SIMULATED_LATENCY_MS="1500"),
        tmp_path / "w.log",
    )
    try:
        await wait_job_status(engine, job_id, "processing", timeout=60)
        started = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0
        assert time.monotonic() - started < 10
    finally:
        if worker.poll() is None:
            worker.kill()
    row = await job_row(engine, job_id)
    assert row.status == "succeeded"
    assert row.attempts == 1  # finished, not handed back
    assert row.cached is False
