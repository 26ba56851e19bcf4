"""Group commit: concurrent callers' items coalesced into one batched call.

Under load, one round trip per request to PostgreSQL or Redis costs more in driver and
event-loop overhead (statement encoding, pool acquire/release, timeouts, protocol
parsing) than the server spends on the work itself. ``Coalescer.submit`` queues an
item and waits; up to ``max_concurrent`` flusher tasks drain the queue, ``max_batch``
items at a time, through one ``run_batch`` call each. Nothing waits to fill a batch:
an idle service runs batches of one at once, and batches grow only while earlier ones
are in flight, so latency never pays for batching, unless a caller opts into
``linger`` (the worker's statements, whose few milliseconds are nothing next to an
LLM call).

``run_batch`` returns one outcome per item, in order: a value, or an exception that is
raised to that item's caller only. An exception raised by ``run_batch`` itself fails
every item of that batch.

Observability: a batch serves many requests, so it runs in a span of its own
(``<name>_batch``) linked to each caller's span, and the driver's spans (asyncpg...)
become its children; the ``batch_size{batch="<name>"}`` histogram shows how well
calls coalesce.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from opentelemetry import trace
from prometheus_client import Histogram

_tracer = trace.get_tracer(__name__)
BATCH_SIZE = Histogram(
    "batch_size",
    "Calls served per batched call, by batch (group commit of submissions, rate-limit "
    "checks, the worker's claims and completions).",
    ["batch"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)

T = TypeVar("T")
R = TypeVar("R")

BatchRunner = Callable[[Sequence[T]], Awaitable[Sequence["R | BaseException"]]]


class Coalescer(Generic[T, R]):
    def __init__(
        self,
        run_batch: BatchRunner[T, R],
        *,
        name: str,
        max_batch: int = 64,
        max_concurrent: int = 2,
        linger: float = 0.0,
    ) -> None:
        if max_batch < 1 or max_concurrent < 1:
            raise ValueError("max_batch and max_concurrent must be >= 1")
        if linger < 0:
            raise ValueError("linger must be >= 0")
        # Seconds a flusher waits for more items before running a batch that is not
        # full: for callers whose own latency dwarfs it (the worker's statements around
        # a seconds-long LLM call), where batches of one would cost a round trip and a
        # statement preparation per item. 0: never wait (the API's default).
        self._linger = linger
        self._run_batch = run_batch
        self._span_name = f"{name}_batch"
        self._sizes = BATCH_SIZE.labels(name)
        self._max_batch = max_batch
        self._max_concurrent = max_concurrent
        self._pending: deque[tuple[T, asyncio.Future[R], trace.SpanContext]] = deque()
        self._flushers: set[asyncio.Task[None]] = set()  # strong refs until done
        self._running = 0
        self.batches = 0  # counters for tests and the benchmarks
        self.items = 0

    async def submit(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future, trace.get_current_span().get_span_context()))
        if self._running < self._max_concurrent:
            self._running += 1
            # A batch serves many requests: it must not inherit the log fields and
            # trace span of whichever request happened to start it.
            task = asyncio.create_task(self._flush(), context=contextvars.Context())
            self._flushers.add(task)
            task.add_done_callback(self._flushers.discard)
        return await future

    async def _flush(self) -> None:
        try:
            await self._drain()
        finally:
            # Synchronously with the last emptiness check (no await in between), so an
            # item queued from now on always finds a free flusher slot.
            self._running -= 1

    async def _drain(self) -> None:
        while self._pending:
            if self._linger and len(self._pending) < self._max_batch:
                await asyncio.sleep(self._linger)
            size = min(len(self._pending), self._max_batch)
            batch = [self._pending.popleft() for _ in range(size)]
            # A caller cancelled while queued (client gone, timeout) gives up its slot.
            batch = [entry for entry in batch if not entry[1].done()]
            if not batch:
                continue
            self.batches += 1
            self.items += len(batch)
            self._sizes.observe(len(batch))
            links = [trace.Link(context) for _, _, context in batch if context.is_valid]
            try:
                with _tracer.start_as_current_span(
                    self._span_name, links=links, attributes={"batch.size": len(batch)}
                ):
                    outcomes = await self._run_batch([item for item, _, _ in batch])
                if len(outcomes) != len(batch):
                    raise RuntimeError(
                        f"run_batch returned {len(outcomes)} outcomes for {len(batch)} items"
                    )
            except Exception as exc:
                for _, future, _ in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            except BaseException:
                for _, future, _ in batch:
                    future.cancel()
                raise
            for (_, future, _), outcome in zip(batch, outcomes, strict=True):
                if future.done():
                    continue
                if isinstance(outcome, BaseException):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)

    async def close(self) -> None:
        """Wait for in-flight batches (queued items are still flushed)."""
        while self._flushers:
            await asyncio.gather(*self._flushers, return_exceptions=True)


async def each_alone_on_failure(
    items: Sequence[T],
    run: Callable[[Sequence[T]], Awaitable[Sequence[R]]],
    errors: type[Exception] | tuple[type[Exception], ...],
) -> list[R | BaseException]:
    """``run(items)`` as one batch; when that fails with one of ``errors`` (a batched
    statement commits nothing when it fails), run each item alone so only the bad one
    fails. Any other exception fails the whole batch."""
    try:
        return list(await run(items))
    except errors as exc:
        if len(items) == 1:
            return [exc]
    outcomes: list[R | BaseException] = []
    for item in items:
        try:
            outcomes.extend(await run([item]))
        except errors as exc:
            outcomes.append(exc)
    return outcomes
