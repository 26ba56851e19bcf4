"""The job-handling core against real PostgreSQL and Redis (no broker needed)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import pytest
from groundwork_app.adapters.cache import AnswerCache
from groundwork_app.adapters.llm import SimulatedProvider
from groundwork_app.adapters.redis import create_redis
from groundwork_app.db.worker import JobStore
from groundwork_app.domain.repository import Claim
from groundwork_app.ports import Delivery, Outcome
from groundwork_app.settings import LLMFallback, Settings
from groundwork_app.worker.handler import JobHandler, MalformedMessageError, parse_job_message
from groundwork_app.worker.runner import build_handler
from sqlalchemy.ext.asyncio import AsyncEngine

from groundwork.devenv.servers import DevServers

from .conftest import insert_job, job_row, ledger_count, make_settings, wait_for


def delivery_for(
    job_id: uuid.UUID, message_id: uuid.UUID, prompt: str = "What is 2+2?", attempt: int = 1
) -> Delivery:
    body = (
        f'{{"job_id": "{job_id}", "prompt": "{prompt}", "model": "test-model", "metadata": {{}}}}'
    ).encode()
    return Delivery(str(message_id), body, {"request_id": "req-1"}, attempt)


async def test_redelivered_message_changes_nothing_and_calls_the_llm_once(
    settings: Settings, engine: AsyncEngine, store: JobStore
) -> None:
    provider = SimulatedProvider()
    handler = build_handler(settings, store, provider=provider)
    job_id, message_id = await insert_job(engine, settings)

    first = await handler.handle(delivery_for(job_id, message_id))
    after_first = await job_row(engine, job_id)
    second = await handler.handle(delivery_for(job_id, message_id))
    after_second = await job_row(engine, job_id)

    assert first.outcome is Outcome.ACK
    assert first.reason == ""
    assert second.outcome is Outcome.ACK
    assert second.reason.startswith("duplicate")
    assert provider.calls == 1
    assert await ledger_count(engine, job_id) == 1
    assert after_first.status == after_second.status == "succeeded"
    assert after_second.result == after_first.result
    assert after_second.completed_at == after_first.completed_at
    assert after_second.attempts == 1


async def test_a_job_costs_two_statements_and_a_redelivery_one(
    settings: Settings, engine: AsyncEngine, store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The round-trip budget: claim (ledger check + status) and complete (ledger + result)
    on the happy path, the claim alone for a redelivery. Counts every statement any
    asyncpg connection sends, so a query added anywhere in the path fails this."""
    handler = build_handler(settings, store, provider=SimulatedProvider())
    job_id, message_id = await insert_job(engine, settings)
    sent: list[str] = []
    for name in ("execute", "executemany", "fetch", "fetchrow", "fetchval"):
        original = getattr(asyncpg.Connection, name)

        def counting(self: object, query: str, *args: object, _o: Any = original, **kw: Any) -> Any:
            sent.append(query)
            return _o(self, query, *args, **kw)

        monkeypatch.setattr(asyncpg.Connection, name, counting)

    assert (await handler.handle(delivery_for(job_id, message_id))).outcome is Outcome.ACK
    assert len(sent) == 2, sent
    assert "processed_messages" in sent[0] and "UPDATE jobs" in sent[0]
    assert "INSERT INTO processed_messages" in sent[1] and "result = input.result" in sent[1]
    sent.clear()
    duplicate = await handler.handle(delivery_for(job_id, message_id))
    assert duplicate.reason == "duplicate: already processed"
    assert len(sent) == 1


async def test_another_message_for_a_succeeded_job_is_acked_without_the_llm(
    settings: Settings, engine: AsyncEngine, store: JobStore
) -> None:
    """A second message id for the same job (e.g. a manual re-publish) finds the job
    succeeded: no LLM call, no ledger row for it, the stored result untouched."""
    provider = SimulatedProvider()
    handler = build_handler(settings, store, provider=provider)
    job_id, message_id = await insert_job(engine, settings)
    await handler.handle(delivery_for(job_id, message_id))
    before = await job_row(engine, job_id)

    other = await handler.handle(delivery_for(job_id, uuid.uuid4()))

    assert (other.outcome, other.reason) == (Outcome.ACK, "duplicate: job already succeeded")
    assert provider.calls == 1
    assert await ledger_count(engine, job_id) == 1
    after = await job_row(engine, job_id)
    assert (after.result, after.attempts, after.completed_at) == (
        before.result,
        before.attempts,
        before.completed_at,
    )


