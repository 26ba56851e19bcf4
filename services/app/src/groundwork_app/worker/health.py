"""Worker/relay health: a heartbeat file and a tiny HTTP server for probes and metrics.

The heartbeat file is what the container health check reads (``groundwork-app
healthcheck worker|relay``, no curl in the image): the process's main loop rewrites
it every few seconds, so a hung event loop goes stale and the orchestrator replaces
the task. The HTTP server (WORKER_HEALTH_PORT) serves ``/health/live``,
``/health/ready`` (broker connected) and, unless METRICS_PORT moves them to a port of
their own that only the collector reaches, ``/metrics``; it is plain asyncio so the
worker pulls in no web framework in RabbitMQ mode.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

# Imported for its side effect: /metrics lists every worker series from the start.
from groundwork_app.observability import worker_metrics  # noqa: F401
from groundwork_app.settings import Settings

HOLD_PATH = "/relay/hold"
HOLD_MAX_SECONDS = 60
"""A hold never outlasts this, whatever ``seconds`` asks: Cloud Scheduler's finest
schedule is a minute, so a longer hold only overlaps the next call."""
HOLD_MAX_CONCURRENT = 2
"""Holds in flight at once; more answer 429. On Cloud Run concurrency 1 admits one; the
bound keeps any other caller that reaches the port from piling up open connections."""

HEARTBEAT_INTERVAL_SECONDS = 5.0
# Generous: the loop may legitimately sit in a long relay batch or a DB reconnect.
HEARTBEAT_MAX_AGE_SECONDS = 60.0
ROLES = ("worker", "relay")


def heartbeat_path(settings: Settings, role: str) -> Path:
    """One file per role so a worker and a relay on one host never share a heartbeat."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
    return Path(f"{settings.heartbeat_file}.{role}")


class Heartbeat:
    def __init__(self, path: Path):
        self.path = path
        self._last_beat = float("-inf")

    def beat(self) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(f"{time.time():.3f}\n")
        os.replace(tmp, self.path)  # atomic: a reader never sees a half-written file
        self._last_beat = time.monotonic()

    def beat_throttled(self, min_interval: float = 1.0) -> None:
        """``beat`` unless one happened within ``min_interval`` seconds: for loops that
        cycle hundreds of times a second (the relay under load), where a file write
        per cycle was a measurable share of the CPU (docs/performance.md)."""
        if time.monotonic() - self._last_beat >= min_interval:
            self.beat()

    def clear(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def run(self, stop: asyncio.Event, interval: float = HEARTBEAT_INTERVAL_SECONDS) -> None:
        while not stop.is_set():
            self.beat()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)


def heartbeat_age(path: Path, now: float | None = None) -> float | None:
    """Seconds since the last beat, or None when there is no readable heartbeat."""
    try:
        stamp = float(path.read_text().strip())
    except (OSError, ValueError):
        return None
    return (time.time() if now is None else now) - stamp


def check_heartbeat(path: Path, max_age: float = HEARTBEAT_MAX_AGE_SECONDS) -> tuple[bool, str]:
    age = heartbeat_age(path)
    if age is None:
        return False, f"no heartbeat at {path}"
    if age > max_age:
        return False, f"heartbeat {age:.0f}s old (limit {max_age:.0f}s) at {path}"
    return True, f"heartbeat {age:.1f}s old"


class HealthServer:
    """GET-only HTTP/1.1 on one port; closes each connection after one response."""

    def __init__(
        self,
        ready: Callable[[], bool],
        heartbeat: Heartbeat,
        *,
        host: str,
        port: int,
        metrics: bool = True,
        hold_until: asyncio.Event | None = None,
    ):
        """``hold_until``: serve ``GET /relay/hold?seconds=N`` (the relay on Cloud Run with
        request-based billing, where an instance has CPU only while a request is in
        flight: https://cloud.google.com/run/docs/configuring/billing-settings). The
        request is answered after ``min(N, HOLD_MAX_SECONDS)`` seconds, or with 503 as
        soon as the event is set (the process is stopping), so a caller's retry lands on
        an instance that is not. Who may call it is Cloud Run's IAM check (the relay
        service is not public; only the scheduler's account holds run.invoker)."""
        self._hold_until = hold_until
        self._holds = 0
        self._ready = ready
        self._metrics = metrics
        self._heartbeat = heartbeat
        self._host = host
        self.port = port
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self._host, self.port)
        sockets = list(self._server.sockets or ())
        if sockets and self.port == 0:
            self.port = int(sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _hold(self, query: str) -> tuple[int, bytes, str]:
        assert self._hold_until is not None
        raw = next(
            (v for k, _, v in (p.partition("=") for p in query.split("&")) if k == "seconds"), ""
        )
        if not raw.isdigit() or int(raw) < 1:
            return 400, b"seconds must be a positive whole number", "text/plain"
        if self._hold_until.is_set():
            return 503, b"stopping", "text/plain"
        if self._holds >= HOLD_MAX_CONCURRENT:
            return 429, b"too many holds", "text/plain"
        seconds = min(int(raw), HOLD_MAX_SECONDS)
        self._holds += 1
        started = time.monotonic()
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._hold_until.wait(), seconds)
        finally:
            self._holds -= 1
        held = time.monotonic() - started
        if self._hold_until.is_set():
            return 503, f"stopping after {held:.1f}s".encode(), "text/plain"
        return 200, f"held {held:.1f}s".encode(), "text/plain"

    def _route(self, path: str) -> tuple[int, bytes, str]:
        if path == "/health/live":
            ok, detail = check_heartbeat(self._heartbeat.path)
            return (200 if ok else 503), detail.encode(), "text/plain"
        if path == "/health/ready":
            ok = self._ready()
            return (200 if ok else 503), (b"ready" if ok else b"not ready"), "text/plain"
        if path == "/metrics" and self._metrics:
            return 200, generate_latest(REGISTRY), CONTENT_TYPE_LATEST
        return 404, b"not found", "text/plain"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = await asyncio.wait_for(reader.readline(), 5)
            while (await asyncio.wait_for(reader.readline(), 5)) not in (b"\r\n", b"\n", b""):
                pass  # headers are irrelevant here
            parts = request_line.decode("latin-1").split()
            if len(parts) < 2 or parts[0] not in ("GET", "HEAD"):
                status, body, ctype = 405, b"method not allowed", "text/plain"
            else:
                path, _, query = parts[1].partition("?")
                if path == HOLD_PATH and self._hold_until is not None:
                    status, body, ctype = await self._hold(query)
                else:
                    status, body, ctype = self._route(path)
            reason = {
                200: "OK",
                400: "Bad Request",
                404: "Not Found",
                405: "Method Not Allowed",
                429: "Too Many Requests",
            }.get(status, "Service Unavailable")
            head = (
                f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + (body if parts and parts[0] != "HEAD" else b""))
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
