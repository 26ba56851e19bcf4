"""The relay's queries on the outbox table, and its LISTEN connection.

One claimed batch is one transaction on one connection: ``claim`` takes unsent rows
no other relay holds (``FOR UPDATE SKIP LOCKED``), and the batch's ``mark_sent`` /
``mark_failed`` cover all its rows in one statement each before the commit. Raw
asyncpg on the relay's pooler-safe pool (db/pool.py), no ORM layer.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg

from groundwork_app.db.auth import db_password
from groundwork_app.db.pool import LazyPool
from groundwork_app.db.schema import OUTBOX_CHANNEL
from groundwork_app.db.tls import ssl_context
from groundwork_app.settings import Settings

CLAIM_SQL = (
    "SELECT id, message_id, job_id, payload::text AS payload, headers::text AS headers "
    "FROM outbox WHERE sent_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED"
)
MARK_SENT_SQL = "UPDATE outbox SET sent_at = now() WHERE id = ANY($1::bigint[])"
MARK_FAILED_SQL = (
    "UPDATE outbox SET publish_attempts = publish_attempts + 1, last_error = $2 "
    "WHERE id = ANY($1::bigint[])"
)
BACKLOG_SQL = (
    "SELECT count(*), COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)::float8 "
    "FROM outbox WHERE sent_at IS NULL"
)


@dataclass(frozen=True)
class OutboxRow:
    id: int
    message_id: str
    job_id: str
    payload: Any
    headers: dict[str, object] | None


class ClaimedBatch:
    """Rows held by this relay until the transaction ends."""

    def __init__(self, conn: asyncpg.Connection, rows: list[OutboxRow]):
        self._conn = conn
        self.rows = rows

    async def mark_sent(self, ids: list[int]) -> None:
        await self._conn.execute(MARK_SENT_SQL, ids)

    async def mark_failed(self, ids: list[int], error: str) -> None:
        """Every row counts one attempt and keeps ``error``."""
        await self._conn.execute(MARK_FAILED_SQL, ids, error)


class OutboxRepo:
    def __init__(self, pool: LazyPool, settings: Settings):
        self._pool = pool
        self._settings = settings

    @asynccontextmanager
    async def claim(self, limit: int) -> AsyncIterator[ClaimedBatch]:
        """Up to ``limit`` unsent rows, locked until the block ends (then committed)."""
        pool = await self._pool.get()
        timeout = self._settings.db_pool_timeout_seconds
        async with pool.acquire(timeout=timeout) as conn, conn.transaction():
            rows = await conn.fetch(CLAIM_SQL, limit)
            yield ClaimedBatch(
                conn,
                [
                    OutboxRow(
                        id=r["id"],
                        message_id=str(r["message_id"]),
                        job_id=str(r["job_id"]),
                        payload=json.loads(r["payload"]),
                        headers=json.loads(r["headers"]),
                    )
                    for r in rows
                ],
            )

    async def backlog(self) -> tuple[int, float]:
        """Unsent rows and the age in seconds of the oldest."""
        pool = await self._pool.get()
        async with pool.acquire(timeout=self._settings.db_pool_timeout_seconds) as conn:
            count, age = await conn.fetchrow(BACKLOG_SQL)
        return int(count), float(age)


class OutboxListener:
    """A dedicated direct connection LISTENing on the outbox channel.

    Not from the pool: LISTEN is session state, which a transaction-mode pooler does
    not keep (notifications are then lost and polling carries on alone)."""

    def __init__(self, conn: asyncpg.Connection):
        self._conn = conn

    @classmethod
    async def connect(cls, settings: Settings) -> OutboxListener:
        return cls(
            await asyncpg.connect(
                settings.database_dsn,
                password=db_password(settings),
                ssl=ssl_context(settings),
                timeout=10,
                statement_cache_size=0,
                server_settings={"application_name": f"{settings.service_name}-relay-listen"},
            )
        )

    async def listen(self, on_notify: Callable[[], None]) -> None:
        await self._conn.add_listener(OUTBOX_CHANNEL, lambda *_: on_notify())

    def is_closed(self) -> bool:
        return self._conn.is_closed()

    async def check(self) -> None:
        """Fail promptly when the connection died (a LISTEN alone never notices)."""
        await self._conn.execute("SELECT 1")

    async def close(self) -> None:
        await self._conn.close()
