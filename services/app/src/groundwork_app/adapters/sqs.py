"""Amazon SQS adapter: client, message attributes and the relay's batching publisher.

The queue pair (created by ``components/aws/job_queue_sqs.py``)::

    jobs  (standard, SSE-KMS, visibility = SQS_VISIBILITY_TIMEOUT_SECONDS,
           redrive policy: maxReceiveCount = QUEUE_DELIVERY_LIMIT + 1 -> jobs-dlq)
    jobs-dlq (standard, SSE-KMS, 14 days retention)

SQS assigns its own ``MessageId`` per send, so the outbox ``message_id`` travels as
the ``message_id`` message attribute and is the idempotency key on the receiving side
(as on Pub/Sub); a relay re-publish after a crash gets a new SQS id and the same
attribute, and the worker's ledger makes the second copy a no-op.

Limits this module respects (Amazon SQS Developer Guide, "Amazon SQS message quotas"):
at most 10 message attributes per message, 10 entries per batch call, 256 KiB per
message and per batch; attribute values must not be empty.

boto3 is synchronous: every call runs on a small dedicated thread pool so a 20 s long
poll never occupies asyncio's default executor (which also resolves host names).
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import boto3
from botocore.config import Config

from groundwork_app.batching import Coalescer
from groundwork_app.ports import OutboundMessage, PublishError
from groundwork_app.settings import Settings

MESSAGE_ID_ATTRIBUTE = "message_id"
MAX_ATTRIBUTES = 10  # per message
MAX_BATCH_ENTRIES = 10  # SendMessageBatch / DeleteMessageBatch / ChangeMessageVisibilityBatch
MAX_ATTRIBUTE_CHARS = 1024  # ours: headers are short ids; keeps 10 attributes far below 256 KiB
# A batch's entries together must stay within the queue's maximum message size: 256 KiB
# for queues created before SQS raised the limit to 1 MiB (August 2025) and for queues
# whose MaximumMessageSize says so. The lower bound is safe everywhere.
MAX_BATCH_BYTES = 262_144
# ReceiveMessage's HTTP response can take the whole long poll; botocore's read timeout
# must outlast it or every empty poll would look like a network failure.
READ_TIMEOUT_MARGIN_SECONDS = 10
_AWS_QUEUE_HOST = re.compile(r"^https://sqs[.-](?P<region>[a-z]{2}(?:-[a-z]+)+-\d)\.")
DEFAULT_REGION = "us-east-1"

T = TypeVar("T")


def region_of(settings: Settings) -> str:
    """The region in the queue URL (sqs.<region>.amazonaws.com), else AWS_REGION."""
    match = _AWS_QUEUE_HOST.match(settings.sqs_queue_url)
    if match:
        return match["region"]
    return settings.aws_region or DEFAULT_REGION


def sqs_client(settings: Settings) -> Any:
    """A boto3 SQS client; credentials come from the default chain (the ECS task role)."""
    config = Config(
        region_name=region_of(settings),
        connect_timeout=5,
        read_timeout=settings.sqs_wait_time_seconds + READ_TIMEOUT_MARGIN_SECONDS,
        # "standard" retries throttling and 5xx with backoff, a bounded number of times.
        retries={"mode": "standard", "max_attempts": 3},
        max_pool_connections=max(10, settings.worker_concurrency),
    )
    return boto3.session.Session().client(
        "sqs", endpoint_url=settings.sqs_endpoint_url or None, config=config
    )


class SqsCalls:
    """Runs blocking boto3 calls off the event loop, on threads of our own."""

    def __init__(self, client: Any, threads: int = 8):
        self.client = client
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="sqs")

    async def __call__(self, method: Callable[..., T], /, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(method, **kwargs))

    def close(self) -> None:
        # Do not wait: a long poll in flight ends on its own within the wait time.
        self._pool.shutdown(wait=False, cancel_futures=True)


def encode_attributes(headers: Mapping[str, str], message_id: str) -> dict[str, Any]:
    """Headers as String message attributes, ``message_id`` first; empty values dropped
    (SQS rejects them) and at most 10 attributes (SQS's limit)."""
    attributes: dict[str, Any] = {
        MESSAGE_ID_ATTRIBUTE: {"DataType": "String", "StringValue": message_id}
    }
    for key, value in headers.items():
        if len(attributes) >= MAX_ATTRIBUTES:
            break
        if key == MESSAGE_ID_ATTRIBUTE or not value:
            continue
        attributes[key] = {"DataType": "String", "StringValue": value[:MAX_ATTRIBUTE_CHARS]}
    return attributes


def decode_attributes(message: Mapping[str, Any]) -> dict[str, str]:
    """A received message's String/Number attributes as plain strings."""
    headers: dict[str, str] = {}
    for key, value in (message.get("MessageAttributes") or {}).items():
        text = value.get("StringValue")
        if isinstance(text, str):
            headers[key] = text
    return headers


def sent_at(message: Mapping[str, Any]) -> float | None:
    """SQS's SentTimestamp (epoch milliseconds, SQS's clock) in epoch seconds."""
    raw = (message.get("Attributes") or {}).get("SentTimestamp")
    try:
        return int(raw) / 1000 if raw is not None else None
    except (TypeError, ValueError):
        return None


def receive_count(message: Mapping[str, Any]) -> int:
    """SQS's ApproximateReceiveCount: this delivery's attempt number (1 on the first)."""
    raw = (message.get("Attributes") or {}).get("ApproximateReceiveCount", "1")
    try:
        return max(1, int(raw))
    except (TypeError, ValueError):
        return 1


def batch_failures(response: Mapping[str, Any]) -> dict[str, str]:
    """Entry id -> "Code: Message" of a batch call's per-entry failures."""
    return {
        str(f["Id"]): f"{f.get('Code', 'error')}: {f.get('Message', '')}"
        for f in response.get("Failed") or []
    }


class SqsPublisher:
    """The relay's publisher: concurrent publishes coalesce into SendMessageBatch calls.

    ``publish`` returns only once SQS acknowledged that entry (SendMessageBatch reports
    success or failure per entry; a failed entry raises PublishError for that message
    only, so its outbox row stays unsent and is retried).
    """

    def __init__(self, settings: Settings, client: Any = None):
        if not settings.sqs_queue_url:
            raise ValueError("SQS_QUEUE_URL must be set when QUEUE_BACKEND=sqs")
        self._queue_url = settings.sqs_queue_url
        self._calls = SqsCalls(client if client is not None else sqs_client(settings))
        self.send_calls = 0  # SendMessageBatch calls (tests, benchmarks)
        self._batches: Coalescer[OutboundMessage, None] = Coalescer(
            self._send_batch, name="sqs_send", max_batch=MAX_BATCH_ENTRIES, max_concurrent=4
        )

    async def publish(self, message: OutboundMessage) -> None:
        try:
            await self._batches.submit(message)
        except PublishError:
            raise
        except Exception as exc:
            raise PublishError(f"SQS did not accept {message.message_id}: {exc!r}") from exc

    async def _send_batch(self, messages: Sequence[OutboundMessage]) -> list[BaseException | None]:
        entries = [
            {
                "Id": str(index),
                "MessageBody": message.body.decode("utf-8"),
                "MessageAttributes": encode_attributes(message.headers, message.message_id),
            }
            for index, message in enumerate(messages)
        ]
        failed: dict[str, str] = {}
        for chunk in _by_size(entries):
            self.send_calls += 1
            try:
                response = await self._calls(
                    self._calls.client.send_message_batch, QueueUrl=self._queue_url, Entries=chunk
                )
            except Exception as exc:
                # This chunk only: the others may have been accepted already.
                failed.update({entry["Id"]: repr(exc) for entry in chunk})
                continue
            failed.update(batch_failures(response))
        return [
            PublishError(f"SQS did not accept {message.message_id}: {failed[str(index)]}")
            if str(index) in failed
            else None
            for index, message in enumerate(messages)
        ]

    async def close(self) -> None:
        await self._batches.close()
        self._calls.close()


def _entry_bytes(entry: Mapping[str, Any]) -> int:
    """What SQS counts towards the size limit: the body and every attribute's name, type
    and value (SQS Developer Guide, "Amazon SQS message attributes")."""
    size = len(str(entry["MessageBody"]).encode("utf-8"))
    for name, value in entry.get("MessageAttributes", {}).items():
        size += len(name.encode()) + len(value["DataType"]) + len(value["StringValue"].encode())
    return size


def _by_size(entries: Sequence[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    chunks: list[list[dict[str, Any]]] = [[]]
    total = 0
    for entry in entries:
        size = _entry_bytes(entry)
        if chunks[-1] and total + size > MAX_BATCH_BYTES:
            chunks.append([])
            total = 0
        chunks[-1].append(entry)
        total += size
    return chunks


def redrive_max_receive_count(delivery_limit: int) -> int:
    """The redrive policy's maxReceiveCount for QUEUE_DELIVERY_LIMIT.

    SQS moves a message to the DLQ when its receive count would exceed maxReceiveCount
    ("Using dead-letter queues in Amazon SQS"), so a message is delivered that many
    times. A RabbitMQ quorum queue with x-delivery-limit N delivers N + 1 times (the
    first delivery and N redeliveries); + 1 gives SQS the same number, and leaves the
    handler, which dead-letters at attempt N with its reason, in charge of every
    failure it sees.
    """
    return delivery_limit + 1


def create_queue_pair(
    client: Any, name: str, *, delivery_limit: int, visibility_timeout: int
) -> tuple[str, str]:
    """Create ``name`` and ``name``-dlq as the stack does (tests and local runs; the AWS
    stack creates them with components/aws/job_queue_sqs.py). Returns (queue, dlq) URLs."""
    dlq_url = client.create_queue(
        QueueName=f"{name}-dlq",
        Attributes={"MessageRetentionPeriod": "1209600", "SqsManagedSseEnabled": "true"},
    )["QueueUrl"]
    dlq_arn = client.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    queue_url = client.create_queue(
        QueueName=name,
        Attributes={
            "VisibilityTimeout": str(visibility_timeout),
            "ReceiveMessageWaitTimeSeconds": "20",
            "SqsManagedSseEnabled": "true",
            "RedrivePolicy": json.dumps(
                {
                    "deadLetterTargetArn": dlq_arn,
                    "maxReceiveCount": redrive_max_receive_count(delivery_limit),
                }
            ),
        },
    )["QueueUrl"]
    return queue_url, dlq_url
