"""Concurrent submissions share one INSERT (group commit) without mixing up their outcomes."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import pytest
from groundwork_app.db.jobs import JobsRepo
from groundwork_app.db.pool import create_api_pool
from groundwork_app.domain.jobs import (
    IdempotencyConflictError,
    JobRequest,
    SubmitContext,
    submit_job,
)
from groundwork_app.domain.repository import NewJob, NewOutboxMessage


@pytest.fixture
async def repo(settings_factory: Callable[..., Any], clean_db: None) -> AsyncIterator[JobsRepo]:
    pool = await create_api_pool(settings_factory())
    # One batch in flight: everything gathered while it runs lands in the next one.
    repo = JobsRepo(pool, acquire_timeout=5.0, max_concurrent_inserts=1)
    try:
        yield repo
    finally:
        await repo.close()
        await pool.close()


def _ctx(client: str) -> SubmitContext:
    return SubmitContext(
        client_id=client, request_id="req-1", topic="jobs", default_model="m", trace_headers={}
    )


def _new(prompt: str, client: str = "gc") -> tuple[NewJob, NewOutboxMessage]:
    job_id = uuid.uuid4()
    job = NewJob(job_id, client, None, "h", prompt, "m", "{}", "req-1")
    message = NewOutboxMessage(uuid.uuid4(), "jobs", f'{{"job_id": "{job_id}"}}', "{}")
    return job, message


async def test_concurrent_submissions_coalesce_and_each_gets_its_own_rows(
    repo: JobsRepo, db: asyncpg.Connection
):
    from groundwork_app.batching import BATCH_SIZE

    sizes = BATCH_SIZE.labels("jobs.insert")
    before = sizes._sum.get()
    requests = [JobRequest(prompt=f"prompt {i}", metadata={"i": i}) for i in range(40)]
    submissions = await asyncio.gather(
        *(submit_job(repo, r, _ctx(f"client-{i % 3}"), None) for i, r in enumerate(requests))
    )
    assert all(s.created and s.status == "queued" for s in submissions)
    assert repo._inserts.batches < 10  # 40 submissions, a handful of statements
    assert sizes._sum.get() - before == 40  # the batch_size histogram saw every one
    rows = await db.fetch(
        "SELECT j.id, j.prompt, j.client_id, o.payload::jsonb->>'job_id' AS outbox_job "
        "FROM jobs j JOIN outbox o ON o.job_id = j.id"
    )
    by_id = {row["id"]: row for row in rows}
    assert len(rows) == 40  # one outbox row per job, none extra
    for i, submission in enumerate(submissions):
        row = by_id[submission.job_id]
        assert row["prompt"] == f"prompt {i}" and row["client_id"] == f"client-{i % 3}"
        assert row["outbox_job"] == str(submission.job_id)


async def test_a_key_repeated_inside_one_batch_creates_one_job(
    repo: JobsRepo, db: asyncpg.Connection
):
    same = JobRequest(prompt="same body")
    other = JobRequest(prompt="a different body")
    outcomes = await asyncio.gather(
        *(submit_job(repo, same, _ctx("dup"), "key-1") for _ in range(5)),
        submit_job(repo, other, _ctx("dup"), "key-1"),
        submit_job(repo, same, _ctx("someone-else"), "key-1"),
        return_exceptions=True,
    )
    *replays, conflict, elsewhere = outcomes
    assert isinstance(conflict, IdempotencyConflictError)
    assert sum(1 for s in replays if s.created) == 1  # type: ignore[union-attr]
    assert len({s.job_id for s in replays}) == 1  # type: ignore[union-attr]
    assert elsewhere.created  # type: ignore[union-attr]  # keys are scoped per client
    assert await db.fetchval("SELECT count(*) FROM jobs") == 2
    assert await db.fetchval("SELECT count(*) FROM outbox") == 2


async def test_a_bad_row_fails_alone_and_the_rest_of_its_batch_commits(
    repo: JobsRepo, db: asyncpg.Connection
):
    items = [_new("fine 1"), _new("nul \x00 byte"), _new("fine 2")]
    outcomes = await asyncio.gather(
        *(repo.insert_with_outbox(job, message) for job, message in items),
        return_exceptions=True,
    )
    assert repo._inserts.batches == 1  # one batch, which failed and was retried row by row
    assert isinstance(outcomes[1], asyncpg.PostgresError)
    assert [o.id for o in (outcomes[0], outcomes[2])] == [items[0][0].id, items[2][0].id]  # type: ignore[union-attr]
    prompts = {r["prompt"] for r in await db.fetch("SELECT prompt FROM jobs")}
    assert prompts == {"fine 1", "fine 2"}
    assert await db.fetchval("SELECT count(*) FROM outbox") == 2
