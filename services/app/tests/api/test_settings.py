"""Settings refuse default or empty secrets outside development, naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest
from pydantic import ValidationError

STRONG = "s" * 40


def _production(**overrides: str) -> dict[str, Any]:
    values = {
        "app_env": "production",
        "jwt_secret": STRONG,
        "webhook_secret": STRONG + "w",
        "db_password": "a-real-db-password",
        "rabbitmq_password": "a-real-mq-password",
        "redis_password": "a-real-redis-auth-token",
    }
    values.update(overrides)
    return values


@pytest.mark.parametrize(
    ("overrides", "variable"),
    [
        ({"jwt_secret": "changethis"}, "JWT_SECRET"),
        ({"jwt_secret": "short"}, "JWT_SECRET"),
        ({"webhook_secret": ""}, "WEBHOOK_SECRET"),
        ({"db_password": ""}, "DB_PASSWORD"),
        ({"rabbitmq_password": "guest"}, "RABBITMQ_PASSWORD"),
        ({"redis_password": ""}, "REDIS_PASSWORD"),
        # The repository's .env.example values must never pass for real ones.
        ({"jwt_secret": "dev-only-jwt-secret-at-least-32-characters-long"}, "JWT_SECRET"),
        ({"db_password": "dev-only-postgres-password"}, "DB_PASSWORD"),
    ],
)
def test_production_refuses_insecure_secrets(overrides: dict[str, str], variable: str):
    from groundwork_app.settings import Settings

    with pytest.raises(ValidationError) as info:
        Settings(_env_file=None, **_production(**overrides))
    assert variable in str(info.value)


def test_production_with_real_secrets_is_accepted():
    from groundwork_app.settings import Settings

    settings = Settings(_env_file=None, **_production())
    assert settings.is_deployed


def test_cli_exits_with_the_variable_named(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JWT_", "WEBHOOK_", "DB_"))}
    env.update(
        APP_ENV="production",
        DB_PASSWORD="a-real-db-password",
        WEBHOOK_SECRET=STRONG,
        RABBITMQ_PASSWORD="a-real-mq-password",
    )
    proc = subprocess.run(
        [sys.executable, "-m", "groundwork_app.cli", "api"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "JWT_SECRET" in proc.stderr


@pytest.mark.parametrize(
    ("command", "extra", "named"),
    [
        ("worker", {"QUEUE_DELIVERY_LIMIT": "0"}, "queue_delivery_limit"),
        ("relay", {"RELAY_BATCH_SIZE": "lots"}, "relay_batch_size"),
        ("relay", {"PORT": "http"}, "PORT must be a TCP port number"),
        ("worker", {"QUEUE_BACKEND": "pubsub", "PORT": "-1"}, "PORT must be a TCP port number"),
    ],
)
def test_worker_and_relay_exit_2_naming_a_bad_setting(
    tmp_path, command: str, extra: dict[str, str], named: str
):
    """Like the API: exit 2 and the message, not a traceback from inside the event loop."""
    env = {**os.environ, **extra}
    proc = subprocess.run(
        [sys.executable, "-m", "groundwork_app.cli", command],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert named in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("value", ["bogus", "60 per fortnight", "", "5/second;100/minute"])
def test_a_rate_limit_outside_the_notation_is_refused_at_load(value: str):
    """Caught with the rest of the configuration, not as a start-up traceback."""
    from groundwork_app.settings import Settings

    with pytest.raises(ValidationError) as info:
        Settings(_env_file=None, **_production(rate_limit=value))
    assert "rate_limit" in str(info.value) and "e.g. 60/minute" in str(info.value)


def test_rate_limit_notations_are_accepted():
    from groundwork_app.settings import Settings

    for value in ("60/minute", "1000 per hour", "10/2 seconds"):
        assert Settings(_env_file=None, **_production(rate_limit=value)).rate_limit == value
