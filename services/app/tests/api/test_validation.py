"""Malformed requests: a clear 4xx with the error body, never a 5xx, nothing written."""

from __future__ import annotations

import asyncpg
import pytest

from .conftest import JOB, ApiHarness

BIG = "x" * 70_000


@pytest.mark.parametrize(
    ("content", "content_type", "status", "field"),
    [
        (b"{not json", "application/json", 422, "body"),
        (b"", "application/json", 422, "body"),
        (b"[]", "application/json", 422, "body"),
        (b'"just a string"', "application/json", 422, "body"),
        (b'{"prompt": ""}', "application/json", 422, "body.prompt"),
        (b'{"prompt": "   "}', "application/json", 422, "body.prompt"),
        (b'{"prompt": 42}', "application/json", 422, "body.prompt"),
        (b'{"prompt": null}', "application/json", 422, "body.prompt"),
        (b"{}", "application/json", 422, "body.prompt"),
        (b'{"prompt": "hi", "extra": 1}', "application/json", 422, "body"),
        (b'{"prompt": "hi", "model": "bad model!"}', "application/json", 422, "body.model"),
        (b'{"prompt": "hi", "model": 3}', "application/json", 422, "body.model"),
        (b'{"prompt": "hi", "metadata": []}', "application/json", 422, "body.metadata"),
        (
            b'{"prompt": "hi", "metadata": {"a": {"nested": 1}}}',
            "application/json",
            422,
            "body.metadata",
        ),
        (b'{"prompt": "hi", "metadata": {"bad key": 1}}', "application/json", 422, "body.metadata"),
        (b'{"prompt": "hi", "metadata": {"n": 1e999}}', "application/json", 422, "body.metadata"),
        (
            b'{"prompt": "hi", "metadata": {"n": 123456789012345678901234567890}}',
            "application/json",
            422,
            "body.metadata",
        ),
        (b'{"prompt": "nul \\u0000 byte"}', "application/json", 422, "body.prompt"),
        (b'{"prompt": "lone \\ud800 surrogate"}', "application/json", 422, "body"),
        (b'{"prompt": "\xff\xfe invalid utf-8"}', "application/json", 422, "body"),
        (('{"prompt": "' + "y" * 8001 + '"}').encode(), "application/json", 422, "body.prompt"),
        (b'{"prompt": "hi"}', "text/plain", 415, None),
        (b'{"prompt": "hi"}', "application/x-www-form-urlencoded", 415, None),
        (b'{"prompt": "hi"}', "application/json; charset=latin-1", 415, None),
        (b'{"prompt": "hi"}', "", 415, None),
        (('{"prompt": "' + BIG + '"}').encode(), "application/json", 413, None),
    ],
)
async def test_malformed_bodies_are_4xx_and_write_nothing(
    api: ApiHarness,
    db: asyncpg.Connection,
    content: bytes,
    content_type: str,
    status: int,
    field: str | None,
):
    headers = {**api.auth(), "Content-Type": content_type}
    response = await api.client.post("/v1/jobs", content=content, headers=headers)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] and error["message"]
    assert error["request_id"] == response.headers["x-request-id"]
    if field is not None:
        assert any(d["field"] == field for d in error["details"]), error
        assert all("input" not in d for d in error["details"])
    assert await db.fetchval("SELECT count(*) FROM jobs") == 0
    assert await db.fetchval("SELECT count(*) FROM outbox") == 0


@pytest.mark.parametrize(
    "body",
    [
        {"prompt": "hi", "metadata": {"secretkeyname!": 1}},
        {"prompt": "hi", "metadata": {"secretkeyname": {"nested": 1}}},
        {"prompt": "hi", "metadata": {"secretkeyname": "x" * 300}},
        {"prompt": "hi", "metadata": {"secretkeyname": 2**60}},
        {"prompt": "hi", "metadata": {"secretkeyname": "nul \u0000"}},
        {"prompt": "hi", "secretkeyname": 1},
    ],
)
async def test_422_never_echoes_a_submitted_key(api: ApiHarness, body: dict[str, object]):
    """docs/api.md: the submitted value is never echoed. Before, the metadata key came
    back in the message ("key 'secretkeyname!' must match ...") and in the location."""
    response = await api.client.post("/v1/jobs", json=body, headers=api.auth())
    assert response.status_code == 422
    assert "secretkeyname" not in response.text
    assert response.json()["error"]["details"], response.text


async def test_valid_unicode_edge_cases_are_accepted(api: ApiHarness, db: asyncpg.Connection):
    prompt = "emoji 🧪, RTL \u202e, combining e\u0301, CJK 漢字, zero-width \u200b"
    response = await api.client.post(
        "/v1/jobs", json={"prompt": prompt, "metadata": {"k": "ü" * 256}}, headers=api.auth()
    )
    assert response.status_code == 202, response.text
    assert await db.fetchval("SELECT prompt FROM jobs") == prompt


async def test_chunked_body_over_the_limit_is_413(api: ApiHarness, db: asyncpg.Connection):
    async def chunks():
        yield b'{"prompt": "'
        for _ in range(100):
            yield b"z" * 1000
        yield b'"}'

    response = await api.client.post(
        "/v1/jobs", content=chunks(), headers={**api.auth(), "Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert await db.fetchval("SELECT count(*) FROM jobs") == 0


@pytest.mark.parametrize("key", ["", "has space", "x" * 256, "ümlaut", "semi;colon", "new\\nline"])
async def test_bad_idempotency_keys_are_422(api: ApiHarness, db: asyncpg.Connection, key: str):
    response = await api.client.post(
        "/v1/jobs",
        json=JOB,
        headers=[
            *((k.encode(), v.encode()) for k, v in api.auth().items()),
            (b"Idempotency-Key", key.encode("utf-8")),
        ],
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"][0]["field"] == "header.Idempotency-Key"
    assert await db.fetchval("SELECT count(*) FROM jobs") == 0


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/v1/jobs/not-a-uuid", 422),
        ("GET", "/v1/jobs/%00", 422),
        ("GET", "/v1/jobs/" + "9" * 5000, 422),
        ("DELETE", "/v1/jobs/123/cache", 422),
        ("GET", "/v1/nope", 404),
        ("PUT", "/v1/jobs", 405),
        ("PATCH", "/v1/jobs/0b8e5c1e-8f1d-4a61-9b3c-2d1c1f7f6a10", 405),
    ],
)
async def test_bad_paths_and_methods(api: ApiHarness, method: str, path: str, status: int):
    response = await api.client.request(method, path, headers=api.auth())
    assert response.status_code == status
    assert response.json()["error"]["code"] in (
        "validation_failed",
        "not_found",
        "method_not_allowed",
    )


async def test_bad_headers_never_cause_5xx(api: ApiHarness):
    cases: list[dict[str, bytes]] = [
        {"Authorization": b"Bearer"},
        {"Authorization": b"Bearer " + b"a" * 8000},
        {"Authorization": b"\xff\xfe"},
        {"X-Request-ID": b"\xff" * 10},
        {"X-Request-ID": b"x" * 500},
        {"Content-Type": b"\xff/json"},
        {"traceparent": b"garbage"},
        {"Idempotency-Key": b"\xff"},
    ]
    for extra in cases:
        headers = {**api.auth(), **extra}
        response = await api.client.post("/v1/jobs", json=JOB, headers=headers)  # type: ignore[arg-type]
        assert response.status_code < 500, (extra, response.text)
        assert response.json().get("error") or response.status_code == 202
