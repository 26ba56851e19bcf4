"""The API's queries, on a raw asyncpg pool (the hot path skips the ORM layer).

One submission is one statement: a data-modifying CTE inserts the job and its outbox
row together, so they commit or fail as one (a single statement is its own
transaction) in a single round trip; concurrent submissions share that statement
(group commit, see ``groundwork_app.batching``). Idempotency rides on the unique index
``jobs_client_idempotency_key_uq``: ``ON CONFLICT DO NOTHING`` makes a concurrent
duplicate wait for the first insert to commit and then insert nothing (and no outbox
row); the caller then reads the winner with a fresh statement (a fresh snapshot).

Pooler-safe: the pool (db/pool.py) keeps no session state, so no reset query is
needed when a connection is released.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg

from groundwork_app.batching import Coalescer, each_alone_on_failure
from groundwork_app.domain.repository import JobRef, JobView, NewJob, NewOutboxMessage

# One statement for a whole batch of submissions (see groundwork_app.batching): the
# arrays are unnested into rows, so N requests cost one round trip and one commit.
# Rows are inserted in (client_id, idempotency_key) order so two batches racing on the
# same keys take their unique-index locks in the same order and cannot deadlock.
# ON CONFLICT DO NOTHING also skips a key repeated within the batch (the first wins).
_INSERT_JOBS_WITH_OUTBOX = """
WITH input AS (
    SELECT * FROM unnest(
        $1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
        $8::text[], $9::uuid[], $10::text[], $11::text[], $12::text[]
    ) AS t(id, client_id, idempotency_key, request_hash, prompt, model, metadata, request_id,
           message_id, topic, payload, headers)
), job AS (
    INSERT INTO jobs (id, client_id, idempotency_key, request_hash, prompt, model, metadata,
                      request_id)
    SELECT id, client_id, idempotency_key, request_hash, prompt, model, metadata::jsonb,
           request_id
    FROM input ORDER BY client_id, idempotency_key
    ON CONFLICT (client_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
    RETURNING id, status, created_at
), message AS (
    INSERT INTO outbox (message_id, job_id, topic, payload, headers)
    SELECT input.message_id, job.id, input.topic, input.payload::jsonb, input.headers::jsonb
    FROM job JOIN input ON input.id = job.id
)
SELECT id, status, created_at FROM job
"""

_FIND_BY_IDEMPOTENCY_KEY = """
SELECT id, status, request_hash, created_at FROM jobs
WHERE client_id = $1 AND idempotency_key = $2
"""

_GET_JOB = """
SELECT id, status, model, metadata, result, degraded, cached, error, created_at, updated_at,
       completed_at
FROM jobs WHERE id = $1 AND client_id = $2
"""

_GET_PROMPT = "SELECT prompt, model FROM jobs WHERE id = $1 AND client_id = $2"

# Index-only scan of the partial index on unsent rows, capped so a huge backlog
# cannot make a scrape expensive.
_OUTBOX_BACKLOG = (
    "SELECT count(*) FROM (SELECT 1 FROM outbox WHERE sent_at IS NULL LIMIT $1) AS unsent"
)


class DatabaseUnavailableError(RuntimeError):
    """PostgreSQL could not be reached or did not answer in time."""


# Errors meaning "the database is not there right now" (as opposed to a bug or a
# constraint): the API answers 503 with Retry-After for these.
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.InterfaceError,
)


class JobsRepo:
    """The API's job queries; implements ``domain.repository.JobRepository``."""

    def __init__(
        self, pool: asyncpg.Pool, acquire_timeout: float, *, max_concurrent_inserts: int = 2
    ) -> None:
        self._pool = pool
        self._acquire_timeout = acquire_timeout
        self._inserts: Coalescer[tuple[NewJob, NewOutboxMessage], JobRef | None] = Coalescer(
            self._insert_batch,
            name="jobs.insert",
            max_batch=128,
            max_concurrent=max_concurrent_inserts,
        )

    async def close(self) -> None:
        """Let in-flight submissions finish before the pool closes."""
        await self._inserts.close()

    async def _fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        try:
            async with self._pool.acquire(timeout=self._acquire_timeout) as conn:
                return await conn.fetch(query, *args)
        except UNAVAILABLE_ERRORS as exc:
            raise DatabaseUnavailableError(type(exc).__name__) from exc

    async def _fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        rows = await self._fetch(query, *args)  # every caller's query returns at most one
        return rows[0] if rows else None

    async def insert_with_outbox(self, job: NewJob, message: NewOutboxMessage) -> JobRef | None:
        """Insert both rows atomically; None when the idempotency key already exists.

        Concurrent calls share one statement (group commit, see ``_insert_batch``)."""
        return await self._inserts.submit((job, message))

    async def _insert_batch(
        self, items: Sequence[tuple[NewJob, NewOutboxMessage]]
    ) -> list[JobRef | BaseException | None]:
        # One bad row (or a deadlock with a foreign writer) must not fail the others.
        return await each_alone_on_failure(items, self._insert_rows, asyncpg.PostgresError)

    async def _insert_rows(
        self, items: Sequence[tuple[NewJob, NewOutboxMessage]]
    ) -> list[JobRef | None]:
        rows = await self._fetch(_INSERT_JOBS_WITH_OUTBOX, *_columns(items))
        inserted = {row["id"]: row for row in rows}
        refs: list[JobRef | None] = []
        for job, _ in items:
            row = inserted.get(job.id)
            refs.append(
                None
                if row is None
                else JobRef(
                    id=row["id"],
                    status=row["status"],
                    created_at=row["created_at"],
                    request_hash=job.request_hash,
                )
            )
        return refs

    async def find_by_idempotency_key(self, client_id: str, key: str) -> JobRef | None:
        row = await self._fetchrow(_FIND_BY_IDEMPOTENCY_KEY, client_id, key)
        if row is None:
            return None
        return JobRef(
            id=row["id"],
            status=row["status"],
            created_at=row["created_at"],
            request_hash=row["request_hash"],
        )

    async def get(self, job_id: uuid.UUID, client_id: str) -> JobView | None:
        row = await self._fetchrow(_GET_JOB, job_id, client_id)
        if row is None:
            return None
        values = dict(row)
        values["metadata"] = json.loads(values["metadata"])
        return JobView(**values)

    async def prompt_of(self, job_id: uuid.UUID, client_id: str) -> tuple[str, str] | None:
        row = await self._fetchrow(_GET_PROMPT, job_id, client_id)
        return None if row is None else (row["prompt"], row["model"])

    async def outbox_backlog(self, cap: int) -> int:
        row = await self._fetchrow(_OUTBOX_BACKLOG, cap)
        return int(row[0]) if row is not None else 0


def _columns(items: Sequence[tuple[NewJob, NewOutboxMessage]]) -> list[list[Any]]:
    """The batch as one array per column, in the order of the statement's parameters."""
    return [
        [job.id for job, _ in items],
        [job.client_id for job, _ in items],
        [job.idempotency_key for job, _ in items],
        [job.request_hash for job, _ in items],
        [job.prompt for job, _ in items],
        [job.model for job, _ in items],
        [job.metadata_json for job, _ in items],
        [job.request_id for job, _ in items],
        [message.message_id for _, message in items],
        [message.topic for _, message in items],
        [message.payload_json for _, message in items],
        [message.headers_json for _, message in items],
    ]
