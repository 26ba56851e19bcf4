"""The image's build inputs: hashed lock exports, a digest-pinned base, hadolint.

The build context is services/app alone, so the image cannot read the workspace
uv.lock; it installs services/app/requirements.lock, an export of it. These tests
fail when the export is stale (regenerate with scripts/lock-image-requirements.sh).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "services/app"
DOCKERFILE = APP / "Dockerfile"
LOCK_SCRIPT = ROOT / "scripts/lock-image-requirements.sh"


def _requirements(text: str) -> dict[str, list[str]]:
    """name==version[; marker] -> its hashes, comments dropped."""
    reqs: dict[str, list[str]] = {}
    current = None
    for raw in text.splitlines():
        line = raw.strip().rstrip("\\").strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("--hash="):
            assert current is not None
            reqs[current].append(line.removeprefix("--hash="))
        else:
            current = line
            reqs[current] = []
    return reqs


def test_runtime_lock_matches_the_workspace_lock() -> None:
    # The script's own export (with its exclusions), so the check and the
    # regeneration cannot drift apart.
    export = subprocess.run(
        ["bash", str(LOCK_SCRIPT), "--print-runtime"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={
            **os.environ,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        },
    ).stdout
    committed = (APP / "requirements.lock").read_text()
    assert _requirements(committed) == _requirements(export), (
        "services/app/requirements.lock is stale: run scripts/lock-image-requirements.sh"
    )


def _excluded_packages() -> set[str]:
    match = re.search(r"^IMAGE_EXCLUDED_PACKAGES=\(([^)]*)\)", LOCK_SCRIPT.read_text(), re.M)
    assert match, "scripts/lock-image-requirements.sh must define IMAGE_EXCLUDED_PACKAGES=(...)"
    return set(match[1].split())


def test_packages_excluded_from_the_image_are_locked_but_not_installed() -> None:
    excluded = _excluded_packages()
    assert excluded, "IMAGE_EXCLUDED_PACKAGES is empty"
    lock = (ROOT / "uv.lock").read_text()
    image_reqs = {
        req.split("==")[0] for req in _requirements((APP / "requirements.lock").read_text())
    }
    for name in excluded:
        # Still in the workspace lock (typer declares rich), only left out of the image.
        assert f'\nname = "{name}"\n' in lock, f"{name} is no longer locked: drop the exclusion"
        assert name not in image_reqs, f"{name} is excluded but still in requirements.lock"
    # Typer imports rich lazily for help, usage errors and tracebacks; without rich
    # installed it must be told not to, or `--help` would raise ImportError.
    assert "rich" not in excluded or re.search(
        r"^\s*TYPER_USE_RICH=0\b", DOCKERFILE.read_text(), re.M
    ), "the Dockerfile must set TYPER_USE_RICH=0 when rich is not installed"


def test_every_locked_requirement_is_pinned_and_hashed() -> None:
    for name in ("requirements.lock", "requirements-build.lock"):
        reqs = _requirements((APP / name).read_text())
        assert reqs, name
        for req, hashes in reqs.items():
            assert "==" in req, f"{name}: {req} is not pinned"
            assert hashes, f"{name}: {req} has no hash"
            assert all(h.startswith("sha256:") for h in hashes), f"{name}: {req}"


def test_build_lock_matches_its_inputs() -> None:
    wanted = {
        line.strip()
        for line in (APP / "requirements-build.in").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    locked = {
        req.split(";")[0].strip()
        for req in _requirements((APP / "requirements-build.lock").read_text())
    }
    assert wanted <= locked, f"requirements-build.lock lacks {wanted - locked}: regenerate it"


def test_default_base_image_is_the_official_one_pinned_by_digest() -> None:
    match = re.search(r"^ARG BASE_IMAGE=(\S+)$", DOCKERFILE.read_text(), re.MULTILINE)
    assert match, "Dockerfile must declare ARG BASE_IMAGE with a default"
    assert re.fullmatch(r"python:3\.11[\w.-]*-slim-bookworm@sha256:[0-9a-f]{64}", match[1])


def test_hadolint_is_clean() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    for dockerfile in (DOCKERFILE, ROOT / "deploy/local/pgbouncer/Dockerfile"):
        result = subprocess.run(
            [hadolint, "--no-color", str(dockerfile)], capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stdout + result.stderr


def test_dockerignore_is_an_allow_list() -> None:
    lines = [
        line.strip()
        for line in (APP / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    # Everything is excluded first, so tests, .git, caches and .env never enter the
    # context; only what the Dockerfile copies is allowed back.
    assert lines[0] == "*"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    assert allowed == {"pyproject.toml", "requirements.lock", "requirements-build.lock", "src"}
    assert "**/.env" in lines
    copied = set(re.findall(r"^COPY (?!--from)(?:--\S+ )*(\S+)", DOCKERFILE.read_text(), re.M))
    assert copied <= allowed, f"Dockerfile copies {copied - allowed}, excluded by .dockerignore"
