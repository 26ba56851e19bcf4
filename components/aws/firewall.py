"""ServiceFirewall: the security groups of the load balancer and of each ECS service.

Created before the data stores so that each store can admit exactly these groups.
Nothing is open by default: the ALB is the only group reachable from the internet
(80/443), the API tasks only from the ALB on the container port, the other tasks
from nowhere. Egress is limited to HTTPS (AWS APIs, ECR, the LLM provider) and the
data-store ports inside the VPC.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

DATA_PORTS = {"postgres": 5432, "redis": 6379, "amqps": 5671}


@dataclass
class ServiceFirewallArgs:
    vpc_id: pulumi.Input[str]
    vpc_cidr: str
    container_port: int = 8000
    processes: Sequence[str] = ("api", "worker", "relay", "migrate")
    """One security group per process; ``api`` is the one the ALB reaches."""
    public_ports: Sequence[int] = (80, 443)

    def __post_init__(self) -> None:
        if "api" not in self.processes:
            raise ValueError("processes must include 'api' (the load-balanced process)")
        bad = [p for p in self.public_ports if p not in (80, 443)]
        if bad:
            raise ValueError(f"public_ports={bad}: only 80 and 443 may be public")


class ServiceFirewall(pulumi.ComponentResource):
    alb_security_group_id: pulumi.Output[str]
    task_security_group_ids: dict[str, pulumi.Output[str]]

    def __init__(
        self, name: str, args: ServiceFirewallArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("groundwork:aws:ServiceFirewall", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        alb = aws.ec2.SecurityGroup(
            f"{name}-alb",
            vpc_id=args.vpc_id,
            description="Public load balancer: HTTP/HTTPS from the internet",
            tags={"Name": f"{name}-alb"},
            opts=child,
        )
        for port in args.public_ports:
            for family, cidr in (("v4", "0.0.0.0/0"), ("v6", "::/0")):
                aws.vpc.SecurityGroupIngressRule(
                    f"{name}-alb-{port}-{family}",
                    security_group_id=alb.id,
                    description=f"Public entry point: TCP {port} from the internet (IP{family})",
                    ip_protocol="tcp",
                    from_port=port,
                    to_port=port,
                    cidr_ipv4=cidr if family == "v4" else None,
                    cidr_ipv6=cidr if family == "v6" else None,
                    opts=child,
                )

        groups: dict[str, aws.ec2.SecurityGroup] = {}
        for process in args.processes:
            sg = aws.ec2.SecurityGroup(
                f"{name}-{process}",
                vpc_id=args.vpc_id,
                description=f"ECS tasks of the {process} process",
                tags={"Name": f"{name}-{process}"},
                opts=child,
            )
            groups[process] = sg
            aws.vpc.SecurityGroupEgressRule(
                f"{name}-{process}-https-out",
                security_group_id=sg.id,
                description="HTTPS out: AWS APIs, ECR, Secrets Manager, the LLM provider",
                ip_protocol="tcp",
                from_port=443,
                to_port=443,
                cidr_ipv4="0.0.0.0/0",
                opts=child,
            )
            for store, port in DATA_PORTS.items():
                aws.vpc.SecurityGroupEgressRule(
                    f"{name}-{process}-{store}-out",
                    security_group_id=sg.id,
                    description=f"{store} (TCP {port}) to data stores inside the VPC",
                    ip_protocol="tcp",
                    from_port=port,
                    to_port=port,
                    cidr_ipv4=args.vpc_cidr,
                    opts=child,
                )

        api = groups["api"]
        aws.vpc.SecurityGroupIngressRule(
            f"{name}-api-from-alb",
            security_group_id=api.id,
            description=f"Container port {args.container_port} from the load balancer only",
            ip_protocol="tcp",
            from_port=args.container_port,
            to_port=args.container_port,
            referenced_security_group_id=alb.id,
            opts=child,
        )
        aws.vpc.SecurityGroupEgressRule(
            f"{name}-alb-to-api",
            security_group_id=alb.id,
            description=f"Forward to API tasks on container port {args.container_port}",
            ip_protocol="tcp",
            from_port=args.container_port,
            to_port=args.container_port,
            referenced_security_group_id=api.id,
            opts=child,
        )

        self.alb_security_group_id = alb.id
        self.task_security_group_ids = {p: sg.id for p, sg in groups.items()}
        self.register_outputs(
            {
                "alb_security_group_id": self.alb_security_group_id,
                "task_security_group_ids": self.task_security_group_ids,
            }
        )


def admit(
    name: str,
    security_group_id: pulumi.Input[str],
    port: int,
    sources: dict[str, pulumi.Input[str]],
    what: str,
    parent: pulumi.Resource,
) -> None:
    """Ingress to a data store from each named source group, on one port, described."""
    for source, source_id in sources.items():
        aws.vpc.SecurityGroupIngressRule(
            f"{name}-from-{source}",
            security_group_id=security_group_id,
            description=f"{what} (TCP {port}) from the {source} tasks",
            ip_protocol="tcp",
            from_port=port,
            to_port=port,
            referenced_security_group_id=source_id,
            opts=pulumi.ResourceOptions(parent=parent),
        )
