"""Network: custom-mode VPC, one regional subnet, Private Service Access, strict firewall.

Cloud Run reaches the VPC through **Direct VPC egress** (a network interface in this
subnet) rather than a Serverless VPC Access connector: no connector VMs to pay for
around the clock (a connector is at least two e2-micro instances that also cap
throughput), lower latency, and the instances carry network tags, so the firewall
below can name them. Only private (RFC 1918) destinations are routed through the VPC
(``PRIVATE_RANGES_ONLY``); Google APIs and the LLM provider keep Cloud Run's own
egress path, so no Cloud NAT is needed either.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

import pulumi
import pulumi_gcp as gcp

from components.args import vpc_block

RUN_NETWORK_TAG = "groundwork-run"
"""Network tag carried by every Cloud Run instance's Direct VPC egress interface."""

POSTGRES_PORT = "5432"
REDIS_PORTS = ("6378", "6379")
"""Memorystore listens on 6378 with in-transit encryption, 6379 without."""


@dataclass
class NetworkArgs:
    """Shape of the VPC. Defaults suit staging; production raises the flow-log sampling."""

    region: str
    subnet_cidr: str = "10.40.0.0/20"
    """Cloud Run's Direct VPC egress takes IPs from here (about 2 per instance at peak);
    a /20 leaves room for hundreds of instances across revisions."""
    service_access_cidr: str = "10.40.64.0/18"
    """Private Service Access range peered to Google's producer network (Cloud SQL,
    Memorystore). Google recommends at least a /20 so later services fit."""
    flow_log_sampling: float = 0.5
    """Fraction of flows logged (Cloud Logging ingestion is the cost driver)."""
    flow_log_interval: str = "INTERVAL_5_SEC"
    run_network_tags: list[str] = field(default_factory=lambda: [RUN_NETWORK_TAG])
    labels: dict[str, str] = field(default_factory=dict)
    """Applied to every labelable child (the Private Service Access range)."""
    restrict_egress: bool = True
    """Deny VPC egress from the Cloud Run instances except to Cloud SQL and Memorystore.
    Disable only if the services must reach other private ranges (VPN, peered VPCs)."""

    def __post_init__(self) -> None:
        subnet = _private_block("subnet_cidr", self.subnet_cidr, (16, 24))
        psa = _private_block("service_access_cidr", self.service_access_cidr, (16, 24))
        if subnet.overlaps(psa):
            raise ValueError(
                f"subnet_cidr {subnet} overlaps service_access_cidr {psa}; pick disjoint ranges"
            )
        if not 0.0 < self.flow_log_sampling <= 1.0:
            raise ValueError(f"flow_log_sampling={self.flow_log_sampling}: use (0, 1]")
        if not self.run_network_tags:
            raise ValueError("run_network_tags must name at least one tag for the firewall")


def _private_block(name: str, cidr: str, prefix_bounds: tuple[int, int]) -> ipaddress.IPv4Network:
    try:
        block = ipaddress.ip_network(cidr)
    except ValueError as exc:
        raise ValueError(f"{name}={cidr!r} is not a CIDR block: {exc}") from None
    low, high = prefix_bounds
    if not isinstance(block, ipaddress.IPv4Network) or not block.is_private:
        raise ValueError(f"{name}={cidr!r}: use a private (RFC 1918) IPv4 block")
    if not low <= block.prefixlen <= high:
        raise ValueError(f"{name}={cidr!r}: use a block from /{low} to /{high}")
    return block


def carve(vpc_cidr: str) -> tuple[str, str]:
    """Split one /16-/20 block into the subnet (first 1/16) and the PSA range (last 1/4)."""
    try:
        # The range rule both clouds share has one owner (the settings model uses it too).
        vpc = vpc_block(vpc_cidr)
    except ValueError as exc:
        raise ValueError(f"vpc_cidr={vpc_cidr!r}: {exc}") from None
    subnet = next(vpc.subnets(prefixlen_diff=4))
    psa = list(vpc.subnets(prefixlen_diff=2))[-1]
    return str(subnet), str(psa)


