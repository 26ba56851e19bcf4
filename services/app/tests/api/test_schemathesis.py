"""Property-based testing of the live API against its own OpenAPI schema (schemathesis).

The real `groundwork-app api` process (uvicorn, PostgreSQL, Redis) serves
/openapi.json; schemathesis generates requests from it, valid and invalid, for every
operation and runs every check it has on each response: no 5xx, status codes and
headers and bodies as documented, content types, negative data rejected, auth
enforced (`ignored_auth` re-sends without the token and expects 401). The run is
bounded (GROUNDWORK_SCHEMATHESIS_EXAMPLES per operation, 25 by default; derandomized
so CI is reproducible; raise it locally to look further) and part of the normal
pytest run, so `.ci/run` runs it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest

from .conftest import start_api

EXAMPLES = int(os.environ.get("GROUNDWORK_SCHEMATHESIS_EXAMPLES", "25"))


@pytest.fixture(scope="module")
def live_api(
    service_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("schemathesis")
    proc, port, log_path = start_api(
        service_env, tmp, RATE_LIMIT="100000/minute", LOG_LEVEL="WARNING"
    )
    base = f"http://127.0.0.1:{port}"
    try:
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        # A 5xx the checks saw is in the log with its traceback: show it.
        text = log_path.read_text(errors="replace")
        if "Traceback" in text:
            print(text[-5000:])


@pytest.fixture(scope="module")
def bearer(service_env: dict[str, str]) -> dict[str, str]:
    now = int(time.time())
    token = jwt.encode(
        {
            "sub": "schemathesis",
            "iss": service_env["JWT_ISSUER"],
            "aud": service_env["JWT_AUDIENCE"],
            "iat": now,
            "exp": now + 3600,
            "scope": "jobs:read jobs:write",
        },
        service_env["JWT_SECRET"],
        algorithm="HS256",
    )
    return {"Authorization": f"Bearer {token}"}


def test_the_api_honours_its_openapi_schema(
    live_api: str, bearer: dict[str, str], tmp_path: Path
) -> None:
    """`schemathesis run` (its CLI: the maintained entry point) with every check, every
    phase it has (examples, coverage, fuzzing, stateful links), positive and negative
    data, a fixed seed and a bounded example count."""
    report = tmp_path / "junit.xml"
    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("schemathesis")),
            "--config-file",
            str(Path(__file__).with_name("schemathesis.toml")),
            "run",
            f"{live_api}/openapi.json",
            "--checks",
            "all",
            "--mode",
            "all",
            "--max-examples",
            str(EXAMPLES),
            "--seed",
            "17",
            "--generation-deterministic",
            "--header",
            f"Authorization: {bearer['Authorization']}",
            "--request-timeout",
            "10",
            "--report",
            "junit",
            "--report-junit-path",
            str(report),
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=tmp_path,  # its example cache (.schemathesis/) stays out of the checkout
    )
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
    # It really ran every operation (a schema that failed to load would test nothing).
    assert "operations" in result.stdout.lower(), result.stdout[-2000:]
