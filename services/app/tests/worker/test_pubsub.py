"""Pub/Sub: the relay's publisher against a local gRPC stand-in of google.pubsub.v1.Publisher
(reached through the client's own PUBSUB_EMULATOR_HOST path) and the worker's push
receiver over real HTTP with push-format envelopes and locally signed OIDC tokens."""

from __future__ import annotations

import asyncio
import base64
import datetime
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
import httpx
import pytest
import sqlalchemy as sa
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from google.auth import crypt
from google.auth import jwt as google_jwt
from google.pubsub_v1.types import PublishRequest, PublishResponse
from groundwork_app.adapters.llm import SimulatedProvider
from groundwork_app.adapters.pubsub import PubSubPublisher, PushTokenVerifier, parse_push_envelope
from groundwork_app.db.schema import outbox
from groundwork_app.db.worker import JobStore
from groundwork_app.relay.outbox import BatchResult, OutboxRelay
from groundwork_app.settings import QueueBackend, Settings
from groundwork_app.worker.pubsub_push import PUSH_PATH, create_push_app
from groundwork_app.worker.runner import build_handler
from sqlalchemy.ext.asyncio import AsyncEngine

from groundwork.devenv.servers import free_port

from .conftest import insert_job, job_row, ledger_count, make_settings

AUDIENCE = "https://worker.example.run.app/pubsub/push"
PUSH_SA = "pubsub-push@test-project.iam.gserviceaccount.com"


# --- the publisher ---------------------------------------------------------------------


class FakePublisherService:
    """google.pubsub.v1.Publisher/Publish on an insecure local gRPC port."""

    def __init__(self) -> None:
        self.received: list[tuple[str, Any]] = []
        self.deny = False
        self.server = grpc.server(ThreadPoolExecutor(max_workers=4))
        handler = grpc.method_handlers_generic_handler(
            "google.pubsub.v1.Publisher",
            {
                "Publish": grpc.unary_unary_rpc_method_handler(
                    self._publish,
                    request_deserializer=PublishRequest.deserialize,
                    response_serializer=PublishResponse.serialize,
                ),
            },
        )
        self.server.add_generic_rpc_handlers((handler,))
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def _publish(self, request: PublishRequest, context: grpc.ServicerContext) -> PublishResponse:
        if self.deny:  # non-retryable, so the client gives up at once
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "topic publish denied")
        ids = []
        for message in request.messages:
            self.received.append((request.topic, message))
            ids.append(str(len(self.received)))
        return PublishResponse(message_ids=ids)


@pytest.fixture
def pubsub_service(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakePublisherService]:
    service = FakePublisherService()
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", f"127.0.0.1:{service.port}")
    yield service
    service.server.stop(None)


def _pubsub_settings(settings: Settings) -> Settings:
    return make_settings(
        queue_name=settings.queue_name,
        queue_backend=QueueBackend.PUBSUB,
        pubsub_project_id="test-project",
    )


async def _publish_batch(ps: Settings) -> BatchResult:
    """One relay pass over the outbox into Pub/Sub (the fake service's emulator host)."""
    publisher = PubSubPublisher(ps)
    relay = OutboxRelay(publisher, ps)
    try:
        return await relay.publish_batch()
    finally:
        await relay.close()
        await publisher.close()


async def test_relay_publishes_outbox_rows_to_the_topic(
    settings: Settings, engine: AsyncEngine, pubsub_service: FakePublisherService
) -> None:
    ps = _pubsub_settings(settings)
    job_id, message_id = await insert_job(engine, ps, "hello pubsub", request_id="req-ps-1")
    result = await _publish_batch(ps)
    assert (result.published, result.failed) == (1, 0)
    [(topic, message)] = pubsub_service.received
    assert topic == f"projects/test-project/topics/{settings.queue_name}"
    assert json.loads(message.data) == {
        "job_id": str(job_id),
        "prompt": "hello pubsub",
        "model": "test-model",
        "metadata": {},
    }
    attributes = dict(message.attributes)
    assert attributes["message_id"] == str(message_id)
    assert attributes["request_id"] == "req-ps-1"
    assert attributes["traceparent"].startswith("00-")
    assert attributes["x-groundwork-job-id"] == str(job_id)


