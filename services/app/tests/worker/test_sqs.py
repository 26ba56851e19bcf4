"""SQS: relay -> queue -> consumer -> result against moto's standalone server on loopback
(it speaks the SQS query/JSON API over HTTP, so boto3 runs its real code path), with the
same behavioural and fault tests as the RabbitMQ consumer.

moto behaviour these tests rely on, as AWS documents it for SQS:
- a received message is invisible for the VisibilityTimeout of the receive and visible
  again afterwards; ChangeMessageVisibility resets that timeout from now;
- ApproximateReceiveCount counts receives;
- with a RedrivePolicy, a receive finding a message already received maxReceiveCount
  times moves it to the DLQ instead ("Using dead-letter queues in Amazon SQS").
moto does not encrypt (KMS attributes are stored only) and does not sample servers on
short polls; the stack tests check the queues' encryption and redrive attributes.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast

import boto3
import pytest
from botocore.exceptions import EndpointConnectionError
from groundwork_app.adapters.llm import SimulatedProvider
from groundwork_app.adapters.sqs import (
    SqsPublisher,
    create_queue_pair,
    encode_attributes,
    redrive_max_receive_count,
    region_of,
    sqs_client,
)
from groundwork_app.db.worker import JobStore
from groundwork_app.ports import Delivery, HandleResult, OutboundMessage
from groundwork_app.relay.outbox import OutboxRelay
from groundwork_app.relay.runner import build_publisher
from groundwork_app.settings import QueueBackend, Settings
from groundwork_app.worker.dlq import list_dead_letters, redrive
from groundwork_app.worker.handler import JobHandler
from groundwork_app.worker.runner import build_handler
from groundwork_app.worker.sqs_consumer import (
    BACKLOG_WAIT_SECONDS,
    PollGate,
    SqsConsumer,
    retry_delay_seconds,
)
from groundwork_app.worker.sqs_dlq import MOVED_BY_SQS
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine

from groundwork.devenv.servers import free_port

from .conftest import (
    insert_job,
    job_row,
    kill_while_processing,
    ledger_count,
    make_settings,
    wait_for,
    wait_job_status,
)

FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture(scope="session")
def sqs_endpoint() -> Iterator[str]:
    """moto's server in a thread on a free loopback port (moto[server] is a dev dependency,
    so this never skips)."""
    from moto.server import ThreadedMotoServer

    saved = {key: os.environ.get(key) for key in FAKE_CREDENTIALS}
    os.environ.update(FAKE_CREDENTIALS)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def client_for(endpoint: str) -> Any:
    return boto3.client("sqs", endpoint_url=endpoint, region_name="us-east-1")


@pytest.fixture
def sqs_settings(settings: Settings, sqs_endpoint: str) -> Settings:
    return sqs_settings_for(settings.queue_name, sqs_endpoint)


def sqs_settings_for(name: str, endpoint: str, **overrides: Any) -> Settings:
    client = client_for(endpoint)
    values: dict[str, Any] = {
        "queue_name": name,
        "queue_backend": QueueBackend.SQS,
        "sqs_endpoint_url": endpoint,
        "sqs_wait_time_seconds": 1,
        "sqs_visibility_timeout_seconds": 30,
    }
    values.update(overrides)
    probe = make_settings(**values, sqs_queue_url="x", sqs_dlq_url="x")
    queue_url, dlq_url = create_queue_pair(
        client,
        name,
        delivery_limit=probe.queue_delivery_limit,
        visibility_timeout=probe.sqs_visibility_timeout_seconds,
    )
    return make_settings(**values, sqs_queue_url=queue_url, sqs_dlq_url=dlq_url)


def depth(settings: Settings, url: str) -> int:
    """Visible + in-flight messages."""
    attrs = client_for(settings.sqs_endpoint_url).get_queue_attributes(
        QueueUrl=url,
        AttributeNames=[
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
        ],
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(
        attrs["ApproximateNumberOfMessagesNotVisible"]
    )


def send_raw(settings: Settings, body: str, attributes: dict[str, Any] | None = None) -> None:
    client_for(settings.sqs_endpoint_url).send_message(
        QueueUrl=settings.sqs_queue_url, MessageBody=body, MessageAttributes=attributes or {}
    )


def send_outbox_message(settings: Settings, job_id: uuid.UUID, message_id: uuid.UUID) -> None:
    body = json.dumps({"job_id": str(job_id), "prompt": "dup", "model": "test-model"})
    send_raw(settings, body, encode_attributes({"request_id": "req-dup"}, str(message_id)))


@asynccontextmanager
async def running(
    settings: Settings,
    handler: JobHandler,
    *,
    relay: bool = True,
    visibility_timeout: int | None = None,
) -> AsyncIterator[SqsConsumer]:
    stop = asyncio.Event()
    consumer = SqsConsumer(settings, handler.handle, visibility_timeout=visibility_timeout)
    tasks = [asyncio.create_task(consumer.run(stop))]
    publisher = SqsPublisher(settings)
    if relay:
        tasks.append(asyncio.create_task(OutboxRelay(publisher, settings).run(stop)))

    async def connected() -> bool:
        return consumer.connected

    try:
        await wait_for(connected, 15, what="consumer polling")
        yield consumer
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        await publisher.close()


@asynccontextmanager
async def consuming(consumer: SqsConsumer) -> AsyncIterator[SqsConsumer]:
    """``consumer`` running until the block ends, then stopped as the worker stops it."""
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        yield consumer
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def publish_outbox(settings: Settings) -> int:
    """The relay's publish step until the outbox is empty: the jobs are in the queue
    before a consumer starts. Returns how many were published."""
    publisher = SqsPublisher(settings)
    relay = OutboxRelay(publisher, settings)
    published = 0
    try:
        while (batch := await relay.publish_batch()).claimed:
            published += batch.published
    finally:
        await relay.close()
        await publisher.close()
    return published


# --- settings and helpers -------------------------------------------------------------


def test_settings_require_both_urls_and_a_visibility_above_the_job_deadline() -> None:
    with pytest.raises(ValidationError, match="SQS_QUEUE_URL and SQS_DLQ_URL"):
        Settings(queue_backend="sqs", sqs_queue_url="https://sqs.us-east-1.amazonaws.com/1/q")
    base = {
        "queue_backend": "sqs",
        "sqs_queue_url": "https://sqs.eu-west-1.amazonaws.com/1/q",
        "sqs_dlq_url": "https://sqs.eu-west-1.amazonaws.com/1/q-dlq",
        "llm_timeout_seconds": 30,
        "llm_max_retries": 3,
        "llm_retry_max_seconds": 5,
    }
    # 30 s x 4 tries + 5 s x 3 backoffs = 135 s
    with pytest.raises(ValidationError, match=r"must exceed one delivery's deadline \(135 s"):
        Settings(**base, sqs_visibility_timeout_seconds=135)
    settings = Settings(**base, sqs_visibility_timeout_seconds=136)
    assert region_of(settings) == "eu-west-1"
    assert region_of(Settings(aws_region="ap-south-1")) == "ap-south-1"


@pytest.mark.usefixtures("settings_env_cleared")
def test_deployed_sqs_settings_need_no_broker_password_nor_push_audience() -> None:
    secret = "s" * 40
    settings = Settings(
        app_env="production",
        queue_backend="sqs",
        sqs_queue_url="https://sqs.us-east-1.amazonaws.com/1/q",
        sqs_dlq_url="https://sqs.us-east-1.amazonaws.com/1/q-dlq",
        jwt_secret=secret,
        webhook_secret=secret,
        db_password=secret,
        redis_password=secret,
    )
    assert settings.rabbitmq_password.get_secret_value() == "guest"  # unused with SQS
    with pytest.raises(ValidationError, match="JWT_SECRET"):
        Settings(**{**settings.model_dump(), "jwt_secret": "changethis"})


def test_retry_delays_grow_in_whole_seconds_and_redrive_matches_rabbitmq() -> None:
    settings = make_settings(queue_retry_delays_ms=[1000, 5000, 30000])
    assert [retry_delay_seconds(settings, a) for a in (1, 2, 3, 9)] == [1, 5, 30, 30]
    assert retry_delay_seconds(make_settings(queue_retry_delays_ms=[100]), 1) == 1
    # RabbitMQ's quorum queue delivers x-delivery-limit + 1 times before dead-lettering.
    assert redrive_max_receive_count(5) == 6


def test_attributes_drop_empty_values_and_keep_within_the_sqs_limit() -> None:
    headers = {"request_id": "r", "tracestate": "", **{f"h{i}": "v" for i in range(20)}}
    attributes = encode_attributes(headers, "m-1")
    assert len(attributes) == 10
    assert attributes["message_id"] == {"DataType": "String", "StringValue": "m-1"}
    assert "tracestate" not in attributes


# --- the pipeline ----------------------------------------------------------------------


async def test_jobs_flow_from_outbox_to_result(
    sqs_settings: Settings, engine: AsyncEngine, store: JobStore
) -> None:
    provider = SimulatedProvider()
    handler = build_handler(sqs_settings, store, provider=provider)
    ids = [await insert_job(engine, sqs_settings, f"prompt {i}") for i in range(12)]
    assert isinstance(build_publisher(sqs_settings), SqsPublisher)
    async with running(sqs_settings, handler):
        for job_id, _ in ids:
            row = await wait_job_status(engine, job_id, "succeeded")
            assert row.result.startswith("[test-model] simulated answer")
            assert row.attempts == 1
    assert provider.calls == 12
    assert await ledger_count(engine) == 12
    assert depth(sqs_settings, sqs_settings.sqs_queue_url) == 0


async def test_publisher_coalesces_sends_into_batches_of_ten(
    sqs_settings: Settings,
) -> None:
    publisher = SqsPublisher(sqs_settings)
    messages = [
        OutboundMessage(
            message_id=f"m-{i}",
            job_id=f"j-{i}",
            body=b'{"job_id": "x"}',
            headers={"request_id": f"r-{i}", "tracestate": ""},
        )
        for i in range(25)
    ]
    try:
        await asyncio.gather(*(publisher.publish(message) for message in messages))
        assert publisher._batches.items == 25
        assert publisher._batches.batches < 25
    finally:
        await publisher.close()
    client = client_for(sqs_settings.sqs_endpoint_url)
    seen: dict[str, str] = {}
    while True:
        got = client.receive_message(
            QueueUrl=sqs_settings.sqs_queue_url,
            MaxNumberOfMessages=10,
            MessageAttributeNames=["All"],
            WaitTimeSeconds=1,
        ).get("Messages", [])
        if not got:
            break
        for message in got:
            attrs = message["MessageAttributes"]
            seen[attrs["message_id"]["StringValue"]] = attrs["request_id"]["StringValue"]
            assert "tracestate" not in attrs
    assert seen == {f"m-{i}": f"r-{i}" for i in range(25)}


async def test_large_messages_are_split_across_batches_within_the_size_limit(
    sqs_settings: Settings,
) -> None:
    """Ten 60 KB messages are 600 KB: more than a 256 KiB batch may carry, so they go in
    several SendMessageBatch calls and every one arrives."""
    publisher = SqsPublisher(sqs_settings)
    body = json.dumps({"job_id": "x", "prompt": "p" * 60_000}).encode()
    try:
        await asyncio.gather(
            *(publisher.publish(OutboundMessage(f"big-{i}", "j", body, {})) for i in range(10))
        )
        assert publisher._batches.batches < 10  # they did coalesce
        assert publisher.send_calls >= 3  # 600 KB / 256 KiB
    finally:
        await publisher.close()
    assert depth(sqs_settings, sqs_settings.sqs_queue_url) == 10


async def test_publish_to_a_missing_queue_raises_publish_error(sqs_settings: Settings) -> None:
    from groundwork_app.ports import PublishError

    gone = make_settings(
        queue_backend="sqs",
        sqs_endpoint_url=sqs_settings.sqs_endpoint_url,
        sqs_queue_url=sqs_settings.sqs_queue_url + "-missing",
        sqs_dlq_url=sqs_settings.sqs_dlq_url,
    )
    publisher = SqsPublisher(gone)
    try:
        with pytest.raises(PublishError, match="SQS did not accept m-1"):
            await publisher.publish(OutboundMessage("m-1", "j-1", b"{}", {}))
    finally:
        await publisher.close()


# --- faults ------------------------------------------------------------------------------


async def test_poison_message_is_dead_lettered_and_consumer_keeps_going(
    sqs_settings: Settings, engine: AsyncEngine, store: JobStore
) -> None:
    handler = build_handler(sqs_settings, store, provider=SimulatedProvider())
    async with running(sqs_settings, handler):
        send_raw(sqs_settings, "{not json", encode_attributes({}, "poison-1"))
        job_id, _ = await insert_job(engine, sqs_settings)
        await wait_job_status(engine, job_id, "succeeded")

        async def parked() -> bool:
            return depth(sqs_settings, sqs_settings.sqs_dlq_url) == 1

        await wait_for(parked, 10, what="poison message in the DLQ")
    assert depth(sqs_settings, sqs_settings.sqs_queue_url) == 0
    letters = await list_dead_letters(sqs_settings)
    assert [(d.message_id, d.attempts) for d in letters] == [("poison-1", 1)]
    assert letters[0].reason.startswith("malformed message: body is not JSON")
    # Listing consumed nothing, and left the message visible for the next look.
    assert depth(sqs_settings, sqs_settings.sqs_dlq_url) == 1
    assert [d.message_id for d in await list_dead_letters(sqs_settings)] == ["poison-1"]


async def test_message_without_id_is_dead_lettered(sqs_settings: Settings, store: JobStore) -> None:
    handler = build_handler(sqs_settings, store, provider=SimulatedProvider())
    body = json.dumps({"job_id": str(uuid.uuid4()), "prompt": "p", "model": "m"})
    async with running(sqs_settings, handler, relay=False):
        send_raw(sqs_settings, body)

        async def parked() -> bool:
            return depth(sqs_settings, sqs_settings.sqs_dlq_url) == 1

        await wait_for(parked, 10, what="id-less message in the DLQ")
    [letter] = await list_dead_letters(sqs_settings)
    assert letter.reason == "malformed message: no message_id"


async def test_duplicate_delivery_is_processed_once(
    sqs_settings: Settings, engine: AsyncEngine, store: JobStore
) -> None:
    """The relay re-published a row (crash after SQS's ack, before its commit): two SQS
    messages, one outbox message id. The later copy finds the ledger row: no second LLM
    call, one result, both messages deleted."""
    provider = SimulatedProvider(latency_ms=50)
    handler = build_handler(sqs_settings, store, provider=provider)
    job_id, message_id = await insert_job(engine, sqs_settings)
    send_outbox_message(sqs_settings, job_id, message_id)
    async with running(sqs_settings, handler, relay=False):
        await wait_job_status(engine, job_id, "succeeded")
        send_outbox_message(sqs_settings, job_id, message_id)

        async def emptied() -> bool:
            return depth(sqs_settings, sqs_settings.sqs_queue_url) == 0

        await wait_for(emptied, 10, what="both copies deleted")
    assert provider.calls == 1
    assert await ledger_count(engine, job_id) == 1
    assert depth(sqs_settings, sqs_settings.sqs_dlq_url) == 0


async def test_concurrent_duplicates_store_one_result(
    sqs_settings: Settings, engine: AsyncEngine, store: JobStore
) -> None:
    """Two copies received in one batch race; the ledger's key lets one result commit."""
    handler = build_handler(sqs_settings, store, provider=SimulatedProvider(latency_ms=50))
    job_id, message_id = await insert_job(engine, sqs_settings)
    send_outbox_message(sqs_settings, job_id, message_id)
    send_outbox_message(sqs_settings, job_id, message_id)
    async with running(sqs_settings, handler, relay=False):
        await wait_job_status(engine, job_id, "succeeded")

        async def emptied() -> bool:
            return depth(sqs_settings, sqs_settings.sqs_queue_url) == 0

        await wait_for(emptied, 10, what="both copies deleted")
    assert await ledger_count(engine, job_id) == 1
    assert (await job_row(engine, job_id)).attempts <= 2


async def test_llm_outage_retries_by_visibility_then_dlq_then_redrive_succeeds(
    sqs_settings: Settings, engine: AsyncEngine, store: JobStore
) -> None:
    assert sqs_settings.queue_delivery_limit == 3
    provider = SimulatedProvider(failure_rate=1.0)
    handler = build_handler(sqs_settings, store, provider=provider)
    job_id, message_id = await insert_job(engine, sqs_settings)
    async with running(sqs_settings, handler):
        row = await wait_job_status(engine, job_id, "failed", timeout=30)
        assert row.error.startswith("LLM unavailable")
        assert row.attempts == 3  # SQS's receive count drove the attempt number

        async def parked() -> bool:
            return depth(sqs_settings, sqs_settings.sqs_dlq_url) == 1

        await wait_for(parked, 10, what="message in the DLQ")

        async def removed() -> bool:
            # The original's delete goes out in the consumer's next delete batch.
            return depth(sqs_settings, sqs_settings.sqs_queue_url) == 0

        await wait_for(removed, 10, what="the original deleted from the work queue")
        letters = await list_dead_letters(sqs_settings)
        assert [(d.message_id, d.job_id, d.attempts) for d in letters] == [
            (str(message_id), str(job_id), 3)
        ]
        assert "LLM unavailable" in letters[0].reason

        provider.failure_rate = 0.0
        handler.llm.breaker.reset()
        moved = await redrive(sqs_settings, limit=10)
        assert [d.message_id for d in moved] == [str(message_id)]
        row = await wait_job_status(engine, job_id, "succeeded")
        assert row.error is None
    assert depth(sqs_settings, sqs_settings.sqs_dlq_url) == 0
    assert await ledger_count(engine, job_id) == 1


async def test_retry_hides_the_message_for_the_backoff_step(
    sqs_settings: Settings, engine: AsyncEngine, store: JobStore
) -> None:
    slow = sqs_settings.model_copy(update={"queue_retry_delays_ms": [60_000]})
    handler = build_handler(slow, store, provider=SimulatedProvider(failure_rate=1.0))
    job_id, _ = await insert_job(engine, slow)
    async with running(slow, handler):
        await wait_for(
            lambda: _status_is(engine, job_id, "queued"), 10, what="job back to queued (retrying)"
        )
        await asyncio.sleep(1.5)
    # Still in the queue (not deleted), invisible for the 60 s step: a receive sees nothing.
    assert depth(slow, slow.sqs_queue_url) == 1
    got = client_for(slow.sqs_endpoint_url).receive_message(
        QueueUrl=slow.sqs_queue_url, WaitTimeSeconds=1
    )
    assert "Messages" not in got
    assert (await job_row(engine, job_id)).attempts == 1


async def _status_is(engine: AsyncEngine, job_id: uuid.UUID, status: str) -> bool:
    row = await job_row(engine, job_id)
    return bool(row.status == status and row.error)


async def test_slow_llm_call_keeps_its_lease_and_is_not_redelivered(
    sqs_settings: Settings, engine: AsyncEngine, store: JobStore
) -> None:
    """A job running 3x the visibility timeout: without the extensions SQS would hand the
    message to the second consumer after 3 s. The database lease would then turn that
    second delivery away, so what proves the SQS lease held is that the message was
    delivered once."""
    slow = sqs_settings.model_copy(update={"llm_timeout_seconds": 20.0})
    provider = SimulatedProvider(latency_ms=9000)
    handler = build_handler(slow, store, provider=provider)
    deliveries: list[Delivery] = []

    class Counted:
        async def handle(self, delivery: Delivery) -> HandleResult:
            deliveries.append(delivery)
            return await handler.handle(delivery)

    counted = cast(JobHandler, Counted())
    job_id, _ = await insert_job(engine, slow)
    async with (
        running(slow, counted, visibility_timeout=3) as first,
        running(slow, counted, relay=False, visibility_timeout=3) as second,
    ):
        row = await wait_job_status(engine, job_id, "succeeded", timeout=40)
        assert first.extensions + second.extensions >= 2
    assert len(deliveries) == 1
    assert provider.calls == 1
    assert row.attempts == 1
    assert await ledger_count(engine, job_id) == 1


async def test_graceful_shutdown_finishes_in_flight_messages(
    sqs_settings: Settings, engine: AsyncEngine, store: JobStore
) -> None:
    handler = build_handler(sqs_settings, store, provider=SimulatedProvider(latency_ms=800))
    job_id, _ = await insert_job(engine, sqs_settings)
    async with running(sqs_settings, handler) as consumer:
        await wait_job_status(engine, job_id, "processing")
        assert consumer.in_flight == 1
    assert (await job_row(engine, job_id)).status == "succeeded"
    assert depth(sqs_settings, sqs_settings.sqs_queue_url) == 0


async def test_shutdown_deadline_hands_unfinished_messages_back_at_once(
    sqs_settings: Settings, engine: AsyncEngine, store: JobStore
) -> None:
    short = sqs_settings.model_copy(
        update={"shutdown_timeout_seconds": 0.3, "llm_timeout_seconds": 20.0}
    )
    handler = build_handler(short, store, provider=SimulatedProvider(latency_ms=10_000))
    job_id, message_id = await insert_job(engine, short)
    async with running(short, handler):
        await wait_job_status(engine, job_id, "processing")
    # Visible again now, not after the 30 s visibility timeout.
    got = client_for(short.sqs_endpoint_url).receive_message(
        QueueUrl=short.sqs_queue_url, MessageAttributeNames=["All"], WaitTimeSeconds=1
    )["Messages"]
    assert got[0]["MessageAttributes"]["message_id"]["StringValue"] == str(message_id)
    assert json.loads(got[0]["Body"])["job_id"] == str(job_id)
    assert await ledger_count(engine, job_id) == 0


async def test_crash_looping_message_is_moved_to_the_dlq_by_the_redrive_policy(
    sqs_settings: Settings,
) -> None:
    """A message whose worker dies every time (never deleted) must not loop forever."""
    send_raw(sqs_settings, "{}", encode_attributes({}, "crash-loop"))
    client = client_for(sqs_settings.sqs_endpoint_url)
    deliveries = 0
    while True:
        got = client.receive_message(
            QueueUrl=sqs_settings.sqs_queue_url, VisibilityTimeout=1, WaitTimeSeconds=2
        ).get("Messages", [])
        if not got:
            break
        deliveries += 1  # ... and the worker dies: the lease simply expires
        assert deliveries <= sqs_settings.queue_delivery_limit + 1
    assert deliveries == sqs_settings.queue_delivery_limit + 1  # as RabbitMQ's quorum queue
    assert depth(sqs_settings, sqs_settings.sqs_dlq_url) == 1
    [letter] = await list_dead_letters(sqs_settings)
    assert letter.message_id == "crash-loop"
    assert letter.reason == MOVED_BY_SQS


async def test_unreachable_sqs_reports_disconnected_and_stops_cleanly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Credentials present, so what fails is the connection (run alone, without the moto
    # fixture, boto3 would otherwise fail earlier with NoCredentialsError).
    for key, value in FAKE_CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    dead = f"http://127.0.0.1:{free_port()}"
    settings = make_settings(
        queue_backend="sqs",
        sqs_endpoint_url=dead,
        sqs_queue_url=f"{dead}/123456789012/q",
        sqs_dlq_url=f"{dead}/123456789012/q-dlq",
        sqs_wait_time_seconds=1,
    )

    async def never(_: Any) -> Any:
        raise AssertionError("nothing can be delivered")

    counted = CountingClient(sqs_client(settings))  # the worker's own client config

    async def refused() -> bool:
        return isinstance(counted.error, EndpointConnectionError)

    async with consuming(SqsConsumer(settings, never, client=counted)) as consumer:
        # boto3 retries a refused connection itself (standard mode, 3 attempts) first.
        await wait_for(refused, 15, what="the receive to fail on the connection")
        await asyncio.sleep(1.0)
        assert consumer.connected is False
        # 100 pollers (1,000 slots), but one shared backoff and one try at a time: a dead
        # endpoint sees 0.5 s, 1 s, ... between tries, not 100 connection attempts each.
        assert counted.peak == 1
        assert counted.receives <= 3


class CountingClient:
    """A real boto3 SQS client that counts ReceiveMessage calls and how many are in flight
    at once: each one is a billed request, empty or not ("Amazon SQS pricing"; "Using the
    appropriate polling mode in Amazon SQS")."""

    def __init__(self, client: Any):
        self._client = client
        self._lock = threading.Lock()
        self.receives = 0
        self.in_flight = 0
        self.peak = 0
        self.error: Exception | None = None

    def receive_message(self, **kwargs: Any) -> Any:
        with self._lock:
            self.receives += 1
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
        try:
            return self._client.receive_message(**kwargs)
        except Exception as exc:
            self.error = exc
            raise
        finally:
            with self._lock:
                self.in_flight -= 1

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


async def test_poll_gate_admits_in_order_only_what_may_poll() -> None:
    gate = PollGate(most=4)
    assert await gate.enter()
    waiting = [asyncio.create_task(gate.enter()) for _ in range(4)]
    await asyncio.sleep(0)
    assert not any(w.done() for w in waiting)
    gate.leave(10, backlog=True)  # a backlog: two polls may run now
    await asyncio.sleep(0)
    assert [w.done() for w in waiting] == [True, True, False, False]
    assert gate.polling == 2 and gate.peak == 2
    gate.leave(3, backlog=False)  # a partial batch of fresh messages: still two
    await asyncio.sleep(0)
    assert [w.done() for w in waiting] == [True, True, True, False]
    gate.leave(0, backlog=False)  # empty: back to one poll, which is still running
    assert gate.allowed == 1 and gate.polling == 1
    # A poller admitted but cancelled before it ran hands its turn to the next in line.
    late = asyncio.create_task(gate.enter())
    await asyncio.sleep(0)
    gate.leave(0, backlog=False)  # admits waiting[3]...
    waiting[3].cancel()  # ...which is cancelled before it runs
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert waiting[3].cancelled()
    assert late.done() and late.result() is True and gate.polling == 1
    # Stopping: whoever still waits returns False at once.
    last = asyncio.create_task(gate.enter())
    await asyncio.sleep(0)
    gate.close()
    assert await last is False
    assert await gate.enter() is False


async def test_an_idle_worker_keeps_one_long_poll_open_not_one_per_ten_slots(
    sqs_settings: Settings, store: JobStore
) -> None:
    """1,000 slots make 100 pollers; on an empty queue only one of them may wait in
    ReceiveMessage (1 s long polls here), so 3 s idle cost about 3 requests, not 300."""
    assert sqs_settings.worker_concurrency == 1000
    counted = CountingClient(client_for(sqs_settings.sqs_endpoint_url))
    consumer = SqsConsumer(sqs_settings, build_handler(sqs_settings, store).handle, client=counted)
    started = time.monotonic()

    async def three_polls() -> bool:
        return counted.receives >= 3

    async with consuming(consumer):
        await wait_for(three_polls, 20, what="three 1 s long polls")
    assert counted.peak == 1
    # One at a time: a poll per second of wait, never 100 per second.
    assert counted.receives <= time.monotonic() - started + 2
    assert consumer.gate.allowed == 1


async def test_a_trickle_of_jobs_is_taken_by_one_long_poll(
    sqs_settings: Settings, engine: AsyncEngine, store: JobStore
) -> None:
    """Jobs arriving one at a time: each long poll returns with the one message that
    arrived ("at least one of the available messages, up to the maximum", "Amazon SQS
    short and long polling"), not a full batch, so the other 99 pollers stay out of SQS.
    Opening them all on any message (Spring Cloud AWS's AUTO) would keep 100 long polls
    open as long as a job arrives every 20 s."""
    handler = build_handler(sqs_settings, store, provider=SimulatedProvider(latency_ms=50))
    counted = CountingClient(client_for(sqs_settings.sqs_endpoint_url))
    async with consuming(SqsConsumer(sqs_settings, handler.handle, client=counted)) as consumer:
        for _ in range(5):
            job_id, _ = await insert_job(engine, sqs_settings)
            assert await publish_outbox(sqs_settings) == 1
            await wait_job_status(engine, job_id, "succeeded", timeout=15)
        assert counted.peak == 1
        assert consumer.gate.allowed == 1


async def test_messages_that_waited_in_the_queue_add_a_poll_though_the_batch_is_partial(
    sqs_settings: Settings, engine: AsyncEngine, store: JobStore
) -> None:
    """Three messages sent 2.5 s before the worker starts: its first poll gets them, a
    partial batch, but they had waited (SentTimestamp), so a second poll joins."""
    handler = build_handler(sqs_settings, store, provider=SimulatedProvider(latency_ms=50))
    jobs = [await insert_job(engine, sqs_settings) for _ in range(3)]
    assert await publish_outbox(sqs_settings) == 3
    await asyncio.sleep(BACKLOG_WAIT_SECONDS + 0.5)
    async with consuming(SqsConsumer(sqs_settings, handler.handle)) as consumer:
        for job_id, _ in jobs:
            await wait_job_status(engine, job_id, "succeeded", timeout=15)
        assert consumer.gate.peak == 2


async def test_a_busy_queue_switches_to_parallel_polls_and_back(
    sqs_settings: Settings, engine: AsyncEngine, store: JobStore
) -> None:
    """A backlog: each full batch of 10 doubles the polls in flight (1, 2, 4: all four
    pollers of 40 slots); once the queue is drained an empty poll brings the worker back
    to one poll at a time."""
    busy = sqs_settings.model_copy(update={"worker_concurrency": 40})
    handler = build_handler(busy, store, provider=SimulatedProvider(latency_ms=1500))
    jobs = [await insert_job(engine, busy) for _ in range(40)]
    await publish_outbox(busy)
    consumer = SqsConsumer(busy, handler.handle)

    async def one_at_a_time() -> bool:
        return consumer.gate.allowed == 1

    async with consuming(consumer):
        for job_id, _ in jobs:
            await wait_job_status(engine, job_id, "succeeded", timeout=30)
        assert consumer.gate.peak >= 2
        await wait_for(one_at_a_time, 15, what="back to one poll at a time")


# --- the real worker process ---------------------------------------------------------------


@pytest.mark.slow
async def test_sigkill_mid_job_redelivers_after_the_lease_and_completes_exactly_once(
    sqs_settings: Settings,
    engine: AsyncEngine,
    service_env: dict[str, str],
    tmp_path: Path,
) -> None:
    job_id, _ = await insert_job(engine, sqs_settings, f"sigkill {uuid.uuid4()}")
    assert await publish_outbox(sqs_settings) == 1
    env = {**os.environ, **service_env, **FAKE_CREDENTIALS}
    env.update(
        QUEUE_BACKEND="sqs",
        QUEUE_NAME=sqs_settings.queue_name,
        SQS_QUEUE_URL=sqs_settings.sqs_queue_url,
        SQS_DLQ_URL=sqs_settings.sqs_dlq_url,
        SQS_ENDPOINT_URL=sqs_settings.sqs_endpoint_url,
        SQS_WAIT_TIME_SECONDS="1",
        # deadline = 3 s x 1 try: a 4 s lease, so the killed job comes back quickly
        LLM_TIMEOUT_SECONDS="3",
        LLM_MAX_RETRIES="0",
        SQS_VISIBILITY_TIMEOUT_SECONDS="4",
        QUEUE_DELIVERY_LIMIT="3",
        WORKER_HEALTH_PORT=str(free_port()),
        HEARTBEAT_FILE=str(tmp_path / "hb"),
        SHUTDOWN_TIMEOUT_SECONDS="10",
    )
    log = tmp_path / "worker.log"

    def start(latency_ms: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "groundwork_app.cli", "worker"],
            env={**env, "LLM_SIMULATED_LATENCY_MS": latency_ms},
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
        )

    first = start("2500")
    await kill_while_processing(first, engine, job_id, log)
    killed_at = time.monotonic()
    assert await ledger_count(engine, job_id) == 0

    second = start("50")
    try:
        row = await wait_job_status(engine, job_id, "succeeded", timeout=60)
        # Not before the killed worker's lease ran out.
        assert time.monotonic() - killed_at >= 2
        assert row.attempts == 2
        assert await ledger_count(engine, job_id) == 1
        second.send_signal(signal.SIGTERM)
        assert second.wait(30) == 0
    finally:
        if second.poll() is None:
            second.kill()
    assert depth(sqs_settings, sqs_settings.sqs_queue_url) == 0


async def test_a_parked_message_ends_its_job_through_the_dead_letter_hook(
    sqs_settings: Settings,
) -> None:
    """Like RabbitMQ's dead-letter tap: after the DLQ send the recorder gets the job id and
    the reason (it ends the job `failed` unless a live lease or success says otherwise)."""
    from groundwork_app.ports import HandleResult, Outcome

    job_id = uuid.uuid4()
    recorded: list[tuple[uuid.UUID | None, str]] = []

    async def give_up(_: Any) -> HandleResult:
        return HandleResult(Outcome.DEAD_LETTER, "handler error: boom")

    async def record(job: uuid.UUID | None, reason: str) -> None:
        recorded.append((job, reason))

    send_raw(
        sqs_settings,
        json.dumps({"job_id": str(job_id), "prompt": "p", "model": "m"}),
        encode_attributes({"x-groundwork-job-id": str(job_id)}, "m-hook"),
    )
    consumer = SqsConsumer(sqs_settings, give_up, on_dead_letter=record)
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))

    async def parked() -> bool:
        return depth(sqs_settings, sqs_settings.sqs_dlq_url) == 1 and bool(recorded)

    try:
        await wait_for(parked, 15, what="message parked and recorded")
    finally:
        stop.set()
        await task
    assert recorded == [(job_id, "handler error: boom")]
    assert depth(sqs_settings, sqs_settings.sqs_queue_url) == 0
