"""The relay runs against the same real PostgreSQL and broker as the worker: its tests
share the worker suite's fixtures."""

from ..worker.conftest import engine, rabbit_ok, settings

__all__ = ["engine", "rabbit_ok", "settings"]
