"""RabbitMQ (Amazon MQ) adapter: connection URL, topology and a confirming publisher.

Topology, declared idempotently by every process at start-up (see docs/message-flow.md)::

    default exchange --"jobs"--> jobs (quorum, x-delivery-limit, DLX jobs.dlx)
    jobs.dlx (direct) --"jobs.dlq"--> jobs.dlq (classic durable: listing it with
        get/requeue must not spend a quorum delivery limit)
    jobs.dlx (direct) --"jobs.dlq"--> jobs.dlq.tap (classic durable: a copy of every
        dead letter, consumed by the workers to end the job, worker/terminal.py, so
        jobs.dlq itself stays intact for `dlq list` / `dlq redrive`)
    default exchange --"jobs.retry.<ms>ms"--> jobs.retry.<ms>ms (quorum, x-message-ttl,
        dead-letters back to "jobs" when the TTL expires; one queue per backoff step
        because Amazon MQ has no delayed-message plugin and a per-queue TTL never
        blocks a short delay behind a long one)

Queue arguments are fixed at declaration: changing QUEUE_DELIVERY_LIMIT or the retry
steps on an existing broker makes the declaration fail with PRECONDITION_FAILED
(then delete the queue when drained, or move the argument to a broker policy).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractRobustConnection

from groundwork_app.ports import OutboundMessage, PublishError
from groundwork_app.settings import Settings

CONNECT_TIMEOUT_SECONDS = 10.0
PUBLISH_TIMEOUT_SECONDS = 10.0


def amqp_url(settings: Settings) -> str:
    """amqps:// when RABBITMQ_TLS (Amazon MQ only listens with TLS, on 5671)."""
    scheme = "amqps" if settings.rabbitmq_tls else "amqp"
    user = quote(settings.rabbitmq_user, safe="")
    password = quote(settings.rabbitmq_password.get_secret_value(), safe="")
    vhost = quote(settings.rabbitmq_vhost, safe="")
    return (
        f"{scheme}://{user}:{password}@{settings.rabbitmq_host}:{settings.rabbitmq_port}/"
        f"{vhost}?heartbeat=30&name={quote(settings.service_name, safe='')}"
    )


@dataclass(frozen=True)
class Topology:
    work_queue: str
    delivery_limit: int
    retry_delays_ms: tuple[int, ...]

    @classmethod
    def from_settings(cls, settings: Settings) -> Topology:
        return cls(
            settings.queue_name,
            settings.queue_delivery_limit,
            tuple(sorted(set(settings.queue_retry_delays_ms))),
        )

    @property
    def dead_letter_exchange(self) -> str:
        return f"{self.work_queue}.dlx"

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.work_queue}.dlq"

    @property
    def dead_letter_tap(self) -> str:
        return f"{self.work_queue}.dlq.tap"

    def retry_queue(self, delay_ms: int) -> str:
        return f"{self.work_queue}.retry.{delay_ms}ms"

    def retry_queue_for_attempt(self, attempt: int) -> str:
        """The delay grows with each attempt and stays at the last step."""
        index = min(max(attempt, 1), len(self.retry_delays_ms)) - 1
        return self.retry_queue(self.retry_delays_ms[index])


async def declare_topology(channel: AbstractChannel, topology: Topology) -> None:
    dlx = await channel.declare_exchange(
        topology.dead_letter_exchange, aio_pika.ExchangeType.DIRECT, durable=True
    )
    dlq = await channel.declare_queue(
        topology.dead_letter_queue, durable=True, arguments={"x-queue-type": "classic"}
    )
    await dlq.bind(dlx, routing_key=topology.dead_letter_queue)
    tap = await channel.declare_queue(
        topology.dead_letter_tap, durable=True, arguments={"x-queue-type": "classic"}
    )
    await tap.bind(dlx, routing_key=topology.dead_letter_queue)
    await channel.declare_queue(
        topology.work_queue,
        durable=True,
        arguments={
            "x-queue-type": "quorum",
            "x-delivery-limit": topology.delivery_limit,
            "x-dead-letter-exchange": topology.dead_letter_exchange,
            "x-dead-letter-routing-key": topology.dead_letter_queue,
        },
    )
    for delay in topology.retry_delays_ms:
        await channel.declare_queue(
            topology.retry_queue(delay),
            durable=True,
            arguments={
                "x-queue-type": "quorum",
                "x-message-ttl": delay,
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": topology.work_queue,
            },
        )


async def connect(settings: Settings, *, robust: bool = False) -> AbstractConnection:
    url = amqp_url(settings)
    if robust:
        conn: AbstractRobustConnection = await aio_pika.connect_robust(
            url, timeout=CONNECT_TIMEOUT_SECONDS
        )
        return conn
    return await aio_pika.connect(url, timeout=CONNECT_TIMEOUT_SECONDS)


def amqp_message(body: bytes, *, message_id: str, headers: dict[str, Any]) -> aio_pika.Message:
    return aio_pika.Message(
        body,
        message_id=message_id,
        headers=headers,
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )


async def publish_confirmed(
    channel: AbstractChannel, message: aio_pika.Message, *, routing_key: str, exchange: str = ""
) -> None:
    """Publish on a confirm channel; return only after the broker's ack."""
    target = (
        channel.default_exchange
        if not exchange
        else await channel.get_exchange(exchange, ensure=False)
    )
    await target.publish(
        message, routing_key=routing_key, mandatory=True, timeout=PUBLISH_TIMEOUT_SECONDS
    )


class RabbitPublisher:
    """The relay's publisher: one confirm channel, reconnected lazily after a failure.

    Deliberately not a robust connection: when the broker is gone the relay must see
    the failure at once (leave the rows unsent and back off), not block on a
    reconnecting channel.
    """

    def __init__(self, settings: Settings):
        self._settings = settings
        self.topology = Topology.from_settings(settings)
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        self._lock = asyncio.Lock()

    @property
    def connected(self) -> bool:
        return self._channel is not None and not self._channel.is_closed

    async def _ensure_channel(self) -> AbstractChannel:
        async with self._lock:
            if self._channel is not None and not self._channel.is_closed:
                return self._channel
            await self._reset()
            self._connection = await connect(self._settings)
            channel = await self._connection.channel(publisher_confirms=True, on_return_raises=True)
            await declare_topology(channel, self.topology)
            self._channel = channel
            return channel

    async def _reset(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and not connection.is_closed:
            # Already broken or not: we reconnect anyway.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), 5)

    async def publish(self, message: OutboundMessage) -> None:
        try:
            channel = await self._ensure_channel()
            await publish_confirmed(
                channel,
                amqp_message(
                    message.body, message_id=message.message_id, headers=dict(message.headers)
                ),
                routing_key=self.topology.work_queue,
            )
        except Exception as exc:
            # Whatever went wrong, the next publish starts from a fresh connection.
            self._channel = None
            raise PublishError(f"RabbitMQ did not confirm {message.message_id}: {exc!r}") from exc

    async def close(self) -> None:
        async with self._lock:
            await self._reset()


def decode_headers(raw: dict[str, Any] | None) -> dict[str, str]:
    """AMQP header values may be bytes, ints or nested tables: keep the scalar ones as str."""
    headers: dict[str, str] = {}
    for key, value in (raw or {}).items():
        if isinstance(value, bytes):
            headers[key] = value.decode("utf-8", "replace")
        elif isinstance(value, str | int | float | bool):
            headers[key] = str(value)
        elif key == "x-death":
            headers[key] = json.dumps(value, default=str)
    return headers
