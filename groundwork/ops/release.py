"""What serves before a deploy, recorded so that a failed deploy returns to exactly that.

The deploy workflow records the release *before* it touches anything (push, migrate,
``pulumi up``) and its rollback job restores the record. Restoring compares what serves
now with the record, service by service, and changes only what differs, so:

- a deploy that failed before changing anything (policy violation, failed migration)
  rolls back nothing;
- after the ECS deployment circuit breaker already reverted a service, or after
  ``ops shift-traffic`` already restored the Cloud Run split, that service is left alone;
- a first deploy (nothing served before it) has nothing to return to.

The earlier rule, "the revision older than what serves now", downgraded a healthy
environment by one release in each of those cases.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from groundwork.ops.errors import UserError
from groundwork.ops.outputs import StackOutputs
from groundwork.stack_outputs import SERVICE_NAME_OUTPUT, OutputName

# The value Pulumi stores for an output that was unknown when the program exported it
# (for example after the targeted first `pulumi up` that creates only the registry).
UNKNOWN_OUTPUT = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
RECORD_VERSION = 1
# The outputs a deploy needs before `pulumi up` to migrate first (per cloud).
MIGRATE_OUTPUTS: dict[str, tuple[OutputName, ...]] = {
    "aws": ("cluster_name", "migrate_task_definition_arn", "task_subnet_ids"),
    "gcp": ("migrate_job_name",),
}


def known(value: Any) -> bool:
    if isinstance(value, str):
        return bool(value) and value != UNKNOWN_OUTPUT
    if isinstance(value, list):
        return bool(value) and all(known(item) for item in value)
    return value is not None


def is_first_deploy(outputs: StackOutputs) -> bool:
    """True until a full ``pulumi up`` has exported what ``ops migrate`` needs.

    A stack that was never deployed exports nothing; after the one-time registry
    bootstrap it exports the registry at most. Either way there is no migrate task / job
    yet, so the deploy first creates the environment without its services, migrates,
    and only then creates the services (they log in with what the migration creates).
    """
    cloud = outputs.values.get("cloud")
    if cloud not in MIGRATE_OUTPUTS:
        return True
    return not all(known(outputs.values.get(key)) for key in MIGRATE_OUTPUTS[cloud])


@dataclass
class ReleaseRecord:
    """Per service: the ECS task definition ARN, or the Cloud Run traffic split."""

    stack: str
    cloud: str
    first_deploy: bool
    region: str = ""
    cluster: str = ""
    """AWS: the ECS cluster of the services (the rollback job has no other outputs)."""
    aws_task_definitions: dict[str, str] = field(default_factory=dict)
    gcp_traffic: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    version: int = RECORD_VERSION

    @property
    def empty(self) -> bool:
        return not self.aws_task_definitions and not self.gcp_traffic

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")

    @classmethod
    def read(cls, path: Path) -> ReleaseRecord:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise UserError(f"cannot read release record {path}: {exc.strerror}") from None
        except json.JSONDecodeError as exc:
            raise UserError(f"release record {path} is not JSON: {exc.msg}") from None
        if not isinstance(data, dict) or data.get("version") != RECORD_VERSION:
            raise UserError(
                f"release record {path} is not a version-{RECORD_VERSION} record "
                "(written by `groundwork ops record-release`)"
            )
        return cls(
            stack=str(data["stack"]),
            cloud=str(data["cloud"]),
            first_deploy=bool(data["first_deploy"]),
            region=str(data.get("region", "")),
            cluster=str(data.get("cluster", "")),
            aws_task_definitions={
                str(k): str(v) for k, v in data.get("aws_task_definitions", {}).items()
            },
            gcp_traffic={
                str(k): [(str(rev), int(pct)) for rev, pct in split]
                for k, split in data.get("gcp_traffic", {}).items()
            },
        )


def service_names(outputs: StackOutputs) -> list[str]:
    """The api/worker/relay service names the stack exports (none before the first up)."""
    names = []
    for output in SERVICE_NAME_OUTPUT.values():
        value = outputs.values.get(output)
        if known(value):
            names.append(str(value))
    return names
