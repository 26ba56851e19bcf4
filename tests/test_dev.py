"""`groundwork dev`, the README's local run, brings the whole service up for real."""

from __future__ import annotations

import os
import subprocess
import sys

import jwt
import pytest

from groundwork.dev import dev_token

pytestmark = pytest.mark.slow


def test_dev_token_is_accepted_by_the_service_rules():
    token = dev_token("x" * 40, "groundwork-dev", "groundwork-api")
    claims = jwt.decode(
        token, "x" * 40, algorithms=["HS256"], audience="groundwork-api", issuer="groundwork-dev"
    )
    assert set(claims["scope"].split()) == {"jobs:read", "jobs:write"}
    assert claims["exp"] - claims["iat"] == 12 * 3600


def test_dev_smoke_runs_api_relay_and_worker_end_to_end():
    # A real run of the README command: loopback Postgres/Redis/RabbitMQ, migrations,
    # api + relay + worker processes, one job submitted and processed.
    result = subprocess.run(
        [sys.executable, "-m", "groundwork.cli", "dev", "--smoke", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
        env={**os.environ, "LOG_JSON": "true"},
    )
    if result.returncode == 2 and "not found" in result.stderr and not os.environ.get("CI"):
        pytest.skip(result.stderr.strip().splitlines()[-1])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "succeeded" in result.stderr
    assert "Traceback" not in result.stderr


def test_dev_bench_and_smoke_tokens_come_from_one_helper() -> None:
    # One owner for the claims the service checks: each client's token decodes to the
    # same claim set, differing only in subject, lifetime and the smoke test's nonce.
    from bench.common import Auth
    from groundwork.ops.smoke import mint_token as smoke_token

    secret = "k" * 40
    decoded = [
        jwt.decode(t, secret, algorithms=["HS256"], audience="groundwork-api")
        for t in (
            dev_token(secret, "groundwork", "groundwork-api"),
            Auth(secret, issuer="groundwork").token(),
            smoke_token(secret),
        )
    ]
    assert {c["scope"] for c in decoded} == {"jobs:read jobs:write"}
    assert [sorted(c) for c in decoded[:2]] == [["aud", "exp", "iat", "iss", "scope", "sub"]] * 2
    assert sorted(decoded[2]) == ["aud", "exp", "iat", "iss", "jti", "nbf", "scope", "sub"]
