"""Coalesced acks (worker/consumer.py ``AckBatcher``) against a real RabbitMQ.

``basic.ack`` with ``multiple=True`` acks every outstanding delivery of the channel up
to its tag (RabbitMQ docs, "Consumer Acknowledgements and Publisher Confirms",
https://www.rabbitmq.com/docs/confirms#consumer-acks-multiple-parameter): a batcher
that sent one for the newest finished tag would also ack a delivery still running,
and a crash would then lose that job. Acks that never reach the broker (a crash
inside the linger) must come back as redeliveries that the ledger turns into no-ops.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from groundwork_app.adapters.llm import SimulatedProvider
from groundwork_app.adapters.rabbitmq import RabbitPublisher, amqp_message
from groundwork_app.db.worker import JobStore
from groundwork_app.observability import worker_metrics as m
from groundwork_app.ports import Delivery, HandleResult, Outcome
from groundwork_app.relay.outbox import OutboxRelay
from groundwork_app.settings import Settings
from groundwork_app.worker.consumer import RabbitConsumer
from groundwork_app.worker.runner import build_handler
from sqlalchemy.ext.asyncio import AsyncEngine

from .conftest import (
    amqp_channel,
    drain_queue,
    insert_job,
    ledger_count,
    queue_depth,
    wait_for,
    wait_job_status,
)


@asynccontextmanager
async def consuming(
    settings: Settings, consumer: RabbitConsumer, *, crash: bool = False
) -> AsyncIterator[RabbitConsumer]:
    """Run ``consumer``; on exit stop it gracefully, or with ``crash`` cancel it the way
    a dying process ends: no drain, no flush of queued acks (the connection closes, so
    the broker requeues every unacked delivery as it does for a SIGKILLed worker)."""
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))

    async def connected() -> bool:
        return consumer.connected

    try:
        await wait_for(connected, 15, what="consumer connected")
        yield consumer
    finally:
        if crash:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        else:
            stop.set()
            await task


async def _publish(settings: Settings, count: int) -> list[str]:
    ids = [str(uuid.uuid4()) for _ in range(count)]
    async with amqp_channel(settings) as channel:
        for message_id in ids:
            await channel.default_exchange.publish(
                amqp_message(b"{}", message_id=message_id, headers={}),
                routing_key=settings.queue_name,
            )
    return ids


async def test_a_run_of_finished_deliveries_is_one_frame_and_a_stop_flushes_it(
    settings: Settings, rabbit_ok: object
) -> None:
    seen: list[str] = []
    all_in = asyncio.Event()

    async def handle(delivery: Delivery) -> HandleResult:
        seen.append(delivery.message_id)
        if len(seen) == 20:
            all_in.set()
        await all_in.wait()  # all 20 finish together: one contiguous run of tags
        return HandleResult(Outcome.ACK)

    # A linger far beyond the test: only the graceful stop can send these acks.
    consumer = RabbitConsumer(settings, handle, ack_linger=3600)
    async with consuming(settings, consumer):
        await _publish(settings, 20)

        async def finished() -> bool:
            return consumer.acks.pending == 20

        await wait_for(finished, 15, what="20 finished deliveries waiting for their ack")
        assert consumer.acks.frames == 0
    # The stop flushed them: one basic.ack multiple=True, nothing requeued.
    assert consumer.acks.frames == 1
    assert consumer.acks.acked == 20
    assert await queue_depth(settings, settings.queue_name) == 0


async def test_a_running_delivery_is_never_covered_by_a_later_multiple_ack(
    settings: Settings, rabbit_ok: object
) -> None:
    release = asyncio.Event()
    first: list[str] = []

    async def handle(delivery: Delivery) -> HandleResult:
        if not first:
            first.append(delivery.message_id)
            await release.wait()  # the oldest delivery is slow
        return HandleResult(Outcome.ACK)

    consumer = RabbitConsumer(settings, handle, ack_linger=0.005)
    async with consuming(settings, consumer, crash=True):
        await _publish(settings, 6)

        async def others_acked() -> bool:
            return consumer.acks.acked == 5 and consumer.acks.frames >= 5

        await wait_for(others_acked, 15, what="the 5 fast deliveries acked")
        await asyncio.sleep(0.5)  # let the last frame reach the broker before the crash
        # They sat behind a running tag: acked one by one, not by a multiple ack that
        # would have taken the slow one with them.
        assert consumer.acks.frames == 5
    # The crash hands back exactly the delivery that never finished.
    back = await drain_queue(settings, settings.queue_name)
    assert [message.message_id for message in back] == first


async def test_acks_lost_in_a_crash_come_back_as_no_op_redeliveries(
    settings: Settings, engine: AsyncEngine, store: JobStore, rabbit_ok: object
) -> None:
    provider = SimulatedProvider()
    ids = [(await insert_job(engine, settings, f"acks {i}"))[0] for i in range(3)]
    publisher = RabbitPublisher(settings)
    stop_relay = asyncio.Event()
    relay = asyncio.create_task(OutboxRelay(publisher, settings).run(stop_relay))
    try:
        handler = build_handler(settings, store, provider=provider)
        # Acks wait an hour: the crash below comes before any of them is sent.
        crashed = RabbitConsumer(settings, handler.handle, ack_linger=3600)
        async with consuming(settings, crashed, crash=True):
            for job_id in ids:
                await wait_job_status(engine, job_id, "succeeded")

            async def all_finished() -> bool:
                return crashed.acks.pending == 3

            await wait_for(all_finished, 15, what="3 acks queued")
        assert crashed.acks.frames == 0
        assert provider.calls == 3

        duplicates = m.JOBS_PROCESSED.labels("duplicate")._value.get()
        again = SimulatedProvider()
        successor = RabbitConsumer(settings, build_handler(settings, store, provider=again).handle)
        async with consuming(settings, successor):

            async def redelivered() -> bool:
                return successor.acks.acked == 3

            await wait_for(redelivered, 15, what="the 3 unacked deliveries redelivered")
        # Redelivered (their acks were lost), and the ledger made each a no-op: no
        # second LLM call, no second ledger row, nothing left in the queue.
        assert m.JOBS_PROCESSED.labels("duplicate")._value.get() - duplicates == 3
        assert again.calls == 0
        assert await ledger_count(engine) == 3
        assert await queue_depth(settings, settings.queue_name) == 0
    finally:
        stop_relay.set()
        await relay
        await publisher.close()
