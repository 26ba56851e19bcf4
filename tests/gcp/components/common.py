"""What the GCP component tests share: the application's secret store (three sources), which
the secrets and the services tests both build."""

from __future__ import annotations

from components.gcp.secrets import SecretSource, SecretSpec, SecretStore, SecretStoreArgs


def secret_store(**kwargs: object) -> SecretStore:
    specs = [
        SecretSpec("DB_PASSWORD", SecretSource.PROVIDED, "from-database"),
        SecretSpec("JWT_SECRET", SecretSource.GENERATED),
        SecretSpec("LLM_API_KEY", SecretSource.OPERATOR),
    ]
    return SecretStore("app", SecretStoreArgs(specs=specs, **kwargs))  # type: ignore[arg-type]
