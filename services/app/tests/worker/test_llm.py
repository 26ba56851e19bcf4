"""The LLM client against a local fake OpenAI-compatible HTTP server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from groundwork_app.adapters.llm import (
    MAX_RETRY_AFTER_SECONDS,
    LLMRequestError,
    LLMRetryableError,
    LLMUnavailableError,
    OpenAICompatibleProvider,
    ProviderRateLimiter,
    ResilientLLM,
    SimulatedProvider,
    build_llm,
    build_provider,
    parse_retry_after,
)
from groundwork_app.settings import Settings
from pydantic import SecretStr

from .conftest import wait_for


class FakeOpenAI:
    """Answers POST /v1/chat/completions from a script of (status, delay) steps."""

    def __init__(self) -> None:
        # (status, delay) or (status, delay, extra response headers)
        self.script: list[tuple[Any, ...]] = []
        self.requests: list[dict] = []
        self.arrivals: list[float] = []
        self.auth: list[str] = []
        self.paths: list[str] = []
        self.proxy_auth: list[str] = []
        self.connects: list[dict[str, str]] = []
        self.concurrent = 0
        self.max_concurrent = 0
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_CONNECT(self) -> None:
                # As a forward proxy would see a tunnel request for an https provider;
                # refused, so the call fails after the proxy saw the CONNECT's headers.
                fake.connects.append(dict(self.headers))
                self.send_response(403)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                fake.requests.append(json.loads(self.rfile.read(length)))
                fake.auth.append(self.headers.get("Authorization", ""))
                fake.paths.append(self.path)
                if "Proxy-Authorization" in self.headers:
                    fake.proxy_auth.append(self.headers["Proxy-Authorization"])
                with fake._lock:
                    fake.arrivals.append(time.monotonic())
                    step = fake.script.pop(0) if fake.script else (200, 0.0)
                    fake.concurrent += 1
                    fake.max_concurrent = max(fake.max_concurrent, fake.concurrent)
                status, delay, extra = (*step, {})[:3]
                time.sleep(delay)
                with fake._lock:
                    fake.concurrent -= 1
                if status == 200:
                    body = json.dumps(
                        {"choices": [{"message": {"role": "assistant", "content": "four"}}]}
                    ).encode()
                else:
                    body = json.dumps({"error": {"message": f"status {status}"}}).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    for name, value in extra.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        class Server(ThreadingHTTPServer):
            request_queue_size = 512  # accept bursts of concurrent calls (default 5)

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/v1"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI()
    yield fake
    fake.close()


def resilient(
    fake: FakeOpenAI,
    *,
    timeout: float = 2.0,
    retries: int = 2,
    threshold: int = 10,
    limiter: ProviderRateLimiter | None = None,
    max_connections: int = 100,
) -> ResilientLLM:
    provider = OpenAICompatibleProvider(
        fake.url, "sk-test-key", timeout, max_connections=max_connections
    )
    return ResilientLLM(
        provider,
        timeout_seconds=timeout,
        max_retries=retries,
        failure_threshold=threshold,
        recovery_seconds=60,
        backoff_initial=0.01,
        backoff_max=0.05,
        limiter=limiter,
    )


async def test_success_sends_the_openai_request(fake_openai: FakeOpenAI) -> None:
    llm = resilient(fake_openai)
    assert await llm.complete("What is 2+2?", "gpt-test") == "four"
    assert fake_openai.requests == [
        {"model": "gpt-test", "messages": [{"role": "user", "content": "What is 2+2?"}]}
    ]
    assert fake_openai.auth == ["Bearer sk-test-key"]
    await llm.aclose()


@pytest.mark.parametrize("status", [429, 500, 502, 503])
async def test_retryable_statuses_are_retried(fake_openai: FakeOpenAI, status: int) -> None:
    fake_openai.script = [(status, 0), (status, 0)]
    llm = resilient(fake_openai, retries=2)
    assert await llm.complete("p", "m") == "four"
    assert len(fake_openai.requests) == 3
    await llm.aclose()


async def test_retries_are_bounded(fake_openai: FakeOpenAI) -> None:
    fake_openai.script = [(503, 0)] * 5
    llm = resilient(fake_openai, retries=2)
    with pytest.raises(LLMUnavailableError, match="after 3 attempts"):
        await llm.complete("p", "m")
    assert len(fake_openai.requests) == 3
    await llm.aclose()


@pytest.mark.parametrize("status", [400, 401, 404, 422])
async def test_client_errors_are_not_retried(fake_openai: FakeOpenAI, status: int) -> None:
    fake_openai.script = [(status, 0)]
    llm = resilient(fake_openai, retries=3, threshold=1)
    with pytest.raises(LLMRequestError, match=f"HTTP {status}"):
        await llm.complete("p", "m")
    assert len(fake_openai.requests) == 1
    assert llm.circuit_state == "closed"  # a bad request says nothing about provider health
    await llm.aclose()


async def test_timeout_is_retried_then_reported(fake_openai: FakeOpenAI) -> None:
    # Answers after 5 s, timeout 1 s: two timed-out tries end well before one answer.
    fake_openai.script = [(200, 5.0), (200, 5.0)]
    llm = resilient(fake_openai, timeout=1.0, retries=1)
    started = time.monotonic()
    with pytest.raises(LLMUnavailableError, match=r"timed out|exceeded"):
        await llm.complete("p", "m")
    assert time.monotonic() - started < 4.0
    assert len(fake_openai.requests) == 2
    await llm.aclose()


async def test_circuit_opens_and_fails_fast(fake_openai: FakeOpenAI) -> None:
    fake_openai.script = [(500, 0)] * 10
    llm = resilient(fake_openai, retries=0, threshold=3)
    for _ in range(3):
        with pytest.raises(LLMUnavailableError, match="after 1 attempts"):
            await llm.complete("p", "m")
    assert llm.circuit_state == "open"
    with pytest.raises(LLMUnavailableError, match="circuit open"):
        await llm.complete("p", "m")
    assert len(fake_openai.requests) == 3  # the open circuit never reached the provider
    await llm.aclose()


async def test_circuit_half_opens_after_recovery_and_closes_on_success() -> None:
    provider = SimulatedProvider(failure_rate=1.0)
    llm = ResilientLLM(
        provider,
        timeout_seconds=1,
        max_retries=0,
        failure_threshold=2,
        recovery_seconds=0.2,
        backoff_initial=0.01,
        backoff_max=0.01,
    )
    for _ in range(2):
        with pytest.raises(LLMUnavailableError):
            await llm.complete("p", "m")
    assert llm.circuit_state == "open"
    provider.failure_rate = 0.0
    time.sleep(0.25)
    assert llm.circuit_state == "half_open"
    assert (await llm.complete("p", "m")).startswith("[m] simulated answer")
    assert llm.circuit_state == "closed"


async def test_simulated_provider_is_deterministic_and_counts_calls() -> None:
    provider = SimulatedProvider()
    first = await provider.complete("hello", "m")
    assert first == await provider.complete("hello", "m")
    assert first != await provider.complete("hello!", "m")
    assert provider.calls == 3


def test_provider_choice_follows_the_api_key() -> None:
    assert isinstance(build_provider(Settings(llm_api_key=SecretStr(""))), SimulatedProvider)
    assert isinstance(
        build_provider(Settings(llm_api_key=SecretStr("sk-x"))), OpenAICompatibleProvider
    )


# --- rate limits: the provider's 429 + Retry-After, and client-side pacing ----------
# OpenAI: https://platform.openai.com/docs/guides/rate-limits (429 with retry-after;
# its SDK reads retry-after-ms first); Anthropic: https://docs.anthropic.com/en/api/rate-limits
# (429 rate_limit_error with retry-after in seconds); RFC 9110 10.2.3 (seconds or HTTP-date).


def test_retry_after_headers_as_providers_send_them() -> None:
    assert parse_retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert parse_retry_after({"Retry-After": "20"}) == 20.0
    assert parse_retry_after({"retry-after": "0.25"}) == 0.25
    now = datetime(2026, 12, 4, 12, 0, 0, tzinfo=UTC)
    date = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert parse_retry_after({"retry-after": date}, now=now.timestamp()) == pytest.approx(30)
    past = format_datetime(now - timedelta(seconds=30), usegmt=True)
    assert parse_retry_after({"retry-after": past}, now=now.timestamp()) == 0.0
    for junk in ({}, {"retry-after": "soon"}, {"retry-after": "-3"}, {"retry-after": "nan"}):
        assert parse_retry_after(junk) is None
    assert parse_retry_after({"retry-after-ms": "x", "retry-after": "2"}) == 2.0


async def test_429_waits_the_providers_retry_after_and_leaves_the_circuit_closed(
    fake_openai: FakeOpenAI,
) -> None:
    fake_openai.script = [(429, 0, {"retry-after": "0.6"}), (429, 0, {"retry-after-ms": "400"})]
    # threshold 1: a single counted failure would open the circuit.
    llm = resilient(fake_openai, retries=2, threshold=1)
    assert await llm.complete("p", "m") == "four"
    first, second, third = fake_openai.arrivals
    # The backoff alone would be ~0.01-0.05 s: the waits are the provider's.
    assert second - first >= 0.6
    assert third - second >= 0.4
    assert llm.circuit_state == "closed"
    await llm.aclose()


async def test_a_429_pauses_every_call_of_the_process_not_only_its_own_retry(
    fake_openai: FakeOpenAI,
) -> None:
    fake_openai.script = [(429, 0, {"retry-after": "0.8"})]
    llm = resilient(fake_openai, retries=1, limiter=ProviderRateLimiter(0))
    first = asyncio.create_task(llm.complete("first", "m"))

    async def paused() -> bool:  # the 429 has been answered and read
        return llm.limiter.paused_for > 0

    await wait_for(paused, 10, what="the 429 to pause the limiter")
    assert await llm.complete("second", "m") == "four"
    assert await first == "four"
    assert len(fake_openai.requests) == 3
    # On the server's clock, neither the second call nor the retry arrived before the
    # provider's 0.8 s were over (load can only make the gap longer).
    assert min(fake_openai.arrivals[1:]) - fake_openai.arrivals[0] >= 0.75
    await llm.aclose()


async def test_a_huge_retry_after_is_capped_so_a_slot_is_not_held_for_an_hour() -> None:
    clock = [0.0]
    limiter = ProviderRateLimiter(0, clock=lambda: clock[0])
    limiter.pause(3600)
    assert limiter.paused_for == 3600  # the limiter itself honours what it is told...
    llm = ResilientLLM(
        SimulatedProvider(),
        timeout_seconds=1,
        max_retries=0,
        failure_threshold=5,
        recovery_seconds=1,
        limiter=ProviderRateLimiter(0),
    )
    from groundwork_app.adapters.llm import LLMRateLimitedError

    class Limited(SimulatedProvider):
        async def complete(self, prompt: str, model: str) -> str:
            raise LLMRateLimitedError("429", retry_after=3600)

    llm.provider = Limited()
    with pytest.raises(LLMUnavailableError):
        await llm.complete("p", "m")
    # ...but the client pauses at most MAX_RETRY_AFTER_SECONDS (the OpenAI SDK's bound).
    assert 0 < llm.limiter.paused_for <= MAX_RETRY_AFTER_SECONDS


async def test_pacing_holds_the_configured_requests_per_minute() -> None:
    clock = [100.0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock[0] += seconds

    limiter = ProviderRateLimiter(600, clock=lambda: clock[0], sleep=sleep)  # 10/s
    for _ in range(40):
        await limiter.acquire()
    # One second of burst (10 calls) free, then one call per 0.1 s: 30 more take 3 s.
    assert clock[0] - 100.0 == pytest.approx(3.0)
    assert limiter.waited_seconds == pytest.approx(3.0)
    clock[0] += 60  # idle for a minute: the bucket refills to one second's worth only
    for _ in range(10):
        await limiter.acquire()
    assert clock[0] - 100.0 == pytest.approx(63.0)
    await limiter.acquire()
    assert clock[0] - 100.0 == pytest.approx(63.1)


async def test_pacing_off_never_waits_and_negative_rates_are_refused() -> None:
    limiter = ProviderRateLimiter(0)
    started = time.monotonic()
    await asyncio.gather(*(limiter.acquire() for _ in range(1000)))
    assert time.monotonic() - started < 0.5
    assert limiter.waited_seconds == 0
    with pytest.raises(ValueError, match="requests_per_minute"):
        ProviderRateLimiter(-1)


async def test_paced_calls_through_the_real_client_respect_the_rate(
    fake_openai: FakeOpenAI,
) -> None:
    llm = resilient(fake_openai, limiter=ProviderRateLimiter(1200))  # 20/s, burst 20
    started = time.monotonic()
    await asyncio.gather(*(llm.complete(f"p{i}", "m") for i in range(40)))
    # 20 free, then 20 at 50 ms intervals: the 40th cannot be sent before 1 s.
    assert max(fake_openai.arrivals) - started >= 0.95
    await llm.aclose()


async def test_http_connections_follow_the_worker_concurrency(fake_openai: FakeOpenAI) -> None:
    # httpx's default pool here was 100: a worker running 512 jobs would queue 412 of
    # them inside the client. Each in-flight call gets its own connection.
    # 2 s per call: on a loaded machine opening 150 connections can take longer than a
    # short delay, which would let early calls finish before late ones start.
    fake_openai.script = [(200, 2.0)] * 150
    llm = resilient(fake_openai, max_connections=150, timeout=20, threshold=1000)
    await asyncio.gather(*(llm.complete(f"p{i}", "m") for i in range(150)))
    assert fake_openai.max_concurrent > 100
    await llm.aclose()


def test_settings_wire_the_limiter_and_the_pool() -> None:
    settings = Settings(
        llm_api_key=SecretStr("sk-x"), llm_requests_per_minute=3000, worker_concurrency=300
    )
    llm = build_llm(settings)
    assert llm.limiter.rate == 50
    provider = llm.provider
    assert isinstance(provider, OpenAICompatibleProvider)
    assert provider.max_connections == 300


async def test_the_pool_holds_one_connection_per_slot_and_failures_return_theirs(
    fake_openai: FakeOpenAI,
) -> None:
    # 64 calls at once on a 64-connection pool must all be in flight together, and
    # calls that failed (4xx) must give their connections back: another 64 after them
    # still run side by side.
    # 2 s per call, so a loaded machine still has every call of a burst in flight at once.
    fake_openai.script = [(200, 2.0)] * 64 + [(400, 0.0)] * 8 + [(200, 2.0)] * 64
    llm = resilient(fake_openai, max_connections=64, timeout=20, threshold=1000)
    provider = llm.provider
    assert isinstance(provider, OpenAICompatibleProvider)
    await asyncio.gather(*(llm.complete(f"p{i}", "m") for i in range(64)))
    assert fake_openai.max_concurrent == 64
    failed = await asyncio.gather(
        *(llm.complete(f"q{i}", "m") for i in range(8)), return_exceptions=True
    )
    assert all(isinstance(f, LLMRequestError) for f in failed)
    fake_openai.max_concurrent = 0
    await asyncio.gather(*(llm.complete(f"r{i}", "m") for i in range(64)))
    assert fake_openai.max_concurrent == 64
    # ...and never more than the pool: a 65th call waits for a connection.
    fake_openai.script = [(200, 2.0)] * 65
    fake_openai.max_concurrent = 0
    await asyncio.gather(*(llm.complete(f"s{i}", "m") for i in range(65)))
    assert fake_openai.max_concurrent == 64
    await llm.aclose()


def test_the_proxy_comes_from_the_environment_as_httpx_took_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from groundwork_app.adapters.llm import proxy_for

    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    assert proxy_for("https://api.openai.com/v1/chat/completions") is None
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("HTTP_PROXY", "http://plain.internal:3128")
    assert proxy_for("https://api.openai.com/v1/x") == "http://proxy.internal:3128"
    assert proxy_for("http://vllm.internal:8000/v1/x") == "http://plain.internal:3128"
    monkeypatch.setenv("NO_PROXY", "vllm.internal,localhost")
    assert proxy_for("http://vllm.internal:8000/v1/x") is None
    assert proxy_for("https://api.openai.com/v1/x") == "http://proxy.internal:3128"
    monkeypatch.delenv("HTTPS_PROXY")
    monkeypatch.delenv("HTTP_PROXY")
    monkeypatch.setenv("ALL_PROXY", "http://all.internal:3128")
    assert proxy_for("https://api.openai.com/v1/x") == "http://all.internal:3128"


async def test_calls_go_through_the_environments_proxy_with_its_credentials(
    fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The fake stands in for a forward proxy: an HTTP proxy receives the request line
    # in absolute form (RFC 9112 3.2.2) and Proxy-Authorization from the proxy URL.
    # The provider's host does not resolve, so only the proxy can have answered.
    proxy = fake_openai.url.removesuffix("/v1").replace("http://", "http://u:secret@")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.setenv("HTTP_PROXY", proxy)
    monkeypatch.setenv("HTTPS_PROXY", proxy)
    provider = OpenAICompatibleProvider("http://llm.invalid/v1", "sk-test-key", 5)
    assert await provider.complete("via proxy", "m") == "four"
    assert fake_openai.paths == ["http://llm.invalid/v1/chat/completions"]
    assert fake_openai.proxy_auth == ["Basic dTpzZWNyZXQ="]  # base64("u:secret")
    assert fake_openai.auth == ["Bearer sk-test-key"]
    await provider.aclose()

    # An https provider: the proxy sees only the CONNECT, with the proxy's
    # credentials and never the API key (it belongs inside the TLS tunnel).
    provider = OpenAICompatibleProvider("https://llm.invalid/v1", "sk-test-key", 5)
    with pytest.raises(LLMRetryableError, match="connection failed"):
        await provider.complete("via tunnel", "m")
    await provider.aclose()
    (connect,) = fake_openai.connects
    assert connect["Host"] == "llm.invalid"
    assert connect["Proxy-Authorization"] == "Basic dTpzZWNyZXQ="
    assert all("sk-test-key" not in value for value in connect.values())


async def test_tls_certificates_are_verified(tmp_path: Any) -> None:
    # A provider (or a man in the middle) with a certificate no trusted CA signed must
    # not get the API key: the handshake fails, which is a retryable connection error.
    import ssl
    import subprocess

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    fake = FakeOpenAI()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    fake.server.socket = context.wrap_socket(fake.server.socket, server_side=True)
    try:
        provider = OpenAICompatibleProvider(fake.url.replace("http:", "https:"), "sk-k", 5)
        with pytest.raises(LLMRetryableError, match="connection failed"):
            await provider.complete("p", "m")
        await provider.aclose()
        assert fake.auth == []  # the key never left the client
    finally:
        fake.close()


def test_httpx_request_lines_are_not_logged_at_info() -> None:
    # One "HTTP Request: POST ..." line per LLM call doubled the worker's log volume.
    import io
    import logging

    from groundwork_app.observability.logging import configure_logging

    out = io.StringIO()
    configure_logging(Settings(log_level="INFO", log_json=True), stream=out)
    logging.getLogger("httpx").info("HTTP Request: POST http://x/v1/chat/completions")
    logging.getLogger("httpx").warning("httpx warning")
    logging.getLogger("groundwork").info("own line")
    text = out.getvalue()
    assert "HTTP Request" not in text
    assert "httpx warning" in text
    assert "own line" in text


async def test_httpcore_finds_its_async_library_without_searching_the_import_path() -> None:
    # httpcore runs ``import sniffio`` inside every request, response close and lock
    # set-up; when sniffio is not installed each of those is a failed import, which
    # Python does not cache, i.e. a walk of sys.meta_path and sys.path per call (~7 %
    # of the worker's CPU at 2 s of LLM latency, docs/performance.md).
    import sys

    from httpcore._synchronization import current_async_library

    searched: list[str] = []

    class Spy:
        @staticmethod
        def find_spec(name: str, *_: object) -> None:
            searched.append(name)

    sys.meta_path.insert(0, Spy)
    try:
        for _ in range(10):
            assert current_async_library() == "asyncio"
    finally:
        sys.meta_path.remove(Spy)
    assert searched == []


def test_retry_waits_grow_exponentially_with_bounded_jitter_and_honour_a_429s_wait() -> None:
    # The retry loop's waits (tenacity's wait_exponential_jitter formula, kept when
    # the per-call AsyncRetrying was dropped): initial x 2^(n-1) plus jitter in
    # [0, initial], capped at the maximum; a 429's Retry-After is a floor, capped.
    from groundwork_app.adapters.llm import LLMRateLimitedError, LLMRetryableError

    llm = ResilientLLM(
        SimulatedProvider(),
        timeout_seconds=1,
        max_retries=5,
        failure_threshold=5,
        recovery_seconds=1,
        backoff_initial=0.1,
        backoff_max=1.0,
    )
    plain = LLMRetryableError("503")
    for attempt, low in ((1, 0.1), (2, 0.2), (3, 0.4), (4, 0.8)):
        waits = [llm.retry_wait(attempt, plain) for _ in range(200)]
        assert min(waits) >= low
        assert max(waits) <= min(low + 0.1, 1.0)
        assert max(waits) - min(waits) > 0.01  # jittered, not a fixed step
    assert llm.retry_wait(10, plain) == 1.0  # capped
    assert llm.retry_wait(1, LLMRateLimitedError("429", retry_after=7)) == 7
    assert llm.retry_wait(1, LLMRateLimitedError("429", retry_after=3600)) == (
        MAX_RETRY_AFTER_SECONDS
    )
    assert llm.retry_wait(1, LLMRateLimitedError("429", retry_after=None)) <= 0.2
