"""Every accepted job reaches a terminal state in bounded time, whatever kills its worker.

A worker ends a job itself (succeeded, or failed with the reason) on the normal path.
Two safety nets cover the rest, both transport-agnostic:

1. ``DeadLetterRecorder``: when the *broker* gives up on a message (RabbitMQ's quorum
   ``x-delivery-limit`` after a crash loop, x-death reason ``delivery_limit``; a
   reject; Pub/Sub forwarding to the dead-letter topic after
   ``max_delivery_attempts``), the transport's dead-letter consumer calls
   ``record(job_id, reason)`` and the job ends ``failed`` with ``error`` starting
   ``dead-lettered:``. A job a worker still holds a live lease on is left to that
   worker until the lease lapses (at most JOB_LEASE_SECONDS), then ended.
   The hook for a transport: call ``record`` once per dead-lettered message, ack the
   dead-letter event only after it returned (RabbitMQ: ``worker/consumer.py``'s
   dead-letter tap; Pub/Sub: ``POST /pubsub/dead-letter`` in ``worker/pubsub_push.py``;
   SQS: the consumer's ``on_dead_letter`` after it parked the message itself in
   ``worker/sqs_consumer.py``; nothing polls the dead-letter queue, so a message SQS's
   redrive policy moves is left to the reconciler below).
2. ``Reconciler`` (run by the relay, which is always on, on every cloud): a job that
   made no progress for JOB_DEADLINE_SECONDS and that no worker holds a live lease on
   is failed with ``error`` starting ``deadline exceeded:``, whatever the transport
   did or failed to report. It also measures the unfinished jobs
   (``jobs_unfinished``, ``jobs_unfinished_oldest_age_seconds``); every job either net
   ends is counted in ``jobs_reconciled_total{reason}``, and the stuck-jobs alert fires
   on it.

Neither net ever overwrites ``succeeded``. A job failed by a net can still succeed
later if a surviving copy of its message is delivered (failures write no ledger row,
as with a DLQ redrive); a succeeded job never changes again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from dataclasses import dataclass
from enum import StrEnum

import structlog

from groundwork_app.db.pool import LazyPool
from groundwork_app.db.terminal import JobEnder
from groundwork_app.observability import worker_metrics as m
from groundwork_app.ports import JOB_ID_HEADER
from groundwork_app.settings import Settings

log = structlog.get_logger("groundwork.terminal")

MAX_REASON_CHARS = 500

SWEEP_LIMIT = 1000


class DeadLetterOutcome(StrEnum):
    ENDED = "ended"  # the job is now failed (dead-lettered)
    ALREADY_ENDED = "already_ended"  # succeeded or failed before: nothing to do
    UNKNOWN_JOB = "unknown_job"  # no job id, or no such job (malformed message)


def job_id_of(body: bytes, headers: dict[str, str]) -> uuid.UUID | None:
    """The job a dead-lettered message was for: our header, else the body's job_id."""
    raw = headers.get(JOB_ID_HEADER, "")
    if not raw:
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            raw = str(json.loads(body).get("job_id", ""))
    try:
        return uuid.UUID(raw)
    except (ValueError, TypeError):
        return None


@dataclass
class DeadLetterRecorder:
    """See the module docstring (1.). One per worker process; shares the worker's pool."""

    pool: LazyPool
    settings: Settings

    async def record(self, job_id: uuid.UUID | None, reason: str) -> DeadLetterOutcome:
        if job_id is None:
            return DeadLetterOutcome.UNKNOWN_JOB
        error = f"dead-lettered: {reason}"[:MAX_REASON_CHARS]
        # A live lease is a worker still on the job: wait for it to end the job or to
        # lapse (renewals stop when the worker dies), at most a few lease periods.
        ender = JobEnder(self.pool, self.settings)
        for _ in range(4):
            row = await ender.end_dead_lettered(job_id, error)
            if row is None:
                return DeadLetterOutcome.UNKNOWN_JOB
            if row.ended:
                m.JOBS_TERMINATED_BY_SWEEP.labels("dead_letter").inc()
                log.warning("job ended by its dead letter", job_id=str(job_id), reason=reason)
                return DeadLetterOutcome.ENDED
            if row.status not in ("queued", "processing"):
                return DeadLetterOutcome.ALREADY_ENDED
            await asyncio.sleep(min(row.lease_left, self.settings.job_lease_seconds) + 0.1)
        # Leased all along: its worker is alive and ends it; the reconciler is the backstop.
        return DeadLetterOutcome.ALREADY_ENDED


class Reconciler:
    """See the module docstring (2.). Run by the relay (``run``) or once (``sweep``)."""

    def __init__(self, pool: LazyPool, settings: Settings):
        self._settings = settings
        self._ender = JobEnder(pool, settings)

    async def sweep(self) -> list[uuid.UUID]:
        """Fail every job past its deadline; refresh the unfinished-jobs gauges."""
        ended, unfinished = await self._ender.end_past_deadline(SWEEP_LIMIT)
        if ended:
            m.JOBS_TERMINATED_BY_SWEEP.labels("deadline").inc(len(ended))
            log.warning("jobs past their deadline failed", count=len(ended))
        if unfinished is not None:
            m.JOBS_UNFINISHED.set(unfinished.count)
            m.JOBS_UNFINISHED_OLDEST_AGE_SECONDS.set(unfinished.oldest_age_seconds)
        return ended

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.sweep()
            except Exception as exc:  # the database is down: the next sweep catches up
                log.warning("reconciler sweep failed", error=repr(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._settings.reconcile_interval_seconds)
