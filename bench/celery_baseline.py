"""The pipeline baseline: a Celery worker on the same RabbitMQ doing the same work.

Per task: insert the job row, compute the answer with the service's own
``SimulatedProvider`` (same latency setting, same deterministic answer), write the
result. That is the classic Celery design (the producer publishes, the task owns
the row); it has no outbox, no relay, no HTTP API, no idempotency ledger and no
answer cache, i.e. strictly less work than the groundwork pipeline.

Started by bench/pipeline.py as
``celery -A bench.celery_baseline worker --pool threads|prefork --concurrency N``.
Environment: the service's DB_* and RABBITMQ_* variables, LLM_SIMULATED_LATENCY_MS
and BENCH_CELERY_QUEUE.
"""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from typing import Any

import asyncpg
from celery import Celery
from groundwork_app.adapters.llm import SimulatedProvider

QUEUE = os.environ.get("BENCH_CELERY_QUEUE", "bench-celery")
TASK_NAME = "bench.run_job"


def broker_url(env: dict[str, str] | os._Environ[str] = os.environ) -> str:
    user = env.get("RABBITMQ_USER", "guest")
    password = env.get("RABBITMQ_PASSWORD", "guest")
    host = env.get("RABBITMQ_HOST", "127.0.0.1")
    port = env.get("RABBITMQ_PORT", "5672")
    return f"amqp://{user}:{password}@{host}:{port}//"


def make_app(url: str | None = None) -> Celery:
    celery = Celery("bench", broker=url or broker_url())
    celery.conf.update(
        # The same delivery semantics as the groundwork worker: ack after the work is
        # stored, and a prefetch equal to the worker's concurrency.
        task_acks_late=True,
        worker_prefetch_multiplier=1,
        task_default_queue=QUEUE,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
    )
    return celery


app = make_app()

_INSERT = (
    "INSERT INTO jobs (id, client_id, request_hash, prompt, model, request_id, status, "
    "attempts, created_at) VALUES ($1, 'bench-celery', $2, $3, $4, $5, 'processing', 1, "
    "to_timestamp($6))"
)
_COMPLETE = (
    "UPDATE jobs SET status = 'succeeded', result = $2, updated_at = now(), "
    "completed_at = now() WHERE id = $1"
)

_local = threading.local()


def _state() -> tuple[asyncio.AbstractEventLoop, asyncpg.Connection, SimulatedProvider]:
    """One event loop + asyncpg connection per worker thread (or forked process).

    asyncpg because it is the driver the service uses (no sync PostgreSQL driver is a
    dependency); a persistent per-thread loop keeps its cost to one round trip per
    statement, as a sync driver would be.
    """
    state = getattr(_local, "state", None)
    if state is None:
        loop = asyncio.new_event_loop()
        conn = loop.run_until_complete(
            asyncpg.connect(
                host=os.environ["DB_HOST"],
                port=int(os.environ["DB_PORT"]),
                user=os.environ["DB_USER"],
                password=os.environ.get("DB_PASSWORD") or None,
                database=os.environ["DB_NAME"],
                ssl=False,
                statement_cache_size=0,
            )
        )
        provider = SimulatedProvider(
            latency_ms=int(os.environ.get("LLM_SIMULATED_LATENCY_MS", "0"))
        )
        state = (loop, conn, provider)
        _local.state = state
    return state


@app.task(name=TASK_NAME)
def run_job(job_id: str, prompt: str, model: str, submitted_at: float) -> None:
    loop, conn, provider = _state()
    ident = uuid.UUID(job_id)
    loop.run_until_complete(conn.execute(_INSERT, ident, "-", prompt, model, job_id, submitted_at))
    answer = loop.run_until_complete(provider.complete(prompt, model))
    loop.run_until_complete(conn.execute(_COMPLETE, ident, answer))


def submit(celery: Celery, job_id: str, prompt: str, model: str, submitted_at: float) -> Any:
    return celery.send_task(TASK_NAME, args=[job_id, prompt, model, submitted_at], queue=QUEUE)
