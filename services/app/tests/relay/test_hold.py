"""The relay's hold endpoint: what keeps a request-billed Cloud Run relay's CPU allocated.

Under request-based billing Cloud Run allocates an instance's CPU only while a request
is in flight (https://cloud.google.com/run/docs/configuring/billing-settings); GCP
staging's Cloud Scheduler job calls ``GET /relay/hold?seconds=55`` every minute
(components/gcp/services.py ``RelayBilling.SCHEDULED``). Cloud Run sends SIGTERM and
kills the instance 10 s later (https://cloud.google.com/run/docs/container-contract,
"Instance shutdown"), so a held call must end at once on a stop, not at its deadline.
Real HTTP against the real server; the last test runs the whole relay process.
"""

from __future__ import annotations

import asyncio
import io
import os
import signal
import socket
import time
from pathlib import Path

import httpx
import pytest
from groundwork_app.relay import runner
from groundwork_app.relay.runner import run_relay
from groundwork_app.settings import Settings
from groundwork_app.worker import health
from groundwork_app.worker.health import HOLD_PATH, HealthServer, Heartbeat
from sqlalchemy.ext.asyncio import AsyncEngine

from ..worker.conftest import insert_job, make_settings, wait_for
from .test_outbox import unsent


async def _server(tmp_path: Path, stop: asyncio.Event | None) -> HealthServer:
    beat = Heartbeat(tmp_path / "hb.relay")
    beat.beat()
    server = HealthServer(lambda: True, beat, host="127.0.0.1", port=0, hold_until=stop)
    await server.start()
    return server


async def test_a_hold_answers_after_the_seconds_asked(tmp_path: Path) -> None:
    server = await _server(tmp_path, asyncio.Event())
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
            started = time.monotonic()
            response = await client.get(HOLD_PATH, params={"seconds": 2}, timeout=10)
            elapsed = time.monotonic() - started
        assert response.status_code == 200
        assert response.text.startswith("held 2.")
        assert 2.0 <= elapsed < 10  # not before the 2 s; far from any longer hold
    finally:
        await server.close()


async def test_a_hold_is_capped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A caller asking for an hour gets HOLD_MAX_SECONDS (1 s here), never the hour."""
    monkeypatch.setattr(health, "HOLD_MAX_SECONDS", 1)
    server = await _server(tmp_path, asyncio.Event())
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
            started = time.monotonic()
            response = await client.get(HOLD_PATH, params={"seconds": 3600}, timeout=10)
        assert response.status_code == 200
        assert time.monotonic() - started < 10  # 1 s capped, far from the hour
    finally:
        await server.close()


async def test_a_stop_ends_a_held_call_at_once_with_503(tmp_path: Path) -> None:
    """503, not 200: Cloud Scheduler retries a failed attempt (retry_config), and the
    retry reaches an instance that is not shutting down."""
    stop = asyncio.Event()
    server = await _server(tmp_path, stop)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
            held = asyncio.create_task(client.get(HOLD_PATH, params={"seconds": 55}, timeout=10))
            await asyncio.sleep(0.3)
            started = time.monotonic()
            stop.set()
            response = await held
            assert time.monotonic() - started < 8  # at once, not after the 55 s
            assert response.status_code == 503
            assert response.text.startswith("stopping")
            # Once stopping, a new call is refused straight away.
            again = await client.get(HOLD_PATH, params={"seconds": 55}, timeout=5)
            assert again.status_code == 503
    finally:
        await server.close()


async def test_bad_seconds_and_too_many_holds_are_refused(tmp_path: Path) -> None:
    server = await _server(tmp_path, asyncio.Event())
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
            for bad in ({"seconds": "0"}, {"seconds": "-5"}, {"seconds": "1.5"}, {}):
                assert (await client.get(HOLD_PATH, params=bad)).status_code == 400
            held = [
                asyncio.create_task(client.get(HOLD_PATH, params={"seconds": 2}, timeout=10))
                for _ in range(health.HOLD_MAX_CONCURRENT)
            ]

            async def all_held() -> bool:
                return server._holds == health.HOLD_MAX_CONCURRENT

            await wait_for(all_held, 10, what="the holds to start")
            extra = await client.get(HOLD_PATH, params={"seconds": 2}, timeout=5)
            assert extra.status_code == 429
            assert [r.status_code for r in await asyncio.gather(*held)] == [200, 200]
    finally:
        await server.close()


async def test_only_the_relay_serves_holds(tmp_path: Path) -> None:
    """The worker's health server (no hold_until) has no such route."""
    server = await _server(tmp_path, None)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
            assert (await client.get(HOLD_PATH, params={"seconds": 1})).status_code == 404
    finally:
        await server.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_the_relay_publishes_while_held_and_a_sigterm_releases_the_hold(
    settings: Settings,
    engine: AsyncEngine,
    rabbit_ok: object,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``groundwork-app relay`` as Cloud Run runs it ($PORT is its only listener): a job
    written during a hold is published during that hold, and SIGTERM answers the held
    call within a second and stops the process."""
    port = _free_port()
    monkeypatch.setenv("PORT", str(port))
    # run_relay configures logging for a real process: stdout, with structlog's loggers
    # cached on first use. In this shared test process that would pin every module
    # logger used afterwards (the worker's "message handled" among them) to stdout for
    # the rest of the session, out of reach of the streams later tests capture. A stream
    # of its own keeps the configuration uncached, as every other in-process test has it.
    real_configure = runner.configure_logging
    monkeypatch.setattr(
        runner,
        "configure_logging",
        lambda settings, stream=None: real_configure(settings, stream=stream or io.StringIO()),
    )
    relay_settings = make_settings(
        queue_name=settings.queue_name, heartbeat_file=str(tmp_path / "hb"), relay_listen=False
    )
    running = asyncio.create_task(run_relay(relay_settings))
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:

            async def live() -> bool:
                try:
                    return (await client.get("/health/live")).status_code == 200
                except httpx.TransportError:
                    return False

            await wait_for(live, 30, what="relay live")
            held = asyncio.create_task(client.get(HOLD_PATH, params={"seconds": 30}, timeout=40))
            await asyncio.sleep(0.2)
            await insert_job(engine, settings)
            await wait_for(lambda: _none_unsent(engine), 20, what="outbox row published")
            assert not held.done(), "the hold ended before the relay published"
            started = time.monotonic()
            os.kill(os.getpid(), signal.SIGTERM)
            response = await held
            assert response.status_code == 503
            assert time.monotonic() - started < 10  # at once, not after the 30 s
        await asyncio.wait_for(running, 15)
    finally:
        if not running.done():
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)


async def _none_unsent(engine: AsyncEngine) -> bool:
    return await unsent(engine) == 0