async def test_refused_publish_leaves_the_row_unsent(
    settings: Settings, engine: AsyncEngine, pubsub_service: FakePublisherService
) -> None:
    pubsub_service.deny = True
    ps = _pubsub_settings(settings)
    await insert_job(engine, ps)
    result = await _publish_batch(ps)
    assert (result.published, result.failed) == (0, 1)
    async with engine.connect() as conn:
        row = (await conn.execute(sa.select(outbox))).one()
    assert row.sent_at is None
    assert row.publish_attempts == 1
    assert "Pub/Sub did not accept" in row.last_error


def test_publisher_requires_a_project() -> None:
    with pytest.raises(ValueError, match="PUBSUB_PROJECT_ID must be set"):
        PubSubPublisher(
            Settings(queue_backend=QueueBackend.PUBSUB, pubsub_project_id=""), client=object()
        )


# --- the push receiver -----------------------------------------------------------------


class Google:
    """A local stand-in for Google's token signer and its certificate endpoint."""

    def __init__(self) -> None:
        self.kid = uuid.uuid4().hex
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-google")])
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .sign(self.key, hashes.SHA256())
        )
        certs = json.dumps({self.kid: cert.public_bytes(serialization.Encoding.PEM).decode()})
        self.fetches = 0
        google = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                google.fetches += 1
                body = certs.encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.certs_url = f"http://127.0.0.1:{self.server.server_port}/oauth2/v1/certs"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def token(self, *, key: rsa.RSAPrivateKey | None = None, **claims: Any) -> str:
        pem = (key or self.key).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        now = int(time.time())
        payload = {
            "iss": "https://accounts.google.com",
            "aud": AUDIENCE,
            "email": PUSH_SA,
            "email_verified": True,
            "sub": "1234",
            "iat": now,
            "exp": now + 600,
        }
        payload.update(claims)
        signer = crypt.RSASigner.from_string(pem, key_id=self.kid)
        return google_jwt.encode(signer, payload).decode()


@pytest.fixture(scope="module")
def google() -> Iterator[Google]:
    fake = Google()
    yield fake
    fake.server.shutdown()


def envelope(
    job_id: uuid.UUID,
    message_id: str,
    *,
    attempt: int | None = None,
    data: bytes | None = None,
    pubsub_id: str = "1001",
) -> dict[str, Any]:
    body = (
        data
        if data is not None
        else json.dumps(
            {"job_id": str(job_id), "prompt": "push me", "model": "test-model", "metadata": {}}
        ).encode()
    )
    env: dict[str, Any] = {
        "message": {
            "data": base64.b64encode(body).decode(),
            "messageId": pubsub_id,
            "publishTime": "2026-11-22T10:00:00Z",
            "attributes": {"message_id": message_id, "request_id": "req-push-1"},
        },
        "subscription": "projects/test-project/subscriptions/jobs-push",
    }
    if attempt is not None:
        env["deliveryAttempt"] = attempt
    return env


class PushWorker:
    def __init__(
        self, base_url: str, provider: SimulatedProvider, engine: AsyncEngine, google: Google
    ) -> None:
        self.base_url = base_url
        self.provider = provider
        self.engine = engine
        self.google = google

    async def push(self, body: Any, token: str | None = "valid") -> httpx.Response:
        headers = {}
        if token == "valid":
            token = self.google.token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        async with httpx.AsyncClient(base_url=self.base_url, timeout=10) as client:
            return await client.post(
                PUSH_PATH, content=content, headers={**headers, "Content-Type": "application/json"}
            )


def as_cloud_run_delivers(token: str) -> str:
    """The token as the container receives it behind Cloud Run's IAM invoker check.

    Cloud Run validates the ID token itself and then forwards it with the signature
    segment replaced by ``SIGNATURE_REMOVED_BY_GOOGLE`` (header and claims unchanged):
    https://cloud.google.com/run/docs/authenticating/service-to-service and
    https://cloud.google.com/run/docs/troubleshooting.
    """
    header, payload, _signature = token.split(".")
    return f"{header}.{payload}.SIGNATURE_REMOVED_BY_GOOGLE"


