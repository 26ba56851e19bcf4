"""The queries of the safety nets that end jobs (worker/terminal.py): a dead-lettered
job, and every job past its deadline that no worker holds a lease on.

Neither ever overwrites ``succeeded``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from groundwork_app.db.pool import LazyPool
from groundwork_app.settings import Settings

_MARK_DEAD_LETTERED = """
WITH target AS (
    SELECT status, lease_expires_at FROM jobs WHERE id = $1
), ended AS (
    UPDATE jobs SET status = 'failed', error = $2, updated_at = now(), completed_at = now(),
                    lease_owner = NULL, lease_expires_at = NULL
    WHERE id = $1 AND status IN ('queued', 'processing')
      AND (lease_expires_at IS NULL OR lease_expires_at <= now())
    RETURNING id
)
SELECT EXISTS (SELECT 1 FROM ended) AS ended, target.status,
       GREATEST(0, EXTRACT(EPOCH FROM target.lease_expires_at - now()))::float8 AS lease_left
FROM target
"""

# SKIP LOCKED: several relays sweep at once without waiting on each other or on a
# worker's claim; LIMIT keeps one sweep's transaction short after a long outage.
_SWEEP = """
WITH stuck AS (
    SELECT id FROM jobs
    WHERE status IN ('queued', 'processing')
      AND updated_at < now() - make_interval(secs => $1)
      AND (lease_expires_at IS NULL OR lease_expires_at <= now())
    ORDER BY updated_at
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
UPDATE jobs SET status = 'failed', updated_at = now(), completed_at = now(),
                lease_owner = NULL, lease_expires_at = NULL,
                error = left('deadline exceeded: no worker finished the job within '
                             || $1::float8 || ' s of its last progress'
                             || COALESCE(' (last error: ' || jobs.error || ')', ''), 500)
FROM stuck WHERE jobs.id = stuck.id
RETURNING jobs.id
"""

_UNFINISHED = """
SELECT count(*)::bigint AS n,
       COALESCE(EXTRACT(EPOCH FROM now() - min(updated_at)), 0)::float8 AS oldest
FROM jobs WHERE status IN ('queued', 'processing')
"""


@dataclass(frozen=True)
class DeadLetterRow:
    ended: bool  # this call failed the job
    status: str  # the job's status before this call
    lease_left: float  # seconds until a live lease lapses (0 when none)


@dataclass(frozen=True)
class Unfinished:
    count: int
    oldest_age_seconds: float


class JobEnder:
    def __init__(self, pool: LazyPool, settings: Settings):
        self._pool = pool
        self._settings = settings

    async def end_dead_lettered(self, job_id: uuid.UUID, error: str) -> DeadLetterRow | None:
        """Fail the job unless it is finished or leased; None when there is no such job."""
        pool = await self._pool.get()
        async with pool.acquire(timeout=self._settings.db_pool_timeout_seconds) as conn:
            row = await conn.fetchrow(_MARK_DEAD_LETTERED, job_id, error)
        if row is None:
            return None
        return DeadLetterRow(row["ended"], row["status"], float(row["lease_left"]))

    async def end_past_deadline(self, limit: int) -> tuple[list[uuid.UUID], Unfinished | None]:
        """Fail up to ``limit`` jobs past JOB_DEADLINE_SECONDS; count the unfinished."""
        pool = await self._pool.get()
        async with pool.acquire(timeout=self._settings.db_pool_timeout_seconds) as conn:
            rows = await conn.fetch(_SWEEP, self._settings.job_deadline_seconds, limit)
            gauge = await conn.fetchrow(_UNFINISHED)
        unfinished = None if gauge is None else Unfinished(gauge["n"], gauge["oldest"])
        return [row["id"] for row in rows], unfinished
