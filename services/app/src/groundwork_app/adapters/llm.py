"""LLM client: a simulated provider and an OpenAI-compatible HTTP provider, made resilient.

``ResilientLLM`` wraps a provider with, from the inside out: a per-call timeout, a
circuit breaker around each attempt (so a down provider fails fast instead of tying
up every worker slot for the whole retry sequence) and tenacity retries with
exponential backoff + jitter for *retryable* errors only (timeouts, connection
errors, 429, 5xx). A 4xx other than 429 is the request's fault: retrying cannot help.
Everything the caller sees is ``LLMUnavailableError`` (try later / fall back) or
``LLMRequestError`` (this request will never work).
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from typing import Any, Protocol

import httpx
from circuitbreaker import CircuitBreaker, CircuitBreakerError
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from groundwork_app.observability import worker_metrics as m
from groundwork_app.settings import Settings


class LLMError(Exception):
    """Base class of every LLM failure."""


class LLMRetryableError(LLMError):
    """A transient provider failure: timeout, connection error, 429 or 5xx."""


class LLMRequestError(LLMError):
    """The provider refused this request (4xx other than 429): do not retry it."""


class LLMUnavailableError(LLMError):
    """Retries exhausted or circuit open: the caller applies its fallback."""


class LLMProvider(Protocol):
    name: str

    async def complete(self, prompt: str, model: str) -> str: ...

    async def aclose(self) -> None: ...


class SimulatedProvider:
    """Deterministic answers from the prompt hash, with configurable latency and failures.

    Lets tests, benchmarks and local development run with no network and no key.
    ``calls`` counts invocations so tests can prove a redelivery made no second call.
    """

    name = "simulated"

    def __init__(self, latency_ms: int = 0, failure_rate: float = 0.0, seed: int | None = None):
        self.latency_ms = latency_ms
        self.failure_rate = failure_rate
        self.calls = 0
        self._random = random.Random(seed)

    async def complete(self, prompt: str, model: str) -> str:
        self.calls += 1
        if self.latency_ms:
            await asyncio.sleep(self.latency_ms / 1000)
        if self.failure_rate and self._random.random() < self.failure_rate:
            raise LLMRetryableError("simulated provider failure")
        digest = hashlib.sha256(f"{model}\0{prompt}".encode()).hexdigest()[:16]
        return f"[{model}] simulated answer {digest}"

    async def aclose(self) -> None:
        return None


class OpenAICompatibleProvider:
    """``POST {base_url}/chat/completions`` as OpenAI, Azure OpenAI, vLLM, Ollama... accept."""

    name = "openai"

    def __init__(
        self,
        base_url: str,
        api_key: str,
        timeout_seconds: float,
        client: httpx.AsyncClient | None = None,
    ):
        self._client = client or httpx.AsyncClient(
            base_url=base_url.rstrip("/") + "/",
            timeout=httpx.Timeout(timeout_seconds, connect=min(timeout_seconds, 5.0)),
            headers={"Authorization": f"Bearer {api_key}"},
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
        )

    async def complete(self, prompt: str, model: str) -> str:
        body = {"model": model, "messages": [{"role": "user", "content": prompt}]}
        try:
            response = await self._client.post("chat/completions", json=body)
        except httpx.TimeoutException as exc:
            raise LLMRetryableError(f"LLM request timed out: {exc!r}") from exc
        except httpx.TransportError as exc:
            raise LLMRetryableError(f"LLM connection failed: {exc!r}") from exc
        status = response.status_code
        if status == 429 or status >= 500:
            raise LLMRetryableError(f"LLM provider answered HTTP {status}")
        if status >= 400:
            # Never echo the response body into logs/errors blindly: keep it short.
            raise LLMRequestError(
                f"LLM provider refused the request: HTTP {status} {response.text[:200]}"
            )
        try:
            data: Any = response.json()
            return str(data["choices"][0]["message"]["content"])
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise LLMRetryableError("LLM provider returned an unexpected body") from exc

    async def aclose(self) -> None:
        await self._client.aclose()


class ResilientLLM:
    """Timeout + circuit breaker per attempt + tenacity retries of retryable errors."""

    def __init__(
        self,
        provider: LLMProvider,
        *,
        timeout_seconds: float,
        max_retries: int,
        failure_threshold: int,
        recovery_seconds: float,
        backoff_initial: float = 0.2,
        backoff_max: float = 5.0,
    ):
        self.provider = provider
        self._timeout = timeout_seconds
        self._attempts = max_retries + 1
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        # Only transient failures count against the circuit: a 4xx says nothing
        # about the provider's health.
        self.breaker = CircuitBreaker(
            failure_threshold=failure_threshold,
            recovery_timeout=recovery_seconds,
            expected_exception=LLMRetryableError,
            name=f"llm-{provider.name}-{id(self):x}",
        )
        self._guarded_call = self.breaker.decorate(self._call_once)
        self._publish_state()

    @property
    def circuit_state(self) -> str:
        return str(self.breaker.state)

    def _publish_state(self) -> None:
        m.LLM_CIRCUIT_STATE.labels(self.provider.name).set(
            m.CIRCUIT_STATE_VALUES.get(self.circuit_state, 0)
        )

    async def _call_once(self, prompt: str, model: str) -> str:
        started = time.perf_counter()
        outcome = "error"
        try:
            async with asyncio.timeout(self._timeout):
                answer = await self.provider.complete(prompt, model)
            outcome = "ok"
            return answer
        except TimeoutError as exc:
            outcome = "timeout"
            raise LLMRetryableError(f"LLM call exceeded {self._timeout}s") from exc
        finally:
            m.LLM_LATENCY_SECONDS.labels(self.provider.name, outcome).observe(
                time.perf_counter() - started
            )

    async def complete(self, prompt: str, model: str) -> str:
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._attempts),
            # Jitter proportional to the first step: spreads a herd of workers out
            # without tenacity's 1 s default dwarfing short test/dev backoffs.
            wait=wait_exponential_jitter(
                multiplier=self._backoff_initial,
                max=self._backoff_max,
                jitter=self._backoff_initial,
            ),
            retry=retry_if_exception_type(LLMRetryableError),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    return str(await self._guarded_call(prompt, model))
        except CircuitBreakerError as exc:
            raise LLMUnavailableError(f"LLM circuit open: {exc}") from exc
        except LLMRetryableError as exc:
            raise LLMUnavailableError(
                f"LLM unavailable after {self._attempts} attempts: {exc}"
            ) from exc
        finally:
            self._publish_state()
        raise LLMUnavailableError("LLM retry loop ended without a result")  # pragma: no cover

    async def aclose(self) -> None:
        await self.provider.aclose()


def build_provider(settings: Settings) -> LLMProvider:
    key = settings.llm_api_key_value
    if key:
        return OpenAICompatibleProvider(settings.llm_base_url, key, settings.llm_timeout_seconds)
    return SimulatedProvider(settings.llm_simulated_latency_ms, settings.llm_simulated_failure_rate)


def build_llm(settings: Settings, provider: LLMProvider | None = None) -> ResilientLLM:
    return ResilientLLM(
        provider or build_provider(settings),
        timeout_seconds=settings.llm_timeout_seconds,
        max_retries=settings.llm_max_retries,
        failure_threshold=settings.circuit_failure_threshold,
        recovery_seconds=settings.circuit_recovery_seconds,
        backoff_initial=settings.llm_retry_initial_seconds,
        backoff_max=settings.llm_retry_max_seconds,
    )
