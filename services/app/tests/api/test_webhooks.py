"""The HMAC-signed webhook: signature, timestamp tolerance, replay safety."""

from __future__ import annotations

import json
import time

import asyncpg
import pytest
from groundwork_app.api.routes.webhooks import sign

from .conftest import JOB, ApiHarness

BODY = json.dumps(JOB).encode()


def _headers(
    api: ApiHarness, body: bytes = BODY, *, at: int | None = None, secret: str | None = None
) -> dict[str, str]:
    timestamp = int(time.time()) if at is None else at
    key = secret or api.settings.webhook_secret.get_secret_value()
    return {
        "Content-Type": "application/json",
        "X-Signature": f"t={timestamp},v1={sign(key, timestamp, body)}",
    }


async def test_signed_delivery_creates_a_job(api: ApiHarness, db: asyncpg.Connection):
    response = await api.client.post("/v1/webhooks/jobs", content=BODY, headers=_headers(api))
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    row = await db.fetchrow("SELECT client_id, prompt FROM jobs WHERE id = $1::uuid", job_id)
    assert row["client_id"] == "system:webhook"
    assert row["prompt"] == JOB["prompt"]
    assert await db.fetchval("SELECT count(*) FROM outbox") == 1


async def test_replayed_delivery_returns_the_original_job(api: ApiHarness, db: asyncpg.Connection):
    headers = _headers(api)
    first = await api.client.post("/v1/webhooks/jobs", content=BODY, headers=headers)
    replay = await api.client.post("/v1/webhooks/jobs", content=BODY, headers=headers)
    assert first.status_code == 202
    assert replay.status_code == 200
    assert replay.json()["id"] == first.json()["id"]
    assert await db.fetchval("SELECT count(*) FROM jobs") == 1


async def test_rotation_accepts_any_listed_signature(api: ApiHarness):
    at = int(time.time())
    good = sign(api.settings.webhook_secret.get_secret_value(), at, BODY)
    old = sign("an-old-secret-that-was-rotated-away", at, BODY)
    response = await api.client.post(
        "/v1/webhooks/jobs",
        content=BODY,
        headers={"Content-Type": "application/json", "X-Signature": f"t={at},v1={old},v1={good}"},
    )
    assert response.status_code == 202


@pytest.mark.parametrize(
    ("signature", "code"),
    [
        (None, "invalid_signature"),
        ("", "invalid_signature"),
        ("garbage", "invalid_signature"),
        ("t=abc,v1=00", "invalid_signature"),
        ("t=123", "invalid_signature"),
        ("v1=" + "0" * 64, "invalid_signature"),
        ("t={now},v1=" + "0" * 64, "invalid_signature"),
        ("t={stale},v1={stale_sig}", "signature_expired"),
        ("t={future},v1={future_sig}", "signature_expired"),
        ("t={now},v1={wrong_key}", "invalid_signature"),
    ],
)
async def test_bad_signatures_are_401(
    api: ApiHarness, db: asyncpg.Connection, signature: str | None, code: str
):
    now = int(time.time())
    secret = api.settings.webhook_secret.get_secret_value()
    tolerance = api.settings.webhook_tolerance_seconds
    stale, future = now - tolerance - 5, now + tolerance + 5
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["X-Signature"] = signature.format(
            now=now,
            stale=stale,
            future=future,
            stale_sig=sign(secret, stale, BODY),
            future_sig=sign(secret, future, BODY),
            wrong_key=sign("x" * 40, now, BODY),
        )
    response = await api.client.post("/v1/webhooks/jobs", content=BODY, headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == code
    assert await db.fetchval("SELECT count(*) FROM jobs") == 0


async def test_tampered_body_is_rejected(api: ApiHarness, db: asyncpg.Connection):
    headers = _headers(api)
    tampered = BODY.replace(b"Hamlet", b"Macbeth")
    response = await api.client.post("/v1/webhooks/jobs", content=tampered, headers=headers)
    assert response.status_code == 401
    assert await db.fetchval("SELECT count(*) FROM jobs") == 0


async def test_signed_but_invalid_body_is_422(api: ApiHarness, db: asyncpg.Connection):
    body = b'{"prompt": ""}'
    response = await api.client.post("/v1/webhooks/jobs", content=body, headers=_headers(api, body))
    assert response.status_code == 422
    assert await db.fetchval("SELECT count(*) FROM jobs") == 0
