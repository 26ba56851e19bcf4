"""One machine-readable error shape for every 4xx/5xx the API sends.

``{"error": {"code": "...", "message": "...", "details": [...], "request_id": "..."}}``

``code`` is stable (clients branch on it), ``message`` is for humans. Validation
details name the failing field and never echo the submitted value back.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from groundwork_app.db.jobs import DatabaseUnavailableError
from groundwork_app.domain.jobs import IdempotencyConflictError
from groundwork_app.observability.logging import current_request_id

_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_failed",
    429: "rate_limited",
    500: "internal_error",
    503: "service_unavailable",
}


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        details: Sequence[Mapping[str, Any]] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = list(details)
        self.headers = dict(headers or {})


def error_response(
    status: int,
    code: str,
    message: str,
    details: Sequence[Mapping[str, Any]] = (),
    headers: Mapping[str, str] | None = None,
) -> Response:
    body = {
        "error": {
            "code": code,
            "message": message,
            "details": list(details),
            "request_id": current_request_id(),
        }
    }
    return Response(
        json.dumps(body, separators=(",", ":")).encode(),
        status_code=status,
        media_type="application/json",
        headers=dict(headers or {}),
    )


# Object fields whose keys are the client's own (so a location below them would echo a
# submitted key back): the location stops at the field.
_CLIENT_KEYED_FIELDS = frozenset({"metadata"})


def _safe_location(error: Mapping[str, Any]) -> tuple[list[str], str | None]:
    """The error's location without any part the client chose, and a replacement
    message when the location had to be cut (the original could name that part)."""
    loc = [str(part) for part in error.get("loc", ())]
    if error.get("type") == "extra_forbidden" and loc:
        # The last part is a field name the client made up.
        return loc[:-1], "Unknown field; the accepted fields are in the OpenAPI schema."
    for index, part in enumerate(loc):
        if part in _CLIENT_KEYED_FIELDS and index + 1 < len(loc):
            return loc[: index + 1], None
    return loc, None


def validation_details(errors: Sequence[Any]) -> list[dict[str, str]]:
    """Field, message and type of each error; never the submitted value, nor a key the
    client chose (docs/api.md): pydantic puts dict keys and unknown field names in the
    location, so those parts are cut."""
    details = []
    for error in errors:
        loc, replacement = _safe_location(error)
        details.append(
            {
                "field": ".".join(loc),
                "message": replacement or str(error.get("msg", "invalid")),
                "type": str(error.get("type", "invalid")),
            }
        )
    return details


async def _api_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)


async def _http_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code = _STATUS_CODES.get(exc.status_code, "error")
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    return error_response(exc.status_code, code, message, headers=exc.headers)


async def _validation_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return error_response(
        422,
        "validation_failed",
        "The request is invalid; see details.",
        validation_details(exc.errors()),
    )


async def _conflict(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, IdempotencyConflictError)
    return error_response(
        409,
        "idempotency_conflict",
        "This Idempotency-Key was already used with a different request body; "
        "use a new key for a new request.",
        [
            {
                "field": "header.Idempotency-Key",
                "message": f"already used by job {exc.job_id}",
                "type": "conflict",
            }
        ],
    )


async def _database_unavailable(_: Request, __: Exception) -> Response:
    return error_response(
        503,
        "database_unavailable",
        "The database is unavailable; retry shortly.",
        headers={"Retry-After": "2"},
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(IdempotencyConflictError, _conflict)
    app.add_exception_handler(DatabaseUnavailableError, _database_unavailable)
