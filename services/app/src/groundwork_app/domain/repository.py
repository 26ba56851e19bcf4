"""What job submission needs from storage, as the domain sees it.

``domain/jobs.py`` depends on this protocol and these records only; ``db/jobs.py``
implements them on PostgreSQL (and a test can stand in for it without a database).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
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
