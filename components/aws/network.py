"""Network: a VPC with public, private and isolated subnet tiers across 2 or 3 AZs."""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import pulumi
import pulumi_aws as aws

from components.args import ArgError, vpc_block
from components.aws.nat_instance import NatInstance, NatInstanceArgs


class NatStrategy(StrEnum):
    """How private subnets reach the internet (ECR, LLM provider, AWS APIs)."""

    NONE = "none"
    """No NAT: private subnets reach AWS only through VPC endpoints. Cheapest, no internet."""
    INSTANCE = "instance"
    """One small ARM EC2 instance doing NAT (components/aws/nat_instance.py): a fifth of
    a NAT gateway's price, one AZ, instance-sized bandwidth. Staging only."""
    SINGLE = "single"
    """One NAT gateway for every AZ: cheap, but an AZ outage cuts egress for all (staging)."""
    ONE_PER_AZ = "one-per-az"
    """One NAT gateway per AZ: egress survives an AZ outage (production)."""


DEFAULT_INTERFACE_ENDPOINTS = ("ecr.api", "ecr.dkr", "secretsmanager", "logs")


@dataclass
class NetworkArgs:
    """Shape of the VPC. Defaults are the cheap staging layout."""

    cidr_block: str = "10.40.0.0/16"
    """A private /16 to /19: private subnets get 1/16 of it each, public and isolated 1/256."""
    availability_zones: int = 2
    nat: NatStrategy = NatStrategy.SINGLE
    interface_endpoints: bool = False
    """ECR, Secrets Manager and Logs endpoints: keep that traffic off the NAT (and its
    per-GB charge) and working when NAT is ``none``; each costs ~$7/month per AZ."""
    endpoint_services: tuple[str, ...] = DEFAULT_INTERFACE_ENDPOINTS
    flow_log_retention_days: int = 30
    flow_log_kms_key_arn: pulumi.Input[str] | None = None
    flow_log_traffic: str = "ALL"
    protect: bool = False
    """Pulumi ``protect`` + ``retain_on_delete`` on the flow-log group (audit evidence)."""
    """``REJECT`` keeps only refused connections, for a fraction of the ingestion cost."""

    def __post_init__(self) -> None:
        self.nat = NatStrategy(self.nat)
        if not 2 <= self.availability_zones <= 3:
            raise ArgError("availability_zones", self.availability_zones, "use 2 or 3")
        try:
            network = vpc_block(self.cidr_block)
        except ValueError as exc:
            raise ArgError("cidr_block", self.cidr_block, str(exc)) from None
        if network.prefixlen > 19:
            # Public and isolated subnets are 1/256 of the VPC: a /20 gives /28s, and an
            # Application Load Balancer needs subnets of at least /27 with 8 free addresses
            # (https://docs.aws.amazon.com/elasticloadbalancing/latest/application/application-load-balancers.html#subnets-load-balancer).
            raise ArgError(
                "cidr_block",
                self.cidr_block,
                "/16 to /19 on AWS: the public subnets (1/256 of the VPC) must be at least /27 "
                "for the load balancer",
            )
        if self.flow_log_traffic not in ("ACCEPT", "REJECT", "ALL"):
            raise ValueError(f"flow_log_traffic={self.flow_log_traffic!r}: ACCEPT, REJECT or ALL")


@dataclass(frozen=True)
class SubnetPlan:
    public: list[str]
    private: list[str]
    isolated: list[str]


def plan_subnets(cidr_block: str, zones: int) -> SubnetPlan:
    """Carve the VPC: large private subnets (Fargate ENIs), small public and isolated ones."""
    vpc = ipaddress.IPv4Network(cidr_block)
    blocks = list(vpc.subnets(prefixlen_diff=4))
    private = [str(b) for b in blocks[:zones]]
    public = [str(b) for b in list(blocks[4].subnets(prefixlen_diff=4))[:zones]]
    isolated = [str(b) for b in list(blocks[5].subnets(prefixlen_diff=4))[:zones]]
    return SubnetPlan(public=public, private=private, isolated=isolated)


