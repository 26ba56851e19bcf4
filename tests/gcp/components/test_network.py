"""Network component: custom VPC, private subnet, PSA peering, default-deny firewall."""

from __future__ import annotations

import pytest

from components.gcp.network import Network, NetworkArgs, carve
from groundwork.mockrun import ProgramRun
from tests.gcp.helpers import REGION, by_name, run


def _network(**kwargs: object) -> ProgramRun:
    return run(lambda: Network("net", NetworkArgs(region=REGION, **kwargs)))  # type: ignore[arg-type]


def test_vpc_is_custom_mode_with_private_subnet_and_flow_logs() -> None:
    graph = _network()
    vpc = graph.one("gcp:compute/network:Network")
    assert vpc.inputs["autoCreateSubnetworks"] is False
    subnet = graph.one("gcp:compute/subnetwork:Subnetwork")
    assert subnet.inputs["privateIpGoogleAccess"] is True
    assert subnet.inputs["region"] == REGION
    assert subnet.inputs["logConfig"]["flowSampling"] == 0.5
    assert subnet.inputs["logConfig"]["metadata"] == "INCLUDE_ALL_METADATA"


def test_private_service_access_range_is_peered() -> None:
    graph = _network(service_access_cidr="10.50.0.0/20", subnet_cidr="10.40.0.0/20")
    address = graph.one("gcp:compute/globalAddress:GlobalAddress")
    assert address.inputs["purpose"] == "VPC_PEERING"
    assert address.inputs["addressType"] == "INTERNAL"
    assert (address.inputs["address"], address.inputs["prefixLength"]) == ("10.50.0.0", 20)
    connection = graph.one("gcp:servicenetworking/connection:Connection")
    assert connection.inputs["service"] == "servicenetworking.googleapis.com"
    assert connection.inputs["reservedPeeringRanges"] == [address.state["name"]]


def test_firewall_denies_all_ingress_and_limits_run_egress_to_data_stores() -> None:
    graph = _network()
    rules = by_name(graph, "gcp:compute/firewall:Firewall")
    for rule in rules.values():
        assert rule.inputs["description"], f"{rule.name} has no description"
        assert "allows" not in rule.inputs or rule.inputs["direction"] == "EGRESS"
    deny = rules["net-deny-all-ingress"].inputs
    assert deny["direction"] == "INGRESS"
    assert deny["priority"] == 65534
    assert deny["sourceRanges"] == ["0.0.0.0/0"]
    assert deny["denies"] == [{"protocol": "all"}]
    allow = rules["net-allow-run-to-data"].inputs
    assert allow["destinationRanges"] == [NetworkArgs(region=REGION).service_access_cidr]
    assert allow["allows"] == [{"protocol": "tcp", "ports": ["5432", "6378", "6379"]}]
    assert allow["targetTags"] == ["groundwork-run"]
    assert rules["net-deny-run-egress"].inputs["priority"] > allow["priority"]


def test_egress_restriction_can_be_turned_off() -> None:
    graph = _network(restrict_egress=False)
    assert list(by_name(graph, "gcp:compute/firewall:Firewall")) == ["net-deny-all-ingress"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"subnet_cidr": "10.40.0.0/20", "service_access_cidr": "10.40.0.0/18"}, "overlaps"),
        ({"subnet_cidr": "8.8.0.0/20"}, "private"),
        ({"subnet_cidr": "not-a-cidr"}, "not a CIDR"),
        ({"flow_log_sampling": 0.0}, "flow_log_sampling"),
    ],
)
def test_bad_arguments_are_rejected(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        NetworkArgs(region=REGION, **kwargs)  # type: ignore[arg-type]


def test_carve_splits_the_vpc_block_without_overlap() -> None:
    assert carve("10.40.0.0/16") == ("10.40.0.0/20", "10.40.192.0/18")
    with pytest.raises(ValueError, match="vpc_cidr"):
        carve("10.40.0.0/28")
