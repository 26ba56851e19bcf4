"""LLM client: a simulated provider and an OpenAI-compatible HTTP provider, made resilient.

``ResilientLLM`` wraps a provider with, from the inside out: a per-call timeout, a
circuit breaker around each attempt (so a down provider fails fast instead of tying
up every worker slot for the whole retry sequence) and retries with exponential
backoff + jitter (tenacity's ``wait_exponential_jitter`` formula) for *retryable*
errors only (timeouts, connection
errors, 429, 5xx). A 4xx other than 429 is the request's fault: retrying cannot help.
Everything the caller sees is ``LLMUnavailableError`` (try later / fall back) or
``LLMRequestError`` (this request will never work).

Rate limits. Providers enforce requests (and tokens) per minute per organisation and
answer a request over the limit with HTTP 429 and a wait: OpenAI sends ``retry-after``
(and ``retry-after-ms``, which its own SDK reads first) and documents that a
per-minute limit may be enforced over shorter windows
(https://platform.openai.com/docs/guides/rate-limits); Anthropic sends ``retry-after``
in seconds (https://docs.anthropic.com/en/api/rate-limits); RFC 9110 section 10.2.3
allows seconds or an HTTP-date. ``ProviderRateLimiter`` paces calls below the
configured share of that limit (LLM_REQUESTS_PER_MINUTE, a smooth token bucket with
one second of burst), and when a 429 arrives anyway it pauses *every* call of the
process until the provider's Retry-After has passed, instead of letting hundreds of
in-flight slots each retry into the same wall. A 429 does not count against the
circuit breaker: the provider is healthy, we are too fast.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import json
import math
import random
import time
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import aiohttp
import httpx
from circuitbreaker import CircuitBreaker, CircuitBreakerError
from yarl import URL

from groundwork_app.observability import worker_metrics as m
from groundwork_app.settings import Settings


class LLMError(Exception):
    """Base class of every LLM failure."""


class LLMRetryableError(LLMError):
    """A transient provider failure: timeout, connection error, 429 or 5xx."""


class LLMRateLimitedError(LLMRetryableError):
    """HTTP 429: over the provider's rate limit; ``retry_after`` is its requested wait (s)."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


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


# The OpenAI SDK ignores a server-requested wait above 60 s and falls back to its own
# backoff; a wait that long is better spent with the message back in the retry queues
# (RETRY outcome) than holding a worker slot.
MAX_RETRY_AFTER_SECONDS = 60.0


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait from a 429's headers, or None when absent/unusable.

    ``retry-after-ms`` (OpenAI, milliseconds) first, then ``retry-after`` as
    delay-seconds or an HTTP-date (RFC 9110 section 10.2.3). Negative, non-finite or
    unparsable values are ignored (None: the caller falls back to its backoff).
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    raw_ms = lowered.get("retry-after-ms")
    if raw_ms is not None:
        try:
            value = float(raw_ms) / 1000
        except ValueError:
            value = math.nan
        if math.isfinite(value) and value >= 0:
            return value
    raw = lowered.get("retry-after")
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError):
            return None
        value = when.timestamp() - (time.time() if now is None else now)
        return max(0.0, value)
    return value if math.isfinite(value) and value >= 0 else None


class ProviderRateLimiter:
    """Client-side pacing of provider calls within one process.

    ``requests_per_minute`` > 0: a token bucket refilled at that rate with one
    second's worth of burst (the provider may enforce the per-minute limit per
    second); 0 disables pacing. ``pause(seconds)`` (after a 429) holds every
    ``acquire`` until the provider's Retry-After has passed. Waiters are served in
    arrival order (one asyncio.Lock), so no call starves behind later ones.
    """

    def __init__(
        self,
        requests_per_minute: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ):
        if requests_per_minute < 0:
            raise ValueError(f"requests_per_minute must be >= 0, got {requests_per_minute}")
        self.rate = requests_per_minute / 60.0
        self.capacity = max(1.0, self.rate)
        self._tokens = self.capacity
        self._clock = clock
        self._sleep = sleep
        self._updated = clock()
        self._paused_until = 0.0
        self._lock = asyncio.Lock()
        self.waited_seconds = 0.0

    @property
    def paused_for(self) -> float:
        return max(0.0, self._paused_until - self._clock())

    def pause(self, seconds: float) -> None:
        """Hold every call until ``seconds`` from now (never shortens a longer pause)."""
        self._paused_until = max(self._paused_until, self._clock() + max(0.0, seconds))

    async def acquire(self) -> None:
        if not self.rate and self._paused_until <= self._clock():
            return  # the hot path when pacing is off: no lock, no await
        async with self._lock:
            while True:
                now = self._clock()
                wait = self._paused_until - now
                if wait <= 0:
                    if not self.rate:
                        return
                    self._tokens = min(
                        self.capacity, self._tokens + (now - self._updated) * self.rate
                    )
                    self._updated = now
                    # Tolerance: a refill computed from a float clock can land a hair
                    # under 1, and a wait of 1e-17 s would never advance the clock.
                    if self._tokens >= 1 - 1e-9:
                        self._tokens = max(0.0, self._tokens - 1)
                        return
                    wait = (1 - self._tokens) / self.rate
                self.waited_seconds += wait
                m.LLM_RATE_LIMIT_WAIT_SECONDS.inc(wait)
                await self._sleep(wait)


