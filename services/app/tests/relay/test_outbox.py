"""The outbox relay against real PostgreSQL and RabbitMQ."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import Counter

import pytest
import sqlalchemy as sa
from groundwork_app.adapters.rabbitmq import RabbitPublisher
from groundwork_app.db.schema import outbox
from groundwork_app.observability import worker_metrics as m
from groundwork_app.ports import JOB_ID_HEADER
from groundwork_app.relay.outbox import OutboxRelay
from groundwork_app.settings import Settings
from sqlalchemy.ext.asyncio import AsyncEngine

from ..worker.conftest import drain_queue, insert_job, make_settings, queue_depth, wait_for


async def unsent(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int(
            (
                await conn.execute(
                    sa.select(sa.func.count()).select_from(outbox).where(outbox.c.sent_at.is_(None))
                )
            ).scalar_one()
        )


async def _run_until_drained(
    relays: list[OutboxRelay], engine: AsyncEngine, timeout: float, what: str
) -> None:
    """Run the relays side by side until no outbox row is unsent, then stop them."""
    stop = asyncio.Event()
    tasks = [asyncio.create_task(r.run(stop)) for r in relays]
    try:
        await wait_for(lambda: _is_zero(unsent(engine)), timeout, what=what)
    finally:
        stop.set()
        await asyncio.gather(*tasks)


async def test_three_concurrent_relays_publish_each_row_exactly_once(
    settings: Settings, engine: AsyncEngine, rabbit_ok: object
) -> None:
    settings = make_settings(queue_name=settings.queue_name, relay_batch_size=7, relay_listen=False)
    expected = {
        str(msg) for _, msg in [await insert_job(engine, settings, f"p{i}") for i in range(60)]
    }
    publishers = [RabbitPublisher(settings) for _ in range(3)]
    relays = [OutboxRelay(p, settings) for p in publishers]
    try:
        await _run_until_drained(relays, engine, 30, "outbox drained")
    finally:
        for p in publishers:
            await p.close()
    messages = await drain_queue(settings, settings.queue_name)
    counts = Counter(msg.message_id for msg in messages)
    assert set(counts) == expected
    assert max(counts.values()) == 1, "a row was published twice"
    first = messages[0]
    assert first.headers[JOB_ID_HEADER]
    assert str(first.headers["request_id"]).startswith("req-")
    assert first.delivery_mode == 2  # persistent
    assert set(json.loads(first.body)) == {"job_id", "prompt", "model", "metadata"}


async def _is_zero(value: object) -> bool:
    return await value == 0  # type: ignore[misc]


async def test_publish_failure_leaves_rows_unsent_with_the_error(
    settings: Settings, engine: AsyncEngine
) -> None:
    # A broker nobody listens on: every publish fails.
    broken = make_settings(queue_name=settings.queue_name, rabbitmq_port=1)
    relay = OutboxRelay(RabbitPublisher(broken), broken)
    await insert_job(engine, settings)
    await insert_job(engine, settings)
    result = await relay.publish_batch()
    assert (result.claimed, result.published, result.failed) == (2, 0, 2)
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(outbox))).all()
    assert all(r.sent_at is None and r.publish_attempts == 1 for r in rows)
    assert all("RabbitMQ did not confirm" in r.last_error for r in rows)
    await relay.refresh_metrics(force=True)
    assert m.RELAY_BACKLOG._value.get() == 2
    assert m.RELAY_OLDEST_AGE_SECONDS._value.get() > 0
    await relay.close()


# The one test that needs LISTEN: a transaction-mode pooler does not deliver
# notifications (see RELAY_LISTEN), so it cannot pass through PgBouncer by design;
# polling through the pooler is covered by test_relay_through_pgbouncer_still_drains_by_polling.
@pytest.mark.skipif(
    os.environ.get("GROUNDWORK_TEST_DB_VIA_PGBOUNCER") == "1",
    reason="LISTEN/NOTIFY needs a session connection; PgBouncer (transaction mode) drops it",
)
async def test_listen_notify_wakes_the_relay_before_the_poll_interval(
    settings: Settings, engine: AsyncEngine, rabbit_ok: object
) -> None:
    slow_poll = make_settings(queue_name=settings.queue_name, relay_poll_interval_seconds=30)
    publisher = RabbitPublisher(slow_poll)
    relay = OutboxRelay(publisher, slow_poll)
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    try:
        await wait_for(lambda: _true(relay.listening), 10, what="LISTEN connection")
        await asyncio.sleep(0.3)  # the relay is now asleep for up to 30 s
        started = time.monotonic()
        await insert_job(engine, settings)
        await wait_for(lambda: _is_zero(unsent(engine)), 10, what="row published")
        assert time.monotonic() - started < 5
    finally:
        stop.set()
        await task
        await publisher.close()
    assert await queue_depth(settings, settings.queue_name) == 1


async def _true(value: bool) -> bool:
    return value


async def test_polling_fallback_works_without_listen(
    settings: Settings, engine: AsyncEngine, rabbit_ok: object
) -> None:
    polling = make_settings(
        queue_name=settings.queue_name, relay_listen=False, relay_poll_interval_seconds=0.2
    )
    publisher = RabbitPublisher(polling)
    relay = OutboxRelay(publisher, polling)
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    try:
        await asyncio.sleep(0.3)
        await insert_job(engine, settings)
        await wait_for(lambda: _is_zero(unsent(engine)), 10, what="row published by polling")
        assert not relay.listening
    finally:
        stop.set()
        await task
        await publisher.close()


@pytest.mark.slow
async def test_relay_through_pgbouncer_still_drains_by_polling(
    settings: Settings, engine: AsyncEngine, servers: object, rabbit_ok: object
) -> None:
    """Behind a transaction-mode pooler LISTEN is unreliable; polling must carry it, and
    the same claim query reused across transactions must not rely on a prepared statement
    living on one server connection (small batches force many claims)."""
    pooled = make_settings(
        queue_name=settings.queue_name,
        relay_listen=False,
        relay_batch_size=3,
        db_port=servers.pgbouncer.port,  # type: ignore[attr-defined]
    )
    publisher = RabbitPublisher(pooled)
    relays = [OutboxRelay(publisher, pooled) for _ in range(2)]
    for i in range(20):
        await insert_job(engine, pooled, f"pooled {i}")
    try:
        await _run_until_drained(relays, engine, 20, "outbox drained via pgbouncer")
    finally:
        await publisher.close()
    # Exactly once: a failed claim/mark transaction would have re-published rows.
    assert await queue_depth(settings, settings.queue_name) == 20
    async with engine.connect() as conn:
        attempts = (await conn.execute(sa.select(sa.func.max(outbox.c.publish_attempts)))).scalar()
    assert attempts == 0
