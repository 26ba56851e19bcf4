"""The small components Edge and ContainerService compose (issue 19, item 3):
each owns its children, and each child aliases its old place under the composer."""

from __future__ import annotations

import pytest

from components.aws.access_logs import AccessLogBucketArgs
from components.aws.certificate import DnsCertificateArgs
from groundwork.mockrun import ProgramRun
from groundwork.plan.program import load_stack_config, plan_program
from tests.aws.conftest import run_stack
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
    "groundwork:aws:ImageRepository": (
        "groundwork:aws:ContainerService",
        {
            # A component: its key and alias follow it through the engine's inherited
            # aliases (tests/test_urn_aliases.py).
            "groundwork:aws:EncryptionKey",
            "aws:ecr/repository:Repository",
            "aws:ecr/lifecyclePolicy:LifecyclePolicy",
            "docker:index/image:Image",
        },
    ),
    "groundwork:aws:EcsCluster": (
        "groundwork:aws:ContainerService",
        {"aws:ecs/cluster:Cluster", "aws:ecs/clusterCapacityProviders:ClusterCapacityProviders"},
    ),
    "groundwork:aws:TaskLogs": (
        "groundwork:aws:ContainerService",
        {"aws:cloudwatch/logGroup:LogGroup"},
    ),
    "groundwork:aws:TaskRoles": (
        "groundwork:aws:ContainerService",
        {"aws:iam/role:Role", "aws:iam/rolePolicy:RolePolicy"},
    ),
    "groundwork:aws:FargateTaskDefinition": (
        "groundwork:aws:ContainerService",
        {"aws:ecs/taskDefinition:TaskDefinition"},
    ),
    "groundwork:aws:FargateService": (
        "groundwork:aws:ContainerService",
        {"aws:ecs/service:Service"},
    ),
    "groundwork:aws:EcsInfrastructureRole": (
        "groundwork:aws:ContainerService",
        {"aws:iam/role:Role", "aws:iam/rolePolicyAttachment:RolePolicyAttachment"},
    ),
}
# Only a blue/green API has the infrastructure role; the committed stacks roll.
BLUE_GREEN_ONLY = {"groundwork:aws:EcsInfrastructureRole"}


@pytest.fixture(scope="module")
def production() -> ProgramRun:
    # The committed production config: a domain with a hosted zone, so the certificate
    # is validated by the stack (DnsCertificate) rather than passed in.
    return plan_program(load_stack_config("production", root=ROOT, cloud="aws")).run


@pytest.fixture(scope="module")
def blue_green() -> ProgramRun:
    return run_stack("production", apiDeploymentStrategy="blue-green")


@pytest.mark.parametrize("component_type", sorted(CHILDREN))
def test_each_small_component_owns_its_children_and_aliases_the_old_parent(
    production: ProgramRun, blue_green: ProgramRun, component_type: str
) -> None:
    run = blue_green if component_type in BLUE_GREEN_ONLY else production
    composer_type, child_types = CHILDREN[component_type]
    components = run.of_type(component_type)
    assert components
    for component in components:
        composer = run.by_urn()[component.parent]
        assert composer.type == composer_type
        children = run.children(component.urn)
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