def proxy_for(url: str) -> str | None:
    """The proxy the environment names for ``url`` (``HTTPS_PROXY`` / ``HTTP_PROXY`` /
    ``ALL_PROXY``, upper or lower case; ``NO_PROXY`` exempts hosts), or None.

    What httpx did with its default ``trust_env=True``, resolved once per provider
    instead of per call: aiohttp's own ``trust_env`` looks the proxy up and reads
    ``~/.netrc`` in a worker thread on *every* request.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.hostname and urllib.request.proxy_bypass(parts.hostname):
        return None
    proxies = urllib.request.getproxies()
    return proxies.get(parts.scheme) or proxies.get("all")


class OpenAICompatibleProvider:
    """``POST {base_url}/chat/completions`` as OpenAI, Azure OpenAI, vLLM, Ollama... accept.

    On aiohttp: a call costs ~0.14 ms of CPU against httpx's ~0.8 ms (1,024 calls in
    flight on loopback, docs/performance.md), and its connector hands out a pooled
    connection in O(1) where httpcore walked every connection of the pool on each
    request and each response close. TLS verification is on, with httpx's trust store
    (certifi, or ``SSL_CERT_FILE`` / ``SSL_CERT_DIR``); proxies come from the
    environment as httpx took them (``proxy_for``).
    """

    name = "openai"

    def __init__(
        self,
        base_url: str,
        api_key: str,
        timeout_seconds: float,
        max_connections: int = 100,
    ):
        # Parsed once: aiohttp takes a yarl URL as it is, a string it parses per call.
        self._url = URL(base_url.rstrip("/") + "/chat/completions")
        # One connection per concurrent call (HTTP/1.1): a pool smaller than the
        # worker's concurrency would queue calls inside the client, where waiting for
        # a connection eats the call's timeout and turns into failures.
        self.max_connections = max_connections
        # The call as a whole is bounded by ResilientLLM (asyncio.timeout around each
        # attempt); a second total timer per call here was ~2 % of the worker's CPU.
        # What only the client can bound is establishing the connection.
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=min(timeout_seconds, 5.0))
        # The API key goes with each request, never in the session's default headers:
        # aiohttp copies those into the proxy's headers, i.e. the key would leave in
        # the clear in the CONNECT request (or as Proxy-Authorization) to the proxy.
        self._headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
        self._proxy_headers: dict[str, str] | None = None
        proxy = proxy_for(str(self._url))
        self._proxy = URL(proxy).with_user(None) if proxy else None
        auth = aiohttp.BasicAuth.from_url(URL(proxy)) if proxy else None
        if auth is not None:
            # Credentials in the proxy's URL (http://user:pass@proxy:3128) go in
            # Proxy-Authorization, as httpx sent them: on the CONNECT for an https
            # provider, on the request itself (sent to the proxy) for a plain-http one.
            if self._url.scheme == "https":
                self._proxy_headers = {"Proxy-Authorization": auth.encode()}
            else:
                self._headers["Proxy-Authorization"] = auth.encode()
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        # Created on first use: aiohttp binds the session to the running event loop.
        self._session = aiohttp.ClientSession(
            timeout=self._timeout,
            connector=aiohttp.TCPConnector(
                limit=self.max_connections,
                limit_per_host=0,
                ssl=httpx.create_ssl_context(),
            ),
            # No cookies: an API key, not a browser session, authenticates the calls.
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        return self._session

    async def complete(self, prompt: str, model: str) -> str:
        session = self._session or self._open()
        body = json.dumps({"model": model, "messages": [{"role": "user", "content": prompt}]})
        try:
            async with session.post(
                self._url,
                data=body.encode(),
                headers=self._headers,
                proxy=self._proxy,
                proxy_headers=self._proxy_headers,
            ) as response:
                status = response.status
                content = await response.read()
        except TimeoutError as exc:  # aiohttp's own timeouts subclass it (also ClientError)
            raise LLMRetryableError(f"LLM request timed out: {exc!r}") from exc
        except aiohttp.ClientError as exc:
            raise LLMRetryableError(f"LLM connection failed: {exc!r}") from exc
        if status == 429:
            retry_after = parse_retry_after(response.headers)
            raise LLMRateLimitedError(
                f"LLM provider answered HTTP 429 (retry-after {retry_after})", retry_after
            )
        if status >= 500:
            raise LLMRetryableError(f"LLM provider answered HTTP {status}")
        if status >= 400:
            # Never echo the response body into logs/errors blindly: keep it short.
            text = content[:800].decode("utf-8", "replace")[:200]
            raise LLMRequestError(f"LLM provider refused the request: HTTP {status} {text}")
        try:
            data: Any = json.loads(content)
            return str(data["choices"][0]["message"]["content"])
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise LLMRetryableError("LLM provider returned an unexpected body") from exc

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class ResilientLLM:
    """Timeout + circuit breaker per attempt + retries of retryable errors."""

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
        limiter: ProviderRateLimiter | None = None,
    ):
        self.provider = provider
        self.limiter = limiter or ProviderRateLimiter(0)
        self._timeout = timeout_seconds
        self._attempts = max_retries + 1
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        # Only transient failures count against the circuit: a 4xx says nothing
        # about the provider's health.
        self.breaker = CircuitBreaker(
            failure_threshold=failure_threshold,
            recovery_timeout=recovery_seconds,
            expected_exception=_counts_against_circuit,
            name=f"llm-{provider.name}-{id(self):x}",
        )
        self._guarded_call = self.breaker.decorate(self._call_once)
        self._latency: dict[tuple[str, str], Any] = {}
        self._circuit_gauge = m.LLM_CIRCUIT_STATE.labels(provider.name)
        self._published_state: str | None = None
        self._publish_state()

    @property
    def circuit_state(self) -> str:
        return str(self.breaker.state)

    def _publish_state(self) -> None:
        state = self.circuit_state
        if state != self._published_state:  # a gauge write per call only on a change
            self._published_state = state
            self._circuit_gauge.set(m.CIRCUIT_STATE_VALUES.get(state, 0))

    async def _call_once(self, prompt: str, model: str) -> str:
        await self.limiter.acquire()
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
        except LLMRateLimitedError as exc:
            outcome = "rate_limited"
            # Every call of this process waits, not only this one's retry.
            wait = exc.retry_after if exc.retry_after is not None else self._backoff_initial
            self.limiter.pause(min(wait, MAX_RETRY_AFTER_SECONDS))
            raise
        finally:
            labels = (self.provider.name, outcome)
            latency = self._latency.get(labels)
            if latency is None:  # one label lookup per outcome, not per call
                latency = self._latency[labels] = m.LLM_LATENCY_SECONDS.labels(*labels)
            latency.observe(time.perf_counter() - started)

    def retry_wait(self, attempt: int, exc: BaseException) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based).

        Exponential backoff with jitter proportional to the first step, as tenacity's
        ``wait_exponential_jitter(multiplier=initial, max=max, jitter=initial)``: the
        jitter spreads a herd of workers out without tenacity's 1 s default dwarfing
        short test/dev backoffs. A 429 that named a wait gets at least that (capped).
        """
        try:
            backoff = self._backoff_initial * 2 ** (attempt - 1)
        except OverflowError:
            backoff = self._backoff_max
        backoff = max(
            0.0, min(backoff + random.uniform(0, self._backoff_initial), self._backoff_max)
        )
        if isinstance(exc, LLMRateLimitedError) and exc.retry_after is not None:
            return max(backoff, min(exc.retry_after, MAX_RETRY_AFTER_SECONDS))
        return backoff

    async def complete(self, prompt: str, model: str) -> str:
        # A plain loop rather than tenacity's AsyncRetrying: building the retrying
        # object and its async wrappers per call was ~6 % of the worker's CPU per job
        # (py-spy, docs/performance.md) for calls that nearly always succeed at once.
        attempt = 1
        try:
            while True:
                try:
                    return str(await self._guarded_call(prompt, model))
                except LLMRetryableError as exc:
                    if attempt >= self._attempts:
                        raise
                    await asyncio.sleep(self.retry_wait(attempt, exc))
                    attempt += 1
        except CircuitBreakerError as exc:
            raise LLMUnavailableError(f"LLM circuit open: {exc}") from exc
        except LLMRetryableError as exc:
            raise LLMUnavailableError(
                f"LLM unavailable after {self._attempts} attempts: {exc}"
            ) from exc
        finally:
            self._publish_state()

    async def aclose(self) -> None:
        await self.provider.aclose()


def _counts_against_circuit(thrown_type: type[BaseException], thrown: BaseException) -> bool:
    return issubclass(thrown_type, LLMRetryableError) and not issubclass(
        thrown_type, LLMRateLimitedError
    )


def build_provider(settings: Settings) -> LLMProvider:
    key = settings.llm_api_key_value
    if key:
        return OpenAICompatibleProvider(
            settings.llm_base_url,
            key,
            settings.llm_timeout_seconds,
            max_connections=settings.worker_concurrency,
        )
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
        limiter=ProviderRateLimiter(settings.llm_requests_per_minute),
    )
