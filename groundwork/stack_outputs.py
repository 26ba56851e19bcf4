"""The stack outputs: what ``stacks/{aws,gcp}.py`` export and ``groundwork ops`` reads.

One owner for the names. The stacks' ``build()`` returns an :class:`AwsOutputs` /
:class:`GcpOutputs` (mypy checks that every key is there and no other), and the ops
commands read values by :data:`OutputName`, so a renamed or dropped output fails type
checking on both sides instead of at deploy time (``MissingOutputError``).

Standard library only at run time (pulumi only for the annotations): ``groundwork ops``
learns the names without importing the Pulumi program.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, TypedDict, get_args

if TYPE_CHECKING:
    from pulumi import Input

    Text: TypeAlias = Input[str]
    Texts: TypeAlias = Input[Sequence[Input[str]]]
    TextMap: TypeAlias = Mapping[str, Input[str]]
else:
    Text = Texts = TextMap = Any


class CommonOutputs(TypedDict):
    """Exported by both clouds: where the API is and what its services are called."""

    cloud: Literal["aws", "gcp"]
    region: Text
    api_url: Text
    dashboard_url: Text
    api_service_name: Text
    worker_service_name: Text
    relay_service_name: Text
    deployed_image: Text
    """``repo@sha256:...`` the services run: previews and manual ``pulumi up`` pin it."""
    jwt_issuer: Text
    jwt_audience: Text
    """What the API checks in a token (follows ``groundwork:service``): the smoke test's."""


class AwsOutputs(CommonOutputs):
    cluster_name: Text
    migrate_task_definition_arn: Text
    task_subnet_ids: Texts
    task_security_group_ids: Texts
    api_target_group_arn: Text
    db_instance_identifier: Text
    ecr_repository_url: Text
    alarm_topic_arn: Text
    queue_backend: Literal["rabbitmq", "sqs"]
    broker_id: Text | None
    """Amazon MQ broker (groundwork:queue = rabbitmq); None with SQS."""
    dlq_name: Text
    queue_url: Text | None
    """SQS work queue (groundwork:queue = sqs); None with Amazon MQ."""
    dlq_url: Text | None
    secret_arns: TextMap
    log_group_names: TextMap
    logs_kms_key_arn: Text | None
    """The stack's CloudWatch Logs key; None with groundwork:cmek off (service default)."""
    log_retention_days: Text
    """Days, as text: what `groundwork ops broker-logs` sets on Amazon MQ's own log group."""


class GcpOutputs(CommonOutputs):
    project: Text
    migrate_job_name: Text
    db_instance_name: Text
    pubsub_topic: Text
    dead_letter_topic: Text
    dead_letter_subscription: Text
    artifact_registry_url: Text
    secret_ids: TextMap


# Every output name, for readers of a deployed stack's JSON (`pulumi stack output --json`).
OutputName: TypeAlias = Literal[
    "cloud",
    "region",
    "api_url",
    "dashboard_url",
    "api_service_name",
    "worker_service_name",
    "relay_service_name",
    "deployed_image",
    "jwt_issuer",
    "jwt_audience",
    "cluster_name",
    "migrate_task_definition_arn",
    "task_subnet_ids",
    "task_security_group_ids",
    "api_target_group_arn",
    "db_instance_identifier",
    "ecr_repository_url",
    "alarm_topic_arn",
    "queue_backend",
    "broker_id",
    "dlq_name",
    "queue_url",
    "dlq_url",
    "secret_arns",
    "log_group_names",
    "logs_kms_key_arn",
    "log_retention_days",
    "project",
    "migrate_job_name",
    "db_instance_name",
    "pubsub_topic",
    "dead_letter_topic",
    "dead_letter_subscription",
    "artifact_registry_url",
    "secret_ids",
]

# The service name output of each process `groundwork ops rollback` can roll back.
SERVICE_NAME_OUTPUT: dict[str, OutputName] = {
    "api": "api_service_name",
    "worker": "worker_service_name",
    "relay": "relay_service_name",
}

# mypy cannot derive a Literal from TypedDict keys: keep the two in step at import time.
_DECLARED = set(AwsOutputs.__annotations__) | set(GcpOutputs.__annotations__)
_DECLARED |= set(CommonOutputs.__annotations__)
if set(get_args(OutputName)) != _DECLARED:
    raise RuntimeError(
        "groundwork.stack_outputs: OutputName and the TypedDicts disagree on "
        f"{sorted(set(get_args(OutputName)) ^ _DECLARED)}"
    )
