"""`groundwork-app api` as a real uvicorn process: healthcheck, headers, graceful SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from groundwork.devenv.servers import free_port
from groundwork.tokens import mint_token

from .conftest import CLI, JOB, start_api


@pytest.fixture
def api_process(
    service_env: dict[str, str], clean_db: None, tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[bytes], int, Path]]:
    proc, port, log_path = start_api(
        service_env,
        tmp_path,
        SHUTDOWN_TIMEOUT_SECONDS="10",
        RATE_LIMIT="1000/second",
    )
    try:
        yield proc, port, log_path
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _token(env: dict[str, str]) -> str:
    return mint_token(
        env["JWT_SECRET"],
        issuer=env["JWT_ISSUER"],
        audience=env["JWT_AUDIENCE"],
        subject="cli-client",
    )


def test_healthcheck_command(api_process, service_env: dict[str, str]):
    _, port, _ = api_process
    ok = subprocess.run(
        [CLI, "healthcheck", "api"],
        env={**os.environ, "PORT": str(port)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert ok.returncode == 0, ok.stderr
    down = subprocess.run(
        [CLI, "healthcheck", "api"],
        env={**os.environ, "PORT": str(free_port())},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert down.returncode == 1


def test_no_server_header_and_json_access_log(api_process):
    _, port, log_path = api_process
    response = httpx.get(
        f"http://127.0.0.1:{port}/health/live", headers={"X-Request-ID": "cli-req-1"}
    )
    assert "server" not in response.headers
    assert response.headers["x-request-id"] == "cli-req-1"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        lines = [
            json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")
        ]
        if any(line.get("request_id") == "cli-req-1" for line in lines):
            break
        time.sleep(0.1)
    access = next(line for line in lines if line.get("request_id") == "cli-req-1")
    assert access["event"] == "http.request" and access["route"] == "/health/live"


async def test_sigterm_drains_in_flight_request_and_exits_zero(
    api_process, service_env: dict[str, str], db: asyncpg.Connection
):
    proc, port, log_path = api_process
    # Hold a lock so the submission blocks inside the database: a slow in-flight request.
    lock = db.transaction()
    await lock.start()
    await db.execute("LOCK TABLE outbox IN ACCESS EXCLUSIVE MODE")
    async with httpx.AsyncClient(timeout=30) as client:
        request = asyncio.create_task(
            client.post(
                f"http://127.0.0.1:{port}/v1/jobs",
                json=JOB,
                headers={"Authorization": f"Bearer {_token(service_env)}"},
            )
        )
        async with asyncio.timeout(10):
            while not request.done() and not await db.fetchval(
                "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                "WHERE c.relname = 'outbox' AND NOT l.granted"
            ):
                await asyncio.sleep(0.05)
        assert not request.done(), log_path.read_text()[-3000:]
        proc.send_signal(signal.SIGTERM)
        # No longer accepting new connections while draining (the listener closes soon
        # after the signal; on a loaded machine "soon" is not a fixed half second).
        refused = False
        async with asyncio.timeout(10):
            while not refused:
                assert proc.poll() is None, log_path.read_text()[-3000:]
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                except ConnectionRefusedError:
                    refused = True
                else:
                    await asyncio.sleep(0.05)
        assert proc.poll() is None  # still draining the in-flight request
        await lock.rollback()
        response = await request
    assert response.status_code == 202, response.text
    assert proc.wait(timeout=20) == 0
    log = log_path.read_text()
    assert '"api.stopped"' in log
    assert await db.fetchval("SELECT count(*) FROM jobs") == 1
