"""OpenTelemetry tracing: OTLP/HTTP export when an endpoint is configured, else nothing.

With no endpoint the API pays no instrumentation cost; it still passes an incoming
W3C ``traceparent`` through to the outbox (see ``api.middleware``), so a trace that
started upstream continues in the worker. With an endpoint, FastAPI and asyncpg (the
driver under SQLAlchemy too; the API's hot path uses it directly) are instrumented,
and the submission span's context is stored with the outbox row
(``inject_trace_context``) for the relay and worker to continue.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from opentelemetry import propagate, trace
from opentelemetry.context import Context

from groundwork_app.settings import Settings

if TYPE_CHECKING:
    # The SDK (and the instrumentations below) load only when tracing is on: a process
    # without an OTLP endpoint never pays their import time.
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

_global_provider_set = False


def otlp_traces_endpoint(base: str) -> str:
    """The signal URL for a base OTLP endpoint, as the OTEL_EXPORTER_OTLP_ENDPOINT spec says."""
    return base.rstrip("/") + "/v1/traces"


def configure_tracing(
    settings: Settings, exporter: SpanExporter | None = None, component: str | None = None
) -> TracerProvider | None:
    """A tracer provider exporting spans, or None when tracing is off.

    ``exporter`` (tests) replaces the OTLP exporter and exports synchronously;
    ``component`` (api, worker, relay) suffixes ``service.name``.
    """
    global _global_provider_set
    if exporter is None and not settings.otel_exporter_otlp_endpoint:
        return None
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    resource = Resource.create(
        {
            "service.name": f"{settings.service_name}-{component}"
            if component
            else settings.service_name,
            "service.version": settings.service_version,
            "deployment.environment": settings.app_env.value,
        }
    )
    provider = TracerProvider(resource=resource)
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        endpoint = otlp_traces_endpoint(settings.otel_exporter_otlp_endpoint)
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    if not _global_provider_set:
        # Libraries calling trace.get_tracer() use it too; the API allows setting it once.
        trace.set_tracer_provider(provider)
        _global_provider_set = True
    return provider


def instrument(app: Any, provider: TracerProvider) -> None:
    """FastAPI server spans and asyncpg client spans (the API's queries are raw asyncpg)."""
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(
        app, tracer_provider=provider, excluded_urls="health,metrics"
    )
    AsyncPGInstrumentor().instrument(tracer_provider=provider)


def uninstrument(app: Any) -> None:
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.uninstrument_app(app)
    AsyncPGInstrumentor().uninstrument()


def inject_trace_context() -> dict[str, str]:
    """W3C ``traceparent``/``tracestate`` of the current span (empty when there is none)."""
    # Both headers exist only for a valid span context (ours, or one adopted from the
    # request): skip the propagators' work on the common untraced request.
    if not trace.get_current_span().get_span_context().is_valid:
        return {}
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return {k: v for k, v in carrier.items() if k in ("traceparent", "tracestate")}


def extract_trace_context(headers: Mapping[str, str]) -> Context:
    """The context to continue from message or request headers."""
    return propagate.extract(dict(headers))