@pytest.fixture(params=["verify-signature"])
async def push_worker(
    request: pytest.FixtureRequest,
    settings: Settings,
    engine: AsyncEngine,
    store: JobStore,
    google: Google,
) -> AsyncIterator[PushWorker]:
    ps = make_settings(
        queue_name=settings.queue_name,
        queue_backend=QueueBackend.PUBSUB,
        pubsub_project_id="test-project",
        pubsub_push_audience=AUDIENCE,
        pubsub_push_service_account=PUSH_SA,
        pubsub_push_auth=request.param,
    )
    provider = SimulatedProvider()
    handler = build_handler(ps, store, provider=provider)
    verifier = PushTokenVerifier(
        AUDIENCE,
        PUSH_SA,
        certs_url=google.certs_url,
        platform_verified=ps.pubsub_push_auth == "cloud-run-iam",
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_push_app(handler.handle, verifier), host="127.0.0.1", port=port, log_config=None
        )
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    yield PushWorker(f"http://127.0.0.1:{port}", provider, engine, google)
    server.should_exit = True
    await task


async def test_valid_push_is_handled_and_redelivery_is_idempotent(
    push_worker: PushWorker, settings: Settings, engine: AsyncEngine
) -> None:
    job_id, message_id = await insert_job(engine, settings, "push me")
    first = await push_worker.push(envelope(job_id, str(message_id), attempt=1))
    assert first.status_code == 204, first.text
    row = await job_row(engine, job_id)
    assert row.status == "succeeded"
    # Pub/Sub redelivers (lost ack) with a new attempt, and a relay re-publish gets a new
    # Pub/Sub id: the outbox message id in the attributes is the key.
    again = await push_worker.push(envelope(job_id, str(message_id), attempt=2, pubsub_id="77"))
    assert again.status_code == 204
    assert push_worker.provider.calls == 1
    assert await ledger_count(engine, job_id) == 1
    assert (await job_row(engine, job_id)).completed_at == row.completed_at


async def test_push_auth_failures(
    push_worker: PushWorker, settings: Settings, engine: AsyncEngine, google: Google
) -> None:
    job_id, message_id = await insert_job(engine, settings)
    body = envelope(job_id, str(message_id))
    fetches_before = google.fetches
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cases = {
        "missing": (None, 401),
        "garbage": ("not-a-jwt", 401),
        "forged": (google.token(key=other_key), 401),
        "expired": (google.token(iat=int(time.time()) - 7200, exp=int(time.time()) - 3600), 401),
        "issuer": (google.token(iss="https://evil.example"), 401),
        "audience": (google.token(aud="https://someone-else.example"), 403),
        "identity": (google.token(email="attacker@evil.iam.gserviceaccount.com"), 403),
    }
    for name, (token, status) in cases.items():
        response = await push_worker.push(body, token=token)
        assert response.status_code == status, (name, response.text)
    assert (await job_row(engine, job_id)).status == "queued"
    assert push_worker.provider.calls == 0
    # Certificates are cached by the verifier, not fetched per push.
    assert google.fetches - fetches_before == 1


# What the GCP stack deploys: the worker keeps Cloud Run's IAM invoker check and the
# app runs with PUBSUB_PUSH_AUTH=cloud-run-iam (tests/gcp checks the stack side).
cloud_run_iam = pytest.mark.parametrize("push_worker", ["cloud-run-iam"], indirect=True)


