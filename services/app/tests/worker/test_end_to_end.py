"""Through the real API app: POST /v1/jobs -> outbox -> relay -> RabbitMQ -> worker -> result,
and a RabbitMQ restart while jobs are being submitted."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from groundwork_app.adapters.llm import SimulatedProvider
from groundwork_app.adapters.rabbitmq import RabbitPublisher
from groundwork_app.db.worker import JobStore
from groundwork_app.relay.outbox import OutboxRelay
from groundwork_app.settings import Settings
from groundwork_app.worker.consumer import RabbitConsumer
from groundwork_app.worker.runner import build_handler
from sqlalchemy.ext.asyncio import AsyncEngine

from groundwork.devenv.servers import DevServers

from ..api.conftest import ApiHarness, running_api
from .conftest import ledger_count, make_settings, wait_for, wait_job_status


@asynccontextmanager
async def pipeline(
    settings: Settings, engine: AsyncEngine, store: JobStore, provider: SimulatedProvider
) -> AsyncIterator[RabbitConsumer]:
    """Relay + consumer, in-process, sharing the API's log configuration."""
    stop = asyncio.Event()
    consumer = RabbitConsumer(settings, build_handler(settings, store, provider=provider).handle)
    publisher = RabbitPublisher(settings)
    tasks = [
        asyncio.create_task(consumer.run(stop)),
        asyncio.create_task(OutboxRelay(publisher, settings).run(stop)),
    ]
    try:
        yield consumer
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        await publisher.close()


async def submit(api: ApiHarness, prompt: str, request_id: str) -> uuid.UUID:
    response = await api.client.post(
        "/v1/jobs",
        json={"prompt": prompt, "metadata": {}},
        headers={**api.auth("e2e-client"), "X-Request-ID": request_id},
    )
    assert response.status_code == 202, response.text
    return uuid.UUID(response.json()["id"])


async def _until_logged(api: ApiHarness, event: str, timeout: float = 10.0) -> list[dict[str, Any]]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        lines = api.log_lines()
        if any(ln.get("event") == event for ln in lines):
            return lines
        if asyncio.get_running_loop().time() > deadline:
            return lines
        await asyncio.sleep(0.05)


async def test_posted_job_gets_a_result_and_logs_share_the_request_id(
    settings: Settings, engine: AsyncEngine, store: JobStore, rabbit_ok: object
) -> None:
    settings = make_settings(queue_name=settings.queue_name, rate_limit="100000/minute")
    provider = SimulatedProvider()
    async with running_api(settings) as api, pipeline(settings, engine, store, provider):
        job_id = await submit(api, "What is the capital of France?", "req-e2e-42")
        await wait_job_status(engine, job_id, "succeeded")
        response = await api.client.get(f"/v1/jobs/{job_id}", headers=api.auth("e2e-client"))
        assert response.status_code == 200
        body: dict[str, Any] = response.json()
        assert body["status"] == "succeeded"
        assert "simulated answer" in str(body)
        # The worker logs "message handled" after the result is stored and the delivery
        # acked, so the job can read as succeeded a moment before that line exists.
        lines = await _until_logged(api, "message handled")
    api_lines = [
        ln
        for ln in lines
        if ln.get("request_id") == "req-e2e-42" and ln.get("event") != "message handled"
    ]
    worker_lines = [ln for ln in lines if ln.get("event") == "message handled"]
    assert api_lines, "the API logged nothing with the request id"
    assert [ln["request_id"] for ln in worker_lines] == ["req-e2e-42"]
    assert worker_lines[0]["job_id"] == str(job_id)
    assert provider.calls == 1


@pytest.mark.slow
async def test_rabbitmq_restart_while_submitting_loses_no_job(
    settings: Settings, engine: AsyncEngine, store: JobStore, servers: DevServers, rabbit_ok: object
) -> None:
    settings = make_settings(queue_name=settings.queue_name, rate_limit="100000/minute")
    provider = SimulatedProvider()
    job_ids: list[uuid.UUID] = []
    async with (
        running_api(settings) as api,
        pipeline(settings, engine, store, provider) as consumer,
    ):
        job_ids.append(await submit(api, "before the outage", "req-before"))
        await wait_job_status(engine, job_ids[0], "succeeded")

        # In a thread: the API, relay and consumer keep running while the broker stops.
        await asyncio.to_thread(servers.rabbitmq.stop)
        try:
            for i in range(8):  # the API does not depend on the broker: always 202
                job_ids.append(await submit(api, f"during the outage {i}", f"req-out-{i}"))
                await asyncio.sleep(0.05)

            async def disconnected() -> bool:
                return not consumer.connected

            await wait_for(disconnected, 10, what="the consumer to see the broker gone")
            await asyncio.sleep(1)
            assert [await _status(engine, j) for j in job_ids[1:]] == ["queued"] * 8
        finally:
            await asyncio.to_thread(servers.rabbitmq.start)

        for i in range(3):
            job_ids.append(await submit(api, f"after the outage {i}", f"req-after-{i}"))
        for job_id in job_ids:
            await wait_job_status(engine, job_id, "succeeded", timeout=90)

        async def reconnected() -> bool:
            return consumer.connected

        await wait_for(reconnected, 30, what="consumer reconnected")
    assert await ledger_count(engine) == len(job_ids) == 12
    assert provider.calls == 12  # each job exactly once


async def _status(engine: AsyncEngine, job_id: uuid.UUID) -> str:
    from .conftest import job_row

    return str((await job_row(engine, job_id)).status)
