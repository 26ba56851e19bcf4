"""``groundwork ops broker-logs``: retention and the logs KMS key on Amazon MQ's own log group.

Amazon MQ creates the general log group itself, named after the broker ID it assigns at
creation (``/aws/amazonmq/broker/<broker-id>/general``), without retention or a customer
key ("Configuring Amazon MQ for RabbitMQ logs", Amazon MQ Developer Guide: the principal
that creates or reboots the broker needs ``logs:CreateLogGroup``; the broker then writes
through the Amazon MQ service-linked role). Pulumi cannot create the group first (the
name is unknown until the broker exists) nor afterwards (CreateLogGroup on an existing
name fails with ResourceAlreadyExistsException), so the deploy workflow runs this step
after ``pulumi up``: it sets what differs and leaves the rest, so a re-run is a no-op.

AssociateKmsKey needs the key policy to let ``logs.<region>.amazonaws.com`` use the key
for this log group's ARN (``kms:EncryptionContext:aws:logs:arn``); the logs key of the
stack allows every log group of the account and region (components/aws/kms.py).
https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/encrypt-log-data-kms.html
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from groundwork.ops.aws import aws_errors
from groundwork.ops.errors import OpsTimeoutError, UserError

# CloudWatch Logs accepts only these retention values (PutRetentionPolicy).
RETENTION_DAYS: tuple[int, ...] = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545)
RETENTION_DAYS += (731, 1096, 1827, 2192, 2557, 2922, 3288, 3653)


def general_log_group(broker_id: str) -> str:
    return f"/aws/amazonmq/broker/{broker_id}/general"


@dataclass
class BrokerLogsReport:
    log_group: str
    retention_days: int
    kms_key_arn: str | None
    """None: the stack has no logs key (groundwork:cmek off), the group keeps CloudWatch
    Logs' default encryption."""
    changed: list[str] = field(default_factory=list)
    """What this run set: ``retention`` and/or ``kms-key``; empty when already right."""


def _find_group(logs: Any, name: str) -> dict[str, Any] | None:
    with aws_errors(f"describe log group {name}"):
        pages = logs.get_paginator("describe_log_groups").paginate(logGroupNamePrefix=name)
        for page in pages:
            for group in page.get("logGroups", []):
                if group.get("logGroupName") == name:
                    return dict(group)
    return None


def secure_broker_logs(
    logs: Any,
    broker_id: str,
    *,
    kms_key_arn: str | None,
    retention_days: int,
    timeout: float = 600,
    poll_seconds: float = 15,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> BrokerLogsReport:
    """Set ``retention_days`` and ``kms_key_arn`` on the broker's general log group.

    ``kms_key_arn`` None (groundwork:cmek off): retention only. Nothing is disassociated:
    a stack never switches cmek in place (stacks/aws.py refuse_cmek_change).

    Waits up to ``timeout`` for Amazon MQ to create the group (it does so while the
    broker starts; `pulumi up` returns once the broker is RUNNING, so normally it is there).
    """
    if retention_days not in RETENTION_DAYS:
        raise UserError(
            f"log retention {retention_days} days: CloudWatch Logs allows only {RETENTION_DAYS}"
        )
    name = general_log_group(broker_id)
    deadline = clock() + timeout
    group = _find_group(logs, name)
    while group is None:
        if clock() >= deadline:
            raise OpsTimeoutError(
                f"log group {name} does not exist after {timeout:.0f} s: Amazon MQ creates it "
                "when the broker starts with general logs on, and only if the principal that "
                "created or rebooted the broker may logs:CreateLogGroup. Check that broker "
                f"{broker_id} is RUNNING with logs.general=true and that the deploy role has "
                "logs:CreateLogGroup on /aws/amazonmq/*; then reboot the broker or re-run"
            )
        sleep(poll_seconds)
        group = _find_group(logs, name)
    report = BrokerLogsReport(name, retention_days, kms_key_arn)
    if group.get("retentionInDays") != retention_days:
        with aws_errors(f"set retention on {name}"):
            logs.put_retention_policy(logGroupName=name, retentionInDays=retention_days)
        report.changed.append("retention")
    if kms_key_arn is not None and group.get("kmsKeyId") != kms_key_arn:
        # Only new events are encrypted; what Amazon MQ wrote before stays readable under
        # the AWS-owned key (AssociateKmsKey, CloudWatch Logs API reference).
        with aws_errors(f"associate the logs KMS key with {name}"):
            logs.associate_kms_key(logGroupName=name, kmsKeyId=kms_key_arn)
        report.changed.append("kms-key")
    return report
