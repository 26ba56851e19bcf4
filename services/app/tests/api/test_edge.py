"""Security headers, CORS, request ids in logs, metrics by route template, OpenAPI."""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable
from typing import Any

from .conftest import JOB, ApiHarness, running_api


async def test_security_headers_on_every_response(api: ApiHarness):
    for response in (
        await api.client.get("/health/live"),
        await api.client.post("/v1/jobs", json=JOB),  # 401
        await api.client.get("/nowhere"),  # 404
    ):
        headers = response.headers
        assert headers["strict-transport-security"].startswith("max-age=")
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["x-frame-options"] == "DENY"
        assert headers["content-security-policy"].startswith("default-src 'none'")
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert headers["cache-control"] == "no-store"
        assert "server" not in headers


async def test_docs_get_a_csp_that_lets_swagger_load(api: ApiHarness):
    docs = await api.client.get("/docs")
    assert docs.status_code == 200
    csp = docs.headers["content-security-policy"]
    assert "https://cdn.jsdelivr.net" in csp and "frame-ancestors 'none'" in csp
    schema = (await api.client.get("/openapi.json")).json()
    assert (
        "cdn.jsdelivr.net"
        not in (await api.client.get("/openapi.json")).headers["content-security-policy"]
    )
    post = schema["paths"]["/v1/jobs"]["post"]
    body_ref = post["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert body_ref == "#/components/schemas/JobRequest"
    job_request = schema["components"]["schemas"]["JobRequest"]
    assert job_request["examples"][0]["prompt"]
    for status in ("202", "200", "401", "403", "409", "413", "415", "422", "429"):
        assert status in post["responses"], status
    assert post["responses"]["422"]["content"]["application/json"]["example"]["error"]["code"]
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert "/v1/webhooks/jobs" in schema["paths"]
    # The /v1/jobs routes read their parameters themselves (api.direct_route), so the
    # document must still declare them, and only our error shape for 422s.
    [key] = post["parameters"]
    assert (key["name"], key["in"], key["required"]) == ("Idempotency-Key", "header", False)
    assert key["schema"]["pattern"] == "^[A-Za-z0-9_.:\\-]{1,255}$"
    for method, operation in schema["paths"]["/v1/jobs/{job_id}"].items():
        [job_id] = operation["parameters"]
        assert (job_id["name"], job_id["in"], job_id["required"]) == ("job_id", "path", True)
        assert job_id["schema"]["format"] == "uuid", method
        assert operation["responses"]["422"]["content"]["application/json"]["example"]
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    # The auth dependency reads the header itself, so each guarded operation must
    # reference the scheme explicitly: every operation answering 401 does, no other.
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            guarded = "401" in operation["responses"] and not path.startswith("/v1/webhooks")
            expected = [{"HTTPBearer": []}] if guarded else None
            assert operation.get("security") == expected, (method, path)


async def test_docs_are_off_in_production(settings_factory: Callable[..., Any], clean_db: None):
    from groundwork_app.api.app import create_app
    from groundwork_app.settings import Environment

    # model_copy skips validation: the production secret checks are tested elsewhere.
    settings = settings_factory().model_copy(update={"app_env": Environment.PRODUCTION})

    # A stream of its own: without one create_app configures logging for a real process,
    # with loggers cached on first use (the conftest's structlog guard).
    app = create_app(settings, log_stream=io.StringIO())
    assert app.docs_url is None and app.redoc_url is None


async def test_cors_allows_only_configured_origins(
    settings_factory: Callable[..., Any], clean_db: None
):
    settings = settings_factory(cors_origins="https://app.example.com")
    async with running_api(settings) as api:
        preflight = {
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type,idempotency-key",
        }
        allowed = await api.client.options(
            "/v1/jobs", headers={"Origin": "https://app.example.com", **preflight}
        )
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == "https://app.example.com"
        assert "idempotency-key" in allowed.headers["access-control-allow-headers"].lower()
        denied = await api.client.options(
            "/v1/jobs", headers={"Origin": "https://evil.example", **preflight}
        )
        assert denied.status_code == 400
        assert "access-control-allow-origin" not in denied.headers
        # The API's one error shape, not Starlette's plain "Disallowed CORS origin".
        assert denied.headers["content-type"] == "application/json"
        error = denied.json()["error"]
        assert (error["code"], error["message"]) == (
            "cors_rejected",
            "CORS preflight rejected: origin not allowed.",
        )
        assert error["request_id"] == denied.headers["x-request-id"]
        simple = await api.client.get("/health/live", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in simple.headers


async def test_no_cors_headers_without_configuration(api: ApiHarness):
    response = await api.client.get("/health/live", headers={"Origin": "https://app.example.com"})
    assert "access-control-allow-origin" not in response.headers


async def test_request_id_reaches_every_log_line_of_the_request(api: ApiHarness):
    request_id = f"trace-{uuid.uuid4().hex}"
    response = await api.client.post(
        "/v1/jobs", json=JOB, headers={**api.auth(), "X-Request-ID": request_id}
    )
    assert response.headers["x-request-id"] == request_id
    lines = [line for line in api.log_lines() if line.get("request_id") == request_id]
    assert any(line["event"] == "http.request" and line["status"] == 202 for line in lines)
    # The next request does not inherit it.
    other = await api.client.get("/health/live")
    last = [line for line in api.log_lines() if line.get("event") == "http.request"][-1]
    assert last["request_id"] == other.headers["x-request-id"] != request_id
    token = api.token()
    assert token not in api.logs.getvalue()


async def test_metrics_use_route_templates(api: ApiHarness):
    auth = api.auth()
    for _ in range(2):
        await api.client.get(f"/v1/jobs/{uuid.uuid4()}", headers=auth)
    await api.client.get(f"/random/{uuid.uuid4()}")
    text = (await api.client.get("/metrics")).text
    assert 'http_requests_total{method="GET",route="/v1/jobs/{job_id}",status="404"}' in text
    assert 'route="<unmatched>"' in text
    assert "/random/" not in text
    assert "http_request_duration_seconds_bucket" in text
    assert "http_requests_in_flight" in text
    assert "outbox_backlog" in text
    assert "jobs_submitted_total" in text


async def test_outbox_backlog_gauge_counts_unsent_rows(api: ApiHarness):
    from groundwork_app.observability.metrics import OUTBOX_BACKLOG

    for _ in range(3):
        assert (await api.client.post("/v1/jobs", json=JOB, headers=api.auth())).status_code == 202
    api.app.state.services.backlog._refreshed_at = float("-inf")
    await api.client.get("/metrics")
    assert OUTBOX_BACKLOG._value.get() == 3
    # Cached between scrapes: new rows do not trigger a query until max_age passes.
    await api.client.post("/v1/jobs", json=JOB, headers=api.auth())
    await api.client.get("/metrics")
    assert OUTBOX_BACKLOG._value.get() == 3


async def test_metrics_on_a_separate_port(settings_factory: Callable[..., Any], clean_db: None):
    import httpx

    from groundwork.devenv.servers import free_port

    port = free_port()
    settings = settings_factory(metrics_port=port, api_bind_host="127.0.0.1")
    async with running_api(settings) as api:
        assert (await api.client.get("/metrics")).status_code == 404
        async with httpx.AsyncClient() as client:
            response = await client.get(f"http://127.0.0.1:{port}/metrics")
        assert response.status_code == 200
        assert "http_requests_total" in response.text
