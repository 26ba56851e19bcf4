"""Build the service image once per session for the image tests.

No public registry is reachable here or in CI, so the base image is a local stand-in
(scripts/build-base-image.sh: debootstrap bookworm + python3), passed through the
Dockerfile's BASE_IMAGE build argument. Without a Docker engine these tests skip
locally; under CI=true that is a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONTEXT = ROOT / "services/app"
BASE_IMAGE = os.environ.get("GROUNDWORK_TEST_BASE_IMAGE", "groundwork-test-base")
IMAGE = "groundwork-app:image-test"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
REPORT = ROOT / "build" / "image-report.json"
BUILD_ARGS = {
    "VERSION": "9.9.9-test",
    "REVISION": "0123456789abcdef0123456789abcdef01234567",
    "CREATED": "2026-01-01T00:00:00Z",
    "SOURCE": "https://example.invalid/groundwork",
}


def unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"image tests need a Docker engine under CI=true: {reason}", pytrace=False)
    pytest.skip(f"no Docker engine: {reason}")


@dataclass
class Docker:
    cli: str
    build_cli: list[str]
    measurements: dict[str, float] = field(default_factory=dict)

    def run(
        self, *args: str, check: bool = True, timeout: float = 120, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [self.cli, *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
            input=input,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"docker {' '.join(args[:3])} failed ({result.returncode}):\n"
                f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            )
        return result

    def inspect(self, ref: str) -> dict[str, Any]:
        return json.loads(self.run("inspect", ref).stdout)[0]


def _client_major(cli: str) -> int:
    out = subprocess.run(
        [cli, "version", "--format", "{{.Client.Version}}"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    try:
        return int(out.split(".", 1)[0])
    except ValueError:
        return -1


def _build_cli(cli: str) -> list[str]:
    """A `docker build` that runs BuildKit (the Dockerfile uses cache mounts).

    Docker >= 23 clients need the buildx plugin for BuildKit; Debian bookworm's 20.10
    client (docker.io) drives the daemon's built-in BuildKit with DOCKER_BUILDKIT=1.
    """
    if subprocess.run([cli, "buildx", "version"], capture_output=True, check=False).returncode == 0:
        return [cli, "buildx", "build", "--load"]
    candidates = [
        cli,
        "/usr/bin/docker",
        *(
            shutil.which("docker", path=p) or ""
            for p in os.environ.get("PATH", "").split(os.pathsep)
        ),
    ]
    for candidate in dict.fromkeys(c for c in candidates if c and Path(c).exists()):
        if 0 < _client_major(candidate) < 23:
            return [candidate, "build"]
    raise AssertionError(
        "no BuildKit-capable docker build: install the buildx plugin (docker-buildx) or "
        "Debian's docker.io client (/usr/bin/docker, 20.10)"
    )


@pytest.fixture(scope="session")
def docker() -> Iterator[Docker]:
    cli = shutil.which("docker")
    if cli is None:
        unavailable("docker CLI not installed (apt-get install docker.io)")
    assert cli is not None
    info = subprocess.run([cli, "info"], capture_output=True, text=True, check=False)
    if info.returncode != 0:
        unavailable(f"`docker info` failed (start dockerd): {info.stderr.strip()[-300:]}")
    handle = Docker(cli=cli, build_cli=_build_cli(cli))
    yield handle
    if handle.measurements:
        REPORT.parent.mkdir(exist_ok=True)
        REPORT.write_text(json.dumps(handle.measurements, indent=2, sort_keys=True) + "\n")


@pytest.fixture(scope="session")
def base_image(docker: Docker) -> str:
    if docker.run("image", "inspect", BASE_IMAGE, check=False).returncode != 0:
        result = subprocess.run(
            ["bash", str(ROOT / "scripts/build-base-image.sh"), BASE_IMAGE],
            capture_output=True,
            text=True,
            check=False,
            timeout=900,
        )
        assert result.returncode == 0, f"stand-in base image build failed:\n{result.stderr[-3000:]}"
    return BASE_IMAGE


@pytest.fixture(scope="session")
def image(docker: Docker, base_image: str) -> str:
    args = [f"--build-arg=BASE_IMAGE={base_image}"]
    args += [f"--build-arg={key}={value}" for key, value in BUILD_ARGS.items()]
    started = time.monotonic()
    result = subprocess.run(
        [*docker.build_cli, "--progress=plain", *args, "--tag", IMAGE, str(CONTEXT)],
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
        env={**os.environ, "DOCKER_BUILDKIT": "1"},
    )
    assert result.returncode == 0, f"image build failed:\n{result.stderr[-5000:]}"
    docker.measurements["build_seconds"] = round(time.monotonic() - started, 1)
    return IMAGE
