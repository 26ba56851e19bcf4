"""RabbitMQ consumer: feeds deliveries to the job handler and maps outcomes to AMQP.

- ACK: ``basic.ack`` only after the handler returned, i.e. after the result committed.
- RETRY: republish (confirmed) to the TTL retry queue of this attempt with
  ``x-groundwork-attempt`` + 1, then ack; the TTL dead-letters it back to the work
  queue. If that publish fails the message is nacked with requeue instead, so it is
  never lost (the quorum queue's x-delivery-limit still bounds such loops).
- DEAD_LETTER: republish (confirmed) to the dead-letter exchange with the reason in
  ``x-groundwork-reason``, then ack; if that fails, ``basic.reject`` without requeue
  lets the broker dead-letter it (reason ``rejected``).
A worker crash before the ack (SIGKILL, OOM, lost connection) makes the broker
redeliver; the handler's ledger turns that into a no-op if the result was committed.
A crash loop ends when the quorum queue's x-delivery-limit dead-letters the message:
the consumer also reads the dead-letter tap (a copy of every dead letter) and ends
the job through ``on_dead_letter`` (worker/terminal.py), acking the copy after.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from groundwork_app.adapters.rabbitmq import (
    Topology,
    amqp_message,
    connect,
    declare_topology,
    decode_headers,
    publish_confirmed,
)
from groundwork_app.observability import worker_metrics as m
from groundwork_app.ports import ATTEMPT_HEADER, REASON_HEADER, Delivery, HandleResult, Outcome
from groundwork_app.settings import Settings
from groundwork_app.worker.dlq import describe
from groundwork_app.worker.terminal import job_id_of

log = structlog.get_logger("groundwork.consumer")

Handler = Callable[[Delivery], Any]
DeadLetterHook = Callable[[uuid.UUID | None, str], Awaitable[object]]


def attempt_of(headers: dict[str, Any] | None) -> int:
    try:
        return max(1, int((headers or {}).get(ATTEMPT_HEADER, 1)))
    except (TypeError, ValueError):
        return 1


class RabbitConsumer:
    def __init__(
        self, settings: Settings, handle: Handler, on_dead_letter: DeadLetterHook | None = None
    ):
        self._settings = settings
        self._handle = handle
        self._on_dead_letter = on_dead_letter
        self.topology = Topology.from_settings(settings)
        self._in_flight: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(settings.worker_concurrency)
        self._channel: AbstractChannel | None = None
        self.connected = False

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set; reconnect with backoff when the broker goes away."""
        backoff = 0.5
        while not stop.is_set():
            try:
                await self._consume_until_closed(stop)
                backoff = 0.5
            except Exception as exc:
                log.warning(
                    "broker connection failed; reconnecting", error=repr(exc), retry_in_s=backoff
                )
            if stop.is_set():
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), backoff)
            backoff = min(backoff * 2, 15.0)

    async def _consume_until_closed(self, stop: asyncio.Event) -> None:
        connection = await connect(self._settings)
        try:
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            await channel.set_qos(prefetch_count=self._settings.queue_prefetch)
            await declare_topology(channel, self.topology)
            queue = await channel.get_queue(self.topology.work_queue, ensure=False)
            self._channel = channel
            tag = await queue.consume(self._on_message)
            if self._on_dead_letter is not None:
                tap = await channel.get_queue(self.topology.dead_letter_tap, ensure=False)
                await tap.consume(self._on_dead_letter_copy)
            self._set_connected(True)
            log.info(
                "consuming", queue=self.topology.work_queue, prefetch=self._settings.queue_prefetch
            )
            closed = asyncio.ensure_future(channel.closed())
            stopping = asyncio.ensure_future(stop.wait())
            await asyncio.wait({closed, stopping}, return_when=asyncio.FIRST_COMPLETED)
            closed.cancel()
            stopping.cancel()
            if stop.is_set() and not channel.is_closed:
                # Stop the flow first so nothing new arrives while we drain.
                with contextlib.suppress(Exception):
                    await queue.cancel(tag)
                await self._drain(self._settings.shutdown_timeout_seconds)
            else:
                log.warning("broker channel closed; in-flight messages will be redelivered")
                await self._drain(0)
        finally:
            self._set_connected(False)
            self._channel = None
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), 5)

    def _set_connected(self, value: bool) -> None:
        self.connected = value
        m.BROKER_CONNECTED.set(1 if value else 0)

    async def _drain(self, grace_seconds: float) -> None:
        """Let in-flight messages finish; cancel (nack + requeue) what is left at the deadline."""
        tasks = set(self._in_flight)
        if not tasks:
            return
        log.info("draining in-flight messages", count=len(tasks), grace_s=grace_seconds)
        pending = tasks
        if grace_seconds > 0:
            _, pending = await asyncio.wait(tasks, timeout=grace_seconds)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5)
            log.warning("requeued unfinished messages", count=len(pending))

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        task = asyncio.create_task(self._process(message))
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    async def _on_dead_letter_copy(self, message: AbstractIncomingMessage) -> None:
        task = asyncio.create_task(self._record_dead_letter(message))
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    async def _record_dead_letter(self, message: AbstractIncomingMessage) -> None:
        assert self._on_dead_letter is not None
        try:
            info = describe(message)
            job_id = job_id_of(message.body, decode_headers(message.headers))
            await self._on_dead_letter(job_id, info.reason)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await asyncio.shield(message.nack(requeue=True))
            raise
        except Exception:
            log.exception("recording a dead letter failed; requeueing its copy")
            with contextlib.suppress(Exception):
                await message.nack(requeue=True)
            return
        await message.ack()

    async def _process(self, message: AbstractIncomingMessage) -> None:
        started = time.perf_counter()
        try:
            async with self._slots:
                delivery = Delivery(
                    message_id=message.message_id or "",
                    body=message.body,
                    headers=decode_headers(message.headers),
                    attempt=attempt_of(message.headers),
                )
                if not delivery.message_id:
                    result = HandleResult(Outcome.DEAD_LETTER, "malformed message: no message_id")
                    m.JOBS_DEAD_LETTERED.labels("malformed").inc()
                else:
                    result = await self._handle(delivery)
                await self._settle(message, delivery, result)
        except asyncio.CancelledError:
            # Shutdown deadline: hand it back to the broker; nothing was acked.
            with contextlib.suppress(Exception):
                await asyncio.shield(message.nack(requeue=True))
            raise
        except Exception:
            log.exception("settling message failed; requeueing", message_id=message.message_id)
            with contextlib.suppress(Exception):
                await message.nack(requeue=True)
        finally:
            log.debug("message done", duration_ms=round((time.perf_counter() - started) * 1000))

    async def _settle(
        self, message: AbstractIncomingMessage, delivery: Delivery, result: HandleResult
    ) -> None:
        if result.outcome is Outcome.ACK:
            await message.ack()
            return
        channel = self._channel
        headers: dict[str, Any] = dict(message.headers or {})
        headers[REASON_HEADER] = result.reason[:500]
        if result.outcome is Outcome.RETRY:
            headers[ATTEMPT_HEADER] = delivery.attempt + 1
            target = self.topology.retry_queue_for_attempt(delivery.attempt)
            try:
                assert channel is not None
                await publish_confirmed(
                    channel,
                    amqp_message(message.body, message_id=delivery.message_id, headers=headers),
                    routing_key=target,
                )
            except Exception as exc:
                log.warning("retry publish failed; requeueing instead", error=repr(exc))
                await message.nack(requeue=True)
                return
            await message.ack()
            return
        headers[ATTEMPT_HEADER] = delivery.attempt
        try:
            assert channel is not None
            await publish_confirmed(
                channel,
                amqp_message(message.body, message_id=delivery.message_id, headers=headers),
                routing_key=self.topology.dead_letter_queue,
                exchange=self.topology.dead_letter_exchange,
            )
        except Exception as exc:
            log.warning("dead-letter publish failed; rejecting to the broker DLX", error=repr(exc))
            await message.reject(requeue=False)
            return
        log.warning("message dead-lettered", reason=result.reason)
        await message.ack()
