"""The transactional outbox relay: publishes committed outbox rows to the broker.

One claim = one transaction: ``SELECT ... FOR UPDATE SKIP LOCKED`` takes a batch of
unsent rows that no other relay holds, each row is published and confirmed by the
broker, and only confirmed rows are marked ``sent_at`` before the commit. Several
relays therefore never publish the same row twice while they are healthy; a crash
between the broker's confirm and the commit re-publishes the row later
(at-least-once), which the worker's message-id ledger absorbs.

Its queries are ``db/outbox.py``'s: a batch is BEGIN, one claim, one mark, COMMIT on
one connection, with no liveness ping and no ORM layer, and the marks cover the whole
batch in one statement.

Wake-ups: LISTEN on ``outbox_new`` (a NOTIFY trigger fires per inserting statement) on
a dedicated direct asyncpg connection, with polling every RELAY_POLL_INTERVAL_SECONDS
as the fallback that always works - notifications are lost through a
transaction-mode pooler (PgBouncer, RDS Proxy multiplexing) or while reconnecting.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from groundwork_app.db.outbox import OutboxListener, OutboxRepo
from groundwork_app.db.pool import LazyPool
from groundwork_app.db.schema import OUTBOX_CHANNEL
from groundwork_app.observability import worker_metrics as m
from groundwork_app.ports import JOB_ID_HEADER, OutboundMessage, Publisher
from groundwork_app.settings import Settings

log = structlog.get_logger("groundwork.relay")

METRICS_INTERVAL_SECONDS = 2.0


@dataclass(frozen=True)
class BatchResult:
    claimed: int = 0
    published: int = 0
    failed: int = 0


def outbound_message(
    message_id: str, job_id: str, payload: object, headers: dict[str, object] | None
) -> OutboundMessage:
    carried = {k: str(v) for k, v in (headers or {}).items() if v is not None and v != ""}
    carried[JOB_ID_HEADER] = job_id
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    return OutboundMessage(message_id=message_id, job_id=job_id, body=body, headers=carried)


class OutboxRelay:
    def __init__(self, publisher: Publisher, settings: Settings):
        self._pool = LazyPool(settings, "relay")
        self._outbox = OutboxRepo(self._pool, settings)
        self._publisher = publisher
        self._settings = settings
        self._wake = asyncio.Event()
        self._last_metrics = 0.0
        self.healthy = False  # last cycle reached the database and the broker
        self.listening = False

    async def close(self) -> None:
        """Close the relay's pool (``run`` does it on the way out); idempotent."""
        await self._pool.close()

    async def publish_batch(self) -> BatchResult:
        async with self._outbox.claim(self._settings.relay_batch_size) as batch:
            rows = batch.rows
            if not rows:
                return BatchResult()
            messages = [
                outbound_message(r.message_id, r.job_id, r.payload, r.headers) for r in rows
            ]
            # The first publish probes the broker: when it is down, fail the batch at
            # once instead of timing out once per row while holding the row locks.
            outcomes: list[BaseException | None] = [await self._try_publish(messages[0])]
            if outcomes[0] is None and len(messages) > 1:
                outcomes += await asyncio.gather(*(self._try_publish(msg) for msg in messages[1:]))
            sent = [row.id for row, err in zip(rows, outcomes, strict=False) if err is None]
            failed = [row.id for row in rows[len(outcomes) :]]
            errors = [err for err in outcomes if err is not None]
            failed += [row.id for row, err in zip(rows, outcomes, strict=False) if err is not None]
            if sent:
                await batch.mark_sent(sent)
            if failed:
                # Every unconfirmed row counts one attempt and keeps the first error,
                # so the table itself shows which rows are stuck and why.
                await batch.mark_failed(failed, repr(errors[0])[:500])
        m.RELAY_PUBLISHED.inc(len(sent))
        if failed:
            m.RELAY_PUBLISH_FAILURES.inc(len(failed))
            log.warning(
                "outbox publish failed; rows stay unsent",
                failed=len(failed),
                published=len(sent),
                error=repr(errors[0])[:300],
            )
        return BatchResult(claimed=len(rows), published=len(sent), failed=len(failed))

    async def _try_publish(self, message: OutboundMessage) -> BaseException | None:
        try:
            await self._publisher.publish(message)
        except Exception as exc:
            return exc
        return None

    async def refresh_metrics(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_metrics < METRICS_INTERVAL_SECONDS:
            return
        self._last_metrics = now
        count, age = await self._outbox.backlog()
        m.RELAY_BACKLOG.set(count)
        m.RELAY_OLDEST_AGE_SECONDS.set(float(age))

    async def run(self, stop: asyncio.Event, on_cycle: Callable[[], None] | None = None) -> None:
        listener = (
            asyncio.create_task(self._listen(stop), name="relay-listen")
            if self._settings.relay_listen
            else None
        )
        backoff = 0.0
        try:
            while not stop.is_set():
                if on_cycle is not None:
                    on_cycle()
                try:
                    result = await self.publish_batch()
                    await self.refresh_metrics()
                except Exception:
                    log.exception("outbox relay cycle failed")
                    result = BatchResult(failed=1)
                self.healthy = result.failed == 0
                if result.failed:
                    backoff = min(
                        self._settings.relay_max_backoff_seconds,
                        max(self._settings.relay_poll_interval_seconds / 4, backoff * 2),
                    )
                    await self._sleep(stop, backoff, wake_early=False)
                    continue
                backoff = 0.0
                if result.claimed >= self._settings.relay_batch_size:
                    continue  # more waiting: keep draining
                await self._sleep(stop, self._settings.relay_poll_interval_seconds, wake_early=True)
        finally:
            if listener is not None:
                listener.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await listener
            await self.close()  # the relay's lifetime ends here: release its connections

    async def _sleep(self, stop: asyncio.Event, seconds: float, *, wake_early: bool) -> None:
        waiters = {asyncio.ensure_future(stop.wait())}
        if wake_early:
            waiters.add(asyncio.ensure_future(self._wake.wait()))
        _, pending = await asyncio.wait(
            waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED
        )
        for task in pending:
            task.cancel()
        self._wake.clear()

    async def _listen(self, stop: asyncio.Event) -> None:
        """Keep one LISTEN connection open; on any failure polling carries on alone."""
        settings = self._settings
        while not stop.is_set():
            conn: OutboxListener | None = None
            try:
                conn = await OutboxListener.connect(settings)
                await conn.listen(self._wake.set)
                self.listening = True
                log.info("listening for outbox notifications", channel=OUTBOX_CHANNEL)
                while not stop.is_set() and not conn.is_closed():
                    await asyncio.sleep(5)
                    await conn.check()  # notice a dead connection promptly
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("outbox LISTEN connection lost; polling only", error=repr(exc))
            finally:
                self.listening = False
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(conn.close(), 5)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 5)
