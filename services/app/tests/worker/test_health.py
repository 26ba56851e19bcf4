"""Heartbeat file, the health/metrics HTTP server and the healthcheck command."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from groundwork_app.cli import app
from groundwork_app.settings import Settings
from groundwork_app.worker.health import (
    HEARTBEAT_MAX_AGE_SECONDS,
    HealthServer,
    Heartbeat,
    check_heartbeat,
    heartbeat_path,
)
from typer.testing import CliRunner


def test_heartbeat_freshness(tmp_path: Path) -> None:
    beat = Heartbeat(tmp_path / "hb.worker")
    assert check_heartbeat(beat.path) == (False, f"no heartbeat at {beat.path}")
    beat.beat()
    assert check_heartbeat(beat.path)[0]
    beat.path.write_text(f"{time.time() - HEARTBEAT_MAX_AGE_SECONDS - 5}\n")
    ok, detail = check_heartbeat(beat.path)
    assert not ok
    assert "old" in detail
    beat.clear()
    assert not beat.path.exists()


def test_throttled_beat_writes_at_most_once_per_interval(tmp_path: Path) -> None:
    beat = Heartbeat(tmp_path / "hb.relay")
    beat.beat_throttled(min_interval=60)
    first = beat.path.read_text()
    beat.path.write_text("0\n")  # a second beat inside the interval must not touch it
    beat.beat_throttled(min_interval=60)
    assert beat.path.read_text() == "0\n"
    beat.beat_throttled(min_interval=0)
    assert float(beat.path.read_text()) >= float(first)


def test_heartbeat_paths_are_per_role() -> None:
    settings = Settings(heartbeat_file="/tmp/gw.hb")
    assert heartbeat_path(settings, "worker") == Path("/tmp/gw.hb.worker")
    assert heartbeat_path(settings, "relay") == Path("/tmp/gw.hb.relay")
    with pytest.raises(ValueError, match="unknown role 'api'"):
        heartbeat_path(settings, "api")


def test_healthcheck_command_reads_the_heartbeat(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from groundwork_app.settings import get_settings

    monkeypatch.setenv("HEARTBEAT_FILE", str(tmp_path / "hb"))
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        assert runner.invoke(app, ["healthcheck", "relay"]).exit_code == 1
        Heartbeat(tmp_path / "hb.relay").beat()
        assert runner.invoke(app, ["healthcheck", "relay"]).exit_code == 0
        assert runner.invoke(app, ["healthcheck", "worker"]).exit_code == 1
    finally:
        get_settings.cache_clear()


async def test_health_server_probes_and_metrics(tmp_path: Path) -> None:
    ready = {"value": False}
    beat = Heartbeat(tmp_path / "hb.worker")
    server = HealthServer(lambda: ready["value"], beat, host="127.0.0.1", port=0)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
            assert (await client.get("/health/live")).status_code == 503  # no heartbeat yet
            beat.beat()
            assert (await client.get("/health/live")).status_code == 200
            assert (await client.get("/health/ready")).status_code == 503
            ready["value"] = True
            assert (await client.get("/health/ready")).status_code == 200
            metrics = await client.get("/metrics")
            assert metrics.status_code == 200
            for name in (
                "worker_jobs_processed_total",
                "relay_outbox_backlog",
                "llm_circuit_state",
                "answer_cache_lookups_total",
                "worker_job_processing_seconds_bucket",
            ):
                assert name in metrics.text
            assert (await client.get("/nope")).status_code == 404
            assert (await client.post("/health/live")).status_code == 405
    finally:
        await server.close()


def test_worker_and_relay_servers_bind_loopback_on_a_workstation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Before, the health/metrics servers bound 0.0.0.0 everywhere, laptops included."""
    from groundwork_app import cli
    from groundwork_app.process import bind_host

    monkeypatch.setattr(cli, "_in_container", lambda: False)
    assert bind_host(Settings(app_env="development")) == "127.0.0.1"
    assert bind_host(Settings(app_env="test")) == "127.0.0.1"
    assert bind_host(Settings(app_env="development", worker_bind_host="10.0.0.5")) == "10.0.0.5"
    monkeypatch.setattr(cli, "_in_container", lambda: True)
    # The collector scrapes from outside the task's network namespace.
    assert bind_host(Settings(app_env="development")) == "0.0.0.0"


async def test_metrics_leave_the_health_port_when_metrics_port_is_set(tmp_path: Path) -> None:
    beat = Heartbeat(tmp_path / "hb.worker")
    beat.beat()
    servers = [
        HealthServer(lambda: True, beat, host="127.0.0.1", port=0, metrics=metrics)
        for metrics in (True, False)
    ]
    for server in servers:
        await server.start()
    try:
        async with httpx.AsyncClient() as client:
            with_metrics = await client.get(f"http://127.0.0.1:{servers[0].port}/metrics")
            without = await client.get(f"http://127.0.0.1:{servers[1].port}/metrics")
            live = await client.get(f"http://127.0.0.1:{servers[1].port}/health/live")
        assert with_metrics.status_code == 200 and "jobs_unfinished" in with_metrics.text
        assert without.status_code == 404
        assert live.status_code == 200
    finally:
        for server in servers:
            await server.close()
