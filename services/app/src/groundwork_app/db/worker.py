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

Concurrent jobs share those statements (group commit, ``groundwork_app.batching``): the
claims of all jobs arriving together are one statement, their completions another, so a
busy worker pays one round trip and one statement preparation per batch instead of per
job (the per-job statements were a third of the worker's CPU in profiles, see
docs/performance.md). A statement never carries the same message or job twice, so
every row behaves as it would alone; a batch that fails on a bad row is retried row by
row so the others are not held back.

Pooler-safe, like the API's pool (db/jobs.py): no session state, so the reset on
release is a no-op (asyncpg still rolls back a connection released mid-transaction);
the prepared-statement cache follows DB_STATEMENT_CACHE_SIZE, 0 by default, which is
what works through PgBouncer / RDS Proxy in transaction mode (asyncpg then uses the
unnamed statement). No liveness ping per checkout: a dead connection fails the
statement, the handler answers RETRY with nothing committed, and the pool replaces the
connection.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import asyncpg

from groundwork_app.batching import Coalescer, each_alone_on_failure
from groundwork_app.db.pool import LazyPool
from groundwork_app.domain.repository import Claim, ClaimResult, Completion
from groundwork_app.settings import Settings

# A claim takes the job's lease unless the message is already in the ledger, the job
# already succeeded, or another worker holds a live lease on it. Two claims of one job
# racing: the second waits on the row lock, then PostgreSQL re-checks its WHERE against
# the committed row (READ COMMITTED), sees the first one's live lease and claims
# nothing, so only one of them calls the LLM. The row's prompt, model and client come
# back with the claim: the job row, not the message, is the source of truth.
_CLAIM = """
WITH input AS (
    SELECT * FROM unnest($1::uuid[], $2::text[]) WITH ORDINALITY AS t(job_id, message_id, ord)
), seen AS (
    SELECT input.ord FROM input
    JOIN processed_messages USING (message_id)
), claimed AS (
    UPDATE jobs SET status = 'processing', attempts = attempts + 1, updated_at = now(),
                    lease_owner = $3, lease_expires_at = now() + make_interval(secs => $4)
    FROM input
    WHERE jobs.id = input.job_id AND jobs.status <> 'succeeded'
      AND NOT (jobs.status = 'processing' AND jobs.lease_expires_at > now())
      AND input.ord NOT IN (SELECT ord FROM seen)
    RETURNING input.ord, jobs.client_id, jobs.prompt, jobs.model
)
SELECT input.ord,
       input.ord IN (SELECT ord FROM seen) AS processed,
       claimed.ord IS NOT NULL AS claimed,
       claimed.client_id, claimed.prompt, claimed.model,
       (SELECT jobs.status FROM jobs WHERE jobs.id = input.job_id) AS status
FROM input LEFT JOIN claimed USING (ord) ORDER BY input.ord
"""

# The result is stored only by the delivery whose ledger insert wins, and never over a
# job that already succeeded (another message for the same job, e.g. a manual
# re-publish): a job's result is written once.
_COMPLETE = """
WITH input AS (
    SELECT * FROM unnest($1::text[], $2::uuid[], $3::text[], $4::text[], $5::bool[],
                         $6::bool[])
        WITH ORDINALITY AS t(message_id, job_id, outcome, result, cached, degraded, ord)
), ledger AS (
    INSERT INTO processed_messages (message_id, job_id, outcome)
    SELECT message_id, job_id, outcome FROM input ORDER BY message_id
    ON CONFLICT (message_id) DO NOTHING
    RETURNING message_id
), stored AS (
    UPDATE jobs SET status = 'succeeded', result = input.result, cached = input.cached,
                    degraded = input.degraded, error = NULL, updated_at = now(),
                    completed_at = now(), lease_owner = NULL, lease_expires_at = NULL
    FROM input JOIN ledger USING (message_id)
    WHERE jobs.id = input.job_id AND jobs.status <> 'succeeded'
    RETURNING input.message_id
)
SELECT input.ord, input.message_id IN (SELECT message_id FROM stored) AS stored
FROM input ORDER BY input.ord
"""

# No ledger row on failure: a redrive of the message must be allowed to run it again.
# Only the lease holder (or anyone once the lease is gone) moves a job on: a worker
# whose lease ran out must not undo the progress of the worker that took over.
_MARK_RETRYING = """
UPDATE jobs SET status = 'queued', error = $2, updated_at = now(),
                lease_owner = NULL, lease_expires_at = NULL
WHERE id = $1 AND status <> 'succeeded'
  AND (lease_owner IS NULL OR lease_owner = $3 OR lease_expires_at <= now())
"""

_MARK_FAILED = """
UPDATE jobs SET status = 'failed', error = $2, updated_at = now(), completed_at = now(),
                lease_owner = NULL, lease_expires_at = NULL
WHERE id = $1 AND status <> 'succeeded'
  AND (lease_owner IS NULL OR lease_owner = $3 OR lease_expires_at <= now())
"""

_RENEW = """
UPDATE jobs SET lease_expires_at = now() + make_interval(secs => $3)
WHERE id = $1 AND lease_owner = $2 AND status = 'processing'
"""

T = TypeVar("T")
R = TypeVar("R")

