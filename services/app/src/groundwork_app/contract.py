"""The deployment contract: which names a cloud stack must inject into the service.

Derived from the field metadata in ``groundwork_app.settings`` so there is one
source of truth; the infrastructure tests compare the stacks' task definitions and
Cloud Run services against it.
"""

from __future__ import annotations

from dataclasses import dataclass

from groundwork_app.settings import QueueBackend, Settings


@dataclass(frozen=True)
class Contract:
    env: frozenset[str]
    secrets: frozenset[str]

    @property
    def all_names(self) -> frozenset[str]:
        return self.env | self.secrets


def deployment_contract(backend: QueueBackend) -> Contract:
    env: set[str] = set()
    secrets: set[str] = set()
    for name, field in Settings.model_fields.items():
        extra = field.json_schema_extra
        if not isinstance(extra, dict) or "deploy" not in extra:
            continue
        backends = extra.get("backends") or []
        if backends and backend.value not in backends:  # type: ignore[operator]
            continue
        (secrets if extra["deploy"] == "secret" else env).add(name.upper())
    return Contract(env=frozenset(env), secrets=frozenset(secrets))
