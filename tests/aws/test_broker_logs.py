"""`groundwork ops broker-logs` against moto's standalone server, in the order AWS runs it.

Amazon MQ creates ``/aws/amazonmq/broker/<broker-id>/general`` itself once the broker
starts, with no retention and no customer key ("Configuring Amazon MQ for RabbitMQ
logs", Amazon MQ Developer Guide); `pulumi up` has returned by then (it waits for the
broker to be RUNNING). The deploy workflow's step must then set both, do nothing on a
re-run, and say clearly what is wrong when the group never appeared.
"""

from __future__ import annotations

import fnmatch
import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from typer.testing import CliRunner

from components.aws.kms import EncryptionKeyArgs, key_policy
from groundwork.ops.broker_logs import general_log_group, secure_broker_logs
from groundwork.ops.cli import app
from groundwork.ops.errors import OpsTimeoutError

BROKER_ID = "b-1234a5b6-78cd-901e-2fgh-3i45j6k178l9"  # the docs' example ID


def _key_arn() -> str:
    return boto3.client("kms", region_name="us-east-1").create_key()["KeyMetadata"]["Arn"]


def _group(logs: Any) -> dict[str, Any]:
    groups = logs.describe_log_groups(logGroupNamePrefix=general_log_group(BROKER_ID))
    return dict(groups["logGroups"][0])


def _broker_outputs(tmp_path: Path, logs_key: str | None, retention_days: str) -> Path:
    """The stack outputs `groundwork ops broker-logs` reads, as `pulumi stack output --json`
    writes them."""
    outputs = tmp_path / "outputs.json"
    outputs.write_text(
        json.dumps(
            {
                "cloud": "aws",
                "region": "us-east-1",
                "broker_id": BROKER_ID,
                "logs_kms_key_arn": logs_key,
                "log_retention_days": retention_days,
            }
        )
    )
    return outputs


def test_sets_retention_and_key_on_the_group_amazon_mq_created_and_a_rerun_changes_nothing(
    moto_url: str,
) -> None:
    logs = boto3.client("logs", region_name="us-east-1")
    key = _key_arn()
    # What Amazon MQ leaves: the group, no retention, no customer key.
    logs.create_log_group(logGroupName=general_log_group(BROKER_ID))
    assert "retentionInDays" not in _group(logs) and "kmsKeyId" not in _group(logs)

    first = secure_broker_logs(logs, BROKER_ID, kms_key_arn=key, retention_days=365)
    assert first.changed == ["retention", "kms-key"]
    group = _group(logs)
    assert group["retentionInDays"] == 365
    assert group["kmsKeyId"] == key

    again = secure_broker_logs(logs, BROKER_ID, kms_key_arn=key, retention_days=365)
    assert again.changed == []
    # A changed setting (logRetentionDays) is applied on the next deploy, the key kept.
    shorter = secure_broker_logs(logs, BROKER_ID, kms_key_arn=key, retention_days=30)
    assert shorter.changed == ["retention"]
    assert _group(logs)["retentionInDays"] == 30


def test_without_a_logs_key_only_the_retention_is_set(moto_url: str, tmp_path: Path) -> None:
    """groundwork:cmek off: the stack exports no logs key (None); the group keeps CloudWatch
    Logs' default encryption and the command still sets the retention."""
    logs = boto3.client("logs", region_name="us-east-1")
    logs.create_log_group(logGroupName=general_log_group(BROKER_ID))
    outputs = _broker_outputs(tmp_path, None, "30")
    args = ["broker-logs", "--stack", "staging", "--outputs-file", str(outputs)]
    done = CliRunner().invoke(app, args)
    assert done.exit_code == 0, done.output
    assert "key CloudWatch Logs default (retention)" in done.output
    group = _group(logs)
    assert group["retentionInDays"] == 30 and "kmsKeyId" not in group


