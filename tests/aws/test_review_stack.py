"""Review stacks (review.yml): `review-pr-<n>` with staging's config copied in must not
take any physical name or hostname staging holds, and runs at the smallest sizes."""

from __future__ import annotations

from typing import Any

from groundwork.mockrun import ProgramRun, run_program
from stacks import program

from .conftest import PasswordMocks

# What `pulumi stack init review-pr-7 --copy-config-from staging` gives the review stack.
STAGING_CONFIG = {
    "aws:region": "us-east-1",
    "groundwork:environment": "staging",
    "groundwork:domain": "api.staging.example.com",
    "groundwork:hostedZoneId": "Z0123456789EXAMPLE",
}
# Inputs AWS treats as unique names within an account/region (a second create with the
# same value fails with AlreadyExists, or for DNS overwrites the record staging serves).
NAME_KEYS = {
    "name",
    "identifier",
    "brokerName",
    "replicationGroupId",
    "clusterName",
    "family",
    "roleName",
    "domainName",
    "namePrefix",
    "logGroupName",
    "alarmName",
}


def run(stack: str) -> ProgramRun:
    return run_program(program, stack=stack, config=STAGING_CONFIG, mocks=PasswordMocks())


def physical_names(run: ProgramRun) -> set[tuple[str, str]]:
    names: set[tuple[str, str]] = set()
    for resource in run.resources:
        for key, value in resource.inputs.items():
            if key == "family" and resource.type != "aws:ecs/taskDefinition:TaskDefinition":
                continue  # a parameter group's family is the engine (postgres17)
            if key in NAME_KEYS and isinstance(value, str):
                names.add((resource.type, value))
    return names


def test_a_review_stack_shares_no_name_or_hostname_with_staging() -> None:
    staging, review = run("staging"), run("review-pr-7")
    assert all(not r.name.startswith("groundwork-staging") for r in review.resources)
    assert any(r.name.startswith("groundwork-pr7-") for r in review.resources)
    shared = physical_names(staging) & physical_names(review)
    assert not shared, sorted(shared)[:10]
    records = [r.inputs.get("name") for r in review.of_type("aws:route53/record:Record")]
    assert "pr7.api.staging.example.com" in records
    assert "api.staging.example.com" not in records
    certificate: Any = review.one("aws:acm/certificate:Certificate")
    assert certificate.inputs["domainName"] == "pr7.api.staging.example.com"


def test_a_review_stack_is_staging_at_its_smallest_and_destroyable() -> None:
    review = run("review-pr-7")
    targets = review.of_type("aws:appautoscaling/target:Target")
    assert targets and all(t.inputs["maxCapacity"] == 1 for t in targets)
    db = review.one("aws:rds/instance:Instance")
    assert db.inputs["deletionProtection"] is False
    assert db.inputs["backupRetentionPeriod"] == 1
    assert db.inputs["instanceClass"] == "db.t4g.micro"
    # `pulumi destroy` of a review stack refuses on any protected resource and leaves
    # retained ones behind (they would collide with the next review-pr-7).
    kept = [r.name for r in review.resources if r.protect or r.retain_on_delete]
    assert kept == []