# How long a claim or a completion waits for others to share its statement. Claims
# and completions arrive one delivery at a time, a millisecond or two apart at a few
# hundred jobs/s, so with no wait nearly every statement carried one job and paid its
# own preparation (the statement cache is off behind poolers) and round trips: ~17 %
# of the worker's CPU per job (py-spy, docs/performance.md). 5 ms per statement is
# nothing next to an LLM call of seconds.
STATEMENT_LINGER_SECONDS = 0.005


class JobStore:
    """The worker's database access (see the module docstring); implements
    ``domain.repository.WorkerRepository``."""

    def __init__(self, settings: Settings):
        self._settings = settings
        self._pool = LazyPool(settings, "worker")
        self.pool = self._pool  # shared with the dead-letter recorder (worker/terminal.py)
        # Names this process in the lease column: unique per process start.
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._claims: Coalescer[tuple[uuid.UUID, str], ClaimResult] = Coalescer(
            self._claim_batch, name="jobs.claim", linger=STATEMENT_LINGER_SECONDS
        )
        self._completions: Coalescer[Completion, bool] = Coalescer(
            self._complete_batch, name="jobs.complete", linger=STATEMENT_LINGER_SECONDS
        )

    async def _fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        pool = await self._pool.get()
        async with pool.acquire(timeout=self._settings.db_pool_timeout_seconds) as conn:
            return await conn.fetch(query, *args)

    async def _execute(self, query: str, *args: Any) -> None:
        pool = await self._pool.get()
        async with pool.acquire(timeout=self._settings.db_pool_timeout_seconds) as conn:
            await conn.execute(query, *args)

    async def claim(self, job_id: uuid.UUID, message_id: str) -> ClaimResult:
        return await self._claims.submit((job_id, message_id))

    async def complete(self, done: Completion) -> bool:
        """Ledger row + result in one transaction; False when the ledger already had it."""
        return await self._completions.submit(done)

    async def _claim_batch(
        self, items: Sequence[tuple[uuid.UUID, str]]
    ) -> list[ClaimResult | BaseException]:
        async def run(part: Sequence[tuple[uuid.UUID, str]]) -> list[ClaimResult]:
            rows = await self._fetch(
                _CLAIM,
                [job_id for job_id, _ in part],
                [message_id for _, message_id in part],
                self.owner,
                self._settings.job_lease_seconds,
            )
            return [_claim_of(row) for row in rows]

        return await _in_rounds(items, lambda item: item, run)

    async def _complete_batch(self, items: Sequence[Completion]) -> list[bool | BaseException]:
        async def run(part: Sequence[Completion]) -> list[bool]:
            rows = await self._fetch(
                _COMPLETE,
                [d.message_id for d in part],
                [d.job_id for d in part],
                ["degraded" if d.degraded else "succeeded" for d in part],
                [d.result for d in part],
                [d.cached for d in part],
                [d.degraded for d in part],
            )
            return [bool(row["stored"]) for row in rows]

        return await _in_rounds(items, lambda d: (d.job_id, d.message_id), run)

    async def mark_retrying(self, job_id: uuid.UUID, reason: str) -> None:
        await self._execute(_MARK_RETRYING, job_id, reason, self.owner)

    async def mark_failed(self, job_id: uuid.UUID, reason: str) -> None:
        await self._execute(_MARK_FAILED, job_id, reason, self.owner)

    async def renew_lease(self, job_id: uuid.UUID) -> None:
        await self._execute(_RENEW, job_id, self.owner, self._settings.job_lease_seconds)

    async def close(self) -> None:
        await self._claims.close()
        await self._completions.close()
        await self._pool.close()


def _claim_of(row: asyncpg.Record) -> ClaimResult:
    if row["processed"]:
        return ClaimResult(Claim.ALREADY_PROCESSED)
    if row["claimed"]:
        return ClaimResult(Claim.CLAIMED, row["client_id"], row["prompt"], row["model"])
    status = row["status"]
    if status is None:
        return ClaimResult(Claim.UNKNOWN_JOB)
    return ClaimResult(Claim.ALREADY_SUCCEEDED if status == "succeeded" else Claim.BUSY)


async def _in_rounds(
    items: Sequence[T],
    ids: Callable[[T], tuple[uuid.UUID, str]],
    run: Callable[[Sequence[T]], Awaitable[list[R]]],
) -> list[R | BaseException]:
    """Run ``items`` through ``run`` in as few statements as possible, none of which
    holds a job id or message id twice (so every row behaves as it would alone), in
    arrival order; when a statement fails on some row, its rows are retried one by one
    so only the bad one fails (``each_alone_on_failure``)."""
    outcomes: dict[int, R | BaseException] = {}
    pending = list(range(len(items)))
    while pending:
        seen_jobs: set[uuid.UUID] = set()
        seen_messages: set[str] = set()
        round_, later = [], []
        for index in pending:
            job_id, message_id = ids(items[index])
            if job_id in seen_jobs or message_id in seen_messages:
                later.append(index)
                continue
            seen_jobs.add(job_id)
            seen_messages.add(message_id)
            round_.append(index)
        results = await each_alone_on_failure(
            [items[i] for i in round_], run, asyncpg.PostgresError
        )
        for i, result in zip(round_, results, strict=True):
            outcomes[i] = result
        pending = later
    return [outcomes[i] for i in range(len(items))]