async def test_concurrent_duplicates_call_the_llm_once(
    settings: Settings, engine: AsyncEngine
) -> None:
    """Two workers (two stores, two lease owners) handle copies of one message at the
    same time (a relay that crashed after publishing, a broker redelivery): the claim
    lets one call the LLM; the other answers RETRY without calling it, and its retry
    is then a duplicate. Before the lease, both called the LLM."""
    provider = SimulatedProvider(latency_ms=300)
    stores = [JobStore(settings), JobStore(settings)]
    try:
        handlers = [build_handler(settings, s, provider=provider) for s in stores]
        job_id, message_id = await insert_job(engine, settings)
        results = await asyncio.gather(
            *(h.handle(delivery_for(job_id, message_id)) for h in handlers)
        )
        assert sorted((r.outcome.value, r.reason) for r in results) == [
            ("ack", ""),
            ("retry", "busy: another worker holds the job's lease"),
        ]
        assert provider.calls == 1
        retried = await handlers[0].handle(delivery_for(job_id, message_id, attempt=2))
        assert (retried.outcome, retried.reason) == (Outcome.ACK, "duplicate: already processed")
        assert provider.calls == 1
        assert await ledger_count(engine, job_id) == 1
        row = await job_row(engine, job_id)
        assert (row.status, row.attempts, row.lease_owner) == ("succeeded", 1, None)
    finally:
        for s in stores:
            await s.close()


async def test_a_dead_workers_lease_lapses_and_the_job_is_taken_over(
    service_env: dict[str, str], clean_db: None
) -> None:
    """A worker that claimed and died (SIGKILL: no release) blocks the job only until
    its lease expires; a live worker's lease is renewed past its nominal expiry."""
    from groundwork_app.db.engine import create_engine

    settings = make_settings(job_lease_seconds=1.0, llm_timeout_seconds=10.0)
    engine = create_engine(settings)
    dead, alive = JobStore(settings), JobStore(settings)
    try:
        job_id, message_id = await insert_job(engine, settings)
        assert (await dead.claim(job_id, str(message_id))).claim is Claim.CLAIMED
        provider = SimulatedProvider()
        handler = build_handler(settings, alive, provider=provider)
        busy = await handler.handle(delivery_for(job_id, message_id, attempt=2))
        assert busy.outcome is Outcome.RETRY and provider.calls == 0
        await asyncio.sleep(1.2)
        taken = await handler.handle(delivery_for(job_id, message_id, attempt=3))
        assert (taken.outcome, taken.reason) == (Outcome.ACK, "")
        assert provider.calls == 1
        row = await job_row(engine, job_id)
        assert (row.status, row.attempts) == ("succeeded", 2)

        # Renewal: a job running 2.5 lease periods keeps its lease the whole time.
        slow = build_handler(settings, alive, provider=SimulatedProvider(latency_ms=2500))
        other = build_handler(settings, dead, provider=provider)
        job2, msg2 = await insert_job(engine, settings)
        running = asyncio.create_task(slow.handle(delivery_for(job2, msg2)))
        for _ in range(4):
            await asyncio.sleep(0.5)
            raced = await other.handle(delivery_for(job2, msg2, attempt=2))
            assert raced.outcome is Outcome.RETRY, raced
        assert (await running).outcome is Outcome.ACK
        assert provider.calls == 1
        # One renewer per handler, not a task per job: it stops once nothing is held.
        renewer = slow._renewer
        assert renewer is not None

        async def renewer_stopped() -> bool:
            return slow._leases == {} and renewer.done()

        await wait_for(renewer_stopped, 5, what="the lease renewer to stop")
    finally:
        await dead.close()
        await alive.close()
        await engine.dispose()


