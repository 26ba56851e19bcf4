"""OpenTelemetry: spans for FastAPI and asyncpg; trace context stored in the outbox row."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import asyncpg
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from .conftest import JOB, ApiHarness, running_api

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
INCOMING = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


async def test_spans_and_outbox_trace_context(
    settings_factory: Callable[..., Any], clean_db: None, db: asyncpg.Connection
):
    exporter = InMemorySpanExporter()
    async with running_api(settings_factory(), span_exporter=exporter) as api:
        response = await api.client.post(
            "/v1/jobs", json=JOB, headers={**api.auth(), "traceparent": INCOMING}
        )
        assert response.status_code == 202
    spans = exporter.get_finished_spans()
    server = [s for s in spans if s.kind.name == "SERVER"]
    assert server, [s.name for s in spans]
    assert format(server[0].context.trace_id, "032x") == TRACE_ID  # continued upstream trace
    # The insert ran in a batch shared by concurrent requests (group commit): its span is
    # linked to the request's span, and the statement's span is its child.
    [batch] = [s for s in spans if s.name == "jobs.insert_batch"]
    assert [link.context.span_id for link in batch.links] == [server[0].context.span_id]
    assert batch.attributes is not None and batch.attributes["batch.size"] == 1
    db_spans = [s for s in spans if s.attributes and s.attributes.get("db.system") == "postgresql"]
    assert any(s.parent is not None and s.parent.span_id == batch.context.span_id for s in db_spans)

    headers = json.loads(await db.fetchval("SELECT headers FROM outbox"))
    _version, trace_id, span_id, _flags = headers["traceparent"].split("-")
    assert trace_id == TRACE_ID
    assert span_id != "00f067aa0ba902b7"  # the API's own span is the parent now
    assert headers["request_id"] == response.headers["x-request-id"]


async def test_without_exporter_incoming_traceparent_still_reaches_outbox(
    api: ApiHarness, db: asyncpg.Connection
):
    response = await api.client.post(
        "/v1/jobs",
        json=JOB,
        headers={**api.auth(), "traceparent": INCOMING, "tracestate": "vendor=1"},
    )
    assert response.status_code == 202
    headers = json.loads(await db.fetchval("SELECT headers FROM outbox"))
    assert headers["traceparent"] == INCOMING
    assert headers["tracestate"] == "vendor=1"


def test_otlp_endpoint_configures_an_exporter(settings_factory: Callable[..., Any]):
    from groundwork_app.observability import tracing

    assert tracing.configure_tracing(settings_factory()) is None
    assert tracing.otlp_traces_endpoint("http://collector:4318/") == (
        "http://collector:4318/v1/traces"
    )
    provider = tracing.configure_tracing(
        settings_factory(otel_exporter_otlp_endpoint="http://127.0.0.1:1"), component="api"
    )
    assert provider is not None
    assert provider.resource.attributes["service.name"] == "groundwork-api"
    provider.shutdown()
