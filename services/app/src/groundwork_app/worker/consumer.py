"""RabbitMQ consumer: feeds deliveries to the job handler and maps outcomes to AMQP.

- ACK: ``basic.ack`` only after the handler returned, i.e. after the result committed.
- RETRY: republish (confirmed) to the TTL retry queue of this attempt with
  ``x-groundwork-attempt`` + 1, then ack; the TTL dead-letters it back to the work
  queue. If that publish fails the message is nacked with requeue instead, so it is
  never lost (the quorum queue's x-delivery-limit still bounds such loops).
- DEAD_LETTER: republish (confirmed) to the dead-letter exchange with the reason in
  ``x-groundwork-reason``, then ack; if that fails, ``basic.reject`` without requeue
  lets the broker dead-letter it (reason ``rejected``).
Acks are coalesced per channel (``AckBatcher``): finished deliveries are acked
within ``ACK_LINGER_SECONDS``, a contiguous run of delivery tags in one ``basic.ack``
with ``multiple=True``, and always before the channel closes on a graceful stop.
A worker crash before the ack (SIGKILL, OOM, lost connection, or acks still waiting
for their flush) makes the broker redeliver; the handler's ledger turns that into a
no-op if the result was committed.
A crash loop ends when the quorum queue's x-delivery-limit dead-letters the message:
the consumer also reads the dead-letter tap (a copy of every dead letter) and ends
the job through ``on_dead_letter`` (worker/terminal.py), acking the copy after.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import deque
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


# How long a finished delivery waits for others before its ack is sent. One ack per
# job was a frame, a future, a writer-queue hop and a send system call each (aiormq
# awaits the drain of every frame); at hundreds of jobs/s a few milliseconds gather a
# run of tags that one ``basic.ack multiple=True`` settles. The delay also holds the
# slot's prefetch credit that long: nothing next to a seconds-long LLM call.
ACK_LINGER_SECONDS = 0.005


class AckBatcher:
    """Coalesced acks of one channel's deliveries.

    RabbitMQ's ``basic.ack`` with ``multiple=True`` acks every outstanding delivery of
    the channel up to and including its tag ("Consumer Acknowledgements and Publisher
    Confirms", https://www.rabbitmq.com/docs/confirms#consumer-acks-multiple-parameter),
    so it may only cover a run of tags that are *all* finished: every delivery of the
    channel (both consumers on it) is registered here in tag order, a multiple ack is
    sent for the longest finished prefix, and finished deliveries behind a still-running
    one are acked one by one (a slow job must not hold back the others' acks, which
    count against the prefetch). A nack or reject goes out at once, and its tag leaves
    the register only after that frame was sent, so no multiple ack can cover it first.
    Flushes run one at a time, so frames go out in the order they were decided. An ack
    the broker never receives (crash, lost channel) means a redelivery, which the
    handler's ledger turns into a no-op.
    """

    def __init__(self, linger: float = ACK_LINGER_SECONDS) -> None:
        self._linger = linger
        self._order: deque[int] = deque()  # registered tags, in delivery order
        # tag -> the message once it is finished and waiting for its ack, None while
        # it runs (or while its nack/reject is being sent)
        self._open: dict[int, AbstractIncomingMessage | None] = {}
        self._finished: list[AbstractIncomingMessage] = []
        self._last_tag = 0
        self._ordered = True
        self._timer: asyncio.TimerHandle | None = None
        self._flusher: asyncio.Task[None] | None = None
        self.frames = 0  # basic.ack frames sent, for tests and the benchmark
        self.acked = 0

    @property
    def pending(self) -> int:
        return len(self._finished)

    def delivered(self, message: AbstractIncomingMessage) -> None:
        tag = message.delivery_tag
        if tag is None:
            return
        if tag <= self._last_tag:
            # Never seen from RabbitMQ (tags grow per channel); if it happened, a
            # multiple ack could cover a delivery that is still running: ack singly.
            self._ordered = False
        self._last_tag = max(self._last_tag, tag)
        self._order.append(tag)
        self._open[tag] = None

    def ack(self, message: AbstractIncomingMessage) -> None:
        """Queue the ack of a finished delivery; sent within the linger."""
        tag = message.delivery_tag
        if tag is None or tag not in self._open:
            # Not registered (a channel older than this batcher): ack it alone.
            self._spawn(self._send_single([message]))
            return
        self._open[tag] = message
        self._finished.append(message)
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._linger, self._kick)

    async def settle(self, message: AbstractIncomingMessage, send: Awaitable[None]) -> None:
        """Send a nack/reject of ``message`` now; its tag leaves the register after."""
        try:
            await send
        finally:
            tag = message.delivery_tag
            if tag is not None and self._open.get(tag, 0) is None:
                del self._open[tag]

    def _kick(self) -> None:
        self._timer = None
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_loop())

    async def _flush_loop(self) -> None:
        while self._finished:
            await self._flush_once()

    async def flush(self) -> None:
        """Send every queued ack now (a graceful stop, before the channel closes)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._flusher is not None and not self._flusher.done():
            await asyncio.wait({self._flusher})
        while self._finished:
            await self._flush_once()

    def _take(self) -> tuple[AbstractIncomingMessage | None, list[AbstractIncomingMessage]]:
        """Decide the frames of one flush (no await: the register cannot change under it)."""
        finished, self._finished = self._finished, []
        last: AbstractIncomingMessage | None = None
        open_, order = self._open, self._order
        while order:
            tag = order[0]
            if tag in open_:
                message = open_[tag]
                if message is None or not self._ordered:
                    break
                del open_[tag]
                last = message
            order.popleft()  # finished, or already settled by a nack/reject
        singles = []
        for done in finished:
            if done.delivery_tag in open_:
                del open_[done.delivery_tag]
                singles.append(done)
        self.acked += len(finished)
        return last, singles

    async def _flush_once(self) -> None:
        last, singles = self._take()
        try:
            if last is not None:
                self.frames += 1
                await last.ack(multiple=True)
        except Exception as exc:
            # The channel is gone: the broker redelivers all of it, the ledger makes
            # the copies no-ops.
            log.warning("ack failed; the broker will redeliver", error=repr(exc))
            return
        await self._send_single(singles)

    async def _send_single(self, messages: list[AbstractIncomingMessage]) -> None:
        for message in messages:
            try:
                self.frames += 1
                await message.ack()
            except Exception as exc:
                log.warning("ack failed; the broker will redeliver", error=repr(exc))
                return

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        _background.add(task)
        task.add_done_callback(_background.discard)

    def cancel(self) -> None:
        """The channel is gone: its queued acks are void (the broker redelivers)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._finished.clear()


_background: set[asyncio.Future[None]] = set()


def attempt_of(headers: dict[str, Any] | None) -> int:
    try:
        return max(1, int((headers or {}).get(ATTEMPT_HEADER, 1)))
    except (TypeError, ValueError):
        return 1


class RabbitConsumer:
    def __init__(
        self,
        settings: Settings,
        handle: Handler,
        on_dead_letter: DeadLetterHook | None = None,
        *,
        ack_linger: float = ACK_LINGER_SECONDS,
    ):
        self._settings = settings
        self._ack_linger = ack_linger
        self.acks = AckBatcher(ack_linger)
        self._handle = handle
        self._on_dead_letter = on_dead_letter
        self.topology = Topology.from_settings(settings)
        self._in_flight: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(settings.worker_concurrency)
        self._channel: AbstractChannel | None = None
        self._draining = False
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
            # Delivery tags are per channel: a new channel starts a new register.
            self.acks = acks = AckBatcher(self._ack_linger)
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
                # Stop the flow first so nothing new arrives while we drain, and hand
                # back at once what was prefetched but never started: the grace period
                # is for calls already paid for, not for starting new ones.
                self._draining = True
                with contextlib.suppress(Exception):
                    await queue.cancel(tag)
                await self._drain(self._settings.shutdown_timeout_seconds)
                # Finished work must not come back as redeliveries: the queued acks go
                # out before the channel closes.
                with contextlib.suppress(Exception):
                    await acks.flush()
            else:
                log.warning("broker channel closed; in-flight messages will be redelivered")
                acks.cancel()
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

    # aio-pika already runs each delivery's callback in a task of its own (on top of
    # aiormq's): the work runs in that task rather than in a third one per message.
    # Each delivery keeps the register of the channel it came on: after a reconnect the
    # new channel's tags start again at 1, and a late settlement of an old delivery
    # must not mark a new delivery with the same number as finished.
    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        acks = self.acks
        acks.delivered(message)
        await self._tracked(self._process(message, acks))

    async def _on_dead_letter_copy(self, message: AbstractIncomingMessage) -> None:
        acks = self.acks
        acks.delivered(message)
        await self._tracked(self._record_dead_letter(message, acks))

    async def _tracked(self, work: Awaitable[None]) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._in_flight.add(task)
        try:
            await work
        finally:
            self._in_flight.discard(task)

    async def _record_dead_letter(self, message: AbstractIncomingMessage, acks: AckBatcher) -> None:
        assert self._on_dead_letter is not None
        try:
            info = describe(message)
            job_id = job_id_of(message.body, decode_headers(message.headers))
            await self._on_dead_letter(job_id, info.reason)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._nack(message, acks))
            raise
        except Exception:
            log.exception("recording a dead letter failed; requeueing its copy")
            with contextlib.suppress(Exception):
                await self._nack(message, acks)
            return
        acks.ack(message)

    async def _process(self, message: AbstractIncomingMessage, acks: AckBatcher) -> None:
        started = time.perf_counter()
        try:
            async with self._slots:
                if self._draining:
                    await self._nack(message, acks)
                    return
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
                await self._settle(message, delivery, result, acks)
        except asyncio.CancelledError:
            # Shutdown deadline: hand it back to the broker; nothing was acked.
            with contextlib.suppress(Exception):
                await asyncio.shield(self._nack(message, acks))
            raise
        except Exception:
            log.exception("settling message failed; requeueing", message_id=message.message_id)
            with contextlib.suppress(Exception):
                await self._nack(message, acks)
        finally:
            log.debug("message done", duration_ms=round((time.perf_counter() - started) * 1000))

    async def _nack(self, message: AbstractIncomingMessage, acks: AckBatcher) -> None:
        await acks.settle(message, message.nack(requeue=True))

    async def _settle(
        self,
        message: AbstractIncomingMessage,
        delivery: Delivery,
        result: HandleResult,
        acks: AckBatcher,
    ) -> None:
        if result.outcome is Outcome.ACK:
            acks.ack(message)
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
                await self._nack(message, acks)
                return
            acks.ack(message)
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
            await acks.settle(message, message.reject(requeue=False))
            return
        log.warning("message dead-lettered", reason=result.reason)
        acks.ack(message)
