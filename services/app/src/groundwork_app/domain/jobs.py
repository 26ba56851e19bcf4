"""Job submission: input model, canonical request hash, idempotency, job + outbox.

Both the JSON API and the signed webhook submit through :func:`submit_job`, so the
rules (limits, idempotency, what the outbox carries) live in one place.

Idempotency contract: a key is scoped to the client (token ``sub``). Replaying the
same key with the same canonical body returns the original job (``created=False``;
the API answers 200 instead of 202); the same key with a different body raises
:class:`IdempotencyConflictError` (409). Two concurrent first requests with one key
create one job: the database's unique index decides, the loser reads the winner.
"""

from __future__ import annotations

import hashlib
import math
import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationInfo,
    field_validator,
)

from groundwork_app import json_codec
from groundwork_app.domain.repository import JobRef, JobRepository, NewJob, NewOutboxMessage

MAX_PROMPT_CHARS_CEILING = 100_000  # settings.max_prompt_chars is bounded by this
MAX_METADATA_KEYS = 16
MAX_METADATA_BYTES = 2048
MAX_METADATA_STRING = 256
MAX_SAFE_INT = 2**53 - 1  # the largest integer every JSON consumer reads exactly
IDEMPOTENCY_KEY_RE = re.compile(r"[A-Za-z0-9_.:\-]{1,255}")
MODEL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/\-]{0,99}$"
_METADATA_KEY_RE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
NO_NUL_PATTERN = r"^[^\x00]*$"
PROMPT_SCHEMA_PATTERN = r"^[^\x00]*\S[^\x00]*$"

MetadataValue = StrictStr | StrictInt | StrictFloat | StrictBool | None


def _reject_nul(value: str, what: str) -> str:
    # PostgreSQL text and jsonb cannot store U+0000: refuse it here as a 422 instead
    # of failing in the database.
    if "\x00" in value:
        raise ValueError(f"{what} must not contain the NUL character (U+0000)")
    return value


