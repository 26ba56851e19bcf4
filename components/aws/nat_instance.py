"""NatInstance: one small ARM (Graviton) EC2 instance doing NAT for the private subnets.

Staging only (groundwork:nat = instance): about $7/month where a NAT gateway costs
~$33 plus $0.045 per GB. What it gives up, and how this component limits it:

- one instance in one AZ: an AZ outage, a stop or a replacement cuts egress (ECR pulls,
  Secrets Manager, the LLM provider) for every private subnet until it is back;
- health: CloudWatch alarms on the EC2 status checks recover the instance onto healthy
  hardware (system check; same instance id, private and public IP, so the routes stay
  valid) or reboot it (instance check) - "Recover your instance" and "Create alarms
  that stop, terminate, reboot, or recover an instance" in the EC2 User Guide;
- bandwidth: a t4g.nano bursts to 5 Gbit/s on credits; fine for staging, not for load;
- the AMI is read once (Amazon Linux 2023, arm64, SSM public parameter) and changes to
  it are ignored, so a new AMI release never replaces (and interrupts) the NAT; patch by
  replacing it deliberately (`pulumi up --replace <urn>`) in a quiet window.

AWS's own conditions for a NAT instance (VPC User Guide, "NAT instances"): it sits in a
public subnet with a public IP, its source/destination check is off, and the private
route tables send 0.0.0.0/0 to its network interface; iptables masquerades the VPC's
traffic. IMDSv2 only, encrypted root volume, no SSH: no key pair, no port 22.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

_GRAVITON = re.compile(r"^[a-z]+[0-9]+g[a-z]*\.[a-z0-9]+$")
AL2023_ARM64_AMI_PARAMETER = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64"


def user_data(vpc_cidr: str) -> str:
    """Forward and masquerade the VPC's traffic, now and on every boot."""
    return f"""#!/bin/bash
set -euo pipefail
# The public route to the internet gateway may still be settling at first boot: retry.
for _ in $(seq 30); do dnf install -y iptables-nft && break; sleep 10; done
cat > /usr/local/sbin/groundwork-nat <<'EOF'
#!/bin/bash
set -euo pipefail
sysctl -w net.ipv4.ip_forward=1
sysctl -w net.ipv4.conf.all.send_redirects=0
iface="$(ip -o route show default | awk '{{print $5}}' | head -n1)"
iptables -t nat -C POSTROUTING -o "$iface" -s {vpc_cidr} -j MASQUERADE 2>/dev/null \\
  || iptables -t nat -A POSTROUTING -o "$iface" -s {vpc_cidr} -j MASQUERADE
EOF
chmod 0755 /usr/local/sbin/groundwork-nat
cat > /etc/systemd/system/groundwork-nat.service <<'EOF'
[Unit]
Description=groundwork NAT (ip_forward + masquerade)
After=network-online.target
Wants=network-online.target
[Service]
Type=oneshot
ExecStart=/usr/local/sbin/groundwork-nat
RemainAfterExit=yes
[Install]
WantedBy=multi-user.target
EOF
systemctl daemon-reload
systemctl enable --now groundwork-nat.service
"""


@dataclass
class NatInstanceArgs:
    vpc_id: pulumi.Input[str]
    vpc_cidr: str
    public_subnet_id: pulumi.Input[str]
    instance_type: str = "t4g.nano"
    """Graviton: the cheapest instance family that can forward a staging environment's
    traffic; the AMI parameter is arm64, so keep an ARM (…g) type."""
    root_volume_gb: int = 8

    def __post_init__(self) -> None:
        if not _GRAVITON.match(self.instance_type):
            raise ValueError(
                f"instance_type={self.instance_type}: the AMI is arm64; use a Graviton type "
                "such as t4g.nano"
            )
        if not 8 <= self.root_volume_gb <= 100:
            raise ValueError("root_volume_gb: 8 to 100 (the AMI needs 8)")


class NatInstance(pulumi.ComponentResource):
    network_interface_id: pulumi.Output[str]
    instance_id: pulumi.Output[str]

    def __init__(
        self, name: str, args: NatInstanceArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("groundwork:aws:NatInstance", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        invoke = pulumi.InvokeOutputOptions(parent=self)
        region = aws.get_region_output(opts=invoke).region
        # aws, aws-cn or aws-us-gov: EC2's alarm actions are ARNs in the stack's partition.
        partition = aws.get_partition_output(opts=invoke).partition
        ami = aws.ssm.get_parameter_output(name=AL2023_ARM64_AMI_PARAMETER, opts=invoke).value

        sg = aws.ec2.SecurityGroup(
            f"{name}-sg",
            vpc_id=args.vpc_id,
            description="NAT instance: forwards the VPC's outbound traffic; nothing inbound "
            "from outside",
            tags={"Name": f"{name}-sg"},
            opts=child,
        )
        aws.vpc.SecurityGroupIngressRule(
            f"{name}-from-vpc",
            security_group_id=sg.id,
            description="Traffic to forward, from this VPC only",
            ip_protocol="-1",
            cidr_ipv4=args.vpc_cidr,
            opts=child,
        )
        aws.vpc.SecurityGroupEgressRule(
            f"{name}-to-internet",
            security_group_id=sg.id,
            description="Forwarded traffic to the internet",
            ip_protocol="-1",
            cidr_ipv4="0.0.0.0/0",
            opts=child,
        )
        instance = aws.ec2.Instance(
            f"{name}-instance",
            ami=ami,
            instance_type=args.instance_type,
            subnet_id=args.public_subnet_id,
            vpc_security_group_ids=[sg.id],
            associate_public_ip_address=True,
            source_dest_check=False,
            user_data=user_data(args.vpc_cidr),
            user_data_replace_on_change=True,
            metadata_options={"http_tokens": "required", "http_endpoint": "enabled"},
            root_block_device={
                "volume_type": "gp3",
                "volume_size": args.root_volume_gb,
                "encrypted": True,
            },
            monitoring=False,
            tags={"Name": f"{name}", "role": "nat"},
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["ami"]),
        )
        for suffix, metric, action in (
            ("recover", "StatusCheckFailed_System", "recover"),
            ("reboot", "StatusCheckFailed_Instance", "reboot"),
        ):
            aws.cloudwatch.MetricAlarm(
                f"{name}-{suffix}",
                alarm_description=f"NAT instance failed {metric}: {action} it",
                namespace="AWS/EC2",
                metric_name=metric,
                dimensions={"InstanceId": instance.id},
                statistic="Maximum",
                period=60,
                evaluation_periods=2,
                comparison_operator="GreaterThanThreshold",
                threshold=0,
                alarm_actions=[
                    pulumi.Output.concat("arn:", partition, ":automate:", region, f":ec2:{action}")
                ],
                opts=child,
            )
        self.network_interface_id = instance.primary_network_interface_id
        self.instance_id = instance.id
        self.register_outputs({"instance_id": self.instance_id})
