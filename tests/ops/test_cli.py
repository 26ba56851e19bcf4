"""`groundwork ops ...` end to end: moto for AWS, a local HTTP API, one-line errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from typer.testing import CliRunner

from groundwork.cli import app

from .conftest import JWT_SECRET, moto_broker, moto_database, put_queue_depth

runner = CliRunner()


def write_outputs(tmp_path: Path, values: dict[str, Any]) -> Path:
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps({k: v for k, v in values.items() if not k.startswith("_")}))
    return path


def invoke(*args: str) -> Any:
    return runner.invoke(app, ["ops", *args])


def assert_one_line_error(result: Any, code: int, fragment: str) -> None:
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert fragment in lines[0]
    assert "Traceback" not in result.output


def test_migrate_succeeds_from_an_outputs_file(stack: dict[str, Any], tmp_path: Path) -> None:
    result = invoke(
        "migrate",
        "--stack",
        "staging",
        "--outputs-file",
        str(write_outputs(tmp_path, stack)),
        "--poll-seconds",
        "0",
    )
    assert result.exit_code == 0, result.output
    assert "migrate task" in result.stdout
    assert "succeeded" in result.stdout


def test_missing_output_is_exit_2(stack: dict[str, Any], tmp_path: Path) -> None:
    values = {k: v for k, v in stack.items() if k != "cluster_name"}
    result = invoke(
        "migrate", "-s", "staging", "--outputs-file", str(write_outputs(tmp_path, values))
    )
    assert_one_line_error(result, 2, "stack 'staging' has no string output 'cluster_name'")


def test_missing_aws_credentials_is_exit_2(
    stack: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outputs = write_outputs(tmp_path, stack)
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    result = invoke("migrate", "-s", "staging", "--outputs-file", str(outputs))
    assert_one_line_error(result, 2, "no AWS credentials found")


def test_outputs_file_that_is_not_json(tmp_path: Path) -> None:
    path = tmp_path / "o.json"
    path.write_text("Current stack outputs (2):")
    result = invoke("smoke", "-s", "staging", "--outputs-file", str(path))
    assert_one_line_error(result, 2, "are not JSON")


def test_without_pulumi_cli_or_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    result = invoke("migrate", "-s", "staging")
    assert_one_line_error(result, 2, "the pulumi CLI is not on PATH")


def test_pulumi_stack_output_is_used_when_on_path(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake = tmp_path / "pulumi"
    fake.write_text("#!/bin/sh\necho \"error: no stack named '$5' found\" >&2\nexit 255\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    result = invoke("migrate", "-s", "qa")
    assert_one_line_error(result, 2, "error: no stack named 'qa' found")


def test_smoke_aws_end_to_end(stack: dict[str, Any], tmp_path: Path, job_api: Any) -> None:
    elbv2 = boto3.client("elbv2", region_name="us-east-1")
    ec2 = boto3.client("ec2", region_name="us-east-1")
    tg = elbv2.create_target_group(
        Name="api", Protocol="HTTP", Port=8000, VpcId=stack["_vpc"], TargetType="instance"
    )["TargetGroups"][0]["TargetGroupArn"]
    instance = ec2.run_instances(
        ImageId=ec2.describe_images()["Images"][0]["ImageId"], MinCount=1, MaxCount=1
    )["Instances"][0]["InstanceId"]
    elbv2.register_targets(TargetGroupArn=tg, Targets=[{"Id": instance, "Port": 8000}])
    secret = boto3.client("secretsmanager", region_name="us-east-1").create_secret(
        Name="groundwork-staging/jwt", SecretString=JWT_SECRET
    )["ARN"]
    values = {
        **stack,
        "api_url": job_api.url,
        "api_target_group_arn": tg,
        "secret_arns": {"jwt-secret": secret},
    }
    result = invoke(
        "smoke",
        "-s",
        "staging",
        "--outputs-file",
        str(write_outputs(tmp_path, values)),
        "--poll-seconds",
        "0",
    )
    assert result.exit_code == 0, result.output
    assert "1/1 targets healthy" in result.stdout
    assert "smoke test passed" in result.stdout
    assert "succeeded" in result.stdout
    assert job_api.state.seen_tokens, "the API never saw the minted token"


def test_smoke_without_any_token_source_is_exit_2(
    tmp_path: Path, job_api: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GROUNDWORK_SMOKE_TOKEN", raising=False)
    monkeypatch.delenv("GROUNDWORK_SMOKE_JWT_SECRET", raising=False)
    values = {
        "cloud": "gcp",
        "project": "p",
        "region": "r",
        "api_url": job_api.url,
        "api_service_name": "api",
    }
    result = invoke(
        "smoke",
        "-s",
        "production",
        "--outputs-file",
        str(write_outputs(tmp_path, values)),
        "--base-url",
        job_api.url,
    )
    # Cloud Run readiness comes first and needs Google credentials.
    assert result.exit_code == 2
    assert "error: " in result.stderr
    assert "Traceback" not in result.output


def test_missing_google_credentials_is_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    values = {"cloud": "gcp", "project": "p", "region": "r", "migrate_job_name": "m"}
    result = invoke(
        "migrate", "-s", "production", "--outputs-file", str(write_outputs(tmp_path, values))
    )
    assert_one_line_error(result, 2, "no Google credentials found")


def test_aws_only_command_on_a_gcp_stack(tmp_path: Path) -> None:
    values = {"cloud": "gcp", "project": "p", "region": "r"}
    result = invoke(
        "restore-drill", "-s", "production", "--outputs-file", str(write_outputs(tmp_path, values))
    )
    assert_one_line_error(result, 2, "deployed to gcp, this command needs aws")


def test_bad_steps_is_exit_2(tmp_path: Path) -> None:
    values = {"cloud": "gcp", "project": "p", "region": "r", "api_url": "https://x"}
    result = invoke(
        "shift-traffic",
        "-s",
        "production",
        "--steps",
        "50,10",
        "--outputs-file",
        str(write_outputs(tmp_path, values)),
    )
    assert_one_line_error(result, 2, "--steps '50,10' must be strictly increasing")


def test_dlq_depth_over_max_exits_1(stack: dict[str, Any], tmp_path: Path) -> None:
    _, cloudwatch, broker = moto_broker()
    put_queue_depth(cloudwatch, 4.0, datetime.now(UTC) - timedelta(minutes=1))
    outputs = str(write_outputs(tmp_path, {**stack, "broker_id": broker}))
    ok = invoke("dlq-depth", "-s", "staging", "--outputs-file", outputs, "--json")
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["depth"] == 4
    over = invoke("dlq-depth", "-s", "staging", "--outputs-file", outputs, "--max", "3")
    assert_one_line_error(over, 1, "jobs.dlq holds 4 messages (> --max 3)")


def test_dlq_depth_reads_the_sqs_dead_letter_queue_itself(
    stack: dict[str, Any], tmp_path: Path
) -> None:
    """groundwork:queue = sqs: the stack exports dlq_url; the count comes from the queue
    (visible + in flight), not from CloudWatch, and no broker is looked up."""
    sqs = boto3.client("sqs", region_name="us-east-1")
    dlq = sqs.create_queue(QueueName="groundwork-staging-queue-dlq-abc1234")["QueueUrl"]
    work = sqs.create_queue(QueueName="groundwork-staging-queue-queue-abc1234")["QueueUrl"]
    for i in range(3):
        sqs.send_message(QueueUrl=dlq, MessageBody=f"dead {i}")
    sqs.send_message(QueueUrl=work, MessageBody="alive")  # must not be counted
    sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=1)  # in flight: still parked
    outputs = str(
        write_outputs(tmp_path, {**stack, "broker_id": None, "dlq_url": dlq, "queue_url": work})
    )
    ok = invoke("dlq-depth", "-s", "staging", "--outputs-file", outputs, "--json")
    assert ok.exit_code == 0, ok.output
    report = json.loads(ok.stdout)
    assert (report["broker"], report["depth"]) == ("sqs", 3)
    assert report["queue"] == "groundwork-staging-queue-dlq-abc1234"
    over = invoke("dlq-depth", "-s", "staging", "--outputs-file", outputs, "--max", "2")
    assert_one_line_error(
        over, 1, "groundwork-staging-queue-dlq-abc1234 holds 3 messages (> --max 2)"
    )


def test_restore_drill_json_report(stack: dict[str, Any], tmp_path: Path) -> None:
    moto_database(stack)
    outputs = str(
        write_outputs(tmp_path, {**stack, "db_instance_identifier": "groundwork-staging-db"})
    )
    result = invoke("restore-drill", "-s", "staging", "--outputs-file", outputs, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["deleted"] is True
    assert report["snapshot_id"].startswith("groundwork-staging-db-drill-")
    assert report["total_seconds"] >= 0


def test_rollback_aws_via_cli(stack: dict[str, Any], tmp_path: Path) -> None:
    outputs = str(write_outputs(tmp_path, stack))
    result = invoke(
        "rollback", "-s", "staging", "--outputs-file", outputs, "--services", "api", "--no-wait"
    )
    assert result.exit_code == 0, result.output
    assert "groundwork-staging-api: groundwork-staging-api:2 -> groundwork-staging-api:1" in (
        result.stdout
    )
    bad = invoke("rollback", "-s", "staging", "--outputs-file", outputs, "--services", "web")
    assert_one_line_error(bad, 2, "--services takes api, worker, relay")
