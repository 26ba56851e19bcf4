"""The service as ECS and Cloud Run run it: `groundwork-app api`, `worker` and `relay`
as separate processes with the stacks' logging settings, each writing stdout and stderr
into one file (as the awslogs driver takes both). Shared by the measurements the cost
model's figures come from (test_log_volume.py, test_wire_volume.py)."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from groundwork_app.settings import Settings

from groundwork.devenv.servers import free_port
from groundwork.tokens import mint_token

from ..api.conftest import CLI, start_api
from .conftest import wait_for


class Output:
    """One process's stdout+stderr file, read in slices between marks."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0

    def text(self) -> str:
        return self.path.read_bytes().decode(errors="replace")

    def mark(self) -> None:
        self.offset = self.path.stat().st_size

    def since_mark(self) -> bytes:
        data = self.path.read_bytes()[self.offset :]
        # Only whole lines: a line being written belongs to the next slice.
        return data[: data.rfind(b"\n") + 1]


async def logged(output: Output, text: str, count: int = 1, timeout: float = 60) -> None:
    async def seen() -> bool:
        return output.text().count(text) >= count

    await wait_for(seen, timeout, what=f"{count} x {text!r} in {output.path.name}")


def process_env(service_env: dict[str, str], queue_name: str, **extra: str) -> dict[str, str]:
    """The environment the stacks give each process (stacks/service_env.py: JSON logs at
    INFO), on this test's queue; one client submits every job here, so the per-client
    rate limit (production: 60/minute) is lifted."""
    return {
        **os.environ,
        **service_env,
        "QUEUE_NAME": queue_name,
        "LOG_JSON": "true",
        "LOG_LEVEL": "INFO",
        "RATE_LIMIT": "100000/minute",
        **extra,
    }


@dataclass
class Service:
    api: subprocess.Popen[bytes]
    worker: subprocess.Popen[bytes]
    relay: subprocess.Popen[bytes]
    port: int
    out: dict[str, Output]

    def stop(self) -> None:
        """SIGTERM to each, as ECS and Cloud Run stop a task; killed after 30 s."""
        for proc in self.processes.values():
            proc.terminate()
        for proc in self.processes.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()

    @property
    def processes(self) -> dict[str, subprocess.Popen[bytes]]:
        return {"api": self.api, "worker": self.worker, "relay": self.relay}


def _start(process: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    # Heartbeats and health ports of their own: worker and relay run side by side.
    env = {**env, "WORKER_HEALTH_PORT": str(free_port()), "HEARTBEAT_FILE": f"{log}.beat"}
    with log.open("wb") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen([CLI, process], env=env, stdout=out, stderr=subprocess.STDOUT)


async def start_service(env: dict[str, str], tmp_path: Path) -> Service:
    """Worker, relay and api started, returned once the worker consumes, the relay
    listens and the api answers /health/live. The caller stops them."""
    worker = _start("worker", env, tmp_path / "worker.log")
    relay = _start("relay", env, tmp_path / "relay.log")
    api, port, api_log = start_api(env, tmp_path)
    out = {
        "api": Output(api_log),
        "worker": Output(tmp_path / "worker.log"),
        "relay": Output(tmp_path / "relay.log"),
    }
    service = Service(api=api, worker=worker, relay=relay, port=port, out=out)
    try:
        await logged(out["worker"], '"consuming"')
        await logged(out["relay"], "listening for outbox notifications")
    except BaseException:
        service.stop()
        raise
    return service


def bearer(settings: Settings, subject: str) -> dict[str, str]:
    """The Authorization header of a client allowed to submit and read jobs."""
    token = mint_token(
        settings.jwt_secret.get_secret_value(),
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        subject=subject,
        scopes="jobs:read jobs:write",
    )
    return {"Authorization": f"Bearer {token}"}
