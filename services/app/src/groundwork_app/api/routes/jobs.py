"""``/v1/jobs``: submit a job, read it, drop its cached answer. Thin over domain.jobs.

The busiest routes of the service, so they are DirectRoutes (api.direct_route): each
endpoint authorizes and reads its parameters itself, and the OpenAPI document gets
those parameters from ``openapi_extra``.
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from groundwork_app import json_codec
from groundwork_app.adapters.cache import InvalidateOutcome
from groundwork_app.api.auth import BEARER_SECURITY, authorize
from groundwork_app.api.body import parse_body, read_body
from groundwork_app.api.direct_route import (
    DirectRoute,
    header_param,
    optional_header,
    uuid_path,
    uuid_path_param,
)
from groundwork_app.api.errors import ApiError
from groundwork_app.api.schemas import (
    AUTH_ERRORS,
    BODY_ERRORS,
    CONFLICT,
    NOT_FOUND,
    UNAVAILABLE,
    JobAccepted,
    JobOut,
)
from groundwork_app.api.services import Services
from groundwork_app.domain.jobs import (
    IDEMPOTENCY_KEY_RE,
    IdempotencyConflictError,
    JobRequest,
    Submission,
    SubmitContext,
    submit_job,
)
from groundwork_app.observability.logging import bind_log_context, current_request_id
from groundwork_app.observability.metrics import JOBS_SUBMITTED
from groundwork_app.observability.tracing import inject_trace_context

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], route_class=DirectRoute)

IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"
_IDEMPOTENCY_KEY_DOC = header_param(
    IDEMPOTENCY_KEY_HEADER,
    pattern=IDEMPOTENCY_KEY_RE,
    description="Makes retries safe: the same key with the same body returns the original "
    "job (200, `Idempotent-Replayed: true`); with a different body, 409. Scoped to the "
    "token's `sub`; 1-255 chars of [A-Za-z0-9_.:-].",
    examples=["order-7421-attempt"],
)
_JOB_ID_DOC = uuid_path_param("job_id", "The job id returned by POST /v1/jobs.")

_REQUEST_BODY_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/JobRequest"}}},
    }
}


def job_link(job_id: uuid.UUID) -> str:
    return f"/v1/jobs/{job_id}"


def accepted_response(submission: Submission) -> Response:
    link = job_link(submission.job_id)
    body = {
        "id": str(submission.job_id),
        "status": submission.status,
        "created_at": submission.created_at.isoformat(),
        "links": {"self": link},
    }
    headers = {"Location": link}
    if not submission.created:
        headers["Idempotent-Replayed"] = "true"
    return Response(
        json_codec.compact_ascii(body).encode(),
        status_code=202 if submission.created else 200,
        media_type="application/json",
        headers=headers,
    )


async def submit(
    services: Services, body: bytes, client_id: str, idempotency_key: str | None, source: str
) -> Response:
    """Validate ``body`` and submit it for ``client_id`` (shared with the webhook)."""
    settings = services.settings
    job_request = parse_body(JobRequest, body, {"max_prompt_chars": settings.max_prompt_chars})
    ctx = SubmitContext(
        client_id=client_id,
        request_id=current_request_id(),
        topic=settings.queue_name,
        default_model=settings.llm_model,
        trace_headers=inject_trace_context(),
    )
    try:
        submission = await submit_job(services.repo, job_request, ctx, idempotency_key)
    except IdempotencyConflictError:
        JOBS_SUBMITTED.labels(source, "conflict").inc()
        raise
    outcome = "created" if submission.created else "replayed"
    JOBS_SUBMITTED.labels(source, outcome).inc()
    # Sizes and hashes only: prompts may hold personal data.
    bind_log_context(
        job_id=str(submission.job_id),
        job_outcome=outcome,
        prompt_chars=len(job_request.prompt),
        request_hash=submission.request_hash[:16],
    )
    return accepted_response(submission)


@router.post(
    "",
    status_code=202,
    summary="Submit a job",
    description="Stores the job and its outbox message in one transaction and returns at "
    "once; the relay publishes it and a worker runs it. Poll the `Location`.",
    response_model=JobAccepted,
    responses={
        200: {
            "model": JobAccepted,
            "description": "Idempotent replay: the original job "
            "(header `Idempotent-Replayed: true`).",
        },
        **AUTH_ERRORS,
        **BODY_ERRORS,
        **CONFLICT,
        **UNAVAILABLE,
    },
    openapi_extra={**_REQUEST_BODY_DOC, **BEARER_SECURITY, "parameters": [_IDEMPOTENCY_KEY_DOC]},
)
async def create_job(request: Request) -> Response:
    principal = await authorize(request, "jobs:write")
    idempotency_key = optional_header(request, IDEMPOTENCY_KEY_HEADER, IDEMPOTENCY_KEY_RE)
    services: Services = request.app.state.services
    body = await read_body(request, services.settings.max_request_bytes)
    return await submit(services, body, principal.subject, idempotency_key, "api")


@router.get(
    "/{job_id}",
    summary="Read a job's status and result",
    response_model=JobOut,
    responses={**AUTH_ERRORS, **NOT_FOUND, **UNAVAILABLE},
    openapi_extra={**BEARER_SECURITY, "parameters": [_JOB_ID_DOC]},
)
async def get_job(request: Request) -> Response:
    principal = await authorize(request, "jobs:read")
    job_id = uuid_path(request, "job_id")
    services: Services = request.app.state.services
    job = await services.repo.get(job_id, principal.subject)
    if job is None:
        raise ApiError(404, "not_found", f"No job {job_id} for this client.")
    body = {
        "id": str(job.id),
        "status": job.status,
        "model": job.model,
        "metadata": job.metadata,
        "result": job.result,
        "degraded": job.degraded,
        "cached": job.cached,
        "error": job.error,
        "created_at": job.created_at.isoformat(),
        "updated_at": job.updated_at.isoformat(),
        "completed_at": job.completed_at.isoformat() if job.completed_at else None,
        "links": {"self": job_link(job.id)},
    }
    return Response(
        json_codec.compact(body).encode(),
        media_type="application/json",
    )


@router.delete(
    "/{job_id}/cache",
    status_code=204,
    summary="Forget the cached AI answer for this job's prompt and model",
    description="The next job with the same prompt and model calls the model again. "
    "Succeeds whether or not an answer was cached.",
    responses={
        **AUTH_ERRORS,
        **NOT_FOUND,
        503: {"description": "Redis unavailable: the cache could not be invalidated."},
    },
    openapi_extra={**BEARER_SECURITY, "parameters": [_JOB_ID_DOC]},
)
async def invalidate_cached_answer(request: Request) -> Response:
    principal = await authorize(request, "jobs:write")
    job_id = uuid_path(request, "job_id")
    services: Services = request.app.state.services
    found = await services.repo.prompt_of(job_id, principal.subject)
    if found is None:
        raise ApiError(404, "not_found", f"No job {job_id} for this client.")
    prompt, model = found
    outcome = await services.cache.invalidate(principal.subject, prompt, model)
    if outcome is InvalidateOutcome.UNAVAILABLE:
        raise ApiError(
            503,
            "cache_unavailable",
            "The answer cache is unavailable; retry.",
            headers={"Retry-After": "2"},
        )
    bind_log_context(job_id=str(job_id), cache_invalidation=outcome.value)
    return Response(status_code=204)
