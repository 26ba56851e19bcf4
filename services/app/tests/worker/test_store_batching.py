"""The worker's claims and completions coalesce across concurrent jobs, and every
delivery still gets the outcome it would get alone."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
from groundwork_app.adapters.llm import SimulatedProvider
from groundwork_app.db.worker import JobStore
from groundwork_app.domain.repository import Claim, Completion
from groundwork_app.ports import Outcome
from groundwork_app.settings import Settings
from groundwork_app.worker.runner import build_handler
from sqlalchemy.ext.asyncio import AsyncEngine

from .conftest import insert_job, job_row, ledger_count
from .test_handler import delivery_for


async def test_concurrent_jobs_share_statements(
    settings: Settings, engine: AsyncEngine, store: JobStore
) -> None:
    provider = SimulatedProvider()
    handler = build_handler(settings, store, provider=provider, cache=None)
    jobs = [await insert_job(engine, settings, prompt=f"prompt {i}") for i in range(30)]
    results = await asyncio.gather(
        *(handler.handle(delivery_for(job_id, message_id)) for job_id, message_id in jobs)
    )
    assert [r.outcome for r in results] == [Outcome.ACK] * 30
    assert all(r.reason == "" for r in results)
    assert store._claims.batches < 30 and store._completions.batches < 30
    for job_id, _ in jobs:
        row = await job_row(engine, job_id)
        assert (row.status, row.attempts) == ("succeeded", 1)
    assert await ledger_count(engine) == 30
    assert provider.calls == 30


async def test_one_message_twice_in_a_batch_is_stored_once(
    settings: Settings, engine: AsyncEngine, store: JobStore
) -> None:
    """Two deliveries of one message arriving together (a redelivery racing the
    original) never share a statement: exactly one claims and stores; the other finds
    the lease taken and is sent back without an LLM call."""
    handler = build_handler(settings, store, provider=SimulatedProvider(), cache=None)
    job_id, message_id = await insert_job(engine, settings)
    other_job, other_message = await insert_job(engine, settings, prompt="other")
    results = await asyncio.gather(
        handler.handle(delivery_for(job_id, message_id)),
        handler.handle(delivery_for(job_id, message_id)),
        handler.handle(delivery_for(other_job, other_message)),
    )
    assert sorted((r.outcome.value, r.reason) for r in results[:2]) == [
        ("ack", ""),
        ("retry", "busy: another worker holds the job's lease"),
    ]
    assert (results[2].outcome, results[2].reason) == (Outcome.ACK, "")
    assert await ledger_count(engine, job_id) == 1
    assert (await job_row(engine, other_job)).status == "succeeded"


async def test_outcomes_in_one_batch_stay_per_delivery(
    settings: Settings, engine: AsyncEngine, store: JobStore
) -> None:
    done_job, done_message = await insert_job(engine, settings, prompt="done")
    await store.claim(done_job, str(done_message))
    assert await store.complete(Completion(str(done_message), done_job, "42", False, False))
    fresh_job, fresh_message = await insert_job(engine, settings, prompt="fresh")
    claims = await asyncio.gather(
        store.claim(fresh_job, str(fresh_message)),
        store.claim(done_job, str(done_message)),  # redelivery of a processed message
        store.claim(done_job, str(uuid.uuid4())),  # another message for a finished job
        store.claim(uuid.uuid4(), str(uuid.uuid4())),  # a job that does not exist
    )
    assert [c.claim for c in claims] == [
        Claim.CLAIMED,
        Claim.ALREADY_PROCESSED,
        Claim.ALREADY_SUCCEEDED,
        Claim.UNKNOWN_JOB,
    ]


async def test_a_bad_completion_fails_alone(
    settings: Settings, engine: AsyncEngine, store: JobStore
) -> None:
    good_job, good_message = await insert_job(engine, settings, prompt="good")
    bad_job, bad_message = await insert_job(engine, settings, prompt="bad")
    for job_id, message_id in ((good_job, good_message), (bad_job, bad_message)):
        assert (await store.claim(job_id, str(message_id))).claim is Claim.CLAIMED
    outcomes = await asyncio.gather(
        store.complete(Completion(str(good_message), good_job, "fine", False, False)),
        store.complete(Completion(str(bad_message), bad_job, "nul \x00 byte", False, False)),
        return_exceptions=True,
    )
    assert outcomes[0] is True
    assert isinstance(outcomes[1], asyncpg.PostgresError)
    assert (await job_row(engine, good_job)).result == "fine"
    assert (await job_row(engine, bad_job)).status == "processing"
    assert await ledger_count(engine, bad_job) == 0
