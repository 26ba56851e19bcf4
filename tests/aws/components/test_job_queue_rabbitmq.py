"""RabbitMqJobQueue (components/aws/job_queue_rabbitmq.py): deployment modes and conflicts."""

from __future__ import annotations

import json
from typing import Any

import pytest

from components.aws import DeploymentMode, RabbitMqJobQueue, RabbitMqJobQueueArgs
from tests.aws.components.common import data_store_args


def _broker(**kwargs: Any) -> RabbitMqJobQueueArgs:
    return data_store_args(
        RabbitMqJobQueueArgs,
        **{
            "broker_name": "b",
            "management_client_security_group_ids": {"migrate": "sg-migrate"},
            **kwargs,
        },
    )


@pytest.mark.parametrize(
    ("mode", "instance", "subnets"),
    [
        (DeploymentMode.SINGLE_INSTANCE, "mq.t3.micro", 1),
        (DeploymentMode.CLUSTER_MULTI_AZ, "mq.m5.large", 3),
    ],
)
def test_broker(mode: DeploymentMode, instance: str, subnets: int, helpers: Any) -> None:
    brokers: list[RabbitMqJobQueue] = []
    run = helpers.run_component(
        lambda: brokers.append(
            RabbitMqJobQueue("mq", _broker(deployment_mode=mode, instance_type=instance))
        )
    )
    broker = run.one("aws:mq/broker:Broker").inputs
    assert broker["engineType"] == "RabbitMQ" and broker["engineVersion"] == "3.13"
    assert broker["publiclyAccessible"] is False and broker["deploymentMode"] == mode.value
    assert len(broker["subnetIds"]) == subnets
    assert broker["logs"] == {"general": True} and broker["autoMinorVersionUpgrade"] is True
    assert broker["maintenanceWindowStartTime"]["timeZone"] == "UTC"
    passwords = {
        r.name: r.state["result"] for r in run.of_type("random:index/randomPassword:RandomPassword")
    }
    # Amazon MQ's API creates one user, the administrator; the application's user is
    # made by migrate through the management API (rabbitmq-basic-elements-user.html).
    assert broker["users"] == [{"username": "gwadmin", "password": passwords["mq-admin-password"]}]
    stored = {
        json.loads(v.inputs["secretString"])["username"]: json.loads(v.inputs["secretString"])
        for v in run.of_type("aws:secretsmanager/secretVersion:SecretVersion")
    }
    assert stored == {
        "gwadmin": {"username": "gwadmin", "password": passwords["mq-admin-password"]},
        "groundwork": {"username": "groundwork", "password": passwords["mq-password"]},
    }
    # A random suffix: create-before-delete never collides with the broker it replaces.
    suffix = run.one("random:index/randomId:RandomId").state["hex"]
    assert broker["brokerName"] == f"b-{suffix}"
    rules = run.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
    assert {(r.inputs["fromPort"], r.inputs["referencedSecurityGroupId"]) for r in rules} == {
        (5671, "sg-api"),
        (5671, "sg-worker"),
        (443, "sg-migrate"),
    }


def test_broker_name_suffix_changes_exactly_with_a_replacement(helpers: Any) -> None:
    """aws.mq.Broker replaces the broker when deployment mode, subnets or users change;
    the name suffix (RandomId keepers) must change with them, and only with them."""

    def name_of(**kwargs: Any) -> str:
        run = helpers.run_component(lambda: RabbitMqJobQueue("mq", _broker(**kwargs)))
        return str(run.one("aws:mq/broker:Broker").inputs["brokerName"])

    base = name_of()
    assert name_of(instance_type="mq.m5.large") == base  # an in-place update
    assert name_of(admin_username="ops") != base
    assert name_of(deployment_mode="CLUSTER_MULTI_AZ", instance_type="mq.m5.large") != base


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"deployment_mode": "CLUSTER_MULTI_AZ"}, "mq.m5"),
        ({"engine_version": "3.12"}, "quorum"),
        ({"admin_username": "groundwork"}, "differ"),
        ({"broker_name": "x" * 45}, "suffix"),
    ],
)
def test_broker_rejects(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _broker(**kwargs)
