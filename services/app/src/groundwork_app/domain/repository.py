"""What the job logic needs from storage, as the domain sees it.

Submission (``domain/jobs.py``) depends on ``JobRepository`` and the job handler
(``worker/handler.py``) on ``WorkerRepository``, with these records only; ``db/jobs.py``
and ``db/worker.py`` implement them on PostgreSQL (and a test can stand in for them
without a database).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any, Protocol


@dataclass(frozen=True)
class NewJob:
    id: uuid.UUID
    client_id: str
    idempotency_key: str | None
    request_hash: str
    prompt: str
    model: str
    metadata_json: str
    request_id: str


@dataclass(frozen=True)
class NewOutboxMessage:
    message_id: uuid.UUID
    topic: str
    payload_json: str
    headers_json: str


@dataclass(frozen=True)
class JobRef:
    id: uuid.UUID
    status: str
    created_at: datetime
    request_hash: str = ""


@dataclass(frozen=True)
class JobView:
    id: uuid.UUID
    status: str
    model: str
    metadata: dict[str, Any]
    result: str | None
    degraded: bool
    cached: bool
    error: str | None
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None


class JobRepository(Protocol):
    async def insert_with_outbox(self, job: NewJob, message: NewOutboxMessage) -> JobRef | None:
        """Insert the job and its outbox message atomically; None when the client's
        idempotency key already exists (nothing inserted)."""

    async def find_by_idempotency_key(self, client_id: str, key: str) -> JobRef | None:
        """The job the client submitted under ``key``, read in a fresh snapshot."""


class Claim(Enum):
    CLAIMED = "claimed"  # go ahead: the job is now 'processing' under our lease
    ALREADY_PROCESSED = "already_processed"  # this message id is in the ledger
    ALREADY_SUCCEEDED = "already_succeeded"  # another message completed the job
    BUSY = "busy"  # another worker holds a live lease on the job: try again later
    UNKNOWN_JOB = "unknown_job"


@dataclass(frozen=True)
class ClaimResult:
    """The claim, and with CLAIMED the job as its row says (not as the message says)."""

    claim: Claim
    client_id: str = ""
    prompt: str = ""
    model: str = ""


@dataclass(frozen=True)
class Completion:
    message_id: str
    job_id: uuid.UUID
    result: str
    cached: bool
    degraded: bool


class WorkerRepository(Protocol):
    async def claim(self, job_id: uuid.UUID, message_id: str) -> ClaimResult:
        """Take the job's lease for this message, unless the ledger, a success or a live
        lease says otherwise (``Claim``)."""

    async def complete(self, done: Completion) -> bool:
        """Ledger row + result in one transaction; False when the ledger already had it."""

    async def mark_retrying(self, job_id: uuid.UUID, reason: str) -> None: ...

    async def mark_failed(self, job_id: uuid.UUID, reason: str) -> None: ...

    async def renew_lease(self, job_id: uuid.UUID) -> None: ...
