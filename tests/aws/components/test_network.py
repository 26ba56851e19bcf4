"""Network (components/aws/network.py): NAT strategies, subnets, secure defaults."""

from __future__ import annotations

from typing import Any

import pytest

from components.aws import NatStrategy, Network, NetworkArgs
from components.aws.network import plan_subnets


@pytest.mark.parametrize(
    ("nat", "zones", "gateways"),
    [
        (NatStrategy.NONE, 2, 0),
        (NatStrategy.SINGLE, 3, 1),
        (NatStrategy.ONE_PER_AZ, 3, 3),
    ],
)
def test_nat_strategies(nat: NatStrategy, zones: int, gateways: int, helpers: Any) -> None:
    run = helpers.run_component(
        lambda: Network(
            "n",
            NetworkArgs(
                availability_zones=zones, nat=nat, interface_endpoints=nat is NatStrategy.NONE
            ),
        )
    )
    assert len(run.of_type("aws:ec2/natGateway:NatGateway")) == gateways
    assert len(run.of_type("aws:ec2/eip:Eip")) == gateways
    assert len(run.of_type("aws:ec2/subnet:Subnet")) == 3 * zones
    nat_ids = {r.state["id"] for r in run.of_type("aws:ec2/natGateway:NatGateway")}
    private = [r for r in run.of_type("aws:ec2/routeTable:RouteTable") if "-private-rt-" in r.name]
    used = [route.get("natGatewayId") for r in private for route in r.inputs.get("routes", [])]
    assert set(used) == nat_ids if gateways else used == []
    isolated = run.named("n-isolated-rt").inputs
    assert not isolated.get("routes")


def test_network_secure_defaults(helpers: Any) -> None:
    run = helpers.run_component(lambda: Network("n", NetworkArgs(interface_endpoints=True)))
    default_sg = run.one("aws:ec2/defaultSecurityGroup:DefaultSecurityGroup").inputs
    assert default_sg["ingress"] == [] and default_sg["egress"] == []
    assert not any(s.inputs["mapPublicIpOnLaunch"] for s in run.of_type("aws:ec2/subnet:Subnet"))
    flow = run.one("aws:ec2/flowLog:FlowLog").inputs
    assert flow["trafficType"] == "ALL" and flow["logDestinationType"] == "cloud-watch-logs"
    assert run.one("aws:cloudwatch/logGroup:LogGroup").inputs["retentionInDays"] == 30
    endpoints = {
        r.inputs["serviceName"]: r.inputs["vpcEndpointType"]
        for r in run.of_type("aws:ec2/vpcEndpoint:VpcEndpoint")
    }
    assert endpoints == {
        "com.amazonaws.us-east-1.s3": "Gateway",
        **{
            f"com.amazonaws.us-east-1.{s}": "Interface"
            for s in ("ecr.api", "ecr.dkr", "secretsmanager", "logs")
        },
    }


def test_subnet_plan_does_not_overlap() -> None:
    import ipaddress

    plan = plan_subnets("10.40.0.0/16", 3)
    nets = [ipaddress.ip_network(c) for c in plan.public + plan.private + plan.isolated]
    assert len(nets) == 9
    assert not any(a.overlaps(b) for i, a in enumerate(nets) for b in nets[i + 1 :])
    assert all(n.prefixlen == 20 for n in map(ipaddress.ip_network, plan.private))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cidr_block": "10.0.0.0/24"}, "/16 to /20"),
        ({"cidr_block": "nope"}, "not a CIDR block"),
        ({"availability_zones": 4}, "use 2 or 3"),
        ({"nat": "double"}, "not a valid NatStrategy"),
    ],
)
def test_network_rejects_bad_args(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        NetworkArgs(**kwargs)