async def test_the_job_row_not_the_message_decides_what_is_asked(
    settings: Settings, engine: AsyncEngine, store: JobStore
) -> None:
    """A message naming an existing job with another prompt (forged, or a stale copy)
    gets the row's prompt answered and stored, not its own."""
    provider = SimulatedProvider()
    handler = build_handler(settings, store, provider=provider)
    job_id, message_id = await insert_job(engine, settings, "the real prompt")
    result = await handler.handle(delivery_for(job_id, message_id, "an injected prompt"))
    assert result.outcome is Outcome.ACK
    row = await job_row(engine, job_id)
    expected = await SimulatedProvider().complete("the real prompt", "test-model")
    assert row.result == expected
    assert row.result != await SimulatedProvider().complete("an injected prompt", "test-model")


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "body is not JSON"),
        (b"[1, 2]", "body must be a JSON object"),
        (b'{"prompt": "x", "model": "m"}', "missing field(s): job_id"),
        (b'{"job_id": "nope", "prompt": "x", "model": "m"}', "job_id is not a UUID"),
        (
            b'{"job_id": "6f1c1c9e-51a0-4c4e-9a43-3b1f7d6c1a11", "prompt": "", "model": "m"}',
            "prompt must be a non-empty string",
        ),
    ],
)
def test_malformed_bodies_are_named(body: bytes, reason: str) -> None:
    with pytest.raises(MalformedMessageError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        parse_job_message(body)


async def test_poison_and_unknown_job_are_dead_lettered(
    settings: Settings, engine: AsyncEngine, store: JobStore
) -> None:
    handler = build_handler(settings, store, provider=SimulatedProvider())
    poison = await handler.handle(Delivery("m-1", b"\xff\xfe garbage", {}, 1))
    assert poison.outcome is Outcome.DEAD_LETTER
    assert poison.reason.startswith("malformed message: body is not JSON")
    unknown = await handler.handle(delivery_for(uuid.uuid4(), uuid.uuid4()))
    assert unknown.outcome is Outcome.DEAD_LETTER
    assert unknown.reason.startswith("unknown job")
    assert await ledger_count(engine) == 0


async def test_cache_aside_answers_repeat_prompts_without_the_llm(
    settings: Settings, engine: AsyncEngine, store: JobStore
) -> None:
    redis = create_redis(settings)
    provider = SimulatedProvider()
    prompt = f"cache me {uuid.uuid4()}"
    handler = build_handler(settings, store, provider=provider, cache=AnswerCache(redis, settings))
    first_job, first_msg = await insert_job(engine, settings, prompt)
    second_job, second_msg = await insert_job(engine, settings, prompt)
    await handler.handle(delivery_for(first_job, first_msg, prompt))
    await handler.handle(delivery_for(second_job, second_msg, prompt))
    first, second = await job_row(engine, first_job), await job_row(engine, second_job)
    assert provider.calls == 1
    assert (first.cached, second.cached) == (False, True)
    assert first.result == second.result

    # A model/version bump invalidates every cached answer.
    bumped = make_settings(queue_name=settings.queue_name, cache_version="v-bumped")
    handler = build_handler(bumped, store, provider=provider, cache=AnswerCache(redis, bumped))
    third_job, third_msg = await insert_job(engine, settings, prompt)
    await handler.handle(delivery_for(third_job, third_msg, prompt))
    assert provider.calls == 2
    assert (await job_row(engine, third_job)).cached is False
    await redis.aclose()


async def test_the_answer_cache_is_scoped_by_tenant(
    settings: Settings, engine: AsyncEngine, store: JobStore
) -> None:
    """Client B sending client A's prompt gets no cached answer (it would learn what A
    asked, and could evict it); sharing is an explicit setting."""
    redis = create_redis(settings)
    try:
        provider = SimulatedProvider()
        handler = build_handler(
            settings, store, provider=provider, cache=AnswerCache(redis, settings)
        )
        prompt = f"a private question {uuid.uuid4()}"
        for client in ("tenant-a", "tenant-b", "tenant-a"):
            job_id, message_id = await insert_job(engine, settings, prompt, client_id=client)
            await handler.handle(delivery_for(job_id, message_id, prompt))
        assert provider.calls == 2  # b missed; a's second job hit a's own entry
        cache = AnswerCache(redis, settings)
        assert cache.key("tenant-a", prompt, "m") != cache.key("tenant-b", prompt, "m")

        shared = make_settings(queue_name=settings.queue_name, cache_shared_across_tenants=True)
        assert settings.cache_shared_across_tenants is False  # the default
        shared_cache = AnswerCache(redis, shared)
        assert shared_cache.key("tenant-a", prompt, "m") == shared_cache.key(
            "tenant-b", prompt, "m"
        )
    finally:
        await redis.aclose()


@pytest.mark.slow
async def test_jobs_complete_uncached_while_redis_is_down(
    settings: Settings, engine: AsyncEngine, store: JobStore, servers: DevServers
) -> None:
    redis = create_redis(settings)
    provider = SimulatedProvider()
    handler = build_handler(settings, store, provider=provider, cache=AnswerCache(redis, settings))
    servers.redis.stop()
    try:
        ids = [await insert_job(engine, settings, "same prompt") for _ in range(2)]
        for job_id, message_id in ids:
            result = await handler.handle(delivery_for(job_id, message_id, "same prompt"))
            assert result.outcome is Outcome.ACK
            row = await job_row(engine, job_id)
            assert (row.status, row.cached) == ("succeeded", False)
        assert provider.calls == 2  # no cache: every job asked the LLM
    finally:
        servers.redis.start()
        await redis.aclose()


async def test_llm_down_default_answer_fallback_is_marked_degraded(
    service_env: dict[str, str], clean_db: None
) -> None:
    settings = make_settings(
        llm_fallback=LLMFallback.DEFAULT_ANSWER, llm_default_answer="try again later"
    )
    from groundwork_app.db.engine import create_engine

    engine = create_engine(settings)
    store = JobStore(settings)
    provider = SimulatedProvider(failure_rate=1.0)
    handler = build_handler(settings, store, provider=provider)
    job_id, message_id = await insert_job(engine, settings)
    result = await handler.handle(delivery_for(job_id, message_id))
    row = await job_row(engine, job_id)
    assert result.outcome is Outcome.ACK
    assert (row.status, row.result, row.degraded) == ("succeeded", "try again later", True)
    assert provider.calls == settings.llm_max_retries + 1
    await store.close()
    await engine.dispose()


async def test_llm_down_requeue_fallback_retries_then_dead_letters_and_fails_the_job(
    settings: Settings, engine: AsyncEngine, store: JobStore
) -> None:
    assert settings.llm_fallback is LLMFallback.REQUEUE
    provider = SimulatedProvider(failure_rate=1.0)
    handler: JobHandler = build_handler(settings, store, provider=provider)
    job_id, message_id = await insert_job(engine, settings)
    outcomes = []
    for attempt in range(1, settings.queue_delivery_limit + 1):
        outcomes.append(await handler.handle(delivery_for(job_id, message_id, attempt=attempt)))
        if attempt < settings.queue_delivery_limit:
            assert (await job_row(engine, job_id)).status == "queued"
    assert [o.outcome for o in outcomes] == [Outcome.RETRY, Outcome.RETRY, Outcome.DEAD_LETTER]
    row = await job_row(engine, job_id)
    assert row.status == "failed"
    assert row.error.startswith("LLM unavailable")
    # threshold 3 transient failures: the circuit is open, later calls fail fast.
    assert handler.llm.circuit_state == "open"
    calls_before = provider.calls
    later = await handler.handle(delivery_for(job_id, message_id, attempt=1))
    assert later.outcome is Outcome.RETRY
    assert "circuit open" in later.reason
    assert provider.calls == calls_before
    assert await ledger_count(engine, job_id) == 0
