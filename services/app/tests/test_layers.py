"""The service's layers (docs/architecture.md, "The service"): SQL lives in ``db/``; the
domain and the job handler depend on repository protocols, not on ``db``."""

from __future__ import annotations

import ast
import json
import re
from datetime import UTC, datetime
from pathlib import Path

import groundwork_app
import pytest
from groundwork_app.domain.jobs import (
    IdempotencyConflictError,
    JobRequest,
    SubmitContext,
    submit_job,
)
from groundwork_app.domain.repository import JobRef, JobRepository, NewJob, NewOutboxMessage

PACKAGE = Path(groundwork_app.__file__).parent
# What a statement looks like: a keyword that starts one and the clause it needs.
SQL = re.compile(
    r"\b(SELECT\b.*\bFROM|INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|GRANT\s+\w+|"
    r"CREATE\s+ROLE)\b",
    re.DOTALL,
)


def _modules(*, outside: tuple[str, ...]) -> list[Path]:
    return [
        path
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.relative_to(PACKAGE).parts[0] not in outside
    ]


def _docstrings(tree: ast.Module) -> set[int]:
    """ids of the docstring constants (they may describe a query without running one)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def _sql_strings(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    docstrings = _docstrings(tree)
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
        and SQL.search(node.value)
    ]


def test_the_sql_detector_finds_the_statements_db_runs() -> None:
    # Guards the test below against a pattern that matches nothing.
    found = {p.name for p in _modules(outside=()) if _sql_strings(p)}
    assert {"jobs.py", "worker.py", "outbox.py", "terminal.py", "roles.py"} <= found


def test_every_sql_statement_lives_in_db() -> None:
    offenders = {
        str(path.relative_to(PACKAGE)): _sql_strings(path)
        for path in _modules(outside=("db", "migrations"))
        if _sql_strings(path)
    }
    assert offenders == {}


def test_the_domain_and_the_job_handler_do_not_import_the_database_layer() -> None:
    # They work against domain/repository.py's protocols; db/ implements them.
    for path in [*(PACKAGE / "domain").rglob("*.py"), PACKAGE / "worker" / "handler.py"]:
        tree = ast.parse(path.read_text(), str(path))
        imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)} | {
            alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        }
        assert not {
            name
            for name in imported
            if name
            and (
                name.startswith("groundwork_app.db")
                or name.split(".")[0] in {"asyncpg", "sqlalchemy"}
            )
        }, path


class _MemoryRepository:
    """The protocol's contract without a database: a key inserts once per client."""

    def __init__(self) -> None:
        self.jobs: dict[tuple[str, str | None], tuple[NewJob, NewOutboxMessage]] = {}

    async def insert_with_outbox(self, job: NewJob, message: NewOutboxMessage) -> JobRef | None:
        key = (job.client_id, job.idempotency_key or str(job.id))
        if key in self.jobs:
            return None
        self.jobs[key] = (job, message)
        return JobRef(job.id, "queued", datetime.now(UTC), job.request_hash)

    async def find_by_idempotency_key(self, client_id: str, key: str) -> JobRef | None:
        found = self.jobs.get((client_id, key))
        if found is None:
            return None
        job, _ = found
        return JobRef(job.id, "queued", datetime.now(UTC), job.request_hash)


async def test_submission_runs_against_any_repository_implementing_the_protocol() -> None:
    memory = _MemoryRepository()
    repo: JobRepository = memory  # mypy checks the structural match
    ctx = SubmitContext("client-a", "req-1", "jobs", "default-model", {})
    first = await submit_job(repo, JobRequest(prompt="hello"), ctx, "key-1")
    replay = await submit_job(repo, JobRequest(prompt="hello"), ctx, "key-1")
    assert first.created
    assert not replay.created
    assert replay.job_id == first.job_id
    with pytest.raises(IdempotencyConflictError) as conflict:
        await submit_job(repo, JobRequest(prompt="other"), ctx, "key-1")
    assert conflict.value.job_id == first.job_id
    [(job, message)] = memory.jobs.values()
    assert (job.id, job.model, message.topic) == (first.job_id, "default-model", "jobs")
    assert json.loads(message.payload_json)["job_id"] == str(first.job_id)
