"""SecretStore (components/gcp/secrets.py): replication, sources, version pinning, arguments."""

from __future__ import annotations

from functools import partial

import pulumi
import pytest

from components.gcp.secrets import (
    OPERATOR_PLACEHOLDER,
    SecretReplication,
    SecretSource,
    SecretSpec,
    SecretStoreArgs,
)
from tests.gcp.components.common import secret_store
from tests.gcp.helpers import REGION, by_name, run


def test_secrets_automatic_replication_and_sources() -> None:
    graph = run(lambda: secret_store())
    secrets = by_name(graph, "gcp:secretmanager/secret:Secret")
    assert set(secrets) == {"app-db-password", "app-jwt-secret", "app-llm-api-key"}
    for secret in secrets.values():
        assert secret.inputs["replication"] == {"auto": {}}
        assert secret.inputs["labels"]["source"] in {"provided", "generated", "operator"}
    versions = by_name(graph, "gcp:secretmanager/secretVersion:SecretVersion")
    assert versions["app-db-password-version"].inputs["secretData"] == "from-database"
    generated = graph.named("app-jwt-secret-value")
    assert generated.inputs["length"] >= 32
    assert versions["app-jwt-secret-version"].inputs["secretData"] == generated.state["result"]
    operator = versions["app-llm-api-key-version"]
    assert operator.inputs["secretData"] == OPERATOR_PLACEHOLDER
    assert operator.ignore_changes == ["secretData"]


def test_secrets_user_managed_replication_stays_in_region() -> None:
    graph = run(
        lambda: secret_store(
            replication=SecretReplication.USER_MANAGED,
            replica_locations=[REGION],
            deletion_protection=True,
        )
    )
    for secret in graph.of_type("gcp:secretmanager/secret:Secret"):
        assert secret.inputs["replication"] == {"userManaged": {"replicas": [{"location": REGION}]}}
        assert secret.inputs["deletionProtection"] is True


def test_secret_refs_pin_managed_versions_and_follow_latest_for_operator_ones() -> None:
    refs: dict[str, object] = {}

    def program() -> None:
        store = secret_store()
        for name, ref in store.refs.items():
            pulumi.Output.from_input(ref.version).apply(partial(refs.__setitem__, name))

    run(program)
    assert refs == {"DB_PASSWORD": "1", "JWT_SECRET": "1", "LLM_API_KEY": "latest"}


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: SecretStoreArgs(specs=[], replication=SecretReplication.USER_MANAGED), "needs"),
        (lambda: SecretStoreArgs(specs=[], replica_locations=["x"]), "only apply"),
        (lambda: SecretSpec("db_password", SecretSource.GENERATED), "UPPER_SNAKE"),
        (lambda: SecretSpec("DB_PASSWORD", SecretSource.PROVIDED), "value is required"),
        (lambda: SecretSpec("JWT", SecretSource.GENERATED, length=16), "length"),
        (
            lambda: SecretStoreArgs(
                specs=[SecretSpec("A", SecretSource.GENERATED), SecretSpec("A", "generated")]  # type: ignore[arg-type]
            ),
            "duplicate",
        ),
    ],
)
def test_secret_arguments_are_validated(build: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()  # type: ignore[operator]
