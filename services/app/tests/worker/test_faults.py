"""Fault tests with exact accounting, per broker backend.

Real `groundwork-app relay` and `worker` processes, jobs accepted by the real API, an
LLM stand-in that counts every call per prompt and can hold answers back, and faults:
a worker SIGKILLed in the middle of LLM calls and restarted, the relay SIGKILLed and
restarted, duplicate deliveries of messages while two workers race, a poison message,
and an LLM failing the first call of some prompts. Each test asserts:

- accepted = terminal, lost = 0 (every job the API accepted ends succeeded);
- stored twice = 0 (a trigger counts every write of a result: exactly one per job);
- LLM calls = jobs + retries actually needed, per prompt: one, plus one for each
  injected failure, plus one for each call that was in flight in the killed worker.

RabbitMQ runs against the real broker. Pub/Sub runs against the same relay publisher
path as test_pubsub (a gRPC stand-in of the Publisher API via PUBSUB_EMULATOR_HOST) and
this module's push loop in Pub/Sub's place, with its documented push semantics: a 2xx
acks, anything else (or no answer) is redelivered with deliveryAttempt + 1 and backoff,
and after max_delivery_attempts the message goes to the dead-letter push endpoint.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import json
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import pytest
from groundwork_app.settings import QueueBackend, Settings
from groundwork_app.worker.dlq import list_dead_letters
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from groundwork.devenv.servers import free_port

from ..api.conftest import running_api
from .conftest import amqp_channel, make_settings, wait_for
from .test_pubsub import FakePublisherService

pytestmark = pytest.mark.slow

JOBS = 16
# The worker's slots: with every one of them inside a held LLM call, no further call
# can be on its way to the fake LLM when the worker is killed.
WORKER_SLOTS = 4
FAIL_FIRST = {1, 6, 11}  # these prompts' first LLM call answers 500 (one retry each)


class CountingLLM:
    """OpenAI-compatible stand-in: counts calls per prompt; holds 200s while closed."""

    def __init__(self) -> None:
        self.calls: collections.Counter[str] = collections.Counter()
        self.in_flight: collections.Counter[str] = collections.Counter()
        self.fail_first: set[str] = set()
        self.open = threading.Event()
        self.lock = threading.Lock()
        llm = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                prompt = body["messages"][-1]["content"]
                with llm.lock:
                    llm.calls[prompt] += 1
                    fail = prompt in llm.fail_first and llm.calls[prompt] == 1
                    if not fail:
                        llm.in_flight[prompt] += 1
                if fail:
                    self._answer(500, {"error": {"message": "injected"}})
                    return
                try:
                    llm.open.wait(120)
                    content = f"answer to {prompt}"
                    self._answer(200, {"choices": [{"message": {"content": content}}]})
                finally:
                    with llm.lock:
                        llm.in_flight[prompt] -= 1

            def _answer(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the caller was killed

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/v1"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def holding(self) -> collections.Counter[str]:
        with self.lock:
            return +self.in_flight  # drops zero counts

    def close(self) -> None:
        self.open.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def llm() -> Iterator[CountingLLM]:
    fake = CountingLLM()
    yield fake
    fake.close()


@pytest.fixture
async def store_counter(engine: AsyncEngine) -> AsyncIterator[None]:
    """Every write of a result, counted by the database itself."""
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE IF NOT EXISTS fault_stores (job_id uuid)"))
        await conn.execute(text("TRUNCATE fault_stores"))
        await conn.execute(
            text(
                "CREATE OR REPLACE FUNCTION fault_store() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN INSERT INTO fault_stores VALUES (NEW.id); RETURN NEW; END; $$"
            )
        )
        await conn.execute(
            text(
                "CREATE OR REPLACE TRIGGER fault_store AFTER UPDATE OF result ON jobs "
                "FOR EACH ROW WHEN (NEW.result IS NOT NULL) EXECUTE FUNCTION fault_store()"
            )
        )
    yield
    async with engine.begin() as conn:
        await conn.execute(text("DROP TRIGGER IF EXISTS fault_store ON jobs"))
        await conn.execute(text("DROP TABLE IF EXISTS fault_stores"))


class Processes:
    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.running: list[subprocess.Popen[bytes]] = []

    def start(self, role: str, **extra: str) -> subprocess.Popen[bytes]:
        env = {
            **self.env,
            "WORKER_HEALTH_PORT": str(free_port()),
            "HEARTBEAT_FILE": str(self.logs / f"hb-{uuid.uuid4().hex[:6]}"),
            **extra,
        }
        with (self.logs / f"{role}.log").open("ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "groundwork_app.cli", role],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.running.append(proc)
        return proc

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def stop_all(self) -> None:
        for proc in self.running:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.running:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()

    def tail(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-2500:]}"
            for p in sorted(self.logs.glob("*.log"))
        )


def process_env(
    settings: Settings, service_env: dict[str, str], llm: CountingLLM, **extra: str
) -> dict[str, str]:
    return {
        **os.environ,
        **service_env,
        "QUEUE_NAME": settings.queue_name,
        "QUEUE_RETRY_DELAYS_MS": "100,300",
        "QUEUE_DELIVERY_LIMIT": str(settings.queue_delivery_limit),
        "LLM_API_KEY": "test-key",
        "LLM_BASE_URL": llm.url,
        "LLM_MAX_RETRIES": "2",
        "LLM_RETRY_INITIAL_SECONDS": "0.01",
        "LLM_RETRY_MAX_SECONDS": "0.05",
        "LLM_TIMEOUT_SECONDS": "60",
        "CIRCUIT_FAILURE_THRESHOLD": "1000",
        "JOB_LEASE_SECONDS": "2",
        "WORKER_CONCURRENCY": str(WORKER_SLOTS),
        "QUEUE_PREFETCH": str(WORKER_SLOTS),
        "RELAY_POLL_INTERVAL_SECONDS": "0.2",
        "SHUTDOWN_TIMEOUT_SECONDS": "5",
        **extra,
    }


async def accept_jobs(settings: Settings, service_env: dict[str, str]) -> dict[uuid.UUID, str]:
    """JOBS jobs through the real API (202 each); returns job id -> prompt."""
    api_settings = settings.model_copy(update={"rate_limit": "100000/minute"})
    accepted: dict[uuid.UUID, str] = {}
    async with running_api(api_settings) as api:
        for i in range(JOBS):
            token = api.token(f"tenant-{i % 3}")
            prompt = f"fault {i} {uuid.uuid4().hex[:8]}"
            response = await api.client.post(
                "/v1/jobs",
                json={"prompt": prompt},
                headers={"Authorization": f"Bearer {token}"},
            )
            assert response.status_code == 202, response.text
            accepted[uuid.UUID(response.json()["id"])] = prompt
    return accepted


async def wait_until_holding(llm: CountingLLM, procs: Processes) -> None:
    """Until every worker slot is inside a held call: a snapshot taken then is final (a
    fixed pause instead could leave a call sent but not yet read, counted after it)."""

    async def holding() -> bool:
        return sum(llm.holding().values()) >= WORKER_SLOTS

    try:
        await wait_for(holding, 60, what=f"{WORKER_SLOTS} LLM calls in flight")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{procs.tail()}") from None


async def account(
    engine: AsyncEngine,
    accepted: dict[uuid.UUID, str],
    llm: CountingLLM,
    interrupted: collections.Counter[str],
    procs: Processes,
) -> None:
    async def all_terminal() -> bool:
        async with engine.connect() as conn:
            rows = await conn.execute(
                text("SELECT count(*) FROM jobs WHERE status IN ('succeeded', 'failed')")
            )
            return rows.scalar_one() == len(accepted)

    try:
        await wait_for(all_terminal, 90, interval=0.2, what="every job terminal")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{procs.tail()}") from None
    async with engine.connect() as conn:
        rows = (await conn.execute(text("SELECT id, status, result, error FROM jobs"))).all()
        stores = collections.Counter(
            r.job_id for r in (await conn.execute(text("SELECT job_id FROM fault_stores"))).all()
        )
    statuses = collections.Counter(r.status for r in rows)
    assert set(accepted) == {r.id for r in rows}
    # accepted = terminal, lost = 0: every accepted job succeeded.
    assert statuses == {"succeeded": len(accepted)}, [r.error for r in rows if r.error]
    for row in rows:
        assert row.result == f"answer to {accepted[row.id]}"
    # stored twice = 0.
    assert stores == dict.fromkeys(accepted, 1)
    # LLM calls = jobs + retries needed, per prompt.
    expected = collections.Counter(accepted.values())
    expected.update(p for p in accepted.values() if p in llm.fail_first)
    expected.update(interrupted)
    assert llm.calls == expected
    assert sum(llm.calls.values()) == (
        len(accepted) + len(llm.fail_first) + sum(interrupted.values())
    )


async def test_rabbitmq_kills_restarts_duplicates_exact_accounting(
    service_env: dict[str, str],
    clean_db: None,
    engine: AsyncEngine,
    llm: CountingLLM,
    store_counter: None,
    rabbit_ok: object,
    tmp_path: Path,
) -> None:
    settings = make_settings()
    accepted = await accept_jobs(settings, service_env)
    llm.fail_first = {p for p in accepted.values() if int(p.split()[1]) in FAIL_FIRST}
    procs = Processes(process_env(settings, service_env, llm), tmp_path)
    try:
        relay = procs.start("relay")
        first = procs.start("worker")
        await wait_until_holding(llm, procs)
        # The relay dies mid-run and the worker dies inside its LLM calls.
        procs.kill(relay)
        procs.kill(first)
        interrupted = llm.holding()  # every call still held was the killed worker's
        assert interrupted

        # Duplicates (a relay that crashed after publishing, a broker redelivery): a
        # second copy of every message, and one poison message.
        async with engine.connect() as conn:
            outbox = (
                await conn.execute(text("SELECT message_id, payload::text AS p FROM outbox"))
            ).all()
        async with amqp_channel(settings) as channel:
            for row in outbox:
                await channel.default_exchange.publish(
                    aio_pika.Message(row.p.encode(), message_id=str(row.message_id)),
                    routing_key=settings.queue_name,
                )
            await channel.default_exchange.publish(
                aio_pika.Message(b"\x00 poison", message_id="poison-1"),
                routing_key=settings.queue_name,
            )

        procs.start("relay")
        procs.start("worker")
        procs.start("worker")  # two workers race on the duplicates
        llm.open.set()
        await account(engine, accepted, llm, interrupted, procs)
        poison = [d for d in await list_dead_letters(settings) if d.message_id == "poison-1"]
        assert len(poison) == 1 and poison[0].reason.startswith("malformed message")
    finally:
        llm.open.set()
        procs.stop_all()


class PushLoop:
    """Pub/Sub's push delivery of what the relay published, with its semantics."""

    def __init__(self, service: FakePublisherService, worker_url: str, max_attempts: int):
        self.service = service
        self.worker_url = worker_url
        self.max_attempts = max_attempts
        self.dead_lettered: list[str] = []
        self.tasks: set[asyncio.Task[None]] = set()
        self._seen = 0

    def _envelope(self, message: Any, attempt: int) -> bytes:
        return json.dumps(
            {
                "message": {
                    "data": base64.b64encode(message.data).decode(),
                    "messageId": f"ps-{uuid.uuid4().hex[:8]}",
                    "attributes": dict(message.attributes),
                },
                "subscription": "projects/test-project/subscriptions/jobs-push",
                "deliveryAttempt": attempt,
            }
        ).encode()

    async def _deliver(self, client: httpx.AsyncClient, message: Any) -> None:
        for attempt in range(1, self.max_attempts + 1):
            try:
                response = await client.post(
                    f"{self.worker_url}/pubsub/push",
                    content=self._envelope(message, attempt),
                    headers={"Content-Type": "application/json"},
                )
                if 200 <= response.status_code < 300:
                    return
            except httpx.HTTPError:
                pass  # no answer (worker killed or restarting): a nack
            await asyncio.sleep(min(0.25 * 2 ** (attempt - 1), 2.0))
        self.dead_lettered.append(dict(message.attributes).get("message_id", ""))
        while True:  # the dead-letter subscription's push, retried until acked
            try:
                response = await client.post(
                    f"{self.worker_url}/pubsub/dead-letter",
                    content=self._envelope(message, self.max_attempts),
                    headers={"Content-Type": "application/json"},
                )
                if response.status_code == 204:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.5)

    async def run(self, stop: asyncio.Event, duplicate: bool) -> None:
        async with httpx.AsyncClient(timeout=120) as client:
            while not stop.is_set():
                received = self.service.received[self._seen :]
                self._seen += len(received)
                for _topic, message in received:
                    # At-least-once: with `duplicate`, every message is pushed twice at once.
                    for _ in range(2 if duplicate else 1):
                        task = asyncio.create_task(self._deliver(client, message))
                        self.tasks.add(task)
                        task.add_done_callback(self.tasks.discard)
                await asyncio.sleep(0.05)
            for task in list(self.tasks):
                task.cancel()


