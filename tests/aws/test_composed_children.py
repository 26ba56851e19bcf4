"""The small components Edge and ContainerService compose (issue 19, item 3):
each owns its children, and each child aliases its old place under the composer."""

from __future__ import annotations

import pytest

from components.aws.access_logs import AccessLogBucketArgs
from components.aws.certificate import DnsCertificateArgs
from groundwork.mockrun import ProgramRun
from groundwork.plan.program import load_stack_config, plan_program
from tests.test_urn_aliases import ROOT

CHILDREN = {
    "groundwork:aws:AccessLogBucket": (
        "groundwork:aws:Edge",
        {
            "aws:s3/bucket:Bucket",
            "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
            "aws:s3/bucketOwnershipControls:BucketOwnershipControls",
            "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
            "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
            "aws:s3/bucketPolicy:BucketPolicy",
        },
    ),
    "groundwork:aws:DnsCertificate": (
        "groundwork:aws:Edge",
        {
            "aws:acm/certificate:Certificate",
            "aws:route53/record:Record",
            "aws:acm/certificateValidation:CertificateValidation",
        },
    ),
    "groundwork:aws:ServiceAutoscaling": (
        "groundwork:aws:ContainerService",
        {"aws:appautoscaling/target:Target", "aws:appautoscaling/policy:Policy"},
    ),
}


@pytest.fixture(scope="module")
def production() -> ProgramRun:
    # The committed production config: a domain with a hosted zone, so the certificate
    # is validated by the stack (DnsCertificate) rather than passed in.
    return plan_program(load_stack_config("production", root=ROOT, cloud="aws")).run


@pytest.mark.parametrize("component_type", sorted(CHILDREN))
def test_each_small_component_owns_its_children_and_aliases_the_old_parent(
    production: ProgramRun, component_type: str
) -> None:
    composer_type, child_types = CHILDREN[component_type]
    (component,) = production.of_type(component_type)
    composer = production.by_urn()[component.parent]
    assert composer.type == composer_type
    children = production.children(component.urn)
    assert {c.type for c in children} == child_types
    for child in children:
        # Alias(parent=<composer>): the URN the child had before the split. (pulumi_aws
        # adds its own type aliases, e.g. Bucket <- BucketV2, without a parent.)
        moved = [s["parentUrn"] for s in child.alias_specs if s["parentUrn"]]
        assert moved == [composer.urn], child.name
        assert child.name.startswith(composer.name), child.name


def test_small_component_args_refuse_what_cannot_work() -> None:
    with pytest.raises(ValueError, match="retention_days"):
        AccessLogBucketArgs(retention_days=0)
    with pytest.raises(ValueError, match="hosted_zone_id"):
        DnsCertificateArgs(domain="api.example.com", hosted_zone_id="")
