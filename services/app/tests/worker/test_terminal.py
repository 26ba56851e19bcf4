"""Every accepted job reaches a terminal state in bounded time (worker/terminal.py):
the broker's dead letters end their jobs (RabbitMQ x-death delivery_limit, the Pub/Sub
dead-letter push), and the relay's reconciler fails jobs stuck past their deadline."""

from __future__ import annotations

import asyncio
import json
import uuid

import aio_pika
import httpx
from groundwork_app.adapters.llm import SimulatedProvider
from groundwork_app.adapters.pubsub import PushTokenVerifier
from groundwork_app.adapters.rabbitmq import (
    RabbitPublisher,
    Topology,
    amqp_url,
    declare_topology,
)
from groundwork_app.db.pool import LazyPool
from groundwork_app.db.worker import JobStore
from groundwork_app.domain.repository import Claim
from groundwork_app.observability import worker_metrics as m
from groundwork_app.relay.outbox import OutboxRelay
from groundwork_app.settings import Settings
from groundwork_app.worker.consumer import RabbitConsumer
from groundwork_app.worker.dlq import list_dead_letters
from groundwork_app.worker.pubsub_push import DEAD_LETTER_PATH, create_push_app
from groundwork_app.worker.runner import build_handler
from groundwork_app.worker.terminal import DeadLetterOutcome, DeadLetterRecorder, Reconciler
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from .conftest import amqp_channel, insert_job, job_row, make_settings, wait_for, wait_job_status
from .test_pubsub import AUDIENCE, PUSH_SA, Google, envelope


def reconciled(reason: str) -> float:
    return m.JOBS_TERMINATED_BY_SWEEP.labels(reason)._value.get()


async def crash_deliveries(settings: Settings, times: int) -> int:
    """Take the message off the work queue and die without acking, ``times`` times:
    what a worker OOM-killed on this job does. Returns how many deliveries happened."""
    delivered = 0
    for _ in range(times):
        connection = await aio_pika.connect(amqp_url(settings))
        channel = await connection.channel()
        queue = await channel.get_queue(settings.queue_name, ensure=False)
        message = await queue.get(no_ack=False, fail=False, timeout=5)
        await connection.close()  # no ack: the broker counts a failed delivery
        if message is None:
            break
        delivered += 1
    return delivered


async def test_a_crash_looping_job_is_failed_by_its_x_death_delivery_limit(
    service_env: dict[str, str], clean_db: None, engine: AsyncEngine, rabbit_ok: object
) -> None:
    """Before: the quorum queue dead-lettered the message (x-death reason
    delivery_limit) and the job stayed `processing` forever."""
    settings = make_settings(queue_delivery_limit=2, job_lease_seconds=1.0)
    dead_worker = JobStore(settings)
    store = JobStore(settings)
    publisher = RabbitPublisher(settings)
    try:
        job_id, message_id = await insert_job(engine, settings, "crash me")
        claim = await dead_worker.claim(job_id, str(message_id))
        assert claim.claim is Claim.CLAIMED  # the killed worker's lease, never released
        relay = OutboxRelay(publisher, settings)
        assert (await relay.publish_batch()).published == 1
        await relay.close()
        # limit 2: the broker dead-letters on the delivery after the second return.
        assert await crash_deliveries(settings, 4) == 3
        before = reconciled("dead_letter")

        handler = build_handler(settings, store, provider=SimulatedProvider())
        recorder = DeadLetterRecorder(store.pool, settings)
        consumer = RabbitConsumer(settings, handler.handle, recorder.record)
        stop = asyncio.Event()
        running = asyncio.create_task(consumer.run(stop))
        try:
            row = await wait_job_status(engine, job_id, "failed", timeout=20)
        finally:
            stop.set()
            await running
        assert row.error == "dead-lettered: broker: delivery_limit"
        assert row.completed_at is not None and row.lease_owner is None
        assert reconciled("dead_letter") == before + 1
        # The DLQ itself keeps the message for `dlq list` / `dlq redrive`.
        letters = await list_dead_letters(settings)
        assert [(d.message_id, d.reason) for d in letters] == [
            (str(message_id), "broker: delivery_limit")
        ]
    finally:
        await publisher.close()
        await store.close()
        await dead_worker.close()


