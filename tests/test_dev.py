"""`groundwork dev`, the README's local run, brings the whole service up for real."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jwt
import pytest

from groundwork.devenv.command import dev_token

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


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_dev_sigterm_stops_every_process_and_removes_its_files():
    """Before: SIGTERM killed `groundwork dev` outright (it waited with sigwait without
    blocking the signals) and orphaned api, relay, worker, PostgreSQL, Redis, RabbitMQ
    and epmd, and left its temp directory. Also: the TOKEN line is printed whole when
    stderr is not a terminal (rich wrapped it at 80 columns)."""
    # A private TMPDIR, traversable by the unprivileged postgres user, to see what is left.
    tmp = Path(tempfile.mkdtemp(prefix="gw-dev-test-"))
    tmp.chmod(0o755)
    stderr = tmp.parent / f"{tmp.name}.stderr"
    with stderr.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "groundwork.cli", "dev", "--port", "0"],
            stdout=subprocess.DEVNULL,
            stderr=err,
            env={**os.environ, "LOG_JSON": "true", "TMPDIR": str(tmp)},
        )
    try:
        deadline = time.monotonic() + 300
        while "Ctrl-C stops everything" not in stderr.read_text(errors="replace"):
            if proc.poll() is not None:
                text = stderr.read_text(errors="replace")
                if proc.returncode == 2 and "not found" in text and not os.environ.get("CI"):
                    pytest.skip(text.strip().splitlines()[-1])
                raise AssertionError(text[-3000:])
            assert time.monotonic() < deadline, stderr.read_text()[-3000:]
            time.sleep(0.5)
        output = stderr.read_text()
        token = next(
            line.split("=", 1)[1]
            for line in output.splitlines()
            if line.startswith("  export TOKEN=")
        )
        assert jwt.decode(token, options={"verify_signature": False})["sub"] == "dev-user"
        spawned = _descendants(proc.pid)
        assert len(spawned) >= 6, spawned  # api, relay, worker and the servers
        epmd = [
            int(p.parent.name)
            for p in Path("/proc").glob("[0-9]*/cmdline")
            if _alive(int(p.parent.name))
            and b"epmd" in p.read_bytes()
            and str(tmp).encode() in Path(p.parent, "environ").read_bytes()
        ]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(90) == 0, stderr.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    # epmd and the servers' last children exit asynchronously: poll, do not guess.
    deadline = time.monotonic() + 15
    while [pid for pid in [*spawned, *epmd] if _alive(pid)] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [pid for pid in [*spawned, *epmd] if _alive(pid)] == []
    assert list(tmp.iterdir()) == []
    assert "Traceback" not in stderr.read_text()
    tmp.rmdir()
    stderr.unlink()


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


def test_the_dev_environment_is_apart_from_plan_and_ops():
    """`groundwork/devenv/` (the dev command and its loopback servers) and the plan/ops
    code of the CLI import nothing from each other (docs/architecture.md, Packaging)."""
    import ast

    import groundwork

    root = Path(groundwork.__file__).parent

    def imports(package: str) -> set[str]:
        found: set[str] = set()
        for path in (root / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module:
                    found.add(node.module)
                elif isinstance(node, ast.Import):
                    found |= {alias.name for alias in node.names}
        return found

    assert "groundwork.devenv.servers" in imports("devenv")  # the walk sees imports
    assert not {m for m in imports("devenv") if m.startswith(("groundwork.plan", "groundwork.ops"))}
    for package in ("plan", "ops"):
        assert not {m for m in imports(package) if m.startswith("groundwork.devenv")}
