"""The RabbitMQ consumer in-process: relay -> broker -> consumer -> result, poison
messages, LLM outage -> retry queues -> DLQ -> redrive, graceful shutdown."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from groundwork_app.adapters.llm import SimulatedProvider
from groundwork_app.adapters.rabbitmq import RabbitPublisher, Topology, amqp_message
from groundwork_app.db.worker import JobStore
from groundwork_app.observability import worker_metrics as m
from groundwork_app.ports import ATTEMPT_HEADER, REASON_HEADER
from groundwork_app.relay.outbox import OutboxRelay
from groundwork_app.settings import Settings
from groundwork_app.worker.consumer import RabbitConsumer
from groundwork_app.worker.dlq import list_dead_letters, redrive
from groundwork_app.worker.handler import JobHandler
from groundwork_app.worker.runner import build_handler
from sqlalchemy.ext.asyncio import AsyncEngine

from .conftest import (
    amqp_channel,
    insert_job,
    job_row,
    ledger_count,
    make_settings,
    queue_depth,
    wait_for,
    wait_job_status,
)


@asynccontextmanager
async def running(
    settings: Settings, engine: AsyncEngine, handler: JobHandler, *, relay: bool = True
) -> AsyncIterator[RabbitConsumer]:
    stop = asyncio.Event()
    consumer = RabbitConsumer(settings, handler.handle)
    tasks = [asyncio.create_task(consumer.run(stop))]
    publisher = RabbitPublisher(settings)
    if relay:
        tasks.append(asyncio.create_task(OutboxRelay(publisher, settings).run(stop)))

    async def connected() -> bool:
        return consumer.connected

    try:
        await wait_for(connected, 15, what="consumer connected")
        yield consumer
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        await publisher.close()


async def test_jobs_flow_from_outbox_to_result(
    settings: Settings, engine: AsyncEngine, store: JobStore, rabbit_ok: object
) -> None:
    provider = SimulatedProvider()
    handler = build_handler(settings, store, provider=provider)
    ids = [await insert_job(engine, settings, f"prompt {i}") for i in range(5)]
    async with running(settings, engine, handler):
        for job_id, _ in ids:
            row = await wait_job_status(engine, job_id, "succeeded")
            assert row.result.startswith("[test-model] simulated answer")
    assert provider.calls == 5
    assert await ledger_count(engine) == 5
    assert await queue_depth(settings, settings.queue_name) == 0


async def test_poison_message_is_dead_lettered_and_consumer_keeps_going(
    settings: Settings, engine: AsyncEngine, store: JobStore, rabbit_ok: object
) -> None:
    handler = build_handler(settings, store, provider=SimulatedProvider())
    topology = Topology.from_settings(settings)
    async with running(settings, engine, handler):
        async with amqp_channel(settings) as channel:
            await channel.default_exchange.publish(
                amqp_message(b"{not json", message_id="poison-1", headers={}),
                routing_key=settings.queue_name,
            )
        job_id, _ = await insert_job(engine, settings)
        await wait_job_status(engine, job_id, "succeeded")

        async def parked() -> bool:
            return await queue_depth(settings, topology.dead_letter_queue) == 1

        await wait_for(parked, 10, what="poison message in the DLQ")
    letters = await list_dead_letters(settings)
    assert [(d.message_id, d.attempts) for d in letters] == [("poison-1", 1)]
    assert letters[0].reason.startswith("malformed message: body is not JSON")
    # Listing consumed nothing.
    assert await queue_depth(settings, topology.dead_letter_queue) == 1


async def test_llm_outage_retries_through_ttl_queues_then_dlq_then_redrive_succeeds(
    settings: Settings, engine: AsyncEngine, store: JobStore, rabbit_ok: object
) -> None:
    assert settings.queue_delivery_limit == 3
    provider = SimulatedProvider(failure_rate=1.0)
    handler = build_handler(settings, store, provider=provider)
    topology = Topology.from_settings(settings)
    retried_before = m.JOBS_RETRIED._value.get()
    job_id, message_id = await insert_job(engine, settings)
    async with running(settings, engine, handler):
        row = await wait_job_status(engine, job_id, "failed")
        assert row.error.startswith("LLM unavailable")
        assert row.attempts == 3

        async def parked() -> bool:
            return await queue_depth(settings, topology.dead_letter_queue) == 1

        await wait_for(parked, 10, what="message in the DLQ")
        assert m.JOBS_RETRIED._value.get() - retried_before == 2
        # 2 retries x (1 + llm_max_retries) calls would be 6; the circuit (threshold 3)
        # opened, so later attempts failed fast without calling the provider.
        assert handler.llm.circuit_state == "open"
        assert provider.calls == 3

        letters = await list_dead_letters(settings)
        assert [(d.message_id, d.job_id, d.attempts) for d in letters] == [
            (str(message_id), str(job_id), 3)
        ]
        assert "circuit open" in letters[0].reason

        provider.failure_rate = 0.0
        handler.llm.breaker.reset()  # the provider is back: skip the 60 s recovery wait
        moved = await redrive(settings, limit=10)
        assert [d.message_id for d in moved] == [str(message_id)]
        row = await wait_job_status(engine, job_id, "succeeded")
        assert row.error is None
    assert await queue_depth(settings, topology.dead_letter_queue) == 0
    assert await ledger_count(engine, job_id) == 1


async def test_retry_headers_count_attempts_and_pick_growing_delays(
    settings: Settings, engine: AsyncEngine, store: JobStore, rabbit_ok: object
) -> None:
    topology = Topology.from_settings(settings)
    assert topology.retry_queue_for_attempt(1) == f"{settings.queue_name}.retry.100ms"
    assert topology.retry_queue_for_attempt(2) == f"{settings.queue_name}.retry.200ms"
    assert topology.retry_queue_for_attempt(9) == f"{settings.queue_name}.retry.200ms"
    # Stop the consumer before the TTL returns the message: it must sit in the retry queue.
    slow = make_settings(queue_name=settings.queue_name, queue_retry_delays_ms=[60_000])
    handler = build_handler(slow, store, provider=SimulatedProvider(failure_rate=1.0))
    job_id, _ = await insert_job(engine, slow)
    async with running(slow, engine, handler):
        retry_queue = Topology.from_settings(slow).retry_queue(60_000)

        async def waiting() -> bool:
            return await queue_depth(slow, retry_queue) == 1

        await wait_for(waiting, 10, what="message in the retry queue")
    async with amqp_channel(slow) as channel:
        queue = await channel.declare_queue(retry_queue, passive=True)
        message = await queue.get(no_ack=True)
    assert message.headers[ATTEMPT_HEADER] == 2
    assert str(message.headers[REASON_HEADER]).startswith("LLM unavailable")
    assert (await job_row(engine, job_id)).status == "queued"


async def test_graceful_shutdown_finishes_in_flight_messages(
    settings: Settings, engine: AsyncEngine, store: JobStore, rabbit_ok: object
) -> None:
    handler = build_handler(settings, store, provider=SimulatedProvider(latency_ms=800))
    job_id, _ = await insert_job(engine, settings)
    async with running(settings, engine, handler) as consumer:
        await wait_job_status(engine, job_id, "processing")
        assert consumer.in_flight == 1
    # Leaving the context set the stop event: the consumer waited for the job.
    assert (await job_row(engine, job_id)).status == "succeeded"
    assert await queue_depth(settings, settings.queue_name) == 0


async def test_shutdown_deadline_requeues_unfinished_messages(
    settings: Settings, engine: AsyncEngine, store: JobStore, rabbit_ok: object
) -> None:
    short = make_settings(
        queue_name=settings.queue_name, shutdown_timeout_seconds=0.3, llm_timeout_seconds=30
    )
    handler = build_handler(short, store, provider=SimulatedProvider(latency_ms=10_000))
    job_id, message_id = await insert_job(engine, short)
    async with running(short, engine, handler):
        await wait_job_status(engine, job_id, "processing")
    # Not acked, not lost: back in the work queue for the next worker.
    async with amqp_channel(short) as channel:
        queue = await channel.declare_queue(short.queue_name, passive=True)
        message = await queue.get(no_ack=False, timeout=5)
        assert message.message_id == str(message_id)
        assert json.loads(message.body)["job_id"] == str(job_id)
        await message.nack(requeue=True)
    assert await ledger_count(engine, job_id) == 0


async def test_sigterm_drain_finishes_started_calls_and_hands_back_the_rest_at_once(
    settings: Settings, engine: AsyncEngine, store: JobStore, rabbit_ok: object
) -> None:
    # Prefetch above concurrency: two jobs run, four wait in this worker's memory. On
    # stop the two started LLM calls finish and are stored; the four unstarted ones go
    # straight back to the queue (no new LLM call starts during the grace period, so
    # every call made is counted once, in a stored result).
    tight = make_settings(
        queue_name=settings.queue_name,
        worker_concurrency=2,
        queue_prefetch=6,
        llm_timeout_seconds=10.0,
    )
    # 3.5 s calls: the state checked below lasts that long (a loaded machine can miss a
    # shorter window), and still ends within the 5 s shutdown grace.
    provider = SimulatedProvider(latency_ms=3500)
    handler = build_handler(tight, store, provider=provider)
    ids = [(await insert_job(engine, tight, f"drain {i}"))[0] for i in range(6)]
    async with running(tight, engine, handler) as consumer:

        async def all_delivered() -> bool:
            return consumer.in_flight == 6 and provider.calls == 2

        await wait_for(all_delivered, 15, what="6 prefetched, 2 started")
    statuses = [(await job_row(engine, job_id)).status for job_id in ids]
    assert statuses.count("succeeded") == 2
    assert provider.calls == 2
    assert await ledger_count(engine) == 2
    assert await queue_depth(tight, tight.queue_name) == 4


async def test_message_without_id_is_dead_lettered(
    settings: Settings, engine: AsyncEngine, store: JobStore, rabbit_ok: object
) -> None:
    handler = build_handler(settings, store, provider=SimulatedProvider())
    topology = Topology.from_settings(settings)
    body = json.dumps({"job_id": str(uuid.uuid4()), "prompt": "p", "model": "m"}).encode()
    async with running(settings, engine, handler, relay=False):
        async with amqp_channel(settings) as channel:
            await channel.default_exchange.publish(
                amqp_message(body, message_id="", headers={}), routing_key=settings.queue_name
            )

        async def parked() -> bool:
            return await queue_depth(settings, topology.dead_letter_queue) == 1

        await wait_for(parked, 10, what="id-less message in the DLQ")


async def test_crash_looping_message_is_dead_lettered_by_the_delivery_limit(
    settings: Settings, rabbit_ok: object
) -> None:
    """A message whose worker dies every time (never acked) must not loop forever."""
    from groundwork_app.adapters.rabbitmq import declare_topology

    topology = Topology.from_settings(settings)
    async with amqp_channel(settings) as channel:
        await declare_topology(channel, topology)
        await channel.default_exchange.publish(
            amqp_message(b"{}", message_id="crash-loop", headers={}),
            routing_key=topology.work_queue,
        )
        queue = await channel.get_queue(topology.work_queue)
        deliveries = 0
        while (message := await queue.get(no_ack=False, fail=False, timeout=5)) is not None:
            deliveries += 1
            await message.nack(requeue=True)  # what a lost connection amounts to
            assert deliveries <= settings.queue_delivery_limit + 1

    async def parked() -> bool:
        return await queue_depth(settings, topology.dead_letter_queue) == 1

    await wait_for(parked, 10, what="crash-looping message in the DLQ")
    assert deliveries == settings.queue_delivery_limit + 1
    [letter] = await list_dead_letters(settings)
    assert letter.message_id == "crash-loop"
    assert letter.reason == "broker: delivery_limit"
