"""Fixtures: real PostgreSQL, Redis, RabbitMQ and PgBouncer started on loopback.

Without the servers the tests skip locally with an install hint; under CI=true a
missing server is a failure, never a skip.
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Iterator

import pytest
import structlog

from groundwork.devenv.servers import DevServers, ServerUnavailableError, dev_servers

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"required server unavailable under CI=true: {reason}", pytrace=False)
    pytest.skip(f"server unavailable: {reason}")


@pytest.fixture(autouse=True)
def _structlog_loggers_not_cached() -> Iterator[None]:
    """Fails a test that leaves structlog caching its loggers, and resets structlog.

    configure_logging(settings) without a stream (what run_relay, run_worker and the CLI
    do for a real process) sets cache_logger_on_first_use=True: each module logger is
    then bound, on its first call, to the stream sys.stdout was at that moment, for the
    rest of the session. In this one test process that is a capture stream pytest closes
    after the test; a later test reading its own stream never sees those lines (the
    worker's "message handled" in test_end_to_end, commit cdf863b). A reset cannot undo
    that: structlog's BoundLoggerLazyProxy.bind replaces itself on the proxy instance
    with the assembled logger (structlog/_config.py; the performance docs: later
    configure() calls have no effect on loggers already cached), so the test must fail
    rather than be cleaned up after.
    """
    yield
    cached = structlog.get_config()["cache_logger_on_first_use"]
    # Either way the next test starts from structlog's defaults, not this test's stream.
    structlog.reset_defaults()
    pinned = _pinned_module_loggers()
    if cached or pinned:
        pytest.fail(
            "this test left structlog with cache_logger_on_first_use=True (an in-process "
            "run_relay/run_worker/CLI configured logging for a real process)"
            + (f", which pinned {', '.join(pinned)} to its stream" if pinned else "")
            + ": give the run a logging stream of its own, e.g. monkeypatch the runner's "
            "configure_logging to call configure_logging(settings, stream=io.StringIO()) "
            "as relay/test_hold.py does (structlog.reset_defaults() afterwards is too "
            "late for loggers already used)",
            pytrace=False,
        )


def _pinned_module_loggers() -> list[str]:
    """Module-level structlog proxies of the service that cached their logger."""
    return sorted(
        f"{module_name}.{attr}"
        for module_name, module in list(sys.modules.items())
        if module_name.startswith("groundwork_app")
        for attr, value in list(vars(module).items())
        if isinstance(value, structlog._config.BoundLoggerLazyProxy) and "bind" in vars(value)
    )


@pytest.fixture(scope="session")
def servers() -> Iterator[DevServers]:
    manager = dev_servers(pgbouncer=True)
    try:
        started = manager.__enter__()
    except ServerUnavailableError as exc:
        _unavailable(str(exc))
        raise  # unreachable: _unavailable always raises
    try:
        yield started
    finally:
        manager.__exit__(None, None, None)


@pytest.fixture(scope="session")
def service_env(servers: DevServers) -> Iterator[dict[str, str]]:
    """Process environment for the service pointed at the test servers, migrated."""
    from groundwork_app import migrate
    from groundwork_app.settings import get_settings

    # GROUNDWORK_TEST_DB_VIA_PGBOUNCER=1 sends every database connection through PgBouncer
    # in transaction mode (as RDS Proxy would): the suite then proves pooling-safety.
    via_pgbouncer = os.environ.get("GROUNDWORK_TEST_DB_VIA_PGBOUNCER") == "1"
    env = {
        **servers.env(via_pgbouncer=via_pgbouncer),
        "APP_ENV": "test",
        "LOG_JSON": "true",
        "JWT_SECRET": secrets.token_urlsafe(40),
        "WEBHOOK_SECRET": secrets.token_urlsafe(40),
        "JWT_ISSUER": "groundwork-tests",
        "JWT_AUDIENCE": "groundwork-api",
    }
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    get_settings.cache_clear()
    migrate.upgrade()
    try:
        yield env
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        get_settings.cache_clear()


@pytest.fixture
def clean_db(service_env: dict[str, str], servers: DevServers) -> None:
    servers.postgres.psql(
        "TRUNCATE jobs, outbox, processed_messages RESTART IDENTITY CASCADE",
        database=servers.postgres.database,
    )


@pytest.fixture
def settings_env_cleared(monkeypatch: pytest.MonkeyPatch) -> None:
    """For tests that build Settings from explicit values only: the session's
    ``service_env`` exports DB_*, RABBITMQ_*, REDIS_* ... to os.environ, which Settings
    would otherwise read, so such a test passed alone and failed after the servers' tests."""
    from groundwork_app.settings import Settings

    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