def test_waits_for_amazon_mq_to_create_the_group(moto_url: str) -> None:
    logs = boto3.client("logs", region_name="us-east-1")
    key = _key_arn()
    polls: list[float] = []

    def sleep(seconds: float) -> None:
        polls.append(seconds)
        if len(polls) == 2:  # the broker finished starting meanwhile
            logs.create_log_group(logGroupName=general_log_group(BROKER_ID))

    report = secure_broker_logs(
        logs, BROKER_ID, kms_key_arn=key, retention_days=90, poll_seconds=5, sleep=sleep
    )
    assert polls == [5, 5]
    assert report.changed == ["retention", "kms-key"]


def test_a_group_that_never_appears_is_a_clear_error(moto_url: str) -> None:
    logs = boto3.client("logs", region_name="us-east-1")
    ticks = iter(range(0, 1000, 10))
    with pytest.raises(OpsTimeoutError) as caught:
        secure_broker_logs(
            logs,
            BROKER_ID,
            kms_key_arn=_key_arn(),
            retention_days=365,
            timeout=30,
            sleep=lambda _s: None,
            clock=lambda: float(next(ticks)),
        )
    message = str(caught.value)
    assert general_log_group(BROKER_ID) in message
    assert "logs:CreateLogGroup" in message


def test_the_command_reads_the_stack_outputs(moto_url: str, tmp_path: Path) -> None:
    logs = boto3.client("logs", region_name="us-east-1")
    key = _key_arn()
    logs.create_log_group(logGroupName=general_log_group(BROKER_ID))
    outputs = _broker_outputs(tmp_path, key, "365")
    runner = CliRunner()
    args = ["broker-logs", "--stack", "staging", "--outputs-file", str(outputs)]
    done = runner.invoke(app, args)
    assert done.exit_code == 0, done.output
    assert "(retention, kms-key)" in done.output
    assert _group(logs)["kmsKeyId"] == key
    rerun = runner.invoke(app, args)
    assert rerun.exit_code == 0 and "(already set)" in rerun.output

    # SQS stacks have no broker: nothing to do, not an error.
    outputs.write_text(json.dumps({"cloud": "aws", "region": "us-east-1", "broker_id": None}))
    sqs = runner.invoke(app, args)
    assert sqs.exit_code == 0 and "nothing to do" in sqs.output

    # A group the deploy role may not see/alter: one line, exit 1, no traceback.
    outputs.write_text(
        json.dumps(
            {
                "cloud": "aws",
                "region": "us-east-1",
                "broker_id": "b-missing",
                "logs_kms_key_arn": key,
                "log_retention_days": "365",
            }
        )
    )
    missing = runner.invoke(app, [*args, "--timeout", "1", "--poll-seconds", "0"])
    assert missing.exit_code == 1
    assert "error: log group /aws/amazonmq/broker/b-missing/general does not exist" in (
        missing.output
    )


@pytest.mark.parametrize("partition", ["aws", "aws-us-gov"])
def test_the_logs_key_policy_lets_cloudwatch_logs_use_it_for_the_broker_group(
    partition: str,
) -> None:
    # AssociateKmsKey works only if the key policy lets logs.<region>.amazonaws.com use the
    # key with this group's ARN as kms:EncryptionContext:aws:logs:arn
    # (https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/encrypt-log-data-kms.html).
    region, account = "us-east-1", "123456789012"
    args = EncryptionKeyArgs(
        description="logs", service_principals=[f"logs.{region}.amazonaws.com"]
    )
    policy = json.loads(key_policy(account, args, partition=partition))
    logs = next(
        s
        for s in policy["Statement"]
        if s["Principal"] == {"Service": f"logs.{region}.amazonaws.com"}
    )
    assert {"kms:Encrypt*", "kms:Decrypt*", "kms:GenerateDataKey*"} <= set(logs["Action"])
    pattern = logs["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"]
    group_arn = f"arn:{partition}:logs:{region}:{account}:log-group:{general_log_group(BROKER_ID)}"
    assert fnmatch.fnmatchcase(group_arn, pattern)  # ArnLike: * matches any characters
    other_account = group_arn.replace(account, "210987654321")
    assert not fnmatch.fnmatchcase(other_account, pattern)
    root = policy["Statement"][0]["Principal"]["AWS"]
    assert root == f"arn:{partition}:iam::{account}:root"
