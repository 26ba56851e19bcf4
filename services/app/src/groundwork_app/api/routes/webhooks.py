"""``POST /v1/webhooks/jobs``: submit a job from a system that signs with a shared key.

Signature header (Stripe-style)::

    X-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(WEBHOOK_SECRET, "<t>." + raw body)>

Several ``v1=`` values may be sent (key rotation: one per active key). The timestamp
must be within ``WEBHOOK_TOLERANCE_SECONDS`` of the server clock, which bounds how
long a captured request can be replayed; inside that window a replay is harmless:
the signature doubles as the idempotency key (unless the sender gives an
``Idempotency-Key``), so the same delivery returns the original job instead of
creating another. Comparison is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, Header, Request
from fastapi.responses import Response

from groundwork_app.api.body import read_body
from groundwork_app.api.deps import ServicesDep
from groundwork_app.api.errors import ApiError
from groundwork_app.api.routes.jobs import (
    _IDEMPOTENCY_KEY_DOC,
    _REQUEST_BODY_DOC,
    IDEMPOTENCY_KEY_HEADER,
    submit,
)
from groundwork_app.api.schemas import BODY_ERRORS, CONFLICT, UNAVAILABLE, JobAccepted, _error
from groundwork_app.domain.jobs import IDEMPOTENCY_KEY_RE

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias=IDEMPOTENCY_KEY_HEADER,
        pattern=f"^{IDEMPOTENCY_KEY_RE.pattern}$",
        description=_IDEMPOTENCY_KEY_DOC["description"],
        examples=_IDEMPOTENCY_KEY_DOC["schema"]["examples"],
    ),
]
router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])

WEBHOOK_CLIENT_ID = "system:webhook"
SIGNATURE_HEADER = "X-Signature"
_MAX_SIGNATURES = 5


def sign(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def _invalid(message: str, code: str = "invalid_signature") -> ApiError:
    return ApiError(401, code, message)


def verify_signature(
    header: str | None,
    body: bytes,
    secret: str | Sequence[str],
    tolerance: int,
    now: float | None = None,
) -> str:
    """Return the matching signature; raise a 401 ApiError otherwise.

    ``secret``: one key, or the keys of a rotation (a signature by any of them matches).
    """
    if not header:
        raise _invalid(f"The {SIGNATURE_HEADER} header is required (t=<unix>,v1=<hex>).")
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit() and len(value) <= 12:
            timestamp = int(value)
        elif key == "v1" and len(candidates) < _MAX_SIGNATURES:
            candidates.append(value.lower())
    if timestamp is None or not candidates:
        raise _invalid(f"{SIGNATURE_HEADER} must look like t=<unix seconds>,v1=<hex>.")
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise _invalid(
            f"Signature timestamp is more than {tolerance}s from the server time.",
            "signature_expired",
        )
    keys = secret.split() if isinstance(secret, str) else list(secret)
    expected = [sign(key, timestamp, body).encode() for key in keys]
    matched = None
    for candidate in candidates:  # every pair compared: no early exit to time
        for signature in expected:
            if hmac.compare_digest(candidate.encode(), signature):
                matched = candidate
    if matched is None:
        raise _invalid("Signature does not match the body.")
    return matched


@router.post(
    "/jobs",
    status_code=202,
    summary="Submit a job from a signed webhook",
    response_model=JobAccepted,
    responses={
        200: {"model": JobAccepted, "description": "Replayed delivery: the original job."},
        401: _error("Missing, malformed, stale or non-matching signature.", "invalid_signature"),
        429: _error("Rate limit exceeded; retry after Retry-After seconds.", "rate_limited"),
        **BODY_ERRORS,
        **CONFLICT,
        **UNAVAILABLE,
    },
    openapi_extra=_REQUEST_BODY_DOC,
)
async def webhook_job(
    request: Request,
    services: ServicesDep,
    x_signature: Annotated[
        str | None,
        Header(
            alias=SIGNATURE_HEADER,
            description="t=<unix>,v1=<hex HMAC-SHA256 of 't.body'>",
            max_length=1024,
        ),
    ] = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    settings = services.settings
    body = await read_body(request, settings.max_request_bytes)
    signature = verify_signature(
        x_signature,
        body,
        settings.webhook_keys,
        settings.webhook_tolerance_seconds,
    )
    await services.webhook_limiter.check(WEBHOOK_CLIENT_ID)
    key = idempotency_key or f"sig:{signature}"
    return await submit(services, body, WEBHOOK_CLIENT_ID, key, "webhook")
