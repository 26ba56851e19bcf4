"""Database (components/gcp/database.py): private, encrypted, backed up, HA when asked."""

from __future__ import annotations

import pytest

from components.gcp.database import Availability, Database, DatabaseArgs
from groundwork.mockrun import ProgramRun
from tests.gcp.helpers import run


def _db(**kwargs: object) -> ProgramRun:
    return run(lambda: Database("db", DatabaseArgs(network_id="vpc-id", **kwargs)))  # type: ignore[arg-type]


def test_database_defaults_are_private_tls_only_and_backed_up() -> None:
    graph = _db()
    instance = graph.one("gcp:sql/databaseInstance:DatabaseInstance").inputs
    assert instance["databaseVersion"] == "POSTGRES_17"
    settings = instance["settings"]
    ip = settings["ipConfiguration"]
    assert ip["ipv4Enabled"] is False
    assert ip["privateNetwork"] == "vpc-id"
    assert ip["sslMode"] == "ENCRYPTED_ONLY"
    assert "authorizedNetworks" not in ip
    backup = settings["backupConfiguration"]
    assert backup["enabled"] is True
    assert backup["pointInTimeRecoveryEnabled"] is True
    assert backup["transactionLogRetentionDays"] == 7
    assert backup["backupRetentionSettings"] == {"retainedBackups": 7, "retentionUnit": "COUNT"}
    assert settings["availabilityType"] == "ZONAL"
    assert settings["insightsConfig"]["queryInsightsEnabled"] is True
    assert settings["maintenanceWindow"]["day"] == 7
    flags = {f["name"]: f["value"] for f in settings["databaseFlags"]}
    assert flags["cloudsql.iam_authentication"] == "on"
    assert instance["deletionProtection"] is False
    assert settings["deletionProtectionEnabled"] is False


def test_production_shape_is_regional_protected_with_30_days_of_backups() -> None:
    graph = _db(
        availability=Availability.REGIONAL,
        deletion_protection=True,
        backup_retention_days=30,
        tier="db-custom-2-7680",
    )
    instance = graph.one("gcp:sql/databaseInstance:DatabaseInstance").inputs
    settings = instance["settings"]
    assert settings["availabilityType"] == "REGIONAL"
    assert instance["deletionProtection"] is True
    assert settings["deletionProtectionEnabled"] is True
    backup = settings["backupConfiguration"]
    assert backup["backupRetentionSettings"]["retainedBackups"] == 30
    # Enterprise edition: the log-based PITR window is capped at 7 days.
    assert backup["transactionLogRetentionDays"] == 7


def test_database_and_user_with_generated_password() -> None:
    graph = _db(database_name="orders", user_name="orders_app")
    assert graph.one("gcp:sql/database:Database").inputs["name"] == "orders"
    user = graph.one("gcp:sql/user:User").inputs
    assert user["name"] == "orders_app"
    password = graph.one("random:index/randomPassword:RandomPassword")
    assert password.inputs["length"] >= 32
    assert user["password"] == password.state["result"] == "generated-db-app-password"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"disk_size_gb": 200, "disk_autoresize_limit_gb": 100}, "below"),
        ({"maintenance_day": 8}, "maintenance_day"),
        ({"flags": {"log_connections": "on"}}, "iam_authentication"),
        ({"backup_retention_days": 0}, "backup_retention_days"),
    ],
)
def test_database_rejects_bad_arguments(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DatabaseArgs(network_id="vpc", **kwargs)  # type: ignore[arg-type]
