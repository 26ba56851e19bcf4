"""The CLI contract: exit codes, one-line errors, verdict handling, JSON stability.

Most tests swap ``stacks.program`` for a tiny program so they run in a second; the
real stacks are planned in test_plan_stacks.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pulumi
import pulumi_aws as aws
import pytest
from typer.testing import CliRunner

from groundwork.cli import app
from groundwork.plan import commands
from groundwork.plan.policy import Verdict
from groundwork.plan.report import SCHEMA_PATH

GROUNDWORK = Path(sys.executable).with_name("groundwork")


class _Data(pulumi.ComponentResource):
    def __init__(self, name: str) -> None:
        super().__init__("groundwork:test:Data", name)
        opts = pulumi.ResourceOptions(parent=self)
        aws.rds.Instance(
            f"{name}-db",
            instance_class="db.t4g.micro",
            engine="postgres",
            allocated_storage=20,
            opts=opts,
        )
        aws.ec2.NatGateway(f"{name}-nat", subnet_id="subnet-1", opts=opts)
        aws.iam.Role(f"{name}-role", assume_role_policy="{}", opts=opts)
        self.register_outputs({})


def tiny_program() -> None:
    _Data("data")
    pulumi.export("region", "us-east-1")


@pytest.fixture
def tiny(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("stacks.program", tiny_program)


def runner_returning(*verdicts: Verdict):
    def run(program_run: Any, environment: str) -> list[Verdict]:
        assert environment in ("staging", "production")
        assert program_run.of_type("aws:rds/instance:Instance")
        return list(verdicts)

    return run


MANDATORY = Verdict(
    rule="aws-rds-instance-multi-az",
    enforcement="mandatory",
    severity="high",
    urn="urn:pulumi:staging::groundwork::aws:rds/instance:Instance::data-db",
    resource_type="aws:rds/instance:Instance",
    resource_name="data-db",
    message="RDS instance data-db is single-AZ.",
    remediation="Set multi_az=True.",
)
ADVISORY = Verdict(
    rule="aws-sns-topic-encrypted",
    enforcement="advisory",
    severity="medium",
    urn="urn:x::topic",
    resource_type="aws:sns/topic:Topic",
    resource_name="topic",
    message="not encrypted",
)


def invoke(*args: str) -> Any:
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "160"})


# ---------------------------------------------------------------- verdicts and exit codes


def test_mandatory_violation_exits_1_and_is_listed_first(tiny, monkeypatch) -> None:
    monkeypatch.setattr(commands, "POLICY_RUNNER", runner_returning(ADVISORY, MANDATORY))
    result = invoke("plan", "staging")
    assert result.exit_code == 1
    out = result.stdout
    assert out.index("aws-rds-instance-multi-az") < out.index("aws-sns-topic-encrypted")
    assert "MANDATORY" in out and "fix: Set multi_az=True." in out
    assert "on data-db" in out
    assert "FAILED: 1 mandatory policy violation(s)." in out


def test_mandatory_violation_exits_1_in_json_mode_too(tiny, monkeypatch) -> None:
    monkeypatch.setattr(commands, "POLICY_RUNNER", runner_returning(MANDATORY))
    result = invoke("plan", "staging", "--json")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["exit_code"] == 1
    assert data["verdicts"]["mandatory_failures"] == 1
    assert data["verdicts"]["items"][0] == {
        "rule": "aws-rds-instance-multi-az",
        "enforcement": "mandatory",
        "severity": "high",
        "resource": MANDATORY.resource,
        "message": MANDATORY.message,
        "remediation": "Set multi_az=True.",
    }


def test_advisory_only_passes(tiny, monkeypatch) -> None:
    monkeypatch.setattr(commands, "POLICY_RUNNER", runner_returning(ADVISORY))
    result = invoke("plan", "staging")
    assert result.exit_code == 0
    assert "0 mandatory" in result.stdout and "1 advisory" in result.stdout


def test_the_plan_prints_the_runners_verdicts_with_the_rules_fix(tiny) -> None:
    """One path: the plan lists what groundwork.policyrun reports, severity from the Rule."""
    from policies.pack import RULES_BY_NAME

    result = invoke("plan", "staging", "--json")
    items = json.loads(result.stdout)["verdicts"]["items"]
    # The tiny program's database is unencrypted: a mandatory security rule fails.
    assert result.exit_code == 1
    encrypted = next(i for i in items if i["rule"] == "aws-rds-instance-encrypted")
    assert encrypted["enforcement"] == "mandatory"
    assert encrypted["resource"].endswith("aws:rds/instance:Instance::data-db")
    for item in items:
        rule = RULES_BY_NAME[item["rule"]]
        assert item["severity"] == rule.severity.value
        # A rule's message carries its fix already, so the plan does not repeat it.
        assert item["message"].endswith(f"Remediation: {rule.remediation}")
        assert item["remediation"] == ""


def test_a_crashing_policy_pack_is_an_error_not_a_pass(tiny, monkeypatch) -> None:
    def broken(run: Any, environment: str) -> list[Verdict]:
        raise ValueError("pack config names unknown policies: nope")

    monkeypatch.setattr(commands, "POLICY_RUNNER", broken)
    result = invoke("plan", "staging")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: the policy pack failed at tests/plan/test_plan_cli.py")
    assert "ValueError: pack config names unknown policies: nope" in result.stderr


def test_real_policy_runner_is_used_by_default(tiny) -> None:
    data = json.loads(invoke("plan", "staging", "--json").stdout)
    assert data["verdicts"]["available"] is True
    assert data["verdicts"]["error"] == ""


# ---------------------------------------------------------------- JSON stability


def test_json_is_deterministic_and_matches_the_schema(tiny, monkeypatch) -> None:
    monkeypatch.setattr(commands, "POLICY_RUNNER", runner_returning(MANDATORY))
    first = invoke("plan", "staging", "--json").stdout
    second = invoke("plan", "staging", "--json").stdout
    assert first == second
    data = json.loads(first)
    jsonschema.validate(data, json.loads(SCHEMA_PATH.read_text()))
    assert sorted(data) == [
        "config",
        "costs",
        "exit_code",
        "inventory",
        "kind",
        "notes",
        "resources",
        "schema_version",
        "stack",
        "verdicts",
    ]
    assert data["inventory"]["by_component"] == {"data": 3}
    component = next(c for c in data["costs"]["components"] if c["name"] == "data")
    assert {r["name"]: r["status"] for r in component["resources"]} == {
        "data-db": "priced",
        "data-nat": "priced",
        "data-role": "free",
    }
    assert data["config"]["groundwork:environment"] == "staging"


def test_schema_rejects_a_renamed_field(tiny) -> None:
    data = json.loads(invoke("plan", "staging", "--json").stdout)
    data["costs"]["total"] = data["costs"].pop("total_monthly")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, json.loads(SCHEMA_PATH.read_text()))


def test_set_overrides_reach_the_program(tiny, monkeypatch) -> None:
    seen: dict[str, Any] = {}

    def program() -> None:
        seen["nat"] = pulumi.Config("groundwork").get("nat")
        seen["region"] = pulumi.Config("aws").get("region")
        tiny_program()

    monkeypatch.setattr("stacks.program", program)
    result = invoke(
        "plan", "staging", "--set", "nat=one-per-az", "--set", "aws:region=us-east-1", "--json"
    )
    assert result.exit_code in (0, 1)
    assert seen == {"nat": "one-per-az", "region": "us-east-1"}


# ---------------------------------------------------------------- bad input: exit 2, one line


def _one_line_error(result: Any) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def test_unknown_stack() -> None:
    line = _one_line_error(invoke("plan", "qa"))
    assert "unknown stack 'qa': no Pulumi.qa.yaml" in line
    assert "production, staging" in line


def test_unknown_config_key() -> None:
    line = _one_line_error(invoke("plan", "staging", "--set", "natGateways=2"))
    assert "unknown config key groundwork:natGateways" in line
    assert "known keys:" in line and "nat," in line


def test_bad_value_names_key_value_and_where_it_came_from() -> None:
    line = _one_line_error(invoke("plan", "staging", "--set", "nat=sometimes"))
    assert "groundwork:nat = 'sometimes' is invalid" in line
    assert "none, instance, single, one-per-az" in line
    assert "(from --set groundwork:nat=sometimes)" in line


def test_value_rejected_by_the_program_itself() -> None:
    line = _one_line_error(invoke("plan", "staging", "--cloud", "gcp", "--set", "gcp:region="))
    assert "invalid configuration" in line and "gcp:region" in line
    assert "(from --set gcp:region=)" in line


def test_malformed_set() -> None:
    line = _one_line_error(invoke("plan", "staging", "--set", "nat"))
    assert "--set 'nat': expected key=value" in line


def test_program_exception_says_what_and_where(monkeypatch) -> None:
    def exploding_program() -> None:
        raise KeyError("subnet_ids")

    monkeypatch.setattr("stacks.program", exploding_program)
    line = _one_line_error(invoke("plan", "staging"))
    assert "the program failed at tests/plan/test_plan_cli.py:" in line
    assert "in exploding_program: KeyError: 'subnet_ids'" in line


def test_console_script_prints_one_line_and_no_traceback(tmp_path: Path) -> None:
    assert GROUNDWORK.exists()
    for args, expected in (
        (["plan", "nope"], "unknown stack 'nope'"),
        (["plan", "staging", "--set", "dbMultiAz=perhaps"], "groundwork:dbMultiAz"),
    ):
        proc = subprocess.run(
            [str(GROUNDWORK), *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd=Path(__file__).parents[2],
        )
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr + proc.stdout
        assert proc.stderr.strip().count("\n") == 0, proc.stderr
        assert expected in proc.stderr


def test_console_script_reports_broken_stack_yaml_with_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "Pulumi.yaml").write_text("name: groundwork\nruntime: python\n")
    (tmp_path / "Pulumi.staging.yaml").write_text("config:\n  aws:region: [us-east-1\n")
    proc = subprocess.run(
        [str(GROUNDWORK), "plan", "staging"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: Pulumi.staging.yaml:")
    assert "not valid YAML" in proc.stderr


def test_unknown_cloud() -> None:
    line = _one_line_error(invoke("plan", "staging", "--cloud", "azure"))
    assert "--cloud 'azure': expected one of aws, gcp" in line


def test_plan_prints_the_cost_per_million_jobs_under_the_monthly_table(tiny, monkeypatch) -> None:
    monkeypatch.setattr(commands, "POLICY_RUNNER", runner_returning(ADVISORY))
    out = invoke("plan", "staging").stdout
    line = out[out.index("Cost per million jobs") :]
    # (the console may shorten the middle of a long line: check both ends)
    assert "worker compute USD" in line and "Fargate Spot arm64 0.25 vCPU / 0.5 GB" in line
    assert "(gpt-4o-mini, 500 in + 200 out per job) = USD" in line
    assert out.index("Cost per million jobs") < out.index("Usage assumptions and formulas")
