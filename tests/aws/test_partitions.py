"""ARNs the stack writes itself name the region's partition, not a literal ``arn:aws``.

GovCloud and China regions live in their own partitions (``arn:aws-us-gov:``,
``arn:aws-cn:``; AWS General Reference, "Amazon Resource Names"): an alarm action or a
certificate ARN spelt ``arn:aws:`` there is refused by the API or never matches.
"""

from __future__ import annotations

import pytest

from components.aws.nat_instance import NatInstance, NatInstanceArgs
from groundwork.mockrun import GroundworkMocks, run_program
from stacks.config import ConfigError

from .conftest import AWS_CONFIG, run_stack


@pytest.mark.parametrize(
    ("region", "partition"),
    [("us-east-1", "aws"), ("us-gov-west-1", "aws-us-gov"), ("cn-north-1", "aws-cn")],
)
def test_nat_instance_recovery_actions_name_the_regions_partition(
    region: str, partition: str
) -> None:
    def program() -> None:
        NatInstance(
            "nat",
            NatInstanceArgs(vpc_id="vpc-1", vpc_cidr="10.0.0.0/16", public_subnet_id="subnet-1"),
        )

    graph = run_program(
        program,
        stack="test",
        config={**AWS_CONFIG, "aws:region": region},
        mocks=GroundworkMocks(region=region),
    )
    actions = sorted(
        action
        for alarm in graph.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
        for action in alarm.inputs["alarmActions"]
    )
    # EC2's documented alarm actions: arn:<partition>:automate:<region>:ec2:recover|reboot.
    assert actions == [
        f"arn:{partition}:automate:{region}:ec2:reboot",
        f"arn:{partition}:automate:{region}:ec2:recover",
    ]


def test_a_govcloud_certificate_arn_is_accepted_and_a_non_acm_arn_refused() -> None:
    gov = "arn:aws-us-gov:acm:us-gov-west-1:123456789012:certificate/abc"
    graph = run_stack(
        "staging", queue="sqs", domain="api.example.com", certificateArn=gov, insecureHttp="false"
    )
    listeners = graph.of_type("aws:lb/listener:Listener")
    assert any(listener.inputs.get("certificateArn") == gov for listener in listeners)
    with pytest.raises(ConfigError, match="certificateArn"):
        run_stack(
            "staging",
            queue="sqs",
            domain="api.example.com",
            certificateArn="arn:aws-us-gov:iam::123456789012:server-certificate/x",
            insecureHttp="false",
        )
