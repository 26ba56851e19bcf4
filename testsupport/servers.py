"""Loopback servers for test fixtures, on top of ``groundwork.devenv.servers``."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from groundwork.devenv.servers import Postgres, ServerUnavailableError


def postgres_for_test(prefix: str) -> Postgres:
    """A started PostgreSQL in a fresh temporary directory, for a test fixture. Under
    CI=true a server that cannot start fails the test (CI must run what it claims);
    elsewhere the test is skipped with the reason."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    # The server runs as an unprivileged user when started as root: it must reach its datadir.
    os.chmod(workdir, 0o755)  # noqa: S103 - a temporary dir holding no secret of its own
    postgres = Postgres(workdir)
    try:
        postgres.start()
    except ServerUnavailableError as exc:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"PostgreSQL required under CI=true: {exc}", pytrace=False)
        pytest.skip(f"PostgreSQL unavailable: {exc}")
    return postgres
