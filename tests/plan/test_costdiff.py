"""`groundwork cost-diff BASE.json HEAD.json`: the Markdown table for PR comments."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from groundwork.cli import app


def plan_doc(
    stack: str,
    components: dict[str, float],
    not_priced: Sequence[tuple[str, str]] = (),
    schema_version: int = 1,
) -> dict[str, Any]:
    return {
        "schema_version": schema_version,
        "kind": "groundwork-plan",
        "stack": {
            "name": stack,
            "cloud": "aws",
            "project": "groundwork",
            "region": "us-east-1",
            "environment": "staging",
        },
        "costs": {
            "currency": "USD",
            "total_monthly": round(sum(components.values()), 2),
            "components": [
                {"name": n, "monthly": m, "resources": []} for n, m in components.items()
            ],
            "not_priced": [
                {"type": t, "name": n, "component": "x", "reason": "r"} for t, n in not_priced
            ],
        },
    }


def write(tmp_path: Path, name: str, doc: dict[str, Any]) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return path


def cost_diff(*args: str) -> Any:
    return CliRunner().invoke(app, ["cost-diff", *args])


def test_markdown_table_per_component_and_total(tmp_path: Path) -> None:
    base = write(tmp_path, "base.json", plan_doc("staging", {"db": 100.0, "net": 40.0, "old": 5.0}))
    head = write(
        tmp_path, "head.json", plan_doc("staging", {"db": 150.0, "net": 40.0, "waf": 27.5})
    )
    result = cost_diff(str(base), str(head))
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[:9] == [
        "### Monthly cost change: staging (aws) -> staging (aws)",
        "",
        "| Component | Base | Head | Change |",
        "|---|---:|---:|---:|",
        "| db | $100.00 | $150.00 | +$50.00 (+50.0%) |",
        "| net | $40.00 | $40.00 | 0.00 |",
        "| old | $5.00 | - | -$5.00 (-100.0%) |",
        "| waf | - | $27.50 | +$27.50 (new) |",
        "| **Total** | **$145.00** | **$217.50** | **+$72.50 (+50.0%)** |",
    ]


def test_not_priced_resources_are_called_out(tmp_path: Path) -> None:
    base = write(tmp_path, "base.json", plan_doc("staging", {"db": 1.0}))
    head = write(
        tmp_path,
        "head.json",
        plan_doc("staging", {"db": 1.0}, [("aws:sagemaker/endpoint:Endpoint", "ml")]),
    )
    out = cost_diff(str(base), str(head)).stdout
    assert "1 resource(s) in head are not priced" in out
    assert "- newly not priced: `aws:sagemaker/endpoint:Endpoint` ml" in out


def test_real_plans_diff_staging_against_production(tmp_path: Path, monkeypatch) -> None:
    """End to end through `plan --json`, with a small program to keep it fast."""
    import pulumi
    import pulumi_aws as aws

    def program() -> None:
        multi_az = pulumi.Config("groundwork").get_bool("dbMultiAz")

        class Db(pulumi.ComponentResource):
            def __init__(self) -> None:
                super().__init__("groundwork:test:Db", "db")
                aws.rds.Instance(
                    "db-postgres",
                    instance_class="db.m7g.large",
                    engine="postgres",
                    allocated_storage=100,
                    multi_az=multi_az,
                    opts=pulumi.ResourceOptions(parent=self),
                )
                self.register_outputs({})

        Db()

    monkeypatch.setattr("stacks.program", program)
    runner = CliRunner()
    base = runner.invoke(app, ["plan", "staging", "--set", "dbMultiAz=false", "--json"])
    head = runner.invoke(app, ["plan", "staging", "--set", "dbMultiAz=true", "--json"])
    base_path = write(tmp_path, "base.json", json.loads(base.stdout))
    head_path = write(tmp_path, "head.json", json.loads(head.stdout))
    out = cost_diff(str(base_path), str(head_path)).stdout
    row = next(line for line in out.splitlines() if line.startswith("| db |"))
    # Instance and storage double; the backup line does not: just under +100 %.
    assert row.endswith("(+99.0%) |")


def test_bad_files_are_one_line_errors(tmp_path: Path) -> None:
    good = write(tmp_path, "good.json", plan_doc("staging", {"db": 1.0}))
    not_json = tmp_path / "bad.json"
    not_json.write_text("{oops")
    old = write(tmp_path, "old.json", plan_doc("staging", {"db": 1.0}, schema_version=0))
    other = write(tmp_path, "other.json", {"hello": "world"})
    cases = [
        (tmp_path / "missing.json", "missing.json: no such file"),
        (not_json, "bad.json:1: not JSON"),
        (old, "schema_version 0, this groundwork reads 1"),
        (other, "not a `groundwork plan --json` output"),
    ]
    for path, message in cases:
        result = cost_diff(str(good), str(path))
        assert result.exit_code == 2
        assert message in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
        assert "Traceback" not in result.output
