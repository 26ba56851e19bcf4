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
handler marks the job failed on the delivery Pub/Sub will dead-letter.
"""

from __future__ import annotations

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

log = structlog.get_logger("groundwork.pubsub_push")

PUSH_PATH = "/pubsub/push"
STATUS_BY_OUTCOME = {Outcome.ACK: 204, Outcome.RETRY: 503, Outcome.DEAD_LETTER: 422}


def create_push_app(
    handle: Callable[[Delivery], Awaitable[HandleResult]],
    verifier: PushTokenVerifier | None,
    ready: Callable[[], bool] = lambda: True,
) -> FastAPI:
    app = FastAPI(
        title="groundwork worker (Pub/Sub push)", docs_url=None, redoc_url=None, openapi_url=None
    )

    @app.post(PUSH_PATH)
    async def push(request: Request) -> Response:
        if verifier is not None:
            try:
                await verifier.verify_async(request.headers.get("authorization"))
            except PushAuthError as exc:
                log.warning("push rejected", status=exc.status, reason=exc.detail)
                return JSONResponse({"detail": exc.detail}, status_code=exc.status)
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

    @app.get("/health/live")
    async def live() -> PlainTextResponse:
        return PlainTextResponse("live")

    @app.get("/health/ready")
    async def ready_probe() -> PlainTextResponse:
        ok = ready()
        return PlainTextResponse("ready" if ok else "not ready", status_code=200 if ok else 503)

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    return app
