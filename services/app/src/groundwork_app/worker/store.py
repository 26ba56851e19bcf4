"""The worker's queries, on a raw asyncpg pool: as few round trips per job as possible.

A job costs two statements on the happy path, each its own transaction:

1. ``claim``: one statement reads the ledger, marks the job ``processing`` (attempts + 1)
   unless the message is already in the ledger or the job already succeeded, and says
   which of those happened.
2. ``complete``: one statement inserts the ledger row (``ON CONFLICT DO NOTHING`` on its
   primary key) and, only when that insert happened, stores the result. Data-modifying
   CTEs run in the statement's single transaction, so the ledger row and the result
   commit together or not at all, and of two racing deliveries of one message only the
   one whose ledger insert wins writes a result (the loser waits on the key and inserts
   nothing).

The connection is returned to the pool between the two (and never held across the LLM
call): a slow model must not pin a database connection per in-flight job.

Pooler-safe, like the API's pool (db/jobs_repo.py): no session state, so the reset on
release is a no-op (asyncpg still rolls back a connection released mid-transaction);
the prepared-statement cache follows DB_STATEMENT_CACHE_SIZE, 0 by default, which is
what works through PgBouncer / RDS Proxy in transaction mode (asyncpg then uses the
unnamed statement). No liveness ping per checkout: a dead connection fails the
statement, the handler answers RETRY with nothing committed, and the pool replaces the
connection.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from enum import Enum
from typing import Any

import asyncpg

from groundwork_app.db.tls import ssl_context
from groundwork_app.settings import Settings

_CLAIM = """
WITH seen AS (
    SELECT 1 FROM processed_messages WHERE message_id = $2
), claimed AS (
    UPDATE jobs SET status = 'processing', attempts = attempts + 1, updated_at = now()
    WHERE id = $1 AND status <> 'succeeded' AND NOT EXISTS (SELECT 1 FROM seen)
    RETURNING 1
)
SELECT EXISTS (SELECT 1 FROM seen) AS processed,
       EXISTS (SELECT 1 FROM claimed) AS claimed,
       EXISTS (SELECT 1 FROM jobs WHERE id = $1) AS job_exists
"""

_COMPLETE = """
WITH ledger AS (
    INSERT INTO processed_messages (message_id, job_id, outcome) VALUES ($1, $2, $3)
    ON CONFLICT (message_id) DO NOTHING
    RETURNING 1
), stored AS (
    UPDATE jobs SET status = 'succeeded', result = $4, cached = $5, degraded = $6,
                    error = NULL, updated_at = now(), completed_at = now()
    WHERE id = $2 AND EXISTS (SELECT 1 FROM ledger)
    RETURNING 1
)
SELECT EXISTS (SELECT 1 FROM ledger)
"""

# No ledger row on failure: a redrive of the message must be allowed to run it again.
_MARK_RETRYING = """
UPDATE jobs SET status = 'queued', error = $2, updated_at = now()
WHERE id = $1 AND status <> 'succeeded'
"""

_MARK_FAILED = """
UPDATE jobs SET status = 'failed', error = $2, updated_at = now(), completed_at = now()
WHERE id = $1 AND status <> 'succeeded'
"""


class Claim(Enum):
    CLAIMED = "claimed"  # go ahead: the job is now 'processing'
    ALREADY_PROCESSED = "already_processed"  # this message id is in the ledger
    ALREADY_SUCCEEDED = "already_succeeded"  # another message completed the job
    UNKNOWN_JOB = "unknown_job"


@dataclass(frozen=True)
class Completion:
    message_id: str
    job_id: uuid.UUID
    result: str
    cached: bool
    degraded: bool


async def _no_reset(_: asyncpg.Connection) -> None:
    """The worker keeps no session state (and a transaction pooler would not either)."""


async def create_pool(settings: Settings, role: str) -> asyncpg.Pool:
    """A pooler-safe asyncpg pool for the worker or the relay (``role`` names it in
    pg_stat_activity)."""
    s = settings
    return await asyncpg.create_pool(
        host=s.db_host,
        port=s.db_port,
        user=s.db_user,
        password=s.db_password.get_secret_value() or None,
        database=s.db_name,
        ssl=ssl_context(s),
        statement_cache_size=s.db_statement_cache_size,
        timeout=s.db_pool_timeout_seconds,
        command_timeout=max(s.db_pool_timeout_seconds, 30.0),
        min_size=0,
        max_size=s.db_pool_size + s.db_max_overflow,
        max_inactive_connection_lifetime=300.0,
        reset=_no_reset,
        server_settings={"application_name": f"{s.service_name}-{role}"},
    )


class LazyPool:
    """An asyncpg pool opened on first use, so its owner can be built synchronously;
    ``close()`` when done (it reopens if used again)."""

    def __init__(self, settings: Settings, role: str):
        self._settings = settings
        self._role = role
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()

    async def get(self) -> asyncpg.Pool:
        if self._pool is not None:
            return self._pool
        async with self._opening:
            if self._pool is None:
                self._pool = await create_pool(self._settings, self._role)
        return self._pool

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()


class JobStore:
    """The worker's database access (see the module docstring)."""

    def __init__(self, settings: Settings):
        self._settings = settings
        self._pool = LazyPool(settings, "worker")

    async def _fetchrow(self, query: str, *args: Any) -> asyncpg.Record:
        pool = await self._pool.get()
        async with pool.acquire(timeout=self._settings.db_pool_timeout_seconds) as conn:
            row = await conn.fetchrow(query, *args)
        assert row is not None  # both queries always return exactly one row
        return row

    async def _execute(self, query: str, *args: Any) -> None:
        pool = await self._pool.get()
        async with pool.acquire(timeout=self._settings.db_pool_timeout_seconds) as conn:
            await conn.execute(query, *args)

    async def claim(self, job_id: uuid.UUID, message_id: str) -> Claim:
        row = await self._fetchrow(_CLAIM, job_id, message_id)
        if row["processed"]:
            return Claim.ALREADY_PROCESSED
        if row["claimed"]:
            return Claim.CLAIMED
        return Claim.ALREADY_SUCCEEDED if row["job_exists"] else Claim.UNKNOWN_JOB

    async def complete(self, done: Completion) -> bool:
        """Ledger row + result in one transaction; False when the ledger already had it."""
        row = await self._fetchrow(
            _COMPLETE,
            done.message_id,
            done.job_id,
            "degraded" if done.degraded else "succeeded",
            done.result,
            done.cached,
            done.degraded,
        )
        return bool(row[0])

    async def mark_retrying(self, job_id: uuid.UUID, reason: str) -> None:
        await self._execute(_MARK_RETRYING, job_id, reason)

    async def mark_failed(self, job_id: uuid.UUID, reason: str) -> None:
        await self._execute(_MARK_FAILED, job_id, reason)

    async def close(self) -> None:
        await self._pool.close()
