"""Process wiring for ``groundwork-app worker`` (the relay's is ``relay/runner.py``).

Shutdown contract (SIGTERM from ECS / Cloud Run, SIGINT locally): stop taking new
work, let in-flight messages finish for up to SHUTDOWN_TIMEOUT_SECONDS, hand back
(nack + requeue) whatever is still running, close connections. Set the orchestrator's
stop timeout above SHUTDOWN_TIMEOUT_SECONDS (ECS stopTimeout, Cloud Run's 10 s
SIGTERM grace) so the drain is not cut short by SIGKILL - and even then nothing is
lost, only redelivered.
"""

from __future__ import annotations

import asyncio
import gc
import os
from typing import TYPE_CHECKING

import structlog

from groundwork_app.adapters.cache import AnswerCache
from groundwork_app.adapters.llm import LLMProvider, build_llm
from groundwork_app.adapters.redis import create_redis
from groundwork_app.db.worker import STATEMENT_LINGER_SECONDS, JobStore
from groundwork_app.observability.logging import configure_logging
from groundwork_app.observability.tracing import configure_tracing
from groundwork_app.process import (
    bind_host,
    freeze_startup_heap,
    install_stop_signals,
    start_metrics_server,
)
from groundwork_app.settings import QueueBackend, Settings
from groundwork_app.worker.handler import AnswerCachePort, JobHandler
from groundwork_app.worker.health import HealthServer, Heartbeat, heartbeat_path
from groundwork_app.worker.terminal import DeadLetterRecorder

if TYPE_CHECKING:  # both are imported where used: each pulls in its own client library
    from redis.asyncio import Redis

    from groundwork_app.worker.consumer import RabbitConsumer
    from groundwork_app.worker.sqs_consumer import SqsConsumer

log = structlog.get_logger("groundwork.runner")

DEFAULT_PUSH_PORT = 8080


def build_handler(
    settings: Settings,
    store: JobStore,
    *,
    provider: LLMProvider | None = None,
    cache: AnswerCachePort | None = None,
) -> JobHandler:
    return JobHandler(store, build_llm(settings, provider), cache, settings)


# The collector's thresholds for a worker holding thousands of jobs in flight. With
# CPython's defaults (700, 10, 10) a call's objects (task, frames, request, buffers)
# outlive the young generations' collections, which run every few milliseconds at
# hundreds of jobs/s, and reach the oldest generation: full collections then walked
# every in-flight job's objects, ~170 ms each, 20 in a 16,384-job drain, **a third of
# the worker's CPU** (gc.callbacks timing, docs/performance.md). With these, 2 full
# collections in such a drain and ~0.1 of the CPU in the collector (10,000 for the
# first threshold: ~0.15); cyclic garbage is still collected, later (peak RSS 173 MiB
# against 150-165 MiB at c=4096).
WORKER_GC_THRESHOLDS = (50_000, 20, 100)


def tune_gc_for_in_flight_jobs() -> None:
    gc.set_threshold(*WORKER_GC_THRESHOLDS)


def build_cache(redis: Redis, settings: Settings) -> AnswerCache:
    # The answer cache's lookups and writes wait for company as the claims and
    # completions do: with no wait nearly every MGET and pipeline carried one job
    # (redis-py and the Coalescer were ~10 % of the worker's samples, py-spy,
    # docs/performance.md); the API's cache keeps 0 (its latency is the product).
    return AnswerCache(redis, settings, linger=STATEMENT_LINGER_SECONDS)


async def run_worker(settings: Settings) -> None:
    configure_logging(settings)
    configure_tracing(settings, component="worker")
    store = JobStore(settings)
    recorder = DeadLetterRecorder(store.pool, settings)
    redis = create_redis(settings)
    handler = build_handler(settings, store, cache=build_cache(redis, settings))
    heartbeat = Heartbeat(heartbeat_path(settings, "worker"))
    stop = asyncio.Event()
    beating = asyncio.create_task(heartbeat.run(stop))
    freeze_startup_heap()
    tune_gc_for_in_flight_jobs()
    stop_metrics = start_metrics_server(settings)
    try:
        if settings.queue_backend is QueueBackend.PUBSUB:
            await _serve_push(settings, handler, recorder)
        else:
            consumer, backend = _pull_consumer(settings, handler, recorder)
            await _run_pull_consumer(settings, consumer, backend, heartbeat, stop)
    finally:
        stop_metrics()
        stop.set()
        await beating
        heartbeat.clear()
        await handler.llm.aclose()
        await redis.aclose()
        await store.close()
        log.info("worker stopped")


def _pull_consumer(
    settings: Settings, handler: JobHandler, recorder: DeadLetterRecorder
) -> tuple[RabbitConsumer | SqsConsumer, str]:
    """The pulling consumer of the queue backend and its name, imported here so that a
    worker loads only its own backend's client library."""
    if settings.queue_backend is QueueBackend.SQS:
        from groundwork_app.worker.sqs_consumer import SqsConsumer

        return SqsConsumer(settings, handler.handle, on_dead_letter=recorder.record), "sqs"
    from groundwork_app.worker.consumer import RabbitConsumer

    return RabbitConsumer(settings, handler.handle, recorder.record), "rabbitmq"


async def _run_pull_consumer(
    settings: Settings,
    consumer: RabbitConsumer | SqsConsumer,
    backend: str,
    heartbeat: Heartbeat,
    stop: asyncio.Event,
) -> None:
    """A pulling consumer (RabbitMQ, SQS) beside the health server its probes call."""
    install_stop_signals(stop)
    health = HealthServer(
        lambda: consumer.connected,
        heartbeat,
        host=bind_host(settings),
        port=settings.worker_health_port,
        metrics=settings.metrics_port is None,
    )
    await health.start()
    log.info("worker starting", backend=backend, health_port=health.port)
    try:
        await consumer.run(stop)
    finally:
        await health.close()


async def _serve_push(
    settings: Settings, handler: JobHandler, recorder: DeadLetterRecorder
) -> None:
    import uvicorn

    from groundwork_app.adapters.pubsub import PushTokenVerifier
    from groundwork_app.worker.pubsub_push import create_push_app

    verifier = None
    if settings.pubsub_push_audience:
        verifier = PushTokenVerifier(
            settings.pubsub_push_audience,
            settings.pubsub_push_service_account,
            platform_verified=settings.pubsub_push_auth == "cloud-run-iam",
        )
    else:
        # Settings refuse this in staging/production; say it loudly everywhere else.
        log.warning("INSECURE: PUBSUB_PUSH_AUDIENCE is empty, push tokens are not verified")
    app = create_push_app(
        handler.handle,
        verifier,
        record_dead_letter=recorder.record,
        metrics=settings.metrics_port is None,
    )
    port = int(os.environ.get("PORT", DEFAULT_PUSH_PORT))
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=bind_host(settings),
            port=port,
            log_config=None,
            access_log=False,
            # uvicorn's own SIGTERM handling: stop accepting, finish in-flight pushes.
            timeout_graceful_shutdown=int(settings.shutdown_timeout_seconds),
        )
    )
    log.info("worker starting", backend="pubsub", port=port)
    await server.serve()
