"""The first `pulumi up` of an empty project, written down as an ordering.

1. ``pulumi up`` creates Cloud SQL, Memorystore, the secrets, then the api, worker and
   relay services. Exists: an empty database (no tables); Redis may be restarting (BASIC
   tier maintenance). Has run: nothing; the migrate job is created, not executed. Each
   revision's startup probe must pass or the create fails.
2. ``gcloud run jobs execute <migrate_job_name> --wait`` (docs/deploy-gcp.md). Exists:
   the schema. Readiness (dependencies) turns green.

Cloud Run marks a revision ready only after its startup probe succeeds and fails the
deployment when it does not within ``failure_threshold x period_seconds``
(https://cloud.google.com/run/docs/configuring/healthchecks). So every startup probe
must need only the process: the services are started for real here against an empty
PostgreSQL database with Redis down, and the probe path the stack deploys must answer
200, while /health/ready (what the relay's startup probe used to call) does not.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from groundwork.devenv.servers import Postgres, free_port
from groundwork.mockrun import ProgramRun
from tests.gcp.helpers import containers
from testsupport.servers import postgres_for_test

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
SERVICES = ("api", "worker", "relay")
APP = str(Path(sys.executable).parent / "groundwork-app")


@pytest.mark.parametrize("stack", ["staging", "production"])
def test_first_up_does_not_run_migrations(stack: str, request: pytest.FixtureRequest) -> None:
    graph: ProgramRun = request.getfixturevalue(stack)
    job = graph.one("gcp:cloudrunv2/job:Job")
    # Neither token is set: the job is created without an execution, so the services
    # below start against a database without tables on the first up.
    assert not job.inputs.get("startExecutionToken")
    assert not job.inputs.get("runExecutionToken")
    for service in graph.of_type("gcp:cloudrunv2/service:Service"):
        assert job.urn not in service.depends_on


@pytest.fixture(scope="module")
def empty_database() -> Iterator[Postgres]:
    postgres = postgres_for_test("groundwork-first-up-")
    yield postgres
    postgres.stop()


def _env(postgres: Postgres, port: int) -> dict[str, str]:
    closed = free_port()  # nothing listens: Redis down, no Pub/Sub reachable
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/tmp"),
        "PORT": str(port),
        "APP_ENV": "staging",
        "LOG_LEVEL": "WARNING",
        "DB_HOST": "127.0.0.1",
        "DB_PORT": str(postgres.port),
        "DB_NAME": postgres.database,
        "DB_USER": postgres.user,
        "DB_PASSWORD": postgres.password,
        "DB_SSLMODE": "disable",
        "REDIS_HOST": "127.0.0.1",
        "REDIS_PORT": str(closed),
        "REDIS_PASSWORD": secrets.token_urlsafe(24),
        "JWT_SECRET": secrets.token_urlsafe(40),
        "WEBHOOK_SECRET": secrets.token_urlsafe(40),
        "QUEUE_BACKEND": "pubsub",
        "PUBSUB_PROJECT_ID": "acme-groundwork",
        "PUBSUB_EMULATOR_HOST": f"127.0.0.1:{closed}",
        "PUBSUB_PUSH_AUDIENCE": "https://acme-groundwork/worker/pubsub/push",
        "PUBSUB_PUSH_AUTH": "cloud-run-iam",
        "HEARTBEAT_FILE": str(Path(tempfile.gettempdir()) / f"gw-first-up-{port}"),
    }


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _get(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.HTTPError:
        return None


def _wait_for(url: str, want: int, seconds: float) -> int | None:
    deadline = time.monotonic() + seconds
    status = None
    while time.monotonic() < deadline:
        status = _get(url)
        if status == want:
            return status
        time.sleep(0.3)
    return status


@pytest.mark.parametrize("process", SERVICES)
def test_startup_probe_passes_on_an_empty_database_with_redis_down(
    process: str, staging: ProgramRun, empty_database: Postgres
) -> None:
    container = containers(staging)[process]
    probe = container["startupProbe"]
    budget = probe["failureThreshold"] * probe["periodSeconds"]
    port = free_port()
    proc = subprocess.Popen(
        [APP, process], env=_env(empty_database, port), stdout=subprocess.DEVNULL
    )
    try:
        base = f"http://127.0.0.1:{port}"
        status = _wait_for(base + probe["httpGet"]["path"], 200, min(budget, 40))
        assert status == 200, f"{process}: startup probe {probe['httpGet']} answered {status}"
        liveness = container["livenessProbe"]["httpGet"]["path"]
        assert _get(base + liveness) == 200
        assert proc.poll() is None, f"{process} exited with {proc.returncode}"
        if process != "worker":
            # The dependency check is not green yet (no schema / no Redis): had the probe
            # used it, the revision would never have become ready.
            assert _get(base + "/health/ready") == 503
    finally:
        _stop(proc)


def test_relay_turns_ready_once_the_documented_migration_ran(empty_database: Postgres) -> None:
    """Step 2 of the first deploy: the migrate job runs, the relay's readiness follows."""
    empty_database.create_database("first_up_then_migrate")
    port = free_port()
    env = {**_env(empty_database, port), "DB_NAME": "first_up_then_migrate"}
    proc = subprocess.Popen([APP, "relay"], env=env, stdout=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        assert _wait_for(base + "/health/live", 200, 30) == 200
        assert _wait_for(base + "/health/ready", 503, 10) == 503
        migrate = subprocess.run(
            [APP, "migrate"], env=env, capture_output=True, text=True, timeout=120
        )
        assert migrate.returncode == 0, migrate.stderr[-2000:]
        # The relay backs off at most RELAY_MAX_BACKOFF_SECONDS (10 s) between attempts.
        assert _wait_for(base + "/health/ready", 200, 25) == 200
    finally:
        _stop(proc)
