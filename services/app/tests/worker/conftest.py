"""Worker test helpers: per-test queue names, job/outbox rows inserted with SQL, an
in-process consumer harness and broker inspection."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aio_pika
import pytest
import sqlalchemy as sa
from groundwork_app.adapters.rabbitmq import amqp_url
from groundwork_app.db.engine import create_engine
from groundwork_app.db.schema import jobs, outbox, processed_messages
from groundwork_app.db.worker import JobStore
from groundwork_app.settings import Settings
from sqlalchemy.ext.asyncio import AsyncEngine

from groundwork.devenv.servers import DevServers


def make_settings(**overrides: Any) -> Settings:
    """Service settings from the test environment plus fast retry/limit values.

    Each test gets its own queue name so topology and leftovers never leak between tests.
    """
    defaults: dict[str, Any] = {
        "queue_name": f"jobs-{uuid.uuid4().hex[:10]}",
        "queue_retry_delays_ms": [100, 200],
        "queue_delivery_limit": 3,
        "llm_max_retries": 1,
        "llm_retry_initial_seconds": 0.01,
        "llm_retry_max_seconds": 0.05,
        "llm_timeout_seconds": 2.0,
        "circuit_failure_threshold": 3,
        "circuit_recovery_seconds": 60.0,
        "relay_poll_interval_seconds": 0.2,
        "relay_max_backoff_seconds": 0.5,
        "shutdown_timeout_seconds": 5.0,
        "log_json": True,
    }
    defaults.update(overrides)
    return Settings(**defaults)


@pytest.fixture
def settings(service_env: dict[str, str], clean_db: None) -> Settings:
    return make_settings()


@pytest.fixture
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    eng = create_engine(settings)
    yield eng
    await eng.dispose()


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[JobStore]:
    """The worker's own pool (raw asyncpg), as the worker process builds it."""
    job_store = JobStore(settings)
    yield job_store
    await job_store.close()


async def insert_job(
    engine: AsyncEngine,
    settings: Settings,
    prompt: str = "What is 2+2?",
    *,
    model: str = "test-model",
    request_id: str | None = None,
    body: bytes | None = None,
    client_id: str = "tests",
) -> tuple[uuid.UUID, uuid.UUID]:
    """A queued job and its outbox row, in one transaction, like the API writes them."""
    job_id, message_id = uuid.uuid4(), uuid.uuid4()
    request_id = request_id or f"req-{uuid.uuid4().hex[:12]}"
    payload = {"job_id": str(job_id), "prompt": prompt, "model": model, "metadata": {}}
    async with engine.begin() as conn:
        await conn.execute(
            jobs.insert().values(
                id=job_id,
                client_id=client_id,
                request_hash=uuid.uuid4().hex,
                prompt=prompt,
                model=model,
                request_id=request_id,
            )
        )
        await conn.execute(
            outbox.insert().values(
                message_id=message_id,
                job_id=job_id,
                topic=settings.queue_name,
                payload=payload if body is None else json.loads(body),
                headers={
                    "request_id": request_id,
                    "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                },
            )
        )
    return job_id, message_id


async def job_row(engine: AsyncEngine, job_id: uuid.UUID) -> Any:
    async with engine.connect() as conn:
        return (await conn.execute(sa.select(jobs).where(jobs.c.id == job_id))).one()


async def ledger_count(engine: AsyncEngine, job_id: uuid.UUID | None = None) -> int:
    query = sa.select(sa.func.count()).select_from(processed_messages)
    if job_id is not None:
        query = query.where(processed_messages.c.job_id == job_id)
    async with engine.connect() as conn:
        return int((await conn.execute(query)).scalar_one())


async def wait_for(
    predicate: Callable[[], Awaitable[bool]],
    timeout: float = 20.0,
    interval: float = 0.05,
    what: str = "condition",
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


async def wait_job_status(
    engine: AsyncEngine, job_id: uuid.UUID, status: str, timeout: float = 20.0
) -> Any:
    async def done() -> bool:
        return (await job_row(engine, job_id)).status == status

    await wait_for(done, timeout, what=f"job {job_id} to be {status}")
    return await job_row(engine, job_id)


@asynccontextmanager
async def amqp_channel(settings: Settings) -> AsyncIterator[aio_pika.abc.AbstractChannel]:
    connection = await aio_pika.connect(amqp_url(settings))
    try:
        yield await connection.channel(publisher_confirms=True)
    finally:
        await connection.close()


async def queue_depth(settings: Settings, queue: str) -> int:
    async with amqp_channel(settings) as channel:
        declared = await channel.declare_queue(queue, passive=True)
        return int(declared.declaration_result.message_count or 0)


async def drain_queue(settings: Settings, queue: str) -> list[aio_pika.abc.AbstractIncomingMessage]:
    """Consume (ack) everything currently in ``queue``."""
    taken = []
    async with amqp_channel(settings) as channel:
        q = await channel.declare_queue(queue, passive=True)
        while (message := await q.get(no_ack=False, fail=False, timeout=5)) is not None:
            await message.ack()
            taken.append(message)
    return taken


@pytest.fixture
def rabbit_ok(servers: DevServers) -> DevServers:
    """Fault tests stop RabbitMQ; make sure it is up for everyone else."""
    if not servers.rabbitmq.running:
        servers.rabbitmq.start()
    return servers


async def kill_while_processing(
    worker: subprocess.Popen[bytes], engine: AsyncEngine, job_id: uuid.UUID, log: Path
) -> None:
    """SIGKILL ``worker`` (no shutdown, as the OOM killer or a lost host would) once it
    holds ``job_id``; the worker's log explains a job that never got that far."""
    try:
        try:
            await wait_job_status(engine, job_id, "processing", timeout=60)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; worker log:\n{log.read_text()[-3000:]}") from None
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
    finally:
        if worker.poll() is None:
            worker.kill()
