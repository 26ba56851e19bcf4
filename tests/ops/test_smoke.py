"""HTTP smoke checks against a real local HTTP server that verifies the token."""

from __future__ import annotations

from typing import Any

import httpx
import jwt
import pytest

from groundwork.ops.errors import SmokeTestError, UserError
from groundwork.ops.smoke import http_smoke, mint_token

from .conftest import JWT_SECRET


def no_sleep(_: float) -> None:
    pass


def test_minted_token_is_a_valid_hs256_jwt_for_the_api() -> None:
    token = mint_token(JWT_SECRET, now=lambda: 1_000_000_000.0, ttl_seconds=60)
    claims = jwt.decode(
        token,
        JWT_SECRET,
        algorithms=["HS256"],
        audience="groundwork-api",
        issuer="groundwork",
        options={"verify_exp": False},
    )
    assert claims["exp"] - claims["iat"] == 60
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, "x" * 40, algorithms=["HS256"], audience="groundwork-api")


def test_short_secret_is_refused() -> None:
    with pytest.raises(UserError, match="refuses secrets under 32"):
        mint_token("short")


def test_smoke_passes_ready_and_job_round_trip(job_api: Any) -> None:
    report = http_smoke(job_api.url, mint_token(JWT_SECRET), poll_seconds=0, sleep=no_sleep)
    assert report.ready_status == 200
    assert report.job_status == "succeeded"
    assert job_api.state.jobs[report.job_id] == job_api.state.polls_until_done
    assert job_api.state.seen_tokens[0]["sub"] == "groundwork-smoke-test"


def test_not_ready_fails_before_any_job(job_api: Any) -> None:
    job_api.state.ready_status = 503
    with pytest.raises(SmokeTestError, match=r"/health/ready returned 503"):
        http_smoke(job_api.url, mint_token(JWT_SECRET), poll_seconds=0, sleep=no_sleep)
    assert not any(r.startswith("POST") for r in job_api.state.requests)


def test_rejected_token_is_named(job_api: Any) -> None:
    with pytest.raises(SmokeTestError, match="returned 401: the smoke token was rejected"):
        http_smoke(job_api.url, mint_token("w" * 40), poll_seconds=0, sleep=no_sleep)


def test_failed_job_is_reported(job_api: Any) -> None:
    job_api.state.final_status = "failed"
    with pytest.raises(SmokeTestError, match="ended failed"):
        http_smoke(job_api.url, mint_token(JWT_SECRET), poll_seconds=0, sleep=no_sleep)


def test_stuck_job_times_out(job_api: Any) -> None:
    job_api.state.polls_until_done = 10_000
    with pytest.raises(SmokeTestError, match="still queued after 0 s"):
        http_smoke(
            job_api.url,
            mint_token(JWT_SECRET),
            job_timeout_seconds=0.0,
            poll_seconds=0,
            sleep=no_sleep,
        )


def test_unreachable_api_is_one_clear_error() -> None:
    with (
        httpx.Client(timeout=1.0) as client,
        pytest.raises(SmokeTestError, match=r"GET http://127.0.0.1:9/health/ready failed"),
    ):
        http_smoke("http://127.0.0.1:9", None, client=client)


def test_bad_url_is_a_user_error() -> None:
    with pytest.raises(UserError, match="must start with https://"):
        http_smoke("api.example.com", None)


async def test_minted_token_is_accepted_by_the_services_own_verifier_for_jobs() -> None:
    # The smoke test submits a job and reads it back; the service authorises POST /v1/jobs
    # by the `jobs:write` scope and answers 403 insufficient_scope without it
    # (groundwork_app.api.auth.authorize), so verify with the service's own code.
    from groundwork_app.api.auth import TokenVerifier
    from groundwork_app.settings import Settings

    settings = Settings(jwt_secret=JWT_SECRET)
    principal = await TokenVerifier(settings).verify(mint_token(JWT_SECRET))
    assert principal.subject == "groundwork-smoke-test"
    assert {"jobs:read", "jobs:write"} <= principal.scopes
