"""The pack as a whole: loading, config files, environments, the runner, and real stacks."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pulumi_aws as aws
import pytest
from pulumi_policy import ResourceValidationPolicy, StackValidationPolicy

from groundwork.mockrun import ProgramRun
from groundwork.policyrun import (
    format_verdicts,
    load_pack_config,
    mandatory_violations,
    run_policies,
)
from policies import aws_rules, gcp_rules
from policies.pack import POLICIES, RULES, config_path, pack_config, render_config
from policies.registry import Tier
from tests.policies.helpers import TAGS, NotApplicable, record, violations

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

ROOT = Path(__file__).resolve().parents[2]

# Types the stacks create that need no rule of their own, and why.
NO_RULE_NEEDED = {
    "pulumi:providers:aws": "provider configuration, not infrastructure",
    "pulumi:providers:gcp": "provider configuration, not infrastructure",
    "random:index/randomPassword:RandomPassword": "generates secrets; lives only in state",
    "gcp:kms/keyRing:KeyRing": "a name and a location; its keys carry the settings",
    "pulumi-python:dynamic:Resource": "the CMEK grants' propagation wait: a sleep in the "
    "program, no cloud resource",
    "gcp:projects/serviceIdentity:ServiceIdentity": "asks Google to create its own service "
    "agent; no settings to check",
    "random:index/randomId:RandomId": "random part of a resource name; lives only in state",
    "docker:index/image:Image": "build artifact; the registry it is pushed to is checked",
    "aws:appautoscaling/policy:Policy": "scaling arithmetic; no security or cost property",
    "aws:cloudwatch/dashboard:Dashboard": "read-only view of metrics",
    "aws:cloudwatch/logMetricFilter:LogMetricFilter": "derives a metric from a log group; "
    "holds no data and exposes nothing",
    "aws:ec2/routeTableAssociation:RouteTableAssociation": "pure association",
    "aws:ecs/clusterCapacityProviders:ClusterCapacityProviders": "Fargate/Spot weights",
    "aws:kms/alias:Alias": "a name for a key the key rules check",
    "aws:lambda/function:Function": "the key-rotation function only: no URL, no VPC by "
    "design; its role policy is an IAM resource; tests/aws/test_rotation.py pins the rest",
    "aws:lambda/permission:Permission": "lets Secrets Manager invoke the rotation function "
    "for one secret of this account (SourceArn + SourceAccount, tests/aws/test_rotation.py)",
    "aws:secretsmanager/secretRotation:SecretRotation": "a schedule; the interval is "
    "validated in stacks/config.py (secretRotationDays)",
    "aws:sqs/queuePolicy:QueuePolicy": "the queue's TLS-only deny statement; checked in the "
    "component's tests",
    "aws:sqs/redriveAllowPolicy:RedriveAllowPolicy": "which queue may dead-letter into the DLQ",
    "aws:rds/proxyDefaultTargetGroup:ProxyDefaultTargetGroup": "pool sizing for a checked proxy",
    "aws:rds/proxyTarget:ProxyTarget": "pure association",
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration": "expiry only",
    "aws:secretsmanager/secretVersion:SecretVersion": "secret value; not inspectable",
    "aws:wafv2/webAclAssociation:WebAclAssociation": "pure association",
    "gcp:compute/managedSslCertificate:ManagedSslCertificate": "Google-managed certificate",
    "gcp:compute/regionNetworkEndpointGroup:RegionNetworkEndpointGroup": "serverless NEG",
    "gcp:monitoring/dashboard:Dashboard": "read-only view of metrics",
    "gcp:monitoring/uptimeCheckConfig:UptimeCheckConfig": "synthetic probe of the public API",
    "gcp:secretmanager/secretVersion:SecretVersion": "secret value; not inspectable",
    "gcp:servicenetworking/connection:Connection": "private service access peering",
    "gcp:sql/database:Database": "logical database inside a checked instance",
    "gcp:sql/user:User": "password comes from random.RandomPassword",
}


# -- loading --------------------------------------------------------------------------


def test_importing_the_pack_builds_policies_without_starting_a_server(
    run_python: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    # PolicyPack() prints its gRPC port and blocks forever: a clean, prompt exit with only
    # our own output proves importing builds the list without constructing the pack.
    result = run_python("import policies.pack as p; print(len(p.POLICIES))", cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(len(RULES))]
    assert len(RULES) > 80


def test_main_builds_the_pack_in_its_own_environment(
    run_python: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    # Run __main__.py as the CLI does: cwd policies/, repository root NOT importable, and
    # only what policies/venv has (the CLI installs policies/requirements.txt there): the
    # shared Tier comes from the standard-library-only groundwork.tier. PolicyPack is
    # replaced so the server does not start.
    requirements = (ROOT / "policies" / "requirements.txt").read_text().split()
    assert {"pulumi>=3.200,<4", "pulumi-policy>=1.13,<2"} <= set(requirements)
    code = (
        "import sys, importlib.abc, runpy, pulumi_policy\n"
        f"sys.path[:] = [p for p in sys.path if p not in ('', {str(ROOT)!r})]\n"
        "ABSENT = {'pydantic', 'pulumi_aws', 'pulumi_gcp', 'pulumi_random', 'pulumi_docker',\n"
        "          'typer', 'rich', 'boto3', 'httpx', 'jwt', 'stacks', 'components',\n"
        "          'groundwork_app'}\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        cli = name.startswith('groundwork.') and name != 'groundwork.tier'\n"
        "        if name.split('.')[0] in ABSENT or cli:\n"
        "            raise ImportError(f'{name} is not in policies/venv')\n"
        "sys.meta_path.insert(0, Block())\n"
        "captured = {}\n"
        "pulumi_policy.PolicyPack = lambda **kw: captured.update(kw)\n"
        "runpy.run_path('__main__.py', run_name='__main__')\n"
        "from policies.registry import Tier\n"
        "print(captured['name'], len(captured['policies']), captured['enforcement_level'].value)\n"
        "print(Tier.__module__)\n"
    )
    result = run_python(code, cwd=ROOT / "policies")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["groundwork", str(len(RULES)), "mandatory", "groundwork.tier"]


def test_tier_is_defined_once() -> None:
    from groundwork.tier import Tier as Shared
    from stacks.config import Tier as StackTier

    assert Tier is Shared is StackTier


def test_every_policy_is_well_formed() -> None:
    assert len({p.name for p in POLICIES}) == len(POLICIES)
    for rule, policy in zip(RULES, POLICIES, strict=True):
        assert policy.name == rule.name
        assert f"severity: {rule.severity}" in policy.description
        assert policy.severity is not None and policy.severity.value == rule.severity.value
        assert rule.remediation and policy.remediation_steps == rule.remediation
        assert policy.config_schema is not None
        assert "environment" in policy.config_schema.properties
        expected = StackValidationPolicy if rule.is_stack_rule else ResourceValidationPolicy
        assert isinstance(policy, expected)


def test_taggable_and_labelable_type_lists_match_the_sdks() -> None:
    import inspect

    import pulumi_gcp

    def arg_names(token: str, package: object) -> set[str]:
        module, name = token.split(":")[1].split("/")[0], token.rsplit(":", 1)[-1]
        args_class = getattr(getattr(package, module), f"{name}Args")
        return set(inspect.signature(args_class.__init__).parameters)

    for token in aws_rules.TAGGABLE_TYPES:
        assert "tags" in arg_names(token, aws), token
    snake = {"labels": "labels", "userLabels": "user_labels", "settings": "settings"}
    for token, path in gcp_rules.LABEL_PATHS.items():
        assert snake[path.split(".")[0]] in arg_names(token, pulumi_gcp), token


# -- per-environment configuration ----------------------------------------------------


@pytest.mark.parametrize("tier", list(Tier))
def test_config_files_are_generated_from_the_rules(tier: Tier) -> None:
    assert config_path(tier).read_text() == render_config(tier), (
        "policies/config is stale: run `uv run python -m policies.pack`"
    )
    assert set(json.loads(config_path(tier).read_text())) == {r.name for r in RULES}


def test_staging_relaxes_only_the_ha_rules_to_advisory() -> None:
    staging, production = pack_config(Tier.STAGING), pack_config(Tier.PRODUCTION)
    relaxed = {
        n for n, c in staging.items() if c["enforcementLevel"] != production[n]["enforcementLevel"]
    }
    assert relaxed == {r.name for r in RULES if r.relax_in_staging}
    assert {
        "aws-rds-instance-multi-az",
        "aws-rds-instance-deletion-protection",
        "gcp-sql-instance-regional",
        "gcp-redis-instance-standard-ha",
    } <= relaxed
    assert all(staging[n]["enforcementLevel"] == "advisory" for n in relaxed)
    assert all(production[n]["enforcementLevel"] == "mandatory" for n in relaxed)
    # Security rules never relax.
    assert staging["aws-rds-instance-encrypted"]["enforcementLevel"] == "mandatory"


@pytest.fixture(scope="module")
def single_az_db() -> ProgramRun:
    def program() -> None:
        for env in ("staging", "production"):
            aws.rds.Instance(
                f"{env}-db",
                engine="postgres",
                instance_class="db.t4g.micro",
                allocated_storage=20,
                storage_encrypted=True,
                multi_az=False,
                backup_retention_period=7,
                username="app",
                manage_master_user_password=True,
                tags={**TAGS, "environment": env},
            )

    return record(program, stack="dev")


def test_environment_comes_from_config_then_tag(single_az_db: ProgramRun) -> None:
    staging_db = single_az_db.named("staging-db")
    production_db = single_az_db.named("production-db")
    rule = "aws-rds-instance-multi-az"
    # No config: the tag decides. Production is enforced; staging cannot be downgraded
    # by the engine, so the rule steps aside instead of blocking.
    assert violations(rule, production_db, config=None)
    with pytest.raises(NotApplicable, match="advisory in staging"):
        violations(rule, staging_db, config=None)
    # Config wins over the tag.
    assert violations(rule, staging_db, config={"environment": "production"})
    assert violations(rule, staging_db, config={"environment": "staging"})
    # Environment-dependent thresholds follow the same resolution.
    retention = "aws-rds-instance-backup-retention"
    assert violations(retention, staging_db, config=None) == []
    assert violations(retention, production_db, config=None)


def test_runner_applies_the_environment_config(single_az_db: ProgramRun) -> None:
    def levels(environment: str) -> dict[str, str]:
        return {
            v.resource_name: v.enforcement
            for v in run_policies(single_az_db, environment=environment)
            if v.rule == "aws-rds-instance-multi-az"
        }

    assert levels("staging") == {"staging-db": "advisory", "production-db": "advisory"}
    assert levels("production") == {"staging-db": "mandatory", "production-db": "mandatory"}


def test_runner_honours_disabled_and_rejects_unknown_policies(single_az_db: ProgramRun) -> None:
    config = load_pack_config("production")
    config["aws-rds-instance-multi-az"] = "disabled"
    verdicts = run_policies(single_az_db, config=config)
    assert not [v for v in verdicts if v.rule == "aws-rds-instance-multi-az"]
    assert [v for v in verdicts if v.rule == "aws-rds-instance-backup-retention"]
    with pytest.raises(ValueError, match="unknown policies: no-such-rule"):
        run_policies(single_az_db, config={"no-such-rule": "mandatory"})
    with pytest.raises(ValueError, match="expected staging or production"):
        run_policies(single_az_db, environment="qa")


def test_verdicts_carry_rule_level_severity_resource_and_remediation(
    single_az_db: ProgramRun,
) -> None:
    verdict = next(
        v
        for v in run_policies(single_az_db, environment="production")
        if v.rule == "aws-rds-instance-multi-az" and v.resource_name == "production-db"
    )
    assert verdict.mandatory and verdict.severity == "high"
    assert verdict.resource_type == "aws:rds/instance:Instance"
    assert verdict.urn.endswith("::production-db")
    assert "Remediation: Set multi_az=True" in verdict.message
    # The message already says how to fix it; the separate field would only repeat it.
    assert verdict.remediation == ""
    assert "aws-rds-instance-multi-az" in format_verdicts([verdict])


def test_values_unknown_at_preview_become_advisory_like_the_engine() -> None:
    import pulumi_random as random

    from groundwork.mockrun import RecordedResource

    def program() -> None:
        token = random.RandomPassword("token", length=32, special=False)
        aws.elasticache.ReplicationGroup(
            "cache",
            description="c",
            node_type="cache.t4g.micro",
            auth_token=token.result,
            at_rest_encryption_enabled=True,
            transit_encryption_enabled=True,
            tags=TAGS,
        )

    # A token that only `pulumi up` will know is still a token.
    verdicts = run_policies(record(program), environment="production")
    assert not [v for v in verdicts if v.rule == "aws-elasticache-replicationgroup-auth"]

    # A rule that must read an unknown value cannot decide during preview: the engine
    # reports that as advisory, and so does the runner.
    repo = RecordedResource(
        urn="urn:pulumi:production::groundwork::aws:ecr/repository:Repository::repo",
        type="aws:ecr/repository:Repository",
        name="repo",
        custom=True,
        parent="",
        state={},
        inputs={
            "imageTagMutability": None,
            "tags": TAGS,
            "imageScanningConfiguration": {"scanOnPush": True},
        },
    )
    run = ProgramRun(project="groundwork", stack="production", resources=[repo], outputs={})
    verdicts = run_policies(run, environment="production")
    immutable = [v for v in verdicts if v.rule == "aws-ecr-repository-immutable-tags"]
    assert len(immutable) == 1 and immutable[0].enforcement == "advisory"
    assert "can't be known during preview" in immutable[0].message
    # The engine's note does not say how to fix the rule: the fix comes from the Rule.
    rule = next(r for r in RULES if r.name == "aws-ecr-repository-immutable-tags")
    assert immutable[0].remediation == rule.remediation != ""
    assert not [v for v in verdicts if v.rule == "aws-ecr-repository-scan-on-push"]


# -- the real stacks ------------------------------------------------------------------


def _stack_config(cloud: str, environment: str, **extra: str) -> dict[str, str]:
    config = {
        "groundwork:cloud": cloud,
        "groundwork:environment": environment,
        # CI deploys a unique tag and, for a real API, a domain with a certificate.
        "groundwork:imageTag": "3f2c1ab",
        "groundwork:domain": "api.example.com",
    }
    if cloud == "aws":
        config |= {
            "aws:region": "us-east-1",
            "groundwork:certificateArn": "arn:aws:acm:us-east-1:123456789012:certificate/0a1b2c3d",
        }
    else:
        config |= {"gcp:project": "groundwork-test", "gcp:region": "europe-west1"}
    return config | extra


_STACKS: dict[tuple[str, str], ProgramRun] = {}


def _stack(cloud: str, environment: str) -> ProgramRun:
    from groundwork.mockrun import run_program
    from stacks import program

    key = (cloud, environment)
    if key not in _STACKS:
        _STACKS[key] = run_program(
            program, stack=environment, config=_stack_config(cloud, environment)
        )
    return _STACKS[key]


STACKS = [("aws", "staging"), ("aws", "production"), ("gcp", "staging"), ("gcp", "production")]


@pytest.mark.parametrize(("cloud", "environment"), STACKS)
def test_stack_passes_every_mandatory_rule(cloud: str, environment: str) -> None:
    run = _stack(cloud, environment)
    verdicts = run_policies(run, environment=environment)
    assert mandatory_violations(verdicts) == [], format_verdicts(mandatory_violations(verdicts))


@pytest.mark.parametrize(("cloud", "environment"), STACKS)
def test_every_resource_type_in_the_stack_is_covered(cloud: str, environment: str) -> None:
    covered = {t for rule in RULES for t in rule.resource_types}
    types = {r.type for r in _stack(cloud, environment).resources if r.custom}
    uncovered = sorted(types - covered - set(NO_RULE_NEEDED))
    assert uncovered == [], f"add a rule (or a NO_RULE_NEEDED reason) for: {uncovered}"


def test_staging_stack_reports_its_relaxed_ha_gaps_as_advisory() -> None:
    verdicts = run_policies(_stack("aws", "staging"), environment="staging")
    advisory = {v.rule for v in verdicts if not v.mandatory}
    assert "aws-rds-instance-multi-az" in advisory
    # The same graph judged as production is blocked on HA.
    strict = mandatory_violations(run_policies(_stack("aws", "staging"), environment="production"))
    assert "aws-rds-instance-multi-az" in {v.rule for v in strict}


def test_aws_stack_with_explicit_insecure_http_is_still_blocked() -> None:
    from groundwork.mockrun import run_program
    from stacks import program

    config = _stack_config("aws", "production")
    del config["groundwork:domain"], config["groundwork:certificateArn"]
    config["groundwork:insecureHttp"] = "true"
    run = run_program(program, stack="production", config=config)
    blocked = mandatory_violations(run_policies(run, environment="production"))
    assert "aws-lb-listener-http-redirect" in {v.rule for v in blocked}


def test_docs_table_lists_every_rule_as_built() -> None:
    docs = (ROOT / "docs" / "policies.md").read_text()
    for rule in RULES:
        row = next(
            (line for line in docs.splitlines() if line.startswith(f"| `{rule.name}` |")), None
        )
        assert row is not None, f"docs/policies.md has no row for {rule.name}"
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert cells[3:7] == [
            rule.severity.value,
            rule.enforcement_for(Tier.STAGING).value,
            rule.enforcement_for(Tier.PRODUCTION).value,
            rule.control,
        ], rule.name