@cloud_run_iam
async def test_push_as_cloud_run_delivers_it_is_handled(
    push_worker: PushWorker, settings: Settings, engine: AsyncEngine, google: Google
) -> None:
    job_id, message_id = await insert_job(engine, settings, "push me")
    token = as_cloud_run_delivers(google.token())
    response = await push_worker.push(envelope(job_id, str(message_id)), token=token)
    assert response.status_code == 204, response.text
    assert (await job_row(engine, job_id)).status == "succeeded"
    # A token that still carries a signature (no platform in front) is verified in full.
    job2, message2 = await insert_job(engine, settings, "signed")
    assert (await push_worker.push(envelope(job2, str(message2)))).status_code == 204


async def test_stripped_token_is_refused_unless_cloud_run_checked_it(
    push_worker: PushWorker, settings: Settings, engine: AsyncEngine, google: Google
) -> None:
    """Defect this guards against: re-verifying the signature Cloud Run removed answered
    401 to every push (then dead-lettered). Without PUBSUB_PUSH_AUTH=cloud-run-iam the
    marker is not trusted (anyone can write it), and the 401 says what to set."""
    job_id, message_id = await insert_job(engine, settings)
    token = as_cloud_run_delivers(google.token())
    response = await push_worker.push(envelope(job_id, str(message_id)), token=token)
    assert response.status_code == 401
    assert "PUBSUB_PUSH_AUTH=cloud-run-iam" in response.json()["detail"]
    assert (await job_row(engine, job_id)).status == "queued"


@cloud_run_iam
async def test_claims_of_a_cloud_run_checked_token_are_still_enforced(
    push_worker: PushWorker, settings: Settings, engine: AsyncEngine, google: Google
) -> None:
    job_id, message_id = await insert_job(engine, settings)
    body = envelope(job_id, str(message_id))
    now = int(time.time())
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cases = {
        # Another principal with run.invoker on the worker passes Cloud Run's check.
        "identity": (google.token(email="attacker@evil.iam.gserviceaccount.com"), 403),
        "unverified email": (google.token(email_verified=False), 403),
        "audience": (google.token(aud="https://worker.example.run.app"), 403),
        "issuer": (google.token(iss="https://evil.example"), 401),
        "expired": (google.token(iat=now - 7200, exp=now - 3600), 401),
        "future": (google.token(iat=now + 3600, exp=now + 7200), 401),
    }
    for name, (token, status) in cases.items():
        response = await push_worker.push(body, token=as_cloud_run_delivers(token))
        assert response.status_code == status, (name, response.text)
    garbage = await push_worker.push(body, token="a.b.SIGNATURE_REMOVED_BY_GOOGLE")
    assert garbage.status_code == 401
    # A token that keeps a signature is verified: a forged one is still refused.
    assert (await push_worker.push(body, token=google.token(key=other_key))).status_code == 401
    assert (await job_row(engine, job_id)).status == "queued"
    assert push_worker.provider.calls == 0


async def test_push_status_codes_drive_pubsub_retry_and_dead_lettering(
    push_worker: PushWorker, settings: Settings, engine: AsyncEngine
) -> None:
    assert (await push_worker.push(b"{not json")).status_code == 400
    assert (await push_worker.push({"subscription": "x"})).status_code == 400
    poison = await push_worker.push(envelope(uuid.uuid4(), "m-poison", data=b"\x00garbage"))
    assert poison.status_code == 422
    assert poison.json()["detail"].startswith("malformed message")

    job_id, message_id = await insert_job(engine, settings)
    push_worker.provider.failure_rate = 1.0
    retry = await push_worker.push(envelope(job_id, str(message_id), attempt=1))
    assert retry.status_code == 503  # Pub/Sub retries with backoff
    assert (await job_row(engine, job_id)).status == "queued"
    last = await push_worker.push(
        envelope(job_id, str(message_id), attempt=settings.queue_delivery_limit)
    )
    assert last.status_code == 422  # nacked on the last attempt: Pub/Sub dead-letters it
    row = await job_row(engine, job_id)
    assert row.status == "failed"
    assert row.error.startswith("LLM unavailable")


def test_envelope_parsing_defaults() -> None:
    message = parse_push_envelope(json.dumps({"message": {"messageId": "42", "data": ""}}).encode())
    assert (message.message_id, message.delivery_attempt, message.data) == ("42", 1, b"")
