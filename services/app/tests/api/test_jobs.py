"""POST/GET /v1/jobs and DELETE /v1/jobs/{id}/cache against real PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import asyncpg

from .conftest import JOB, ApiHarness


async def _counts(db: asyncpg.Connection) -> tuple[int, int]:
    jobs = await db.fetchval("SELECT count(*) FROM jobs")
    outbox = await db.fetchval("SELECT count(*) FROM outbox")
    return jobs, outbox


async def test_submit_writes_job_and_outbox_and_returns_202(
    api: ApiHarness, db: asyncpg.Connection
):
    response = await api.client.post(
        "/v1/jobs", json=JOB, headers={**api.auth("alice"), "X-Request-ID": "req-abc.123"}
    )
    assert response.status_code == 202, api.logs.getvalue()[-3000:]
    body = response.json()
    job_id = uuid.UUID(body["id"])
    assert body["status"] == "queued"
    assert body["links"] == {"self": f"/v1/jobs/{job_id}"}
    assert response.headers["location"] == f"/v1/jobs/{job_id}"
    assert response.headers["x-request-id"] == "req-abc.123"

    job = await db.fetchrow("SELECT * FROM jobs WHERE id = $1", job_id)
    assert job["client_id"] == "alice"
    assert job["prompt"] == JOB["prompt"]
    assert job["model"] == api.settings.llm_model  # server default when omitted
    assert job["request_id"] == "req-abc.123"
    assert json.loads(job["metadata"]) == {"ticket": "T-1"}
    row = await db.fetchrow("SELECT * FROM outbox WHERE job_id = $1", job_id)
    assert row["topic"] == api.settings.queue_name
    assert row["sent_at"] is None
    assert json.loads(row["payload"]) == {
        "job_id": str(job_id),
        "prompt": JOB["prompt"],
        "model": api.settings.llm_model,
        "metadata": {"ticket": "T-1"},
    }
    assert json.loads(row["headers"])["request_id"] == "req-abc.123"


async def test_invalid_request_id_is_replaced(api: ApiHarness, db: asyncpg.Connection):
    response = await api.client.post(
        "/v1/jobs", json=JOB, headers={**api.auth(), "X-Request-ID": "bad id\twith spaces"}
    )
    assert response.status_code == 202
    generated = response.headers["x-request-id"]
    assert generated != "bad id\twith spaces"
    assert len(generated) == 32 and generated.isalnum()
    stored = await db.fetchval("SELECT headers->>'request_id' FROM outbox")
    assert stored == generated


async def test_get_returns_own_job_and_404_for_others(api: ApiHarness):
    created = await api.client.post(
        "/v1/jobs", json={**JOB, "model": "m-1"}, headers=api.auth("owner")
    )
    job_id = created.json()["id"]

    mine = await api.client.get(f"/v1/jobs/{job_id}", headers=api.auth("owner", "jobs:read"))
    assert mine.status_code == 200
    body = mine.json()
    assert body["id"] == job_id
    assert body["status"] == "queued"
    assert body["model"] == "m-1"
    assert body["result"] is None and body["error"] is None
    assert body["degraded"] is False and body["cached"] is False
    assert body["created_at"] and body["completed_at"] is None

    other = await api.client.get(f"/v1/jobs/{job_id}", headers=api.auth("intruder"))
    assert other.status_code == 404
    assert other.json()["error"]["code"] == "not_found"
    missing = await api.client.get(f"/v1/jobs/{uuid.uuid4()}", headers=api.auth("owner"))
    assert missing.status_code == 404


async def test_get_shows_worker_result(api: ApiHarness, db: asyncpg.Connection):
    created = await api.client.post("/v1/jobs", json=JOB, headers=api.auth("w"))
    job_id = uuid.UUID(created.json()["id"])
    await db.execute(
        "UPDATE jobs SET status='succeeded', result='42', degraded=true, completed_at=now() "
        "WHERE id=$1",
        job_id,
    )
    body = (await api.client.get(f"/v1/jobs/{job_id}", headers=api.auth("w"))).json()
    assert body["status"] == "succeeded"
    assert body["result"] == "42"
    assert body["degraded"] is True
    assert body["completed_at"] is not None


async def test_idempotent_replay_returns_original_job(api: ApiHarness, db: asyncpg.Connection):
    headers = {**api.auth("idem"), "Idempotency-Key": "order-1"}
    first = await api.client.post("/v1/jobs", json=JOB, headers=headers)
    # Same body, different key order and whitespace: still the same canonical request.
    raw = '{ "metadata": {"ticket": "T-1"},  "prompt": "Summarise the plot of Hamlet." }'
    second = await api.client.post(
        "/v1/jobs", content=raw, headers={**headers, "Content-Type": "application/json"}
    )
    assert first.status_code == 202
    assert second.status_code == 200
    assert second.headers["idempotent-replayed"] == "true"
    assert second.json()["id"] == first.json()["id"]
    assert second.headers["location"] == first.headers["location"]
    assert await _counts(db) == (1, 1)


async def test_idempotency_key_is_scoped_per_client(api: ApiHarness, db: asyncpg.Connection):
    for client in ("a", "b"):
        response = await api.client.post(
            "/v1/jobs", json=JOB, headers={**api.auth(client), "Idempotency-Key": "shared"}
        )
        assert response.status_code == 202
    assert await _counts(db) == (2, 2)


async def test_idempotency_conflict_on_different_body(api: ApiHarness, db: asyncpg.Connection):
    headers = {**api.auth("c"), "Idempotency-Key": "k-1"}
    first = await api.client.post("/v1/jobs", json=JOB, headers=headers)
    conflict = await api.client.post("/v1/jobs", json={**JOB, "prompt": "other"}, headers=headers)
    assert conflict.status_code == 409
    error = conflict.json()["error"]
    assert error["code"] == "idempotency_conflict"
    assert first.json()["id"] in error["details"][0]["message"]
    assert await _counts(db) == (1, 1)


async def test_concurrent_requests_with_one_key_create_one_job(
    api: ApiHarness, db: asyncpg.Connection
):
    headers = {**api.auth("racer"), "Idempotency-Key": "race-1"}
    responses = await asyncio.gather(
        *(api.client.post("/v1/jobs", json=JOB, headers=headers) for _ in range(8))
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 7 + [202]
    assert len({r.json()["id"] for r in responses}) == 1
    assert await _counts(db) == (1, 1)


async def test_job_and_outbox_are_atomic(api: ApiHarness, db: asyncpg.Connection):
    """A failing outbox insert (trigger installed here) leaves no job row behind."""
    await db.execute(
        """
        CREATE FUNCTION test_fail_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'injected outbox failure'; END; $$;
        CREATE TRIGGER test_fail_outbox BEFORE INSERT ON outbox
            FOR EACH ROW EXECUTE FUNCTION test_fail_outbox();
        """
    )
    try:
        response = await api.client.post("/v1/jobs", json=JOB, headers=api.auth("atomic"))
    finally:
        await db.execute(
            "DROP TRIGGER test_fail_outbox ON outbox; DROP FUNCTION test_fail_outbox()"
        )
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal_error"
    assert await _counts(db) == (0, 0)
    # And the API recovers once the fault is gone.
    ok = await api.client.post("/v1/jobs", json=JOB, headers=api.auth("atomic"))
    assert ok.status_code == 202
    assert await _counts(db) == (1, 1)


async def test_delete_cache_invalidates_answer(api: ApiHarness):
    from groundwork_app.adapters.cache import AnswerCache

    services = api.app.state.services
    created = await api.client.post(
        "/v1/jobs", json={**JOB, "model": "m-2"}, headers=api.auth("cacher")
    )
    job_id = created.json()["id"]
    cache: AnswerCache = services.cache
    assert await cache.set("cacher", "  Summarise the plot of   Hamlet. ", "m-2", "cached answer")
    assert await cache.get("cacher", JOB["prompt"], "m-2") == "cached answer"  # normalized
    # Another client's entry for the same prompt is theirs: the DELETE must not touch it.
    assert await cache.set("someone", JOB["prompt"], "m-2", "their answer")

    response = await api.client.delete(f"/v1/jobs/{job_id}/cache", headers=api.auth("cacher"))
    assert response.status_code == 204
    assert await cache.get("cacher", JOB["prompt"], "m-2") is None
    assert await cache.get("someone", JOB["prompt"], "m-2") == "their answer"
    again = await api.client.delete(f"/v1/jobs/{job_id}/cache", headers=api.auth("cacher"))
    assert again.status_code == 204
    other = await api.client.delete(f"/v1/jobs/{job_id}/cache", headers=api.auth("someone"))
    assert other.status_code == 404
    read_only = await api.client.delete(
        f"/v1/jobs/{job_id}/cache", headers=api.auth("cacher", "jobs:read")
    )
    assert read_only.status_code == 403


async def test_jobs_counter_and_log_line(api: ApiHarness):
    from groundwork_app.observability.metrics import JOBS_SUBMITTED

    before = JOBS_SUBMITTED.labels("api", "created")._value.get()
    response = await api.client.post("/v1/jobs", json=JOB, headers=api.auth("counted"))
    assert JOBS_SUBMITTED.labels("api", "created")._value.get() == before + 1
    line = next(
        entry
        for entry in api.log_lines()
        if entry.get("event") == "http.request" and entry.get("route") == "/v1/jobs"
    )
    assert line["job_id"] == response.json()["id"]
    assert line["request_id"] == response.headers["x-request-id"]
    assert line["prompt_chars"] == len(JOB["prompt"])
    assert line["client_id"] == "counted"
    assert JOB["prompt"] not in api.logs.getvalue()  # sizes and hashes only


async def test_works_through_pgbouncer_in_transaction_mode(
    settings_factory: Any, clean_db: None, servers: Any, db: asyncpg.Connection
):
    from .conftest import running_api

    assert servers.pgbouncer is not None
    async with running_api(settings_factory(db_port=servers.pgbouncer.port)) as api:
        headers = api.auth("pooled")
        responses = await asyncio.gather(
            *(
                api.client.post("/v1/jobs", json={**JOB, "prompt": f"p{i}"}, headers=headers)
                for i in range(20)
            )
        )
        assert [r.status_code for r in responses] == [202] * 20
        replay = {**headers, "Idempotency-Key": "pooled-1"}
        first = await api.client.post("/v1/jobs", json=JOB, headers=replay)
        again = await api.client.post("/v1/jobs", json=JOB, headers=replay)
        assert (first.status_code, again.status_code) == (202, 200)
        job = await api.client.get(f"/v1/jobs/{first.json()['id']}", headers=headers)
        assert job.status_code == 200
        ready = await api.client.get("/health/ready")
        assert ready.status_code == 200
    assert await _counts(db) == (21, 21)
