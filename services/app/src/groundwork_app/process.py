"""Process-wide runtime pieces shared by the api, worker and relay commands."""

from __future__ import annotations

import asyncio
import gc
import signal
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from groundwork_app.settings import Settings


def freeze_startup_heap() -> None:
    """Move everything allocated during start-up out of the garbage collector's reach.

    Imports and app setup leave ~90,000 long-lived container objects; every full
    collection walks them all (~40 ms on a 2-vCPU machine), and under load one
    happens every few seconds, which showed up as the API's p99 latency
    (docs/performance.md). Frozen objects are never scanned; objects created while
    serving are collected as usual. Call once, after start-up and before serving.
    """
    gc.collect()
    gc.freeze()


def bind_host(settings: Settings) -> str:
    """WORKER_BIND_HOST, else every interface when deployed or in a container (the
    collector and the platform's probes come from outside the task's namespace; the
    security group / ingress limits who), loopback on a workstation."""
    from groundwork_app.cli import default_bind_host

    return settings.worker_bind_host or default_bind_host(settings)


def start_metrics_server(settings: Settings) -> Callable[[], None]:
    """With METRICS_PORT set, /metrics on that port alone (a port no load balancer or
    push subscription reaches); returns its shutdown. A no-op without it."""
    if settings.metrics_port is None:
        return lambda: None
    from prometheus_client import start_http_server

    server, _thread = start_http_server(settings.metrics_port, addr=bind_host(settings))
    return server.shutdown


def install_stop_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
