"""Readiness probe of the message broker.

RabbitMQ: open a TCP (TLS when RABBITMQ_TLS) connection, send the AMQP 0-9-1
protocol header and expect the broker's ``Connection.Start`` method frame. That
proves the broker process answers AMQP without authenticating, opening a channel
or leaving a connection behind, so probing every few seconds costs the broker
nothing. A listener that accepts and never answers fails on the timeout.

Pub/Sub and SQS are managed regional services the API never calls (the relay
publishes), so there is nothing of ours to probe: they report ready with a note.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass

from groundwork_app.settings import QueueBackend, Settings

AMQP_PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"
_FRAME_METHOD = 1


class BrokerProbeError(RuntimeError):
    pass


@dataclass(frozen=True)
class BrokerProbe:
    backend: QueueBackend
    host: str
    port: int
    tls: bool

    @classmethod
    def from_settings(cls, settings: Settings) -> BrokerProbe:
        return cls(
            settings.queue_backend,
            settings.rabbitmq_host,
            settings.rabbitmq_port,
            settings.rabbitmq_tls,
        )

    async def check(self) -> str:
        """Return a short detail on success; raise BrokerProbeError.

        The caller bounds the wait (``asyncio.timeout``): a hung broker never answers.
        """
        if self.backend is not QueueBackend.RABBITMQ:
            return f"{self.backend.value}: managed service, published to by the relay"
        return await self._amqp_handshake()

    async def _amqp_handshake(self) -> str:
        context = ssl.create_default_context() if self.tls else None
        try:
            reader, writer = await asyncio.open_connection(
                self.host, self.port, ssl=context, server_hostname=self.host if context else None
            )
        except OSError as exc:
            raise BrokerProbeError(f"cannot connect: {exc.strerror or exc}") from exc
        try:
            writer.write(AMQP_PROTOCOL_HEADER)
            await writer.drain()
            frame = await reader.readexactly(7)
        except (OSError, asyncio.IncompleteReadError) as exc:
            raise BrokerProbeError(f"no AMQP answer: {type(exc).__name__}") from exc
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
        if frame[0] != _FRAME_METHOD or frame[1:3] != b"\x00\x00":
            raise BrokerProbeError("unexpected reply to the AMQP protocol header")
        return "amqp: connection.start received"
