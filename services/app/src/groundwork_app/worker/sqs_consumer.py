"""SQS consumer: long-polls the work queue, feeds the job handler, maps outcomes to SQS.

Same handler interface as the RabbitMQ consumer and the Pub/Sub push receiver
(``JobHandler.handle(Delivery) -> HandleResult``); what differs is the transport:

- Receive: ``ReceiveMessage`` with long polling (WaitTimeSeconds up to 20 s: one call
  waits for messages and queries every SQS server, where a short poll samples a subset
  and can answer empty while messages exist; SQS Developer Guide, "Amazon SQS short and
  long polling"), up to 10 messages per call, never more than free handler slots.
- Pollers: one per 10 handler slots, but only as many long polls in flight as the queue
  needs. Every ReceiveMessage is a billed request, empty or not, and AWS's advice for
  many polling threads is fewer threads ("Using the appropriate polling mode in Amazon
  SQS"): an idle worker with 1,000 slots would otherwise keep 100 long polls open, 13
  million empty receives a month. ``PollGate`` starts at one poll in flight and doubles
  the allowance each time a poll shows a backlog, keeps it on other non-empty polls,
  and drops back to one on an empty poll or a failure. A backlog is a full batch of 10,
  or a message that had waited BACKLOG_WAIT_SECONDS in the queue (its SentTimestamp):
  a long poll returns "at least one of the available messages, up to the maximum"
  ("Amazon SQS short and long polling"), so a partial batch alone proves nothing either
  way, while a message taken by a poll that was already waiting is milliseconds old.
  Spring Cloud AWS's default ``BackPressureMode.AUTO`` opens every poller on any
  message instead; under a steady trickle (a message every few seconds) that keeps
  every poller in a long poll.
- Attempt: SQS's ``ApproximateReceiveCount`` (1 on the first delivery). It counts every
  receive, so a worker killed mid-job spends an attempt too, like RabbitMQ's quorum
  delivery count.
- Lease: a received message stays invisible for SQS_VISIBILITY_TIMEOUT_SECONDS (longer
  than one delivery's deadline, checked by Settings); while a job runs, the worker extends it
  every third of that with ``ChangeMessageVisibilityBatch`` so a slow LLM call never
  lets the message reappear to another worker ("Amazon SQS visibility timeout":
  extending resets the timeout from the time of the call, up to 12 h per receive).
- ACK: ``DeleteMessageBatch`` (concurrent acks coalesce, 10 per call) only after the
  handler returned, i.e. after the result committed. A delete that fails leaves the
  message to reappear; the ledger turns that redelivery into a no-op.
- RETRY: ``ChangeMessageVisibility`` to this attempt's backoff step (QUEUE_RETRY_DELAYS_MS,
  whole seconds): the message reappears after the delay with the receive count + 1. No
  retry queues: SQS's per-message visibility is the delay.
- DEAD_LETTER: ``SendMessage`` to the DLQ with the reason and attempt attributes, then
  delete. If the send fails the message is left to reappear; the queue's redrive policy
  (maxReceiveCount = QUEUE_DELIVERY_LIMIT + 1) moves it to the DLQ without a reason, as
  it does for a message whose worker dies every time ("Using dead-letter queues in
  Amazon SQS").
- Terminal state: after parking a message in the DLQ the worker calls ``on_dead_letter``
  (``worker/terminal.py``'s recorder) with the job id and reason, as RabbitMQ's
  dead-letter tap does, so a job whose handler gave up without ending it (a handler
  error at the last attempt) ends ``failed``. Messages SQS moves itself (a worker dying
  on every delivery) reach no worker: the relay's deadline reconciler ends those jobs.
- Shutdown: stop polling, let in-flight jobs finish for SHUTDOWN_TIMEOUT_SECONDS (their
  leases keep being extended), hand the rest back with visibility 0 so another worker
  takes them at once. SIGKILL hands nothing back: the lease expires and SQS redelivers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from groundwork_app.adapters.sqs import (
    MAX_BATCH_ENTRIES,
    MESSAGE_ID_ATTRIBUTE,
    SqsCalls,
    batch_failures,
    decode_attributes,
    encode_attributes,
    receive_count,
    sent_at,
    sqs_client,
)
from groundwork_app.batching import Coalescer
from groundwork_app.observability import worker_metrics as m
from groundwork_app.ports import (
    ATTEMPT_HEADER,
    JOB_ID_HEADER,
    REASON_HEADER,
    Delivery,
    HandleResult,
    Outcome,
)
from groundwork_app.settings import Settings

log = structlog.get_logger("groundwork.sqs_consumer")

Handler = Callable[[Delivery], Any]
DeadLetterHook = Callable[[uuid.UUID | None, str], Awaitable[object]]


def job_id_of(delivery: Delivery) -> uuid.UUID | None:
    raw = delivery.headers.get(JOB_ID_HEADER, "")
    if not raw:
        try:
            raw = str(json.loads(delivery.body).get("job_id", ""))
        except (ValueError, AttributeError):
            return None
    try:
        return uuid.UUID(raw)
    except ValueError:
        return None


class DeleteFailedError(RuntimeError):
    pass


class PollGate:
    """How many long polls may be in flight (see the module docstring). Waiters queue in
    order and only as many are woken as may poll: waking all of them on every receive
    would cost every poller a wake-up per receive."""

    def __init__(self, most: int) -> None:
        self.most = most
        self.allowed = 1
        self.polling = 0
        self.peak = 0  # most polls in flight at once (tests, logs)
        self._waiting: deque[asyncio.Future[bool]] = deque()
        self.closed = False

    async def enter(self) -> bool:
        """Wait until this poller may poll; False once the gate is closed."""
        if self.closed:
            return False
        if self.polling < self.allowed and not self._waiting:
            self._take()
            return True
        waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.result():
                self.release()
            elif waiter in self._waiting:
                self._waiting.remove(waiter)
            raise

    def leave(self, received: int, *, backlog: bool) -> None:
        """A poll came back with ``received`` messages; ``backlog``: they had waited."""
        self.polling -= 1
        if received == 0:
            self.allowed = 1
        elif backlog:
            self.allowed = min(self.most, self.allowed * 2)
        self._admit()

    def release(self) -> None:
        """A poller admitted but not polling after all (cancelled, or stopping)."""
        self.polling -= 1
        self._admit()

    def _admit(self) -> None:
        while self._waiting and self.polling < self.allowed:
            waiter = self._waiting.popleft()
            if not waiter.done():
                self._take()
                waiter.set_result(True)

    def close(self) -> None:
        """Stopping: every waiting poller returns at once."""
        self.closed = True
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(False)

    def _take(self) -> None:
        self.polling += 1
        self.peak = max(self.peak, self.polling)


# A message that waited this long in the queue before a receive took it means the polls
# in flight are not keeping up. A job's message waits milliseconds when a long poll is
# already open for it; seconds (well above any clock skew between SQS and the task)
# only when it sat behind others.
BACKLOG_WAIT_SECONDS = 2.0


def _backlog(messages: Sequence[dict[str, Any]]) -> bool:
    """A full batch, or a message that had waited (a long poll may answer with fewer
    messages than are waiting, so a partial batch alone proves nothing)."""
    if len(messages) >= MAX_BATCH_ENTRIES:
        return True
    sent = [t for t in (sent_at(m) for m in messages) if t is not None]
    return bool(sent) and time.time() - min(sent) >= BACKLOG_WAIT_SECONDS


@dataclass
class _Lease:
    receipt: str
    message_id: str
    received_at: float = field(default_factory=time.monotonic)


def retry_delay_seconds(settings: Settings, attempt: int) -> int:
    """The backoff step of ``attempt`` (growing, then staying at the last), in whole
    seconds: visibility timeouts are whole seconds."""
    delays = sorted(set(settings.queue_retry_delays_ms))
    step = delays[min(max(attempt, 1), len(delays)) - 1]
    return max(1, math.ceil(step / 1000))


class SqsConsumer:
    def __init__(
        self,
        settings: Settings,
        handle: Handler,
        *,
        client: Any = None,
        visibility_timeout: int | None = None,
        on_dead_letter: DeadLetterHook | None = None,
    ):
        self._settings = settings
        self._handle = handle
        self._on_dead_letter = on_dead_letter
        self._recording: set[asyncio.Task[None]] = set()
        self._queue_url = settings.sqs_queue_url
        self._dlq_url = settings.sqs_dlq_url
        self.visibility_timeout = visibility_timeout or settings.sqs_visibility_timeout_seconds
        self._calls = SqsCalls(
            client if client is not None else sqs_client(settings),
            threads=4 + math.ceil(settings.worker_concurrency / MAX_BATCH_ENTRIES),
        )
        self._capacity = settings.worker_concurrency
        self._reserved = 0
        self._slot_freed = asyncio.Event()
        self.gate = PollGate(max(1, math.ceil(self._capacity / MAX_BATCH_ENTRIES)))
        self._receive_backoff = 0.5
        self._leases: dict[asyncio.Task[None], _Lease] = {}
        self._deletes: Coalescer[str, None] = Coalescer(
            self._delete_batch, name="sqs_delete", max_batch=MAX_BATCH_ENTRIES, max_concurrent=2
        )
        self.connected = False
        self.extensions = 0  # visibility extensions sent (tests, logs)

    @property
    def in_flight(self) -> int:
        return len(self._leases)

    # ------------------------------------------------------------------ main loop

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set; retry with backoff while SQS is unreachable."""
        extending = asyncio.Event()
        extender = asyncio.create_task(self._extend_leases(extending))
        pollers = [asyncio.create_task(self._poll(stop)) for _ in range(self.gate.most)]
        log.info(
            "consuming",
            queue=self._queue_url,
            pollers=len(pollers),
            visibility_s=self.visibility_timeout,
        )
        try:
            await stop.wait()
            self.gate.close()
            # Drain while the last polls return (each within the wait time): what they
            # bring is handed back at once.
            await asyncio.gather(
                self._drain(self._settings.shutdown_timeout_seconds),
                asyncio.gather(*pollers, return_exceptions=True),
            )
        finally:
            for poller in pollers:
                poller.cancel()
            extending.set()
            await extender
            if self._recording:
                await asyncio.wait(set(self._recording), timeout=5)
            await self._deletes.close()
            self._set_connected(False)
            self._calls.close()

    async def _poll(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            wanted = await self._reserve(MAX_BATCH_ENTRIES, stop)
            if not wanted:
                return
            if not await self.gate.enter():
                self._release_slots(wanted)
                return
            if stop.is_set():
                # Admitted in the same turn as the stop: no new long poll.
                self.gate.release()
                self._release_slots(wanted)
                return
            try:
                response = await self._calls(
                    self._calls.client.receive_message,
                    QueueUrl=self._queue_url,
                    MaxNumberOfMessages=wanted,
                    WaitTimeSeconds=self._settings.sqs_wait_time_seconds,
                    VisibilityTimeout=self.visibility_timeout,
                    MessageAttributeNames=["All"],
                    MessageSystemAttributeNames=["ApproximateReceiveCount", "SentTimestamp"],
                )
            except Exception as exc:
                self._release_slots(wanted)
                self._set_connected(False)
                backoff = self._receive_backoff
                log.warning("SQS receive failed; retrying", error=repr(exc), retry_in_s=backoff)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), backoff)
                # One backoff for all pollers, and the gate left only after it: the next
                # try (by whichever poller) waits for it.
                self._receive_backoff = min(backoff * 2, 15.0)
                self.gate.leave(0, backlog=False)
                continue
            messages = response.get("Messages") or []
            self.gate.leave(len(messages), backlog=_backlog(messages))
            self._receive_backoff = 0.5
            self._set_connected(True)
            self._release_slots(wanted - len(messages))
            if stop.is_set():
                # Stopping: another worker should have these now, not after the lease.
                await self._hand_back([m["ReceiptHandle"] for m in messages])
                self._release_slots(len(messages))
                return
            for message in messages:
                task = asyncio.create_task(self._process(message))
                self._leases[task] = _Lease(
                    message["ReceiptHandle"],
                    decode_attributes(message).get(MESSAGE_ID_ATTRIBUTE, ""),
                )
                task.add_done_callback(self._finished)

    async def _reserve(self, most: int, stop: asyncio.Event) -> int:
        while self._capacity - self._reserved <= 0:
            if stop.is_set():
                return 0
            self._slot_freed.clear()
            waiter = asyncio.ensure_future(self._slot_freed.wait())
            stopping = asyncio.ensure_future(stop.wait())
            await asyncio.wait({waiter, stopping}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            stopping.cancel()
        if stop.is_set():
            return 0
        taken = min(most, self._capacity - self._reserved)
        self._reserved += taken
        return taken

    def _release_slots(self, count: int) -> None:
        if count > 0:
            self._reserved -= count
            self._slot_freed.set()

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._leases.pop(task, None)
        self._release_slots(1)

    def _set_connected(self, value: bool) -> None:
        self.connected = value
        m.BROKER_CONNECTED.set(1 if value else 0)

    async def _drain(self, grace_seconds: float) -> None:
        """Let in-flight jobs finish; cancel (hand back) what is left at the deadline."""
        tasks = set(self._leases)
        if not tasks:
            return
        log.info("draining in-flight messages", count=len(tasks), grace_s=grace_seconds)
        _, pending = await asyncio.wait(tasks, timeout=grace_seconds)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5)
            log.warning("handed back unfinished messages", count=len(pending))

    # ------------------------------------------------------------------ one message

    async def _process(self, message: dict[str, Any]) -> None:
        receipt = message["ReceiptHandle"]
        headers = decode_attributes(message)
        delivery = Delivery(
            message_id=headers.get(MESSAGE_ID_ATTRIBUTE, ""),
            body=str(message.get("Body", "")).encode("utf-8"),
            headers=headers,
            attempt=receive_count(message),
        )
        try:
            if not delivery.message_id:
                result = HandleResult(Outcome.DEAD_LETTER, "malformed message: no message_id")
                m.JOBS_DEAD_LETTERED.labels("malformed").inc()
            else:
                result = await self._handle(delivery)
            await self._settle(receipt, message, delivery, result)
        except asyncio.CancelledError:
            # Shutdown deadline: nothing was deleted; give it straight back.
            with contextlib.suppress(Exception):
                await asyncio.shield(self._hand_back([receipt]))
            raise
        except Exception:
            log.exception(
                "settling message failed; it will reappear", message_id=delivery.message_id
            )
            with contextlib.suppress(Exception):
                await self._set_visibility(
                    receipt, retry_delay_seconds(self._settings, delivery.attempt)
                )

    async def _settle(
        self, receipt: str, message: dict[str, Any], delivery: Delivery, result: HandleResult
    ) -> None:
        if result.outcome is Outcome.ACK:
            await self._deletes.submit(receipt)
            return
        if result.outcome is Outcome.RETRY:
            await self._set_visibility(
                receipt, retry_delay_seconds(self._settings, delivery.attempt)
            )
            return
        headers = dict(delivery.headers)
        headers[REASON_HEADER] = result.reason[:500]
        headers[ATTEMPT_HEADER] = str(delivery.attempt)
        try:
            await self._calls(
                self._calls.client.send_message,
                QueueUrl=self._dlq_url,
                MessageBody=str(message.get("Body", "")),
                MessageAttributes=encode_attributes(
                    headers, delivery.message_id or str(message.get("MessageId", ""))
                ),
            )
        except Exception as exc:
            log.warning("dead-letter send failed; the redrive policy will park it", error=repr(exc))
            await self._set_visibility(
                receipt, retry_delay_seconds(self._settings, delivery.attempt)
            )
            return
        log.warning("message dead-lettered", reason=result.reason)
        if self._on_dead_letter is not None:
            # In the background: the recorder waits for a live lease to lapse, which must
            # not hold this handler slot (RabbitMQ's tap runs apart from handling too).
            task = asyncio.create_task(self._record(job_id_of(delivery), result.reason))
            self._recording.add(task)
            task.add_done_callback(self._recording.discard)
        await self._deletes.submit(receipt)

    async def _record(self, job_id: uuid.UUID | None, reason: str) -> None:
        assert self._on_dead_letter is not None
        try:
            await self._on_dead_letter(job_id, reason)
        except Exception as exc:
            # Parked all the same; the deadline reconciler ends the job instead.
            log.warning("ending the dead-lettered job failed", error=repr(exc))

    # ------------------------------------------------------------------ SQS calls

    async def _set_visibility(self, receipt: str, seconds: int) -> None:
        await self._calls(
            self._calls.client.change_message_visibility,
            QueueUrl=self._queue_url,
            ReceiptHandle=receipt,
            VisibilityTimeout=seconds,
        )

    async def _hand_back(self, receipts: Sequence[str]) -> None:
        await self._change_visibility_batch(receipts, 0)

    async def _change_visibility_batch(self, receipts: Sequence[str], seconds: int) -> None:
        for start in range(0, len(receipts), MAX_BATCH_ENTRIES):
            chunk = receipts[start : start + MAX_BATCH_ENTRIES]
            response = await self._calls(
                self._calls.client.change_message_visibility_batch,
                QueueUrl=self._queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": r, "VisibilityTimeout": seconds}
                    for i, r in enumerate(chunk)
                ],
            )
            if failed := batch_failures(response):
                # Typically the message was deleted meanwhile (its job just finished).
                log.info("visibility change refused", failures=list(failed.values())[:3])

    async def _delete_batch(self, receipts: Sequence[str]) -> list[BaseException | None]:
        response = await self._calls(
            self._calls.client.delete_message_batch,
            QueueUrl=self._queue_url,
            Entries=[{"Id": str(i), "ReceiptHandle": r} for i, r in enumerate(receipts)],
        )
        failed = batch_failures(response)
        return [
            DeleteFailedError(failed[str(i)]) if str(i) in failed else None
            for i in range(len(receipts))
        ]

    async def _extend_leases(self, done: asyncio.Event) -> None:
        """Every third of the visibility timeout, push out again every lease older than
        half of that: a lease received just after a tick is then extended at the next
        one, at most 1.5 thirds (half the timeout) after its receive, while a job that
        ends within half a third costs no extension request."""
        interval = max(1.0, self.visibility_timeout / 3)
        while not done.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), interval)
            if done.is_set():
                return
            now = time.monotonic()
            receipts = [
                lease.receipt
                for lease in list(self._leases.values())
                if now - lease.received_at >= interval / 2
            ]
            if not receipts:
                continue
            try:
                await self._change_visibility_batch(receipts, self.visibility_timeout)
                self.extensions += len(receipts)
            except Exception as exc:
                log.warning("extending message visibility failed", error=repr(exc))
