"""Fixtures for the API tests: the real app (lifespan and all) against the real servers."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from groundwork.devenv.servers import DevServers, free_port
from groundwork.tokens import mint_token


@pytest.fixture
def settings_factory(service_env: dict[str, str]) -> Callable[..., Any]:
    """Settings from the test environment with per-test overrides (field names)."""
    from groundwork_app.settings import Settings

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {"rate_limit": "100000/minute"}
        values.update(overrides)
        return Settings(**values)

    return make


class ApiHarness:
    def __init__(self, app: Any, client: httpx.AsyncClient, logs: io.StringIO, settings: Any):
        self.app = app
        self.client = client
        self.logs = logs
        self.settings = settings

    def token(
        self,
        sub: str | None = "",
        scopes: str = "jobs:read jobs:write",
        *,
        secret: str | None = None,
        **claims: Any,
    ) -> str:
        return mint_token(
            secret or self.settings.jwt_secret.get_secret_value(),
            issuer=self.settings.jwt_issuer,
            audience=self.settings.jwt_audience,
            # "" picks a fresh client id; None leaves the claim out.
            subject=f"client-{uuid.uuid4().hex[:12]}" if sub == "" else sub,
            scopes=scopes,
            **claims,
        )

    def auth(self, sub: str = "", scopes: str = "jobs:read jobs:write") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(sub, scopes)}"}

    def log_lines(self) -> list[dict[str, Any]]:
        lines = []
        for line in self.logs.getvalue().splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                lines.append(json.loads(line))
        return lines


@contextlib.asynccontextmanager
async def running_api(settings: Any, **kwargs: Any) -> AsyncIterator[ApiHarness]:
    from groundwork_app.api.app import create_app

    logs = io.StringIO()
    app = create_app(settings, log_stream=logs, **kwargs)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield ApiHarness(app, client, logs, settings)


@pytest.fixture
async def api(settings_factory: Callable[..., Any], clean_db: None) -> AsyncIterator[ApiHarness]:
    async with running_api(settings_factory()) as harness:
        yield harness


@pytest.fixture
async def db(servers: DevServers, service_env: dict[str, str]) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(
        host="127.0.0.1",
        port=servers.postgres.port,
        user=servers.postgres.user,
        password=servers.postgres.password,
        database=servers.postgres.database,
    )
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
def hung_server() -> Iterator[int]:
    """A TCP listener on loopback that accepts connections and never answers."""
    import socket
    import threading

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            accepted.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(2)
        for conn in accepted:
            conn.close()
        listener.close()


JOB: dict[str, Any] = {"prompt": "Summarise the plot of Hamlet.", "metadata": {"ticket": "T-1"}}


CLI = str(Path(sys.executable).with_name("groundwork-app"))


def start_api(
    service_env: dict[str, str], cwd: Path, **env: str
) -> tuple[subprocess.Popen[bytes], int, Path]:
    """`groundwork-app api` on a free loopback port, its output in ``cwd``/api.log, once
    /health/live answers 200 (the test fails with the log if it exits or takes over 30 s).
    The caller stops it."""
    port = free_port()
    full_env = {
        **os.environ,
        **service_env,
        "PORT": str(port),
        "API_BIND_HOST": "127.0.0.1",
        **env,
    }
    log_path = cwd / "api.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [CLI, "api"], env=full_env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health/live", timeout=0.5).status_code == 200:
                return proc, port, log_path
        except httpx.HTTPError:
            time.sleep(0.1)
        if proc.poll() is not None:
            pytest.fail(f"api exited early:\n{log_path.read_text()[-3000:]}")
    proc.kill()
    pytest.fail(f"api did not come up:\n{log_path.read_text()[-3000:]}")
