"""The LLM client against a local fake OpenAI-compatible HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from groundwork_app.adapters.llm import (
    LLMRequestError,
    LLMUnavailableError,
    OpenAICompatibleProvider,
    ResilientLLM,
    SimulatedProvider,
    build_provider,
)
from groundwork_app.settings import Settings
from pydantic import SecretStr


class FakeOpenAI:
    """Answers POST /v1/chat/completions from a script of (status, delay) steps."""

    def __init__(self) -> None:
        self.script: list[tuple[int, float]] = []
        self.requests: list[dict] = []
        self.auth: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                fake.requests.append(json.loads(self.rfile.read(length)))
                fake.auth.append(self.headers.get("Authorization", ""))
                status, delay = fake.script.pop(0) if fake.script else (200, 0.0)
                time.sleep(delay)
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
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
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
    fake: FakeOpenAI, *, timeout: float = 2.0, retries: int = 2, threshold: int = 10
) -> ResilientLLM:
    provider = OpenAICompatibleProvider(fake.url, "sk-test-key", timeout)
    return ResilientLLM(
        provider,
        timeout_seconds=timeout,
        max_retries=retries,
        failure_threshold=threshold,
        recovery_seconds=60,
        backoff_initial=0.01,
        backoff_max=0.05,
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
    fake_openai.script = [(200, 1.0), (200, 1.0)]
    llm = resilient(fake_openai, timeout=0.3, retries=1)
    started = time.monotonic()
    with pytest.raises(LLMUnavailableError, match=r"timed out|exceeded"):
        await llm.complete("p", "m")
    assert time.monotonic() - started < 1.5
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
