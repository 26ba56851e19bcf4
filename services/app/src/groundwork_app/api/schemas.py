"""Response models and documented error responses (request bodies live in domain.jobs)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

_JOB_ID = "0b8e5c1e-8f1d-4a61-9b3c-2d1c1f7f6a10"


class Links(BaseModel):
    self_: str = Field(alias="self", examples=[f"/v1/jobs/{_JOB_ID}"])

    model_config = ConfigDict(populate_by_name=True)


class JobAccepted(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": _JOB_ID,
                    "status": "queued",
                    "created_at": "2026-01-01T12:00:00Z",
                    "links": {"self": f"/v1/jobs/{_JOB_ID}"},
                }
            ]
        }
    )
    id: uuid.UUID
    status: str
    created_at: datetime
    links: Links


class JobOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": _JOB_ID,
                    "status": "succeeded",
                    "model": "gpt-4o-mini",
                    "metadata": {"ticket": "SUP-1234"},
                    "result": "Prince Hamlet avenges his father...",
                    "degraded": False,
                    "cached": False,
                    "error": None,
                    "created_at": "2026-01-01T12:00:00Z",
                    "updated_at": "2026-01-01T12:00:02Z",
                    "completed_at": "2026-01-01T12:00:02Z",
                    "links": {"self": f"/v1/jobs/{_JOB_ID}"},
                }
            ]
        }
    )
    id: uuid.UUID
    status: str = Field(description="queued | processing | succeeded | failed")
    model: str
    metadata: dict[str, Any]
    result: str | None
    degraded: bool = Field(description="True when the answer is the configured fallback.")
    cached: bool = Field(description="True when the answer came from the answer cache.")
    error: str | None
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    links: Links


class ErrorDetail(BaseModel):
    field: str = Field(examples=["body.prompt"])
    message: str = Field(examples=["String should have at least 1 character"])
    type: str = Field(examples=["string_too_short"])


class ErrorBody(BaseModel):
    code: str = Field(examples=["validation_failed"])
    message: str = Field(examples=["The request is invalid; see details."])
    details: list[ErrorDetail] = Field(default_factory=list)
    request_id: str = Field(examples=["6f1c2d3e4b5a69788796a5b4c3d2e1f0"])


class ErrorResponse(BaseModel):
    error: ErrorBody


def _error(description: str, code: str) -> dict[str, Any]:
    return {
        "model": ErrorResponse,
        "description": description,
        "content": {
            "application/json": {
                "example": {
                    "error": {
                        "code": code,
                        "message": description,
                        "details": [],
                        "request_id": "6f1c2d3e4b5a69788796a5b4c3d2e1f0",
                    }
                }
            }
        },
    }


AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: _error("Missing, invalid or expired bearer token.", "unauthorized"),
    403: _error("The token lacks the required scope.", "insufficient_scope"),
    429: _error("Rate limit exceeded; retry after Retry-After seconds.", "rate_limited"),
}
BODY_ERRORS: dict[int | str, dict[str, Any]] = {
    413: _error("Request body larger than MAX_REQUEST_BYTES.", "payload_too_large"),
    415: _error("Content-Type must be application/json (UTF-8).", "unsupported_media_type"),
    422: _error("The request is invalid; see details.", "validation_failed"),
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: _error("No such job for this client.", "not_found"),
    422: _error("The job id is not a UUID.", "validation_failed"),
}
CONFLICT: dict[int | str, dict[str, Any]] = {
    409: _error("Idempotency-Key reused with a different body.", "idempotency_conflict"),
}
UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: _error("A dependency is unavailable; retry shortly.", "database_unavailable"),
}
