"""The worker in Pub/Sub mode: an HTTP push receiver on $PORT (Cloud Run).

Pub/Sub treats any 2xx as an ack and anything else as a nack, redelivered under the
subscription's retry policy (exponential backoff) until ``max_delivery_attempts``,
after which it forwards the message to the dead-letter topic. So:

======================  ======  ===========================================
case                    status  what Pub/Sub does next
======================  ======  ===========================================
handled / duplicate     204     ack: done
no / invalid token      401     nack: retried, then dead-lettered (a misconfigured
wrong audience / SA     403       push identity shows up as 4xx on the subscription)
not a push envelope     400     nack: retried, then dead-lettered
poison body / job       422     nack: retried (cheap, fails fast), then dead-lettered;
failed for good                   the job row already says failed with the reason
transient failure       503     nack: retried with backoff (LLM down, DB down)
======================  ======  ===========================================

QUEUE_DELIVERY_LIMIT must equal the subscription's ``max_delivery_attempts`` so the
handler marks the job failed on the delivery Pub/Sub will dead-letter. Whatever the
handler could not end (the worker died on the last delivery) is ended by a push
subscription on the dead-letter topic to ``/pubsub/dead-letter`` (worker/terminal.py),
and in any case by the relay's reconciler at JOB_DEADLINE_SECONDS.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

import structlog
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from groundwork_app.adapters.pubsub import (
    MalformedEnvelopeError,
    PushAuthError,
    PushTokenVerifier,
    parse_push_envelope,
)
from groundwork_app.observability import worker_metrics as m
from groundwork_app.ports import Delivery, HandleResult, Outcome
from groundwork_app.worker.terminal import job_id_of

log = structlog.get_logger("groundwork.pubsub_push")

PUSH_PATH = "/pubsub/push"
DEAD_LETTER_PATH = "/pubsub/dead-letter"
STATUS_BY_OUTCOME = {Outcome.ACK: 204, Outcome.RETRY: 503, Outcome.DEAD_LETTER: 422}


def create_push_app(
    handle: Callable[[Delivery], Awaitable[HandleResult]],
    verifier: PushTokenVerifier | None,
    ready: Callable[[], bool] = lambda: True,
    *,
    record_dead_letter: Callable[[uuid.UUID | None, str], Awaitable[object]] | None = None,
    metrics: bool = True,
) -> FastAPI:
    app = FastAPI(
        title="groundwork worker (Pub/Sub push)", docs_url=None, redoc_url=None, openapi_url=None
    )

    async def refused(request: Request) -> Response | None:
        if verifier is None:
            return None
        try:
            await verifier.verify_async(request.headers.get("authorization"))
        except PushAuthError as exc:
            log.warning("push rejected", status=exc.status, reason=exc.detail)
            return JSONResponse({"detail": exc.detail}, status_code=exc.status)
        return None

    @app.post(PUSH_PATH)
    async def push(request: Request) -> Response:
        if (denied := await refused(request)) is not None:
            return denied
        try:
            message = parse_push_envelope(await request.body())
        except MalformedEnvelopeError as exc:
            log.warning("malformed push envelope", reason=str(exc))
            m.JOBS_FAILED.labels("malformed").inc()
            return JSONResponse({"detail": str(exc)}, status_code=400)
        result = await handle(
            Delivery(
                message_id=message.message_id,
                body=message.data,
                headers=message.attributes,
                attempt=message.delivery_attempt,
            )
        )
        status = STATUS_BY_OUTCOME[result.outcome]
        if status == 204:
            return Response(status_code=204)
        return JSONResponse(
            {"outcome": result.outcome.value, "detail": result.reason}, status_code=status
        )

    if record_dead_letter is not None:

        @app.post(DEAD_LETTER_PATH)
        async def dead_letter(request: Request) -> Response:
            """Pushes of the dead-letter topic's subscription: end the job (204), or 503
            (database down: Pub/Sub redelivers). A body that is no job ends nothing."""
            if (denied := await refused(request)) is not None:
                return denied
            try:
                message = parse_push_envelope(await request.body())
            except MalformedEnvelopeError as exc:
                return JSONResponse({"detail": str(exc)}, status_code=400)
            attempts = message.delivery_attempt
            reason = f"pubsub: delivery limit reached after {attempts} attempt(s)"
            try:
                await record_dead_letter(job_id_of(message.data, message.attributes), reason)
            except Exception as exc:
                log.warning("recording a dead letter failed", error=repr(exc))
                return JSONResponse({"detail": "retry later"}, status_code=503)
            return Response(status_code=204)

    @app.get("/health/live")
    async def live() -> PlainTextResponse:
        return PlainTextResponse("live")

    @app.get("/health/ready")
    async def ready_probe() -> PlainTextResponse:
        ok = ready()
        return PlainTextResponse("ready" if ok else "not ready", status_code=200 if ok else 503)

    if metrics:

        @app.get("/metrics")
        async def metrics_page() -> Response:
            return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    return app
