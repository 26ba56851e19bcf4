"""The pipeline baseline: a Celery worker on the same RabbitMQ doing the same work.

Per task: insert the job row, call the LLM (the bench's fake OpenAI-compatible server,
``bench/fake_llm.py``, at BENCH_LLM_URL) with a synchronous ``httpx.Client`` as the
openai SDK does, write the answer. That is the classic Celery design (the producer
publishes, the task owns the row); it has no outbox, no relay, no HTTP API, no
idempotency ledger and no answer cache, i.e. strictly less work than the groundwork
pipeline.

Started by bench/pipeline.py as
``celery -A bench.celery_baseline worker --pool threads|prefork|gevent|eventlet
--concurrency N``. Environment: the service's DB_* and RABBITMQ_* variables,
BENCH_LLM_URL (the fake LLM's base URL), BENCH_CELERY_QUEUE and
BENCH_CELERY_CONCURRENCY (sizes the shared database pool and the HTTP pool).

Under gevent/eventlet Celery monkey-patches the standard library before this module is
imported, so the "thread" running the asyncpg loop is a green thread, and the blocking
waits below (the HTTP call, ``Future.result``) yield to the hub instead of blocking.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import httpx
from celery import Celery

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


class _Shared:
    """One asyncpg pool on one event-loop thread per process, shared by every worker
    thread (the way a Celery app shares a SQLAlchemy/psycopg pool).

    A connection per thread would need 256 PostgreSQL connections for 256 threads;
    the pool keeps the database side equal to the groundwork worker's. The LLM call
    itself blocks the calling thread, as a synchronous client (openai, httpx.Client)
    does: that is what a thread or process pool pays per in-flight call.
    """

    def __init__(self, concurrency: int) -> None:
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, name="bench-db-loop", daemon=True).start()
        self.pool: asyncpg.Pool = self.run(self._create_pool(concurrency))
        # One single-connection client per thread that is calling, handed out from a
        # LIFO queue: O(1) per call. One shared httpx.Client with a connection per
        # thread would walk all its connections on every request (httpcore's pool;
        # the groundwork worker shards its clients for the same reason).
        self.tls = httpx.create_ssl_context()
        self.clients: queue.LifoQueue[httpx.Client] = queue.LifoQueue()
        self.llm_url = os.environ["BENCH_LLM_URL"].rstrip("/") + "/"

    @contextlib.contextmanager
    def http(self) -> Iterator[httpx.Client]:
        try:
            client = self.clients.get_nowait()
        except queue.Empty:
            client = httpx.Client(
                base_url=self.llm_url,
                timeout=httpx.Timeout(30.0, connect=5.0),
                headers={"Authorization": "Bearer bench"},
                verify=self.tls,
                limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
            )
        try:
            yield client
        finally:
            self.clients.put(client)

    @staticmethod
    async def _create_pool(concurrency: int) -> asyncpg.Pool:
        # Inside the loop thread: asyncpg binds a pool to the loop running it.
        return await asyncpg.create_pool(
            host=os.environ["DB_HOST"],
            port=int(os.environ["DB_PORT"]),
            user=os.environ["DB_USER"],
            password=os.environ.get("DB_PASSWORD") or None,
            database=os.environ["DB_NAME"],
            ssl=False,
            statement_cache_size=0,
            min_size=1,
            max_size=max(1, min(concurrency, 20)),
        )

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()


_shared: tuple[int, _Shared] | None = None
_shared_lock = threading.Lock()


def _state() -> _Shared:
    """This process's shared state (a prefork child builds its own after the fork)."""
    global _shared
    pid = os.getpid()
    with _shared_lock:
        if _shared is None or _shared[0] != pid:
            concurrency = int(os.environ.get("BENCH_CELERY_CONCURRENCY", "16"))
            _shared = (pid, _Shared(concurrency))
        return _shared[1]


async def _insert(pool: asyncpg.Pool, ident: uuid.UUID, *args: Any) -> None:
    await pool.execute(_INSERT, ident, "-", *args)


async def _complete(pool: asyncpg.Pool, ident: uuid.UUID, answer: str) -> None:
    await pool.execute(_COMPLETE, ident, answer)


def _call_llm(http: httpx.Client, prompt: str, model: str) -> str:
    body = {"model": model, "messages": [{"role": "user", "content": prompt}]}
    response = http.post("chat/completions", json=body)
    response.raise_for_status()
    return str(response.json()["choices"][0]["message"]["content"])


@app.task(name=TASK_NAME)
def run_job(job_id: str, prompt: str, model: str, submitted_at: float) -> None:
    state = _state()
    ident = uuid.UUID(job_id)
    state.run(_insert(state.pool, ident, prompt, model, job_id, submitted_at))
    # The synchronous LLM call holds this thread/process (a green thread under gevent).
    with state.http() as http:
        answer = _call_llm(http, prompt, model)
    state.run(_complete(state.pool, ident, answer))


def submit(celery: Celery, job_id: str, prompt: str, model: str, submitted_at: float) -> Any:
    return celery.send_task(TASK_NAME, args=[job_id, prompt, model, submitted_at], queue=QUEUE)
