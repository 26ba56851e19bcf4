"""SecretStore (components/aws/secrets.py)."""

from __future__ import annotations

from typing import Any

import pytest

from components.aws import SecretStore, SecretStoreArgs


def test_app_secrets(helpers: Any) -> None:
    run = helpers.run_component(lambda: SecretStore("s", SecretStoreArgs(recovery_window_days=7)))
    secrets = {r.name: r.inputs for r in run.of_type("aws:secretsmanager/secret:Secret")}
    assert set(secrets) == {"s-jwt-secret", "s-webhook-secret", "s-llm-api-key"}
    assert all(s["kmsKeyId"] and s["recoveryWindowInDays"] == 7 for s in secrets.values())
    assert all(
        p.inputs["length"] == 64 for p in run.of_type("random:index/randomPassword:RandomPassword")
    )
    versions = {r.name: r for r in run.of_type("aws:secretsmanager/secretVersion:SecretVersion")}
    assert versions["s-llm-api-key-version"].ignore_changes == ["secretString"]
    # Rotations write 'NEW OLD' into Secrets Manager; a later `pulumi up` must keep it.
    assert versions["s-jwt-secret-version"].ignore_changes == ["secretString"]
    with pytest.raises(ValueError, match="at least 32"):
        SecretStoreArgs(generated_length=16)
