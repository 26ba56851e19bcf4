"""Process wiring for ``groundwork-app relay``: the outbox relay and the reconciler.

Same shutdown contract as the worker (``worker/runner.py``): SIGTERM/SIGINT stop the
loop, the batch in flight finishes, connections close.
"""

from __future__ import annotations

import asyncio
import contextlib
import os

import structlog

from groundwork_app.db.pool import LazyPool
from groundwork_app.observability.logging import configure_logging
from groundwork_app.ports import Publisher
from groundwork_app.process import (
    bind_host,
    freeze_startup_heap,
    install_stop_signals,
    start_metrics_server,
)
from groundwork_app.settings import QueueBackend, Settings
from groundwork_app.worker.health import HealthServer, Heartbeat, heartbeat_path
from groundwork_app.worker.terminal import Reconciler

log = structlog.get_logger("groundwork.runner")


def build_publisher(settings: Settings) -> Publisher:
    if settings.queue_backend is QueueBackend.PUBSUB:
        from groundwork_app.adapters.pubsub import PubSubPublisher

        return PubSubPublisher(settings)
    if settings.queue_backend is QueueBackend.SQS:
        from groundwork_app.adapters.sqs import SqsPublisher

        return SqsPublisher(settings)
    from groundwork_app.adapters.rabbitmq import RabbitPublisher

    return RabbitPublisher(settings)


def relay_health_port(settings: Settings) -> int:
    """$PORT when the platform sets it, else WORKER_HEALTH_PORT.

    On Cloud Run the relay is a service, and a service's revision only becomes ready
    once something listens on $PORT; the health server is the relay's only listener.
    """
    raw = os.environ.get("PORT", "")
    if not raw:
        return settings.worker_health_port
    if not raw.isdigit() or not 1 <= int(raw) <= 65535:
        raise ValueError(f"PORT must be a TCP port number (1-65535), got {raw!r}")
    return int(raw)


async def run_relay(settings: Settings) -> None:
    from groundwork_app.relay.outbox import OutboxRelay

    configure_logging(settings)
    publisher = build_publisher(settings)
    relay = OutboxRelay(publisher, settings)
    heartbeat = Heartbeat(heartbeat_path(settings, "relay"))
    stop = asyncio.Event()
    health = HealthServer(
        lambda: relay.healthy,
        heartbeat,
        host=bind_host(settings),
        port=relay_health_port(settings),
        metrics=settings.metrics_port is None,
        # GCP staging's scheduled relay: Cloud Scheduler's calls keep the CPU allocated
        # (docs/cost-model.md, "GCP staging"); a stop answers held calls at once.
        hold_until=stop,
    )
    # The relay is always on, on every cloud: it runs the safety net that ends jobs
    # stuck past JOB_DEADLINE_SECONDS whatever the transport (worker/terminal.py).
    reconciler_pool = LazyPool(settings, "reconciler")
    reconciler = Reconciler(reconciler_pool, settings)
    install_stop_signals(stop)
    await health.start()
    stop_metrics = start_metrics_server(settings)
    freeze_startup_heap()
    log.info("relay starting", backend=settings.queue_backend.value, listen=settings.relay_listen)
    reconciling = asyncio.create_task(reconciler.run(stop))
    try:
        # Beat once per cycle: a relay stuck in one cycle goes stale and is replaced.
        await relay.run(stop, on_cycle=heartbeat.beat_throttled)
    finally:
        stop.set()
        await reconciling
        await reconciler_pool.close()
        stop_metrics()
        await health.close()
        heartbeat.clear()
        with contextlib.suppress(Exception):
            await publisher.close()
        await relay.close()
        log.info("relay stopped")
