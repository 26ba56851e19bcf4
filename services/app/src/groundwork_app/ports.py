"""Transport-agnostic message types and the publisher port.

The job-handling core and the outbox relay speak only these types; RabbitMQ
(``adapters.rabbitmq``) and Pub/Sub (``adapters.pubsub``) adapt them to their wire.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

# Header/attribute names carried by every message, whatever the transport.
REQUEST_ID_HEADER = "request_id"
TRACEPARENT_HEADER = "traceparent"
TRACESTATE_HEADER = "tracestate"
# Our own attempt counter: RabbitMQ's x-delivery-count only counts broker redeliveries
# (and is reset when a message goes through a retry queue), so it cannot budget retries.
ATTEMPT_HEADER = "x-groundwork-attempt"
REASON_HEADER = "x-groundwork-reason"
JOB_ID_HEADER = "x-groundwork-job-id"


@dataclass(frozen=True)
class OutboundMessage:
    """One outbox row on its way to the broker."""

    message_id: str
    job_id: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Delivery:
    """One message as the transport delivered it to the worker."""

    message_id: str
    body: bytes
    headers: dict[str, str]
    attempt: int = 1


class Outcome(StrEnum):
    ACK = "ack"  # done (or a duplicate): remove it from the queue
    RETRY = "retry"  # transient failure: deliver again after a delay
    DEAD_LETTER = "dead_letter"  # give up: park it in the DLQ with the reason


@dataclass(frozen=True)
class HandleResult:
    outcome: Outcome
    reason: str = ""


class PublishError(RuntimeError):
    """The broker did not confirm the message: it must stay unsent in the outbox."""


class Publisher(Protocol):
    async def publish(self, message: OutboundMessage) -> None:
        """Return only once the broker has durably accepted the message."""

    async def close(self) -> None: ...
