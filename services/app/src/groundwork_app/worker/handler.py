"""The job-handling core: turns one delivered message into a job result, exactly once.

Transport-agnostic: the RabbitMQ consumer and the Pub/Sub push receiver both call
``JobHandler.handle`` and map its ``HandleResult`` onto their own ack/retry/DLQ verbs.

Exactly-once *effect* on top of at-least-once delivery: the processed-message ledger
row is inserted in the same transaction as the job result, guarded by its primary key,
so a redelivery (broker restart, worker crash before the ack, a duplicate publish by
the relay) finds the ledger row and changes nothing, and two racing consumers cannot
both write a result. Before the LLM call the claim takes the job's *lease* (worker
id + expiry, renewed while the job runs): a copy of the message delivered while
another worker holds a live lease answers RETRY without calling the LLM, and a killed
worker's job is taken over once its lease lapses. So a job costs one LLM call per
attempt, under concurrency too. The job row, not the message, says what to ask: the
claim returns the row's prompt, model and client. The queries are in db/worker.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

from opentelemetry import trace

from groundwork_app.adapters.llm import LLMRequestError, LLMUnavailableError, ResilientLLM
from groundwork_app.domain.repository import Claim, Completion, WorkerRepository
from groundwork_app.observability import worker_metrics as m
from groundwork_app.observability.logging import bind_log_context, get_logger, unbind_log_context
from groundwork_app.observability.tracing import extract_trace_context
from groundwork_app.ports import (
    REQUEST_ID_HEADER,
    Delivery,
    HandleResult,
    Outcome,
)
from groundwork_app.settings import LLMFallback, Settings

log = get_logger("groundwork.worker")
tracer = trace.get_tracer("groundwork.worker")

MAX_REASON_CHARS = 500


class AnswerCachePort(Protocol):
    """What the worker needs of ``adapters.cache.AnswerCache`` (never raises)."""

    async def get(self, tenant: str, prompt: str, model: str) -> str | None: ...

    async def set(self, tenant: str, prompt: str, model: str, answer: str) -> object: ...


class MalformedMessageError(ValueError):
    """The body is not a job message: retrying cannot fix it."""


@dataclass(frozen=True)
class JobMessage:
    job_id: uuid.UUID
    prompt: str
    model: str
    metadata: dict[str, Any] = field(default_factory=dict)


def parse_job_message(body: bytes) -> JobMessage:
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedMessageError(f"body is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise MalformedMessageError("body must be a JSON object")
    missing = [key for key in ("job_id", "prompt", "model") if key not in data]
    if missing:
        raise MalformedMessageError(f"missing field(s): {', '.join(missing)}")
    try:
        job_id = uuid.UUID(str(data["job_id"]))
    except ValueError as exc:
        raise MalformedMessageError("job_id is not a UUID") from exc
    prompt, model, metadata = data["prompt"], data["model"], data.get("metadata") or {}
    if not isinstance(prompt, str) or not prompt:
        raise MalformedMessageError("prompt must be a non-empty string")
    if not isinstance(model, str) or not model:
        raise MalformedMessageError("model must be a non-empty string")
    if not isinstance(metadata, dict):
        raise MalformedMessageError("metadata must be an object")
    return JobMessage(job_id, prompt, model, metadata)


def _short(reason: str) -> str:
    return reason[:MAX_REASON_CHARS]


@dataclass(frozen=True)
class _Answer:
    text: str
    cached: bool = False
    degraded: bool = False


class JobHandler:
    def __init__(
        self,
        store: WorkerRepository,
        llm: ResilientLLM,
        cache: AnswerCachePort | None,
        settings: Settings,
    ):
        self._store = store
        self.llm = llm
        self._cache = cache
        self._settings = settings
        # Leases this process holds (job id -> slots holding it) and the one task that
        # renews them all: a renewal task per job (create, sleep timer, cancel) cost
        # more CPU than jobs of a few seconds ever needed renewals.
        self._leases: dict[uuid.UUID, int] = {}
        self._renewer: asyncio.Task[None] | None = None

    async def handle(self, delivery: Delivery) -> HandleResult:
        started = time.perf_counter()
        request_id = delivery.headers.get(REQUEST_ID_HEADER, "")
        bind_log_context(
            request_id=request_id, message_id=delivery.message_id, attempt=delivery.attempt
        )
        m.IN_FLIGHT.inc()
        try:
            with self._span(delivery):
                result = await self._handle_safely(delivery)
            log.info(
                "message handled",
                outcome=result.outcome.value,
                reason=result.reason or None,
                duration_ms=round((time.perf_counter() - started) * 1000, 1),
            )
            return result
        finally:
            m.IN_FLIGHT.dec()
            m.PROCESSING_SECONDS.observe(time.perf_counter() - started)
            unbind_log_context("request_id", "message_id", "attempt", "job_id")

    def _span(self, delivery: Delivery) -> AbstractContextManager[Any]:
        if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
            # Tracing is off (no provider configured, observability/tracing.py): the
            # no-op span, the context extraction and the context switch were ~6 % of
            # the worker's CPU per job (py-spy, docs/performance.md), for nothing.
            return contextlib.nullcontext()
        # Continue the API's trace: the outbox carried its traceparent through the broker.
        context = extract_trace_context(delivery.headers)
        return tracer.start_as_current_span(
            "job.handle",
            context=context,
            kind=trace.SpanKind.CONSUMER,
            attributes={
                "messaging.message.id": delivery.message_id,
                "messaging.delivery_attempt": delivery.attempt,
            },
        )

    async def _handle_safely(self, delivery: Delivery) -> HandleResult:
        try:
            return await self._handle(delivery)
        except Exception as exc:
            # Infrastructure trouble (database down...): nothing was committed, so a
            # retry is safe; at the limit, park it rather than loop forever.
            log.exception("message handling failed")
            m.JOBS_FAILED.labels("error").inc()
            reason = _short(f"handler error: {exc!r}")
            if delivery.attempt >= self._settings.queue_delivery_limit:
                m.JOBS_DEAD_LETTERED.labels("error").inc()
                return HandleResult(Outcome.DEAD_LETTER, reason)
            m.JOBS_RETRIED.inc()
            return HandleResult(Outcome.RETRY, reason)

    async def _handle(self, delivery: Delivery) -> HandleResult:
        try:
            job = parse_job_message(delivery.body)
        except MalformedMessageError as exc:
            m.JOBS_FAILED.labels("malformed").inc()
            m.JOBS_DEAD_LETTERED.labels("malformed").inc()
            return HandleResult(Outcome.DEAD_LETTER, _short(f"malformed message: {exc}"))
        bind_log_context(job_id=str(job.job_id))

        # Ledger check, lease and claim in one statement (db/worker.py): a redelivered
        # message, or a copy racing one that is running, costs this statement and no
        # LLM call.
        claim = await self._store.claim(job.job_id, delivery.message_id)
        if claim.claim is Claim.ALREADY_PROCESSED:
            m.JOBS_PROCESSED.labels("duplicate").inc()
            return HandleResult(Outcome.ACK, "duplicate: already processed")
        if claim.claim is Claim.UNKNOWN_JOB:
            m.JOBS_FAILED.labels("unknown_job").inc()
            m.JOBS_DEAD_LETTERED.labels("unknown_job").inc()
            return HandleResult(Outcome.DEAD_LETTER, f"unknown job {job.job_id}")
        if claim.claim is Claim.ALREADY_SUCCEEDED:
            m.JOBS_PROCESSED.labels("duplicate").inc()
            return HandleResult(Outcome.ACK, "duplicate: job already succeeded")
        if claim.claim is Claim.BUSY:
            # Not counted against the job: the lease holder either finishes it (the
            # retry is then a duplicate) or dies, and its lease lapses within
            # JOB_LEASE_SECONDS, after which the retry takes the job over.
            m.JOBS_PROCESSED.labels("busy").inc()
            return HandleResult(Outcome.RETRY, "busy: another worker holds the job's lease")
        if (claim.prompt, claim.model) != (job.prompt, job.model):
            log.warning("message disagrees with its job row; the row decides")
        work = JobMessage(job.job_id, claim.prompt, claim.model)
        self._hold_lease(job.job_id)
        try:
            return await self._run_claimed(delivery, work, claim.client_id)
        except BaseException as exc:
            # Hand the job back at once rather than when the lease lapses; the lease
            # would free it anyway if this fails too (database down).
            reason = _short(f"handler error: {exc!r}")
            with contextlib.suppress(Exception):
                await asyncio.shield(self._store.mark_retrying(job.job_id, reason))
            raise
        finally:
            self._release_lease(job.job_id)

    def _hold_lease(self, job_id: uuid.UUID) -> None:
        self._leases[job_id] = self._leases.get(job_id, 0) + 1
        if self._renewer is None or self._renewer.done():
            self._renewer = asyncio.create_task(self._keep_leases())

    def _release_lease(self, job_id: uuid.UUID) -> None:
        left = self._leases.pop(job_id) - 1
        if left:
            self._leases[job_id] = left

    async def _keep_leases(self) -> None:
        # Every held lease is renewed at most a third of JOB_LEASE_SECONDS after its
        # claim (a lease taken just after a round waits one interval, as a task of
        # its own did), so each has two intervals of margin before it could lapse.
        interval = self._settings.job_lease_seconds / 3
        while self._leases:
            await asyncio.sleep(interval)
            held = list(self._leases)
            outcomes = await asyncio.gather(
                *(self._store.renew_lease(job_id) for job_id in held), return_exceptions=True
            )
            for outcome in outcomes:
                if isinstance(outcome, Exception):  # the next round may succeed
                    log.warning("lease renewal failed", error=repr(outcome))

    async def _run_claimed(self, delivery: Delivery, job: JobMessage, tenant: str) -> HandleResult:
        cached = await self._cache.get(tenant, job.prompt, job.model) if self._cache else None
        try:
            answer = await self._answer(job, cached)
        except LLMRequestError as exc:
            reason = _short(f"LLM refused the request: {exc}")
            await self._store.mark_failed(job.job_id, reason)
            m.JOBS_FAILED.labels("llm_request").inc()
            m.JOBS_DEAD_LETTERED.labels("llm_request").inc()
            return HandleResult(Outcome.DEAD_LETTER, reason)
        except LLMUnavailableError as exc:
            m.JOBS_FAILED.labels("llm_unavailable").inc()
            if self._settings.llm_fallback is LLMFallback.DEFAULT_ANSWER:
                log.warning("LLM unavailable: answering with the degraded default", error=str(exc))
                answer = _Answer(self._settings.llm_default_answer, degraded=True)
            else:
                reason = _short(f"LLM unavailable: {exc}")
                if delivery.attempt >= self._settings.queue_delivery_limit:
                    await self._store.mark_failed(job.job_id, reason)
                    m.JOBS_DEAD_LETTERED.labels("llm_unavailable").inc()
                    return HandleResult(Outcome.DEAD_LETTER, reason)
                await self._store.mark_retrying(job.job_id, reason)
                m.JOBS_RETRIED.inc()
                return HandleResult(Outcome.RETRY, reason)

        completion = Completion(
            delivery.message_id, job.job_id, answer.text, answer.cached, answer.degraded
        )
        storing = self._store.complete(completion)
        if not answer.cached and not answer.degraded and self._cache is not None:
            # The cache maps a prompt to an answer the LLM gave, not to this job's
            # result, so writing it alongside the commit is safe whichever way the
            # commit goes; ``set`` never raises, so only the commit decides the outcome.
            stored, _ = await asyncio.gather(
                storing, self._cache.set(tenant, job.prompt, job.model, answer.text)
            )
        else:
            stored = await storing
        if not stored:
            m.JOBS_PROCESSED.labels("duplicate").inc()
            return HandleResult(Outcome.ACK, "duplicate: a concurrent delivery won")
        m.JOBS_PROCESSED.labels("degraded" if answer.degraded else "succeeded").inc()
        return HandleResult(Outcome.ACK)

    async def _answer(self, job: JobMessage, cached: str | None) -> _Answer:
        if self._cache is not None:
            m.CACHE_LOOKUPS.labels("hit" if cached is not None else "miss").inc()
            if cached is not None:
                return _Answer(cached, cached=True)
        return _Answer(await self.llm.complete(job.prompt, job.model))