class JobRequest(BaseModel):
    """A job to run: a prompt for the model, plus opaque client metadata."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "prompt": "Summarise the plot of Hamlet in two sentences.",
                    "model": "gpt-4o-mini",
                    "metadata": {"ticket": "SUP-1234", "priority": 2},
                }
            ]
        },
    )

    prompt: Annotated[
        str,
        Field(
            min_length=1,
            max_length=MAX_PROMPT_CHARS_CEILING,
            description="The prompt; at most MAX_PROMPT_CHARS characters (default 8000), "
            "not blank.",
            # What the validator below enforces, stated in the schema so generated clients
            # (and schemathesis) know it: some non-whitespace, no NUL.
            json_schema_extra={"pattern": PROMPT_SCHEMA_PATTERN},
        ),
    ]
    model: Annotated[
        str | None,
        Field(
            default=None,
            pattern=MODEL_PATTERN,
            description="Model name; the server default (LLM_MODEL) when omitted.",
        ),
    ] = None
    metadata: Annotated[
        dict[str, MetadataValue],
        Field(
            default_factory=dict,
            description=f"Up to {MAX_METADATA_KEYS} keys ([A-Za-z0-9_.-], <= 64 chars) of "
            f"scalars; strings <= {MAX_METADATA_STRING} chars; <= {MAX_METADATA_BYTES} bytes "
            "as JSON.",
            json_schema_extra={
                "maxProperties": MAX_METADATA_KEYS,
                "propertyNames": {"pattern": f"^{_METADATA_KEY_RE.pattern}$"},
                "additionalProperties": {
                    "anyOf": [
                        {
                            "type": "string",
                            "maxLength": MAX_METADATA_STRING,
                            "pattern": NO_NUL_PATTERN,
                        },
                        {"type": "integer", "minimum": -MAX_SAFE_INT, "maximum": MAX_SAFE_INT},
                        {"type": "number"},
                        {"type": "boolean"},
                        {"type": "null"},
                    ]
                },
            },
        ),
    ]

    @field_validator("prompt")
    @classmethod
    def _prompt_limits(cls, value: str, info: ValidationInfo) -> str:
        limit = (info.context or {}).get("max_prompt_chars", MAX_PROMPT_CHARS_CEILING)
        if len(value) > limit:
            raise ValueError(f"must be at most {limit} characters (got {len(value)})")
        if not value.strip():
            raise ValueError("must not be blank")
        return _reject_nul(value, "prompt")

    @field_validator("metadata")
    @classmethod
    def _metadata_limits(cls, value: dict[str, Any]) -> dict[str, Any]:
        if len(value) > MAX_METADATA_KEYS:
            raise ValueError(f"must have at most {MAX_METADATA_KEYS} keys (got {len(value)})")
        for key, item in value.items():
            if not _METADATA_KEY_RE.fullmatch(key):
                # Never the key itself: errors do not echo input (docs/api.md).
                raise ValueError("every key must match [A-Za-z0-9_.-]{1,64}")
            if isinstance(item, str):
                if len(item) > MAX_METADATA_STRING:
                    raise ValueError(f"a string value exceeds {MAX_METADATA_STRING} characters")
                _reject_nul(item, "a string value")
            elif isinstance(item, float) and not math.isfinite(item):
                raise ValueError("a number value must be finite")
            elif isinstance(item, int) and not isinstance(item, bool) and abs(item) > MAX_SAFE_INT:
                raise ValueError("an integer value must be within +/-(2**53 - 1)")
        if len(_canonical(value).encode()) > MAX_METADATA_BYTES:
            raise ValueError(f"must be at most {MAX_METADATA_BYTES} bytes as JSON")
        return value


def _canonical(value: Any) -> str:
    return json_codec.canonical(value)


def request_hash(request: JobRequest) -> str:
    """SHA-256 of the canonical JSON of the body as sent (key order and whitespace do
    not matter; an omitted model hashes as null, so a server default change does not
    turn a retry into a conflict)."""
    body = {"prompt": request.prompt, "model": request.model, "metadata": request.metadata}
    return hashlib.sha256(_canonical(body).encode()).hexdigest()


def valid_idempotency_key(value: str) -> bool:
    return IDEMPOTENCY_KEY_RE.fullmatch(value) is not None


class IdempotencyConflictError(Exception):
    """The idempotency key was used before with a different request body."""

    def __init__(self, job_id: uuid.UUID) -> None:
        super().__init__("Idempotency-Key reused with a different request body")
        self.job_id = job_id


@dataclass(frozen=True)
class Submission:
    job_id: uuid.UUID
    status: str
    created_at: datetime
    created: bool  # False: an idempotent replay of an earlier submission
    request_hash: str


@dataclass(frozen=True)
class SubmitContext:
    client_id: str
    request_id: str
    topic: str
    default_model: str
    trace_headers: dict[str, str]


async def submit_job(
    repo: JobRepository,
    request: JobRequest,
    ctx: SubmitContext,
    idempotency_key: str | None,
) -> Submission:
    digest = request_hash(request)
    model = request.model or ctx.default_model
    job_id = uuid.uuid4()
    metadata_json = _canonical(request.metadata)
    job = NewJob(
        id=job_id,
        client_id=ctx.client_id,
        idempotency_key=idempotency_key,
        request_hash=digest,
        prompt=request.prompt,
        model=model,
        metadata_json=metadata_json,
        request_id=ctx.request_id,
    )
    payload = json_codec.compact(
        {
            "job_id": str(job_id),
            "prompt": request.prompt,
            "model": model,
            "metadata": request.metadata,
        }
    )
    headers = json_codec.compact_ascii({"request_id": ctx.request_id, **ctx.trace_headers})
    message = NewOutboxMessage(
        message_id=uuid.uuid4(), topic=ctx.topic, payload_json=payload, headers_json=headers
    )
    inserted = await repo.insert_with_outbox(job, message)
    if inserted is not None:
        return _submission(inserted, created=True, digest=digest)
    assert idempotency_key is not None  # only a key conflict inserts nothing
    existing = await repo.find_by_idempotency_key(ctx.client_id, idempotency_key)
    if existing is None:
        # The conflicting insert was rolled back after ours gave way: try once more.
        inserted = await repo.insert_with_outbox(job, message)
        if inserted is not None:
            return _submission(inserted, created=True, digest=digest)
        existing = await repo.find_by_idempotency_key(ctx.client_id, idempotency_key)
        if existing is None:  # pragma: no cover - would need two aborted racers in a row
            raise RuntimeError("idempotency key neither inserted nor found")
    if existing.request_hash != digest:
        raise IdempotencyConflictError(existing.id)
    return _submission(existing, created=False, digest=digest)


def _submission(ref: JobRef, *, created: bool, digest: str) -> Submission:
    return Submission(
        job_id=ref.id,
        status=ref.status,
        created_at=ref.created_at,
        created=created,
        request_hash=digest,
    )