async def test_the_dead_letter_tap_never_ends_a_succeeded_job(
    service_env: dict[str, str], clean_db: None, engine: AsyncEngine, rabbit_ok: object
) -> None:
    settings = make_settings()
    store = JobStore(settings)
    try:
        handler = build_handler(settings, store, provider=SimulatedProvider())
        job_id, message_id = await insert_job(engine, settings)
        from .test_handler import delivery_for

        await handler.handle(delivery_for(job_id, message_id))
        recorder = DeadLetterRecorder(store.pool, settings)
        assert await recorder.record(job_id, "late copy") is DeadLetterOutcome.ALREADY_ENDED
        assert await recorder.record(None, "poison") is DeadLetterOutcome.UNKNOWN_JOB
        assert await recorder.record(uuid.uuid4(), "gone") is DeadLetterOutcome.UNKNOWN_JOB
        assert (await job_row(engine, job_id)).status == "succeeded"

        # A copy published straight to the DLX (as the consumer's DEAD_LETTER does) is
        # tapped and acked: the tap queue does not fill up.
        topology = Topology.from_settings(settings)
        async with amqp_channel(settings) as channel:
            await declare_topology(channel, topology)
            exchange = await channel.get_exchange(topology.dead_letter_exchange)
            await exchange.publish(
                aio_pika.Message(json.dumps({"job_id": str(job_id)}).encode(), message_id="x"),
                routing_key=topology.dead_letter_queue,
            )
        consumer = RabbitConsumer(settings, handler.handle, recorder.record)
        stop = asyncio.Event()
        running = asyncio.create_task(consumer.run(stop))

        async def tapped() -> bool:
            async with amqp_channel(settings) as channel:
                tap = await channel.declare_queue(topology.dead_letter_tap, passive=True)
                return tap.declaration_result.message_count == 0

        try:
            await wait_for(tapped, 15, what="the tap drained")
        finally:
            stop.set()
            await running
        assert (await job_row(engine, job_id)).status == "succeeded"
    finally:
        await store.close()


async def test_pubsub_dead_letter_push_ends_the_job(
    service_env: dict[str, str], clean_db: None, engine: AsyncEngine
) -> None:
    """GCP: a push subscription on the dead-letter topic delivers to /pubsub/dead-letter;
    it is authenticated like the work push, and the job ends failed."""
    settings = make_settings()
    store = JobStore(settings)
    google = Google()
    try:
        handler = build_handler(settings, store, provider=SimulatedProvider())
        recorder = DeadLetterRecorder(store.pool, settings)
        verifier = PushTokenVerifier(AUDIENCE, PUSH_SA, certs_url=google.certs_url)
        app = create_push_app(handler.handle, verifier, record_dead_letter=recorder.record)
        job_id, message_id = await insert_job(engine, settings, "push me")
        body = json.dumps(envelope(job_id, str(message_id), attempt=5)).encode()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://worker") as client:
            anonymous = await client.post(DEAD_LETTER_PATH, content=body)
            assert anonymous.status_code == 401
            assert (await job_row(engine, job_id)).status == "queued"
            ok = await client.post(
                DEAD_LETTER_PATH,
                content=body,
                headers={"Authorization": f"Bearer {google.token()}"},
            )
        assert ok.status_code == 204, ok.text
        row = await job_row(engine, job_id)
        assert row.status == "failed"
        assert row.error == "dead-lettered: pubsub: delivery limit reached after 5 attempt(s)"
    finally:
        google.server.shutdown()
        await store.close()


async def test_the_reconciler_fails_only_jobs_stuck_past_their_deadline(
    service_env: dict[str, str], clean_db: None, engine: AsyncEngine
) -> None:
    settings = make_settings(job_deadline_seconds=600, job_lease_seconds=60)
    store = JobStore(settings)
    pool = LazyPool(settings, "reconciler")
    try:
        stuck_queued, _ = await insert_job(engine, settings, "never published")
        stuck_processing, _ = await insert_job(engine, settings, "worker died")
        leased, leased_msg = await insert_job(engine, settings, "slow but alive")
        fresh, _ = await insert_job(engine, settings, "just accepted")
        done, done_msg = await insert_job(engine, settings, "finished long ago")
        handler = build_handler(settings, store, provider=SimulatedProvider())
        from .test_handler import delivery_for

        await handler.handle(delivery_for(done, done_msg))
        assert (await store.claim(leased, str(leased_msg))).claim is Claim.CLAIMED
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "UPDATE jobs SET status = 'processing', error = 'LLM unavailable: 503', "
                    "lease_owner = 'dead', lease_expires_at = now() - interval '1 minute' "
                    "WHERE id = :id"
                ),
                {"id": stuck_processing},
            )
            await conn.execute(
                text("UPDATE jobs SET updated_at = now() - interval '2 hours' WHERE id <> :id"),
                {"id": fresh},
            )
        before = reconciled("deadline")

        ended = await Reconciler(pool, settings).sweep()

        assert sorted(ended) == sorted([stuck_queued, stuck_processing])
        assert reconciled("deadline") == before + 2
        statuses = {j: (await job_row(engine, j)).status for j in (leased, fresh, done)}
        assert statuses == {leased: "processing", fresh: "queued", done: "succeeded"}
        row = await job_row(engine, stuck_processing)
        assert row.status == "failed"
        assert row.error == (
            "deadline exceeded: no worker finished the job within 600 s of its last progress "
            "(last error: LLM unavailable: 503)"
        )
        assert m.JOBS_UNFINISHED._value.get() == 2  # leased + fresh
        assert m.JOBS_UNFINISHED_OLDEST_AGE_SECONDS._value.get() >= 7190
        assert await Reconciler(pool, settings).sweep() == []  # idempotent
    finally:
        await pool.close()
        await store.close()
