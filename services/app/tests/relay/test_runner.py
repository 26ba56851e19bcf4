"""The relay's health server binds $PORT when set: a Cloud Run service must listen there."""

from __future__ import annotations

import pytest
from groundwork_app.relay.runner import relay_health_port
from groundwork_app.settings import Settings


def test_relay_health_port_defaults_to_worker_health_port(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PORT", raising=False)
    assert relay_health_port(Settings(worker_health_port=9101)) == 9101


def test_relay_health_port_follows_cloud_run_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "8089")
    assert relay_health_port(Settings(worker_health_port=9101)) == 8089


@pytest.mark.parametrize("raw", ["http", "0", "70000"])
def test_relay_health_port_rejects_a_bad_port(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("PORT", raw)
    with pytest.raises(ValueError, match="PORT must be a TCP port number"):
        relay_health_port(Settings())
