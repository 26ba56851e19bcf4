"""`groundwork dev`: the service running locally against real loopback servers.

Starts PostgreSQL, Redis, RabbitMQ (with its management UI) from the machine's
Debian packages on free ports, applies the migrations, then runs the api, relay and
worker processes exactly as the image would. Secrets are generated per run and a
development bearer token is printed so the API can be tried at once. `--smoke`
submits one job, waits for its result and exits (what the tests run).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import typer
from rich.console import Console
from rich.table import Table

from groundwork.devenv.servers import DevServers, ServerUnavailableError, dev_servers, free_ports
from groundwork.tokens import mint_token

console = Console(stderr=True)
PROCESSES = ("api", "relay", "worker")


def dev_token(secret: str, issuer: str, audience: str, subject: str = "dev-user") -> str:
    return mint_token(
        secret, issuer=issuer, audience=audience, subject=subject, ttl_seconds=12 * 3600
    )


def service_env(servers: DevServers, api_port: int) -> dict[str, str]:
    return {
        **os.environ,
        **servers.env(),
        "APP_ENV": "development",
        "LOG_JSON": os.environ.get("LOG_JSON", "false"),
        "JWT_SECRET": secrets.token_urlsafe(40),
        "WEBHOOK_SECRET": secrets.token_urlsafe(40),
        "JWT_ISSUER": "groundwork-dev",
        "JWT_AUDIENCE": "groundwork-api",
        "API_BIND_HOST": "127.0.0.1",
        "HEARTBEAT_FILE": str(Path(os.environ.get("TMPDIR", "/tmp")) / f"gw-{api_port}.hb"),  # noqa: S108
    }


def _app_command() -> list[str]:
    return [sys.executable, "-m", "groundwork_app.cli"]


@contextlib.contextmanager
def running_service(
    servers: DevServers, env: dict[str, str], api_port: int, health_ports: list[int]
) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    migrate = subprocess.run(  # noqa: S603 - our own interpreter and module
        [*_app_command(), "migrate"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if migrate.returncode != 0:
        raise ServerUnavailableError(f"migrations failed: {migrate.stderr.strip()[-500:]}")
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name, health_port in zip(PROCESSES, health_ports, strict=True):
            # worker and relay each serve health/metrics; give each its own port locally.
            own = {
                **env,
                # Only the api serves on $PORT; the relay would bind it too (Cloud Run).
                **({"PORT": str(api_port)} if name == "api" else {}),
                "WORKER_HEALTH_PORT": str(health_port),
                "HEARTBEAT_FILE": f"{env['HEARTBEAT_FILE']}.{name}",
            }
            processes[name] = subprocess.Popen([*_app_command(), name], env=own)  # noqa: S603
        yield processes
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes.values():
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()


def wait_ready(url: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            response = httpx.get(url, timeout=1.0)
            if response.status_code == 200:
                return
            last = f"HTTP {response.status_code}: {response.text[:200]}"
        except httpx.HTTPError as exc:
            last = str(exc)
        time.sleep(0.2)
    raise ServerUnavailableError(f"{url} not ready after {timeout:.0f}s ({last})")


def smoke(api: str, token: str, timeout: float = 60.0) -> dict[str, object]:
    """Submit one job and wait until the worker stored its result."""
    headers = {"Authorization": f"Bearer {token}", "X-Request-ID": "dev-smoke-1"}
    response = httpx.post(
        f"{api}/v1/jobs", json={"prompt": "Say hello to groundwork."}, headers=headers, timeout=5.0
    )
    response.raise_for_status()
    job_id = response.json()["id"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reply = httpx.get(f"{api}/v1/jobs/{job_id}", headers=headers, timeout=5.0)
        reply.raise_for_status()
        job = reply.json()
        if job["status"] in ("succeeded", "failed"):
            return dict(job)
        time.sleep(0.2)
    raise ServerUnavailableError(f"job {job_id} did not finish within {timeout:.0f}s")


class _Stop(Exception):
    """SIGTERM/SIGINT arrived: unwind, so every process and the temp dir are cleaned up."""


def _stop_on_signals() -> None:
    """Turn SIGTERM and SIGINT into ``_Stop`` from here on, wherever we are (starting
    servers, waiting). SIGTERM's default action would end this process on the spot and
    orphan every server and service process; a signal arriving during the cleanup is
    ignored so the cleanup itself is never cut short."""

    def handler(signum: int, _frame: object) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)
        raise _Stop(signal.Signals(signum).name)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, handler)


def dev(
    smoke_test: bool = typer.Option(False, "--smoke", help="Submit one job, wait, exit."),
    port: int = typer.Option(8000, help="API port on 127.0.0.1 (0 picks a free one)."),
) -> None:
    """Run the api, relay and worker locally against loopback Postgres, Redis and RabbitMQ."""
    _stop_on_signals()
    try:
        _dev(smoke_test, port)
    except _Stop as stop:
        console.print(f"stopped ({stop}): every process stopped, temporary files removed")


def _dev(smoke_test: bool, port: int) -> None:
    # Every port chosen at once, so no two processes are handed the same one.
    free_api_port, *health_ports = free_ports(1 + len(PROCESSES))
    api_port = port or free_api_port
    try:
        with dev_servers(management=True) as servers:
            env = service_env(servers, api_port)
            api = f"http://127.0.0.1:{api_port}"
            with running_service(servers, env, api_port, health_ports):
                wait_ready(f"{api}/health/ready")
                token = dev_token(env["JWT_SECRET"], env["JWT_ISSUER"], env["JWT_AUDIENCE"])
                if smoke_test:
                    job = smoke(api, token)
                    console.print(f"job {job['id']}: {job['status']}")
                    if job["status"] != "succeeded":
                        raise typer.Exit(1)
                    return
                _print_summary(api, servers, token)
                while True:  # until a signal raises _Stop
                    signal.pause()
    except (ServerUnavailableError, httpx.HTTPError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None


def _print_summary(api: str, servers: DevServers, token: str) -> None:
    table = Table(title="groundwork dev", show_header=False)
    table.add_row("API", api)
    table.add_row("OpenAPI docs", f"{api}/docs")
    table.add_row("Metrics", f"{api}/metrics")
    table.add_row(
        "RabbitMQ UI",
        f"http://127.0.0.1:{servers.rabbitmq.management_port}/ "
        f"({servers.rabbitmq.user} / {servers.rabbitmq.password})",
    )
    table.add_row("PostgreSQL", f"127.0.0.1:{servers.postgres.port}")
    console.print(table)
    console.print("Try it (token valid 12 h, this run only):")
    # Never wrapped (rich wraps at 80 columns when stderr is not a terminal): the lines
    # must paste as they are.
    console.print(f"  export TOKEN={token}", soft_wrap=True, markup=False, highlight=False)
    console.print(
        f'  curl -s -X POST {api}/v1/jobs -H "Authorization: Bearer $TOKEN" '
        "-H 'Content-Type: application/json' -d '{\"prompt\": \"hello\"}'",
        soft_wrap=True,
        markup=False,
        highlight=False,
    )
    console.print("Ctrl-C stops everything.")
