"""Dead-letter queue tooling: list parked messages, redrive them (RabbitMQ here; SQS in
``worker/sqs_dlq.py``, chosen by QUEUE_BACKEND).

``list`` takes messages with ``basic.get`` without acking and hands them all back
(nack + requeue) at the end, so listing never consumes anything; the DLQ is a classic
queue precisely so this costs no quorum delivery-limit. ``redrive`` republishes each
message (confirmed) to the work queue with the attempt header reset to 1, then acks
it off the DLQ: a crash in between duplicates a message, never loses one, and the
worker's ledger makes the duplicate harmless.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aio_pika.abc import AbstractIncomingMessage

from groundwork_app.adapters.rabbitmq import (
    Topology,
    amqp_message,
    connect,
    declare_topology,
    publish_confirmed,
)
from groundwork_app.ports import ATTEMPT_HEADER, JOB_ID_HEADER, REASON_HEADER
from groundwork_app.settings import QueueBackend, Settings

REDRIVE_COUNT_HEADER = "x-groundwork-redrives"
LAST_REASON_HEADER = "x-groundwork-last-reason"
GET_TIMEOUT_SECONDS = 5.0


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class DeadLetter:
    message_id: str
    job_id: str
    reason: str
    attempts: int
    redrives: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "message_id": self.message_id,
            "job_id": self.job_id,
            "reason": self.reason,
            "attempts": self.attempts,
            "redrives": self.redrives,
        }


def describe(message: AbstractIncomingMessage) -> DeadLetter:
    headers: dict[str, Any] = dict(message.headers or {})
    deaths = headers.get("x-death") or []
    first_death: dict[str, Any] = {}
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict):
        first_death = deaths[0]
    reason = _text(headers.get(REASON_HEADER, "")) or (
        f"broker: {_text(first_death.get('reason', 'unknown'))}" if first_death else "unknown"
    )
    attempts = headers.get(ATTEMPT_HEADER) or headers.get("x-delivery-count") or 1
    job_id = _text(headers.get(JOB_ID_HEADER, ""))
    if not job_id:
        try:
            job_id = str(json.loads(message.body).get("job_id", ""))
        except (ValueError, AttributeError):
            job_id = ""
    return DeadLetter(
        message_id=message.message_id or "",
        job_id=job_id,
        reason=reason,
        attempts=int(_text(attempts)) if _text(attempts).isdigit() else 1,
        redrives=int(_text(headers.get(REDRIVE_COUNT_HEADER, 0)) or 0),
    )


async def list_dead_letters(settings: Settings, limit: int = 100) -> list[DeadLetter]:
    if settings.queue_backend is QueueBackend.SQS:
        from groundwork_app.worker import sqs_dlq

        return await sqs_dlq.list_dead_letters(settings, limit)
    topology = Topology.from_settings(settings)
    connection = await connect(settings)
    try:
        channel = await connection.channel()
        await declare_topology(channel, topology)
        queue = await channel.get_queue(topology.dead_letter_queue, ensure=False)
        held: list[AbstractIncomingMessage] = []
        try:
            while len(held) < limit:
                message = await queue.get(no_ack=False, fail=False, timeout=GET_TIMEOUT_SECONDS)
                if message is None:
                    break
                held.append(message)
            return [describe(message) for message in held]
        finally:
            for message in held:
                await message.nack(requeue=True)
    finally:
        await connection.close()


async def redrive(settings: Settings, limit: int | None = None) -> list[DeadLetter]:
    """Move up to ``limit`` (all when None) messages back to the work queue."""
    if settings.queue_backend is QueueBackend.SQS:
        from groundwork_app.worker import sqs_dlq

        return await sqs_dlq.redrive(settings, limit)
    topology = Topology.from_settings(settings)
    connection = await connect(settings)
    moved: list[DeadLetter] = []
    try:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        await declare_topology(channel, topology)
        queue = await channel.get_queue(topology.dead_letter_queue, ensure=False)
        while limit is None or len(moved) < limit:
            message = await queue.get(no_ack=False, fail=False, timeout=GET_TIMEOUT_SECONDS)
            if message is None:
                break
            info = describe(message)
            headers = {
                k: v
                for k, v in (message.headers or {}).items()
                if k
                not in (
                    "x-death",
                    "x-first-death-exchange",
                    "x-first-death-queue",
                    "x-first-death-reason",
                    REASON_HEADER,
                )
            }
            headers[ATTEMPT_HEADER] = 1
            headers[REDRIVE_COUNT_HEADER] = info.redrives + 1
            headers[LAST_REASON_HEADER] = info.reason[:500]
            try:
                await publish_confirmed(
                    channel,
                    amqp_message(message.body, message_id=info.message_id, headers=headers),
                    routing_key=topology.work_queue,
                )
            except Exception:
                await message.nack(requeue=True)
                raise
            await message.ack()
            moved.append(info)
        return moved
    finally:
        await connection.close()