class Network(pulumi.ComponentResource):
    """VPC, three subnet tiers, NAT per strategy, flow logs, endpoints, locked default SG."""

    vpc_id: pulumi.Output[str]
    vpc_cidr: str
    public_subnet_ids: list[pulumi.Output[str]]
    private_subnet_ids: list[pulumi.Output[str]]
    isolated_subnet_ids: list[pulumi.Output[str]]
    nat_gateway_count: int
    flow_log_group_name: pulumi.Output[str]

    def __init__(
        self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("groundwork:aws:Network", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        invoke = pulumi.InvokeOutputOptions(parent=self)
        zones = aws.get_availability_zones_output(state="available", opts=invoke).names
        region = aws.get_region_output(opts=invoke).region
        plan = plan_subnets(args.cidr_block, args.availability_zones)

        vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=args.cidr_block,
            enable_dns_hostnames=True,
            enable_dns_support=True,
            tags={"Name": f"{name}-vpc"},
            opts=child,
        )
        # The default SG allows all traffic between its members; with no rules nothing
        # that lands in it by accident can talk to anything.
        aws.ec2.DefaultSecurityGroup(
            f"{name}-default-sg",
            vpc_id=vpc.id,
            ingress=[],
            egress=[],
            tags={"Name": f"{name}-default-locked"},
            opts=child,
        )
        igw = aws.ec2.InternetGateway(
            f"{name}-igw", vpc_id=vpc.id, tags={"Name": f"{name}-igw"}, opts=child
        )

        def subnet(tier: str, index: int, cidr: str) -> aws.ec2.Subnet:
            return aws.ec2.Subnet(
                f"{name}-{tier}-{index}",
                vpc_id=vpc.id,
                cidr_block=cidr,
                availability_zone=zones[index],
                map_public_ip_on_launch=False,
                tags={"Name": f"{name}-{tier}-{index}", "tier": tier},
                opts=child,
            )

        public = [subnet("public", i, c) for i, c in enumerate(plan.public)]
        private = [subnet("private", i, c) for i, c in enumerate(plan.private)]
        isolated = [subnet("isolated", i, c) for i, c in enumerate(plan.isolated)]

        public_rt = aws.ec2.RouteTable(
            f"{name}-public-rt",
            vpc_id=vpc.id,
            routes=[{"cidr_block": "0.0.0.0/0", "gateway_id": igw.id}],
            tags={"Name": f"{name}-public"},
            opts=child,
        )
        for i, s in enumerate(public):
            aws.ec2.RouteTableAssociation(
                f"{name}-public-rta-{i}", subnet_id=s.id, route_table_id=public_rt.id, opts=child
            )

        nat_count = {NatStrategy.NONE: 0, NatStrategy.INSTANCE: 0, NatStrategy.SINGLE: 1}.get(
            args.nat, args.availability_zones
        )
        nats = []
        for i in range(nat_count):
            eip = aws.ec2.Eip(
                f"{name}-nat-eip-{i}", domain="vpc", tags={"Name": f"{name}-nat-{i}"}, opts=child
            )
            nats.append(
                aws.ec2.NatGateway(
                    f"{name}-nat-{i}",
                    allocation_id=eip.allocation_id,
                    subnet_id=public[i].id,
                    tags={"Name": f"{name}-nat-{i}"},
                    opts=pulumi.ResourceOptions(parent=self, depends_on=[igw]),
                )
            )
        self.nat_gateway_count = nat_count
        nat_instance = self._nat_instance(name, args, vpc, public[0], igw)

        private_rts = []
        for i, s in enumerate(private):
            routes: list[Any] = []
            if nats:
                nat = nats[i] if args.nat is NatStrategy.ONE_PER_AZ else nats[0]
                routes.append({"cidr_block": "0.0.0.0/0", "nat_gateway_id": nat.id})
            elif nat_instance is not None:
                routes.append(
                    {
                        "cidr_block": "0.0.0.0/0",
                        "network_interface_id": nat_instance.network_interface_id,
                    }
                )
            rt = aws.ec2.RouteTable(
                f"{name}-private-rt-{i}",
                vpc_id=vpc.id,
                routes=routes,
                tags={"Name": f"{name}-private-{i}"},
                opts=child,
            )
            aws.ec2.RouteTableAssociation(
                f"{name}-private-rta-{i}", subnet_id=s.id, route_table_id=rt.id, opts=child
            )
            private_rts.append(rt)

        # Isolated subnets (databases) have no route out at all.
        isolated_rt = aws.ec2.RouteTable(
            f"{name}-isolated-rt", vpc_id=vpc.id, tags={"Name": f"{name}-isolated"}, opts=child
        )
        for i, s in enumerate(isolated):
            aws.ec2.RouteTableAssociation(
                f"{name}-isolated-rta-{i}",
                subnet_id=s.id,
                route_table_id=isolated_rt.id,
                opts=child,
            )

        # S3 gateway endpoint is free and carries ECR image layers off the NAT.
        aws.ec2.VpcEndpoint(
            f"{name}-s3-endpoint",
            vpc_id=vpc.id,
            service_name=region.apply(lambda r: f"com.amazonaws.{r}.s3"),
            vpc_endpoint_type="Gateway",
            route_table_ids=[rt.id for rt in private_rts],
            tags={"Name": f"{name}-s3"},
            opts=child,
        )
        self.interface_endpoint_count = 0
        if args.interface_endpoints:
            endpoint_sg = aws.ec2.SecurityGroup(
                f"{name}-endpoints-sg",
                vpc_id=vpc.id,
                description="VPC interface endpoints: HTTPS from inside the VPC only",
                tags={"Name": f"{name}-endpoints"},
                opts=child,
            )
            aws.vpc.SecurityGroupIngressRule(
                f"{name}-endpoints-https",
                security_group_id=endpoint_sg.id,
                description="HTTPS to AWS APIs from workloads in this VPC",
                ip_protocol="tcp",
                from_port=443,
                to_port=443,
                cidr_ipv4=args.cidr_block,
                opts=child,
            )
            for service in args.endpoint_services:
                aws.ec2.VpcEndpoint(
                    f"{name}-{service.replace('.', '-')}-endpoint",
                    vpc_id=vpc.id,
                    service_name=pulumi.Output.concat("com.amazonaws.", region, f".{service}"),
                    vpc_endpoint_type="Interface",
                    private_dns_enabled=True,
                    subnet_ids=[s.id for s in private],
                    security_group_ids=[endpoint_sg.id],
                    tags={"Name": f"{name}-{service}"},
                    opts=child,
                )
                self.interface_endpoint_count += 1

        flow_group = aws.cloudwatch.LogGroup(
            f"{name}-flow-logs",
            retention_in_days=args.flow_log_retention_days,
            kms_key_id=args.flow_log_kms_key_arn,
            opts=pulumi.ResourceOptions(
                parent=self, protect=args.protect, retain_on_delete=args.protect
            ),
        )
        flow_role = aws.iam.Role(
            f"{name}-flow-logs-role",
            description="VPC flow logs delivery to CloudWatch Logs",
            assume_role_policy=flow_logs_trust_policy(self),
            opts=child,
        )
        aws.iam.RolePolicy(
            f"{name}-flow-logs-policy",
            role=flow_role.id,
            policy=flow_group.arn.apply(
                lambda arn: json.dumps(
                    {
                        "Version": "2012-10-17",
                        "Statement": [
                            {
                                "Effect": "Allow",
                                "Action": [
                                    "logs:CreateLogStream",
                                    "logs:PutLogEvents",
                                    "logs:DescribeLogStreams",
                                ],
                                "Resource": [arn, f"{arn}:*"],
                            }
                        ],
                    }
                )
            ),
            opts=child,
        )
        aws.ec2.FlowLog(
            f"{name}-flow-log",
            vpc_id=vpc.id,
            traffic_type=args.flow_log_traffic,
            log_destination_type="cloud-watch-logs",
            log_destination=flow_group.arn,
            iam_role_arn=flow_role.arn,
            max_aggregation_interval=600,
            tags={"Name": f"{name}-flow-log"},
            opts=child,
        )

        self.vpc_id = vpc.id
        self.vpc_cidr = args.cidr_block
        self.public_subnet_ids = [s.id for s in public]
        self.private_subnet_ids = [s.id for s in private]
        self.isolated_subnet_ids = [s.id for s in isolated]
        self.flow_log_group_name = flow_group.name
        self.register_outputs(
            {
                "vpc_id": self.vpc_id,
                "public_subnet_ids": self.public_subnet_ids,
                "private_subnet_ids": self.private_subnet_ids,
                "isolated_subnet_ids": self.isolated_subnet_ids,
            }
        )

    def _nat_instance(
        self,
        name: str,
        args: NetworkArgs,
        vpc: aws.ec2.Vpc,
        subnet: aws.ec2.Subnet,
        igw: aws.ec2.InternetGateway,
    ) -> NatInstance | None:
        if args.nat is not NatStrategy.INSTANCE:
            return None
        return NatInstance(
            f"{name}-nat",
            NatInstanceArgs(vpc_id=vpc.id, vpc_cidr=args.cidr_block, public_subnet_id=subnet.id),
            # Its user data installs iptables from the internet at first boot.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[igw]),
        )


def flow_logs_trust_policy(parent: pulumi.Resource) -> pulumi.Output[str]:
    """The flow-logs service may assume the role only for this account's flow logs: the
    condition AWS documents against the confused deputy (flow-logs-iam-role.html)."""
    invoke = pulumi.InvokeOutputOptions(parent=parent)
    account = aws.get_caller_identity_output(opts=invoke).account_id
    region = aws.get_region_output(opts=invoke).region
    partition = aws.get_partition_output(opts=invoke).partition
    return pulumi.Output.all(account, region, partition).apply(
        lambda a: json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "vpc-flow-logs.amazonaws.com"},
                        "Action": "sts:AssumeRole",
                        "Condition": {
                            "StringEquals": {"aws:SourceAccount": a[0]},
                            "ArnLike": {
                                "aws:SourceArn": f"arn:{a[2]}:ec2:{a[1]}:{a[0]}:vpc-flow-log/*"
                            },
                        },
                    }
                ],
            }
        )
    )