class Network(pulumi.ComponentResource):
    """Custom-mode VPC + subnet (flow logs, Private Google Access), PSA peering, firewall."""

    network_id: pulumi.Output[str]
    network_name: pulumi.Output[str]
    subnet_id: pulumi.Output[str]
    subnet_name: pulumi.Output[str]
    service_access_range_name: pulumi.Output[str]
    service_networking_connection: gcp.servicenetworking.Connection
    run_network_tags: list[str]

    def __init__(
        self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("groundwork:gcp:Network", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        network = gcp.compute.Network(
            f"{name}-vpc",
            description=f"{name}: custom-mode VPC for Cloud Run egress, Cloud SQL and Memorystore",
            # Auto mode would create a subnet in every region with overlapping, unmanaged ranges.
            auto_create_subnetworks=False,
            routing_mode="REGIONAL",
            opts=child,
        )
        subnet = gcp.compute.Subnetwork(
            f"{name}-subnet",
            description="Cloud Run Direct VPC egress interfaces",
            network=network.id,
            region=args.region,
            ip_cidr_range=args.subnet_cidr,
            # Google APIs stay reachable without external IPs.
            private_ip_google_access=True,
            log_config=gcp.compute.SubnetworkLogConfigArgs(
                aggregation_interval=args.flow_log_interval,
                flow_sampling=args.flow_log_sampling,
                metadata="INCLUDE_ALL_METADATA",
            ),
            opts=child,
        )
        psa_block = ipaddress.ip_network(args.service_access_cidr)
        psa_range = gcp.compute.GlobalAddress(
            f"{name}-psa-range",
            description="Private Service Access range for Cloud SQL and Memorystore",
            purpose="VPC_PEERING",
            address_type="INTERNAL",
            address=str(psa_block.network_address),
            prefix_length=psa_block.prefixlen,
            network=network.id,
            labels=args.labels,
            opts=child,
        )
        connection = gcp.servicenetworking.Connection(
            f"{name}-psa",
            network=network.id,
            service="servicenetworking.googleapis.com",
            reserved_peering_ranges=[psa_range.name],
            # Deleting the peering fails while Cloud SQL/Memorystore producer resources are
            # still being torn down (they linger for days); abandoning it lets `destroy`
            # finish and the peering goes away with the VPC.
            deletion_policy="ABANDON",
            opts=child,
        )

        # GCP's implied rules already deny ingress; this explicit, low-priority rule makes
        # the intent visible, survives an accidental "allow all" at a lower priority and
        # is what policy scanners look for. Nothing in this VPC accepts connections: the
        # serverless NEG of the load balancer does not health-check, so no Google
        # health-check ranges are opened either.
        gcp.compute.Firewall(
            f"{name}-deny-all-ingress",
            description="Default deny: nothing in this VPC accepts inbound connections",
            network=network.id,
            direction="INGRESS",
            priority=65534,
            source_ranges=["0.0.0.0/0"],
            denies=[gcp.compute.FirewallDenyArgs(protocol="all")],
            opts=child,
        )
        if args.restrict_egress:
            gcp.compute.Firewall(
                f"{name}-allow-run-to-data",
                description="Cloud Run instances to Cloud SQL (5432) and Memorystore (6378/6379)",
                network=network.id,
                direction="EGRESS",
                priority=1000,
                target_tags=args.run_network_tags,
                destination_ranges=[args.service_access_cidr],
                allows=[
                    gcp.compute.FirewallAllowArgs(
                        protocol="tcp", ports=[POSTGRES_PORT, *REDIS_PORTS]
                    )
                ],
                opts=child,
            )
            gcp.compute.Firewall(
                f"{name}-deny-run-egress",
                description="Cloud Run instances may reach nothing else through the VPC",
                network=network.id,
                direction="EGRESS",
                priority=65534,
                target_tags=args.run_network_tags,
                destination_ranges=["0.0.0.0/0"],
                denies=[gcp.compute.FirewallDenyArgs(protocol="all")],
                log_config=gcp.compute.FirewallLogConfigArgs(metadata="INCLUDE_ALL_METADATA"),
                opts=child,
            )

        self.network_id = network.id
        self.network_name = network.name
        self.subnet_id = subnet.id
        self.subnet_name = subnet.name
        self.service_access_range_name = psa_range.name
        self.service_networking_connection = connection
        self.run_network_tags = list(args.run_network_tags)
        self.register_outputs(
            {
                "network_id": self.network_id,
                "subnet_id": self.subnet_id,
                "service_access_range_name": self.service_access_range_name,
            }
        )
