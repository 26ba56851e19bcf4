"""The FastAPI app factory and its lifespan.

``create_app()`` builds the app from settings; the lifespan opens the database pool,
the Redis client and the broker probe, and closes them after uvicorn has drained
in-flight requests on SIGTERM (see ``cli.api``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, TextIO

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response

from groundwork_app.api.auth import bearer_scheme
from groundwork_app.api.errors import error_response, install_error_handlers
from groundwork_app.api.middleware import RequestContextMiddleware
from groundwork_app.api.routes import health, jobs, webhooks
from groundwork_app.api.services import Services
from groundwork_app.domain.jobs import JobRequest
from groundwork_app.observability import tracing
from groundwork_app.observability.logging import configure_logging, get_logger
from groundwork_app.process import freeze_startup_heap
from groundwork_app.settings import Environment, Settings, get_settings

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter

log = get_logger(__name__)

DESCRIPTION = """
Submit LLM jobs and read their results.

* Authenticate with a bearer JWT (`jobs:write` to submit, `jobs:read` to read).
* `POST /v1/jobs` answers **202** at once with the job id and a `Location`; poll it.
* Send an `Idempotency-Key` to make retries safe.
* Every error has the body `{"error": {"code", "message", "details", "request_id"}}`.
"""

METRICS_REFRESH_SECONDS = 15.0


async def _refresh_backlog_forever(services: Services) -> None:
    while True:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5.0):
                await services.backlog.refresh()
        await asyncio.sleep(METRICS_REFRESH_SECONDS)


def _start_metrics_server(settings: Settings, services: Services) -> tuple[Any, asyncio.Task[None]]:
    from prometheus_client import start_http_server

    assert settings.metrics_port is not None
    server, _thread = start_http_server(settings.metrics_port, addr=bind_host(settings))
    task = asyncio.create_task(_refresh_backlog_forever(services))
    return server, task


class JsonErrorCORSMiddleware(CORSMiddleware):
    """Starlette's CORS, with a rejected preflight answered in the API's one error shape
    (``{"error": {...}}``, application/json) instead of Starlette's plain text."""

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code < 400:
            return response
        rejected = bytes(response.body).decode().removeprefix("Disallowed CORS ")
        headers = {
            k: v for k, v in response.headers.items() if k.lower().startswith("access-control-")
        }
        return error_response(
            response.status_code,
            "cors_rejected",
            f"CORS preflight rejected: {rejected} not allowed.",
            headers=headers,
        )


def bind_host(settings: Settings) -> str:
    from groundwork_app.cli import default_bind_host

    return settings.api_bind_host or default_bind_host(settings)


def create_app(
    settings: Settings | None = None,
    *,
    log_stream: TextIO | None = None,
    span_exporter: SpanExporter | None = None,
) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings, log_stream)
    provider = tracing.configure_tracing(settings, span_exporter, component="api")

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = await Services.open(settings)
        app.state.services = services
        freeze_startup_heap()
        metrics_server = None
        if settings.metrics_port is not None:
            metrics_server = _start_metrics_server(settings, services)
        log.info(
            "api.started",
            environment=settings.app_env.value,
            version=settings.service_version,
            tracing=provider is not None,
        )
        try:
            yield
        finally:
            if metrics_server is not None:
                server, task = metrics_server
                task.cancel()
                server.shutdown()
            await services.close()
            if provider is not None:
                tracing.uninstrument(app)
                provider.shutdown()
            log.info("api.stopped")

    production = settings.app_env is Environment.PRODUCTION
    app = FastAPI(
        title="groundwork job API",
        version=settings.service_version,
        description=DESCRIPTION,
        lifespan=lifespan,
        # The docs pages pull Swagger UI from a CDN: not in production.
        # /openapi.json stays available everywhere.
        docs_url=None if production else "/docs",
        redoc_url=None if production else "/redoc",
    )
    install_error_handlers(app)
    app.include_router(jobs.router)
    app.include_router(webhooks.router)
    app.include_router(health.router)
    if settings.metrics_port is None:
        app.include_router(health.metrics_router)
    if settings.cors_origins:
        app.add_middleware(
            JsonErrorCORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "X-Request-ID"],
            expose_headers=["Location", "Retry-After", "X-Request-ID", "Idempotent-Replayed"],
            allow_credentials=False,  # bearer tokens, no cookies
            max_age=600,
        )
    app.add_middleware(RequestContextMiddleware, adopt_traceparent=provider is None)
    if provider is not None:
        tracing.instrument(app, provider)
    app.openapi = lambda: _openapi(app, settings)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI, settings: Settings) -> dict[str, Any]:
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        # The job body is read raw (see api.body) so FastAPI cannot infer it: publish it.
        body = JobRequest.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(body.pop("$defs", {}))
        # The limit this server enforces (MAX_PROMPT_CHARS), not the model's ceiling.
        body["properties"]["prompt"]["maxLength"] = settings.max_prompt_chars
        components["JobRequest"] = body
        # The auth dependency reads the header itself (see api.auth), so FastAPI does
        # not see the scheme; the guarded routes reference it (auth.BEARER_SECURITY).
        schemes = schema["components"].setdefault("securitySchemes", {})
        schemes[bearer_scheme.scheme_name] = bearer_scheme.model.model_dump(
            mode="json", by_alias=True, exclude_none=True
        )
        app.openapi_schema = schema
    return app.openapi_schema
