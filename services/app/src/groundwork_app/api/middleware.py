"""Pure ASGI middleware (no BaseHTTPMiddleware: it costs a task per request).

``RequestContextMiddleware`` is the outermost layer and does, once per request:
request id (from a valid ``X-Request-ID`` or generated; echoed back and bound to
every log line), the access log line, HTTP metrics by route template, the in-flight
gauge, security headers, a JSON 500 for anything unhandled, and (when tracing is
off) adoption of an incoming W3C ``traceparent`` so it still reaches the outbox.
"""

from __future__ import annotations

import time
from typing import Any

from opentelemetry import context as otel_context
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from groundwork_app.api.errors import error_response
from groundwork_app.observability.logging import (
    bind_request_id,
    clear_request_context,
    get_logger,
    valid_request_id,
)
from groundwork_app.observability.metrics import (
    HTTP_IN_FLIGHT,
    UNMATCHED_ROUTE,
    observe_http_request,
)
from groundwork_app.observability.tracing import extract_trace_context

log = get_logger("groundwork_app.access")

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
API_CSP = b"default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
# Swagger UI / ReDoc load their bundle from jsDelivr and boot with an inline script.
DOCS_CSP = (
    b"default-src 'none'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    b"style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com; "
    b"font-src https://fonts.gstatic.com; img-src 'self' data: https://fastapi.tiangolo.com "
    b"https://cdn.redoc.ly; connect-src 'self'; worker-src blob:; frame-ancestors 'none'"
)
DOCS_PATHS = frozenset({"/docs", "/redoc", "/docs/oauth2-redirect"})
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"strict-transport-security", b"max-age=63072000; includeSubDomains"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-resource-policy", b"same-origin"),
)


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, *, adopt_traceparent: bool = True) -> None:
        self.app = app
        self.adopt_traceparent = adopt_traceparent

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        incoming_id = None
        trace_headers: dict[str, str] = {}
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                incoming_id = value.decode("latin-1")
            elif name in (b"traceparent", b"tracestate"):
                trace_headers[name.decode()] = value.decode("latin-1")
        request_id = valid_request_id(incoming_id)
        request_id_header = (b"x-request-id", request_id.encode())
        bind_request_id(request_id)
        token = None
        if trace_headers and self.adopt_traceparent:
            token = otel_context.attach(extract_trace_context(trace_headers))
        path = scope["path"]
        csp = DOCS_CSP if path in DOCS_PATHS else API_CSP
        status = 500
        response_started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                headers = list(message.get("headers", ()))
                has_cache_control = any(k == b"cache-control" for k, _ in headers)
                headers.append(request_id_header)
                headers.extend(SECURITY_HEADERS)
                headers.append((b"content-security-policy", csp))
                if not has_cache_control:
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        HTTP_IN_FLIGHT.inc()
        try:
            await self.app(scope, receive, send_with_headers)
        except Exception:
            log.exception("http.unhandled_error", path=path)
            if not response_started:
                response = error_response(500, "internal_error", "Internal server error.")
                await response(scope, receive, send_with_headers)
        finally:
            HTTP_IN_FLIGHT.dec()
            duration = time.perf_counter() - started
            route: Any = scope.get("route")
            template = getattr(route, "path", None) or UNMATCHED_ROUTE
            method = scope["method"] if scope["method"] in _METHODS else "OTHER"
            observe_http_request(template, method, status, duration)
            log.info(
                "http.request",
                method=method,
                route=template,
                status=status,
                duration_ms=round(duration * 1000, 2),
            )
            if token is not None:
                otel_context.detach(token)
            clear_request_context()