async def test_pubsub_kills_restarts_duplicates_exact_accounting(
    service_env: dict[str, str],
    clean_db: None,
    engine: AsyncEngine,
    llm: CountingLLM,
    store_counter: None,
    tmp_path: Path,
) -> None:
    settings = make_settings()
    accepted = await accept_jobs(settings, service_env)
    llm.fail_first = {p for p in accepted.values() if int(p.split()[1]) in FAIL_FIRST}
    service = FakePublisherService()
    port = free_port()
    attempts = 10
    env = process_env(
        settings,
        service_env,
        llm,
        QUEUE_BACKEND=QueueBackend.PUBSUB.value,
        PUBSUB_PROJECT_ID="test-project",
        PUBSUB_EMULATOR_HOST=f"127.0.0.1:{service.port}",
        QUEUE_DELIVERY_LIMIT=str(attempts),
        PORT=str(port),
        WORKER_BIND_HOST="127.0.0.1",
    )
    procs = Processes(env, tmp_path)
    pushes = PushLoop(service, f"http://127.0.0.1:{port}", attempts)
    stop = asyncio.Event()
    pushing = asyncio.create_task(pushes.run(stop, duplicate=True))
    try:
        relay = procs.start("relay", PORT=str(free_port()))
        first = procs.start("worker")
        await wait_until_holding(llm, procs)
        procs.kill(relay)
        procs.kill(first)
        interrupted = llm.holding()
        assert interrupted

        procs.start("relay", PORT=str(free_port()))
        procs.start("worker")  # the same port: Cloud Run's replacement instance
        llm.open.set()
        await account(engine, accepted, llm, interrupted, procs)
        assert pushes.dead_lettered == []
    finally:
        llm.open.set()
        stop.set()
        await pushing
        procs.stop_all()
        service.server.stop(None)
