"""AWS resource rules. Property names are the provider's camelCase input names.

Absent inputs mean the provider default, so a rule that needs a secure value the
provider does not default to (``storageEncrypted``, ``multiAz``...) rejects absence.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from pulumi_policy import EnforcementLevel

from policies.registry import (
    REQUIRED_TAGS,
    RuleList,
    Severity,
    Subject,
    Tier,
    as_list,
    flag_check,
    get,
    is_set,
    is_true,
    missing_labels,
    parse_json,
    plaintext_secret_problems,
    world_cidr,
)

RDS_INSTANCE = "aws:rds/instance:Instance"
RDS_PARAMETER_GROUP = "aws:rds/parameterGroup:ParameterGroup"
RDS_PROXY = "aws:rds/proxy:Proxy"
REDIS_GROUP = "aws:elasticache/replicationGroup:ReplicationGroup"
MQ_BROKER = "aws:mq/broker:Broker"
SQS_QUEUE = "aws:sqs/queue:Queue"
EC2_INSTANCE = "aws:ec2/instance:Instance"
SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
SECURITY_GROUP_RULE = "aws:ec2/securityGroupRule:SecurityGroupRule"
VPC_INGRESS_RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
VPC_EGRESS_RULE = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
DEFAULT_SECURITY_GROUP = "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup"
VPC = "aws:ec2/vpc:Vpc"
SUBNET = "aws:ec2/subnet:Subnet"
FLOW_LOG = "aws:ec2/flowLog:FlowLog"
VPC_ENDPOINT = "aws:ec2/vpcEndpoint:VpcEndpoint"
LOAD_BALANCER = "aws:lb/loadBalancer:LoadBalancer"
LISTENER = "aws:lb/listener:Listener"
TARGET_GROUP = "aws:lb/targetGroup:TargetGroup"
ECS_CLUSTER = "aws:ecs/cluster:Cluster"
ECS_SERVICE = "aws:ecs/service:Service"
TASK_DEFINITION = "aws:ecs/taskDefinition:TaskDefinition"
ECR_REPOSITORY = "aws:ecr/repository:Repository"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
METRIC_ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
SNS_TOPIC = "aws:sns/topic:Topic"
KMS_KEY = "aws:kms/key:Key"
SECRET = "aws:secretsmanager/secret:Secret"  # noqa: S105 - a type token
IAM_ROLE = "aws:iam/role:Role"
IAM_POLICY = "aws:iam/policy:Policy"
IAM_ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
IAM_ATTACHMENT = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
WEB_ACL = "aws:wafv2/webAcl:WebAcl"
WAF_LOGGING = "aws:wafv2/webAclLoggingConfiguration:WebAclLoggingConfiguration"
RDS_BACKUP_REPLICATION = (
    "aws:rds/instanceAutomatedBackupsReplication:InstanceAutomatedBackupsReplication"
)
S3_BUCKETS = ("aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2")
S3_ACL = ("aws:s3/bucketAclV2:BucketAclV2", "aws:s3/bucketAcl:BucketAcl")
S3_PUBLIC_ACCESS_BLOCK = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
S3_POLICY = "aws:s3/bucketPolicy:BucketPolicy"
S3_OWNERSHIP = "aws:s3/bucketOwnershipControls:BucketOwnershipControls"
ECR_LIFECYCLE = "aws:ecr/lifecyclePolicy:LifecyclePolicy"
S3_ENCRYPTION = (
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
    "aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2",
)

# Every AWS type the stacks may create that takes a ``tags`` input (tests check each
# against the SDK, and that every taggable type a stack creates is listed here).
TAGGABLE_TYPES: tuple[str, ...] = (
    VPC,
    SUBNET,
    SECURITY_GROUP,
    VPC_INGRESS_RULE,
    VPC_EGRESS_RULE,
    DEFAULT_SECURITY_GROUP,
    FLOW_LOG,
    VPC_ENDPOINT,
    "aws:ec2/natGateway:NatGateway",
    "aws:ec2/eip:Eip",
    "aws:ec2/internetGateway:InternetGateway",
    "aws:ec2/routeTable:RouteTable",
    RDS_INSTANCE,
    RDS_PARAMETER_GROUP,
    RDS_PROXY,
    "aws:rds/subnetGroup:SubnetGroup",
    REDIS_GROUP,
    "aws:elasticache/subnetGroup:SubnetGroup",
    "aws:elasticache/parameterGroup:ParameterGroup",
    MQ_BROKER,
    "aws:mq/configuration:Configuration",
    SQS_QUEUE,
    EC2_INSTANCE,
    SECRET,
    KMS_KEY,
    ECR_REPOSITORY,
    ECS_CLUSTER,
    ECS_SERVICE,
    TASK_DEFINITION,
    LOAD_BALANCER,
    LISTENER,
    TARGET_GROUP,
    "aws:lb/listenerRule:ListenerRule",
    LOG_GROUP,
    METRIC_ALARM,
    SNS_TOPIC,
    IAM_ROLE,
    IAM_POLICY,
    WEB_ACL,
    *S3_BUCKETS,
    "aws:acm/certificate:Certificate",
    "aws:appautoscaling/target:Target",
    "aws:cloudwatch/eventRule:EventRule",
    "aws:servicediscovery/privateDnsNamespace:PrivateDnsNamespace",
    "aws:servicediscovery/service:Service",
)

MODERN_TLS_POLICY_PREFIXES = ("ELBSecurityPolicy-TLS13-", "ELBSecurityPolicy-FS-1-2-Res-")
ADMIN_MANAGED_POLICIES = (
    "arn:aws:iam::aws:policy/AdministratorAccess",
    "arn:aws:iam::aws:policy/PowerUserAccess",
    "arn:aws:iam::aws:policy/IAMFullAccess",
)


RULES = RuleList()
"""Every AWS resource rule: each check below carries its metadata on its decorator."""

_RELAXED_BACKUPS = {
    Tier.STAGING: {"minBackupRetentionDays": 7},
    Tier.PRODUCTION: {"minBackupRetentionDays": 14},
}


def _number(value: Any, default: float = 0) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


# -- tags ---------------------------------------------------------------------------


@RULES.register(
    "aws-any-resource-tagged",
    "Every taggable AWS resource carries the environment, service, managed-by and "
    "cost-center tags (cost allocation, ownership, and the environment the policies "
    "use).",
    TAGGABLE_TYPES,
    Severity.LOW,
    "Pass tags=settings.tags to the resource (components forward their args.tags).",
    control="Tagging (AWS resource tagging best practices)",
    config_schema={"requiredTags": {"type": "array", "items": {"type": "string"}}},
)
def _tagged(s: Subject) -> Iterator[str]:
    missing = missing_labels(s.props.get("tags"), s.config.get("requiredTags", REQUIRED_TAGS))
    if missing:
        yield f"{s.type} {s.name} is missing tags: {', '.join(missing)}."
    env = (s.props.get("tags") or {}).get("environment")
    if env and env not in (Tier.STAGING.value, Tier.PRODUCTION.value):
        yield f"{s.type} {s.name} has environment tag {env!r}; expected staging or production."


# -- RDS ----------------------------------------------------------------------------


RULES.register(
    "aws-rds-instance-encrypted",
    "RDS instances encrypt storage at rest.",
    (RDS_INSTANCE,),
    Severity.CRITICAL,
    "Set storage_encrypted=True (optionally kms_key_id); an existing instance must be "
    "restored from an encrypted snapshot.",
    control="RDS.3",
)(flag_check("storageEncrypted", "RDS instance {name} does not set storageEncrypted=true."))


RULES.register(
    "aws-rds-instance-not-public",
    "RDS instances are not reachable from the internet.",
    (RDS_INSTANCE,),
    Severity.CRITICAL,
    "Set publicly_accessible=False and place the instance in private subnets.",
    control="RDS.2",
)(flag_check("publiclyAccessible", "RDS instance {name} is publicly accessible.", wanted=False))


@RULES.register(
    "aws-rds-instance-backup-retention",
    "RDS instances keep automated backups for at least the environment minimum "
    "(7 days staging, 14 production).",
    (RDS_INSTANCE,),
    Severity.HIGH,
    "Set backup_retention_period (groundwork:dbBackupRetentionDays) to at least the minimum.",
    control="RDS.11",
    config_schema={"minBackupRetentionDays": {"type": "number", "minimum": 1}},
    defaults=_RELAXED_BACKUPS,
)
def _rds_backups(s: Subject) -> Iterator[str]:
    minimum = _number(s.config.get("minBackupRetentionDays"), 7)
    days = _number(s.props.get("backupRetentionPeriod"), 0)
    if days < minimum:
        yield (
            f"RDS instance {s.name} keeps backups for {s.props.get('backupRetentionPeriod')} "
            f"days; the {s.tier} minimum is {minimum:g}."
        )


RULES.register(
    "aws-rds-instance-multi-az",
    "Production RDS instances run Multi-AZ.",
    (RDS_INSTANCE,),
    Severity.HIGH,
    "Set multi_az=True (groundwork:dbMultiAz: true).",
    control="RDS.5",
    relax_in_staging=True,
)(flag_check("multiAz", "RDS instance {name} is single-AZ."))


RULES.register(
    "aws-rds-instance-deletion-protection",
    "Production RDS instances cannot be deleted by accident.",
    (RDS_INSTANCE,),
    Severity.MEDIUM,
    "Set deletion_protection=True (groundwork:deletionProtection: true).",
    control="RDS.8",
    relax_in_staging=True,
)(flag_check("deletionProtection", "RDS instance {name} has no deletion protection."))


@RULES.register(
    "aws-rds-parametergroup-force-ssl",
    "Database parameter groups refuse unencrypted client connections (encryption in transit).",
    (RDS_PARAMETER_GROUP,),
    Severity.HIGH,
    "Add parameter rds.force_ssl=1 (PostgreSQL) or require_secure_transport=1 (MySQL).",
    control="-",
)
def _rds_force_ssl(s: Subject) -> Iterator[str]:
    family = str(s.props.get("family") or "")
    params = {
        str(p.get("name")): str(p.get("value"))
        for p in as_list(s.props.get("parameters"))
        if isinstance(p, Mapping)
    }
    if family.startswith("postgres") and params.get("rds.force_ssl") != "1":
        yield f"Parameter group {s.name} ({family}) does not set rds.force_ssl=1."
    elif family.startswith(("mysql", "mariadb")) and params.get(
        "require_secure_transport", ""
    ).upper() not in ("1", "ON"):
        yield f"Parameter group {s.name} ({family}) does not set require_secure_transport=1."


RULES.register(
    "aws-rds-proxy-tls-required",
    "RDS proxies only accept TLS connections.",
    (RDS_PROXY,),
    Severity.HIGH,
    "Set require_tls=True on the proxy.",
)(
    flag_check(
        "requireTls", "RDS proxy {name} accepts connections without TLS (requireTls is not true)."
    )
)


# -- ElastiCache ----------------------------------------------------------------------


RULES.register(
    "aws-elasticache-replicationgroup-encrypted",
    "ElastiCache replication groups encrypt data at rest.",
    (REDIS_GROUP,),
    Severity.CRITICAL,
    "Set at_rest_encryption_enabled=True (forces replacement).",
    control="ElastiCache.4",
)(
    flag_check(
        "atRestEncryptionEnabled", "Replication group {name} does not enable encryption at rest."
    )
)


@RULES.register(
    "aws-elasticache-replicationgroup-tls",
    "ElastiCache replication groups require TLS from every client.",
    (REDIS_GROUP,),
    Severity.CRITICAL,
    "Set transit_encryption_enabled=True and transit_encryption_mode='required'.",
    control="ElastiCache.5",
)
def _redis_tls(s: Subject) -> Iterator[str]:
    if not is_true(s.props.get("transitEncryptionEnabled")):
        yield f"Replication group {s.name} does not enable in-transit encryption."
    elif str(s.props.get("transitEncryptionMode") or "required").lower() != "required":
        yield f"Replication group {s.name} still accepts plain-text clients (mode preferred)."


@RULES.register(
    "aws-elasticache-replicationgroup-auth",
    "ElastiCache replication groups require authentication.",
    (REDIS_GROUP,),
    Severity.HIGH,
    "Set auth_token from a random.RandomPassword (or user_group_ids for RBAC).",
    control="ElastiCache.6",
)
def _redis_auth(s: Subject) -> Iterator[str]:
    if not is_set(s.props, "authToken") and not is_set(s.props, "userGroupIds"):
        yield f"Replication group {s.name} has neither an AUTH token nor RBAC user groups."


@RULES.register(
    "aws-elasticache-replicationgroup-backups",
    "Production replication groups keep daily snapshots.",
    (REDIS_GROUP,),
    Severity.MEDIUM,
    "Set snapshot_retention_limit >= 1 (groundwork:cacheSnapshotRetentionDays).",
    control="ElastiCache.1",
    relax_in_staging=True,
    config_schema={"minSnapshotRetentionDays": {"type": "number", "minimum": 1}},
)
def _redis_backups(s: Subject) -> Iterator[str]:
    minimum = _number(s.config.get("minSnapshotRetentionDays"), 1)
    days = _number(s.props.get("snapshotRetentionLimit"), 0)
    if days < minimum:
        yield f"Replication group {s.name} keeps snapshots {days:g} days; minimum {minimum:g}."


@RULES.register(
    "aws-elasticache-replicationgroup-multi-az",
    "Production replication groups fail over automatically across AZs.",
    (REDIS_GROUP,),
    Severity.HIGH,
    "Set num_cache_clusters >= 2, automatic_failover_enabled=True, multi_az_enabled=True.",
    control="ElastiCache.3",
    relax_in_staging=True,
)
def _redis_multi_az(s: Subject) -> Iterator[str]:
    if not (
        is_true(s.props.get("automaticFailoverEnabled")) and is_true(s.props.get("multiAzEnabled"))
    ):
        yield f"Replication group {s.name} lacks automatic failover across AZs."


# -- Amazon MQ ----------------------------------------------------------------------


RULES.register(
    "aws-mq-broker-not-public",
    "Amazon MQ brokers are not reachable from the internet.",
    (MQ_BROKER,),
    Severity.CRITICAL,
    "Set publicly_accessible=False with private subnet_ids and security_groups.",
)(flag_check("publiclyAccessible", "Broker {name} is publicly accessible.", wanted=False))


@RULES.register(
    "aws-mq-broker-encrypted",
    "Amazon MQ brokers use an engine whose storage is encrypted and whose endpoints are "
    "TLS-only (AMQPS 5671 for RabbitMQ), with a valid key choice.",
    (MQ_BROKER,),
    Severity.HIGH,
    "Use engine_type RabbitMQ or ActiveMQ; keep encryption_options default or give "
    "kms_key_id when use_aws_owned_key=False (ActiveMQ only).",
)
def _mq_encrypted(s: Subject) -> Iterator[str]:
    engine = str(s.props.get("engineType") or "")
    if engine.lower() not in ("rabbitmq", "activemq"):
        yield f"Broker {s.name} uses engine {engine!r}, whose encryption this pack cannot verify."
    options = s.props.get("encryptionOptions") or {}
    if options.get("useAwsOwnedKey") is False and not options.get("kmsKeyId"):
        yield f"Broker {s.name} turns off the AWS-owned key without naming a KMS key."


@RULES.register(
    "aws-mq-broker-cluster",
    "Production brokers run a multi-AZ deployment (cluster for RabbitMQ, "
    "active/standby for ActiveMQ).",
    (MQ_BROKER,),
    Severity.HIGH,
    "Set deployment_mode='CLUSTER_MULTI_AZ' (groundwork:brokerCluster: true).",
    control="MQ.6 / MQ.5",
    relax_in_staging=True,
)
def _mq_cluster(s: Subject) -> Iterator[str]:
    engine = str(s.props.get("engineType") or "").lower()
    mode = s.props.get("deploymentMode") or "SINGLE_INSTANCE"
    wanted = "CLUSTER_MULTI_AZ" if engine == "rabbitmq" else "ACTIVE_STANDBY_MULTI_AZ"
    if mode != wanted:
        yield f"Broker {s.name} runs as {mode}; use {wanted}."


RULES.register(
    "aws-mq-broker-logs",
    "Brokers publish their general logs to CloudWatch Logs.",
    (MQ_BROKER,),
    Severity.MEDIUM,
    "Set logs={'general': True}.",
    control="MQ.2",
)(flag_check("logs.general", "Broker {name} does not publish general logs to CloudWatch."))


RULES.register(
    "aws-mq-broker-minor-upgrades",
    "Brokers take automatic minor version upgrades.",
    (MQ_BROKER,),
    Severity.LOW,
    "Set auto_minor_version_upgrade=True.",
    control="MQ.3",
)(
    flag_check(
        "autoMinorVersionUpgrade", "Broker {name} does not take automatic minor version upgrades."
    )
)


# -- SQS and EC2 instances ------------------------------------------------------------


@RULES.register(
    "aws-sqs-queue-encrypted",
    "SQS queues are encrypted at rest (SSE-KMS, or SSE-SQS stated explicitly).",
    (SQS_QUEUE,),
    Severity.HIGH,
    "Set kms_master_key_id (components/aws/job_queue_sqs.py does) or sqs_managed_sse_enabled=True.",
    control="SQS.1",
)
def _sqs_encrypted(s: Subject) -> Iterator[str]:
    if not s.props.get("kmsMasterKeyId") and not is_true(s.props.get("sqsManagedSseEnabled")):
        # New queues default to SSE-SQS, but only a stated setting is checked and kept.
        yield f"Queue {s.name} names no encryption (kms_master_key_id or SSE-SQS)."


@RULES.register(
    "aws-ec2-instance-imdsv2",
    "EC2 instances require IMDSv2 (session tokens) for the instance metadata service.",
    (EC2_INSTANCE,),
    Severity.HIGH,
    "Set metadata_options={'http_tokens': 'required'}.",
    control="EC2.8",
)
def _instance_imdsv2(s: Subject) -> Iterator[str]:
    if get(s.props, "metadataOptions.httpTokens") != "required":
        yield f"Instance {s.name} accepts IMDSv1 (metadata_options.http_tokens is not required)."


RULES.register(
    "aws-ec2-instance-volume-encrypted",
    "EC2 instances' root volumes are encrypted.",
    (EC2_INSTANCE,),
    Severity.HIGH,
    "Set root_block_device={'encrypted': True, ...}.",
    control="EC2.3",
)(flag_check("rootBlockDevice.encrypted", "Instance {name} has an unencrypted root volume."))


# -- EC2 networking -------------------------------------------------------------------


def _ingress_entries(s: Subject) -> Iterator[dict[str, Any]]:
    """Normalise the three ways a security group gets ingress into one shape."""
    if s.type == SECURITY_GROUP:
        for rule in as_list(s.props.get("ingress")):
            if isinstance(rule, Mapping):
                yield {
                    "cidrs": as_list(rule.get("cidrBlocks")) + as_list(rule.get("ipv6CidrBlocks")),
                    "from": rule.get("fromPort"),
                    "to": rule.get("toPort"),
                    "protocol": rule.get("protocol"),
                }
    elif s.type == SECURITY_GROUP_RULE:
        if s.props.get("type") == "ingress":
            yield {
                "cidrs": as_list(s.props.get("cidrBlocks"))
                + as_list(s.props.get("ipv6CidrBlocks")),
                "from": s.props.get("fromPort"),
                "to": s.props.get("toPort"),
                "protocol": s.props.get("protocol"),
            }
    elif s.type == VPC_INGRESS_RULE:
        yield {
            "cidrs": [s.props.get("cidrIpv4"), s.props.get("cidrIpv6")],
            "from": s.props.get("fromPort"),
            "to": s.props.get("toPort"),
            "protocol": s.props.get("ipProtocol"),
        }


def world_ingress_ports(s: Subject) -> list[tuple[Any, Any, Any]]:
    """(protocol, from, to) of every ingress open to the whole internet."""
    return [
        (e["protocol"], e["from"], e["to"])
        for e in _ingress_entries(s)
        if any(world_cidr(c) for c in e["cidrs"])
    ]


def _public_web_port(protocol: Any, low: Any, high: Any, allowed: Iterable[int]) -> bool:
    return (
        str(protocol).lower() in ("tcp", "6")
        and low is not None
        and _number(low) == _number(high)
        and int(_number(low)) in set(allowed)
    )


@RULES.register(
    "aws-ec2-securitygroup-no-public-ingress",
    "No security group ingress from 0.0.0.0/0 or ::/0 except tcp 80/443 (which the "
    "stack rule aws-ec2-securitygroup-public-lb-only confines to load balancers).",
    (SECURITY_GROUP, SECURITY_GROUP_RULE, VPC_INGRESS_RULE),
    Severity.CRITICAL,
    "Allow the port from a source security group (referenced_security_group_id) or a "
    "private CIDR instead of the internet.",
    control="EC2.18 / EC2.19 / EC2.53 / CIS 5.2",
    config_schema={"publicPorts": {"type": "array", "items": {"type": "number"}}},
)
def _sg_no_public_ingress(s: Subject) -> Iterator[str]:
    allowed = s.config.get("publicPorts", [80, 443])
    for protocol, low, high in world_ingress_ports(s):
        if not _public_web_port(protocol, low, high, allowed):
            yield (
                f"{s.name} allows {protocol} ports {low}-{high} from the internet; only "
                f"tcp {'/'.join(str(p) for p in allowed)} (load balancer listeners) may be."
            )


@RULES.register(
    "aws-ec2-securitygroup-described",
    "Security groups and their inline rules say what they are for.",
    (SECURITY_GROUP,),
    Severity.LOW,
    "Give the group and each ingress/egress entry a description.",
)
def _sg_described(s: Subject) -> Iterator[str]:
    description = str(s.props.get("description") or "")
    if s.type == SECURITY_GROUP and description in ("", "Managed by Pulumi"):
        yield f"Security group {s.name} has no description of its purpose."
    for direction in ("ingress", "egress"):
        for index, rule in enumerate(as_list(s.props.get(direction))):
            if isinstance(rule, Mapping) and not rule.get("description"):
                yield f"Security group {s.name} {direction}[{index}] has no description."


@RULES.register(
    "aws-ec2-securitygrouprule-described",
    "Security group rules say what they allow.",
    (SECURITY_GROUP_RULE, VPC_INGRESS_RULE, VPC_EGRESS_RULE),
    Severity.LOW,
    "Set description on the rule.",
)
def _sg_rule_described(s: Subject) -> Iterator[str]:
    if not s.props.get("description"):
        yield f"Security group rule {s.name} has no description."


@RULES.register(
    "aws-ec2-defaultsecuritygroup-closed",
    "The VPC's default security group allows no traffic.",
    (DEFAULT_SECURITY_GROUP,),
    Severity.HIGH,
    "Manage it with ec2.DefaultSecurityGroup and no ingress/egress.",
    control="EC2.2 / CIS 5.4",
)
def _default_sg_closed(s: Subject) -> Iterator[str]:
    if as_list(s.props.get("ingress")) or as_list(s.props.get("egress")):
        yield f"Default security group {s.name} still allows traffic."


RULES.register(
    "aws-ec2-subnet-no-auto-public-ip",
    "Subnets do not hand out public IPs automatically.",
    (SUBNET,),
    Severity.MEDIUM,
    "Set map_public_ip_on_launch=False; load balancers and NAT gateways get their own addresses.",
    control="EC2.15",
)(
    flag_check(
        "mapPublicIpOnLaunch",
        "Subnet {name} gives every launched interface a public IP.",
        wanted=False,
    )
)


@RULES.register(
    "aws-ec2-flowlog-all-traffic",
    "VPC flow logs record accepted and rejected traffic.",
    (FLOW_LOG,),
    Severity.LOW,
    "Set traffic_type='ALL'.",
    control="EC2.6",
)
def _flow_log_all(s: Subject) -> Iterator[str]:
    if s.props.get("trafficType") != "ALL":
        yield f"Flow log {s.name} records {s.props.get('trafficType')} traffic, not ALL."


@RULES.register(
    "aws-ec2-vpcendpoint-private-dns",
    "Interface VPC endpoints resolve the service name privately and have their own security group.",
    (VPC_ENDPOINT,),
    Severity.LOW,
    "Set private_dns_enabled=True and security_group_ids=[endpoint SG].",
)
def _endpoint_private(s: Subject) -> Iterator[str]:
    if s.props.get("vpcEndpointType") != "Interface":
        return
    if not is_true(s.props.get("privateDnsEnabled")):
        yield f"Interface endpoint {s.name} has private DNS off, so clients bypass it."
    if not as_list(s.props.get("securityGroupIds")):
        yield f"Interface endpoint {s.name} falls back to the VPC default security group."


# -- Load balancing -------------------------------------------------------------------


def _is_alb(props: Mapping[str, Any]) -> bool:
    return (props.get("loadBalancerType") or "application") == "application"


@RULES.register(
    "aws-lb-loadbalancer-drop-invalid-headers",
    "Application load balancers drop requests with invalid HTTP headers (request smuggling).",
    (LOAD_BALANCER,),
    Severity.MEDIUM,
    "Set drop_invalid_header_fields=True.",
    control="ELB.4",
)
def _lb_drop_invalid_headers(s: Subject) -> Iterator[str]:
    if _is_alb(s.props) and not is_true(s.props.get("dropInvalidHeaderFields")):
        yield f"Load balancer {s.name} forwards requests with invalid HTTP headers."


RULES.register(
    "aws-lb-loadbalancer-deletion-protection",
    "Production load balancers cannot be deleted by accident.",
    (LOAD_BALANCER,),
    Severity.MEDIUM,
    "Set enable_deletion_protection=True in production.",
    control="ELB.6",
    relax_in_staging=True,
)(flag_check("enableDeletionProtection", "Load balancer {name} has no deletion protection."))


@RULES.register(
    "aws-lb-listener-http-redirect",
    "Plain HTTP listeners only redirect to HTTPS.",
    (LISTENER,),
    Severity.HIGH,
    "Make the port-80 listener's default action a redirect with protocol HTTPS, status HTTP_301.",
    control="ELB.1",
)
def _listener_redirects(s: Subject) -> Iterator[str]:
    protocol = s.props.get("protocol") or "HTTP"
    if protocol != "HTTP":
        return
    for action in as_list(s.props.get("defaultActions")):
        redirect = (action or {}).get("redirect") or {}
        if action.get("type") != "redirect" or redirect.get("protocol") != "HTTPS":
            yield f"HTTP listener {s.name} serves traffic instead of redirecting to HTTPS."
            return


@RULES.register(
    "aws-lb-listener-tls-policy",
    "HTTPS listeners have a certificate and a current TLS policy (TLS 1.2+).",
    (LISTENER,),
    Severity.HIGH,
    "Set ssl_policy='ELBSecurityPolicy-TLS13-1-2-2021-06' and certificate_arn.",
    control="ELB.17",
    config_schema={"allowedTlsPolicyPrefixes": {"type": "array", "items": {"type": "string"}}},
)
def _listener_tls_policy(s: Subject) -> Iterator[str]:
    if s.props.get("protocol") not in ("HTTPS", "TLS"):
        return
    policy = str(s.props.get("sslPolicy") or "ELBSecurityPolicy-2016-08 (provider default)")
    prefixes = tuple(s.config.get("allowedTlsPolicyPrefixes", MODERN_TLS_POLICY_PREFIXES))
    if not policy.startswith(prefixes):
        yield f"Listener {s.name} uses TLS policy {policy}, which still allows TLS 1.0/1.1."
    if not s.props.get("certificateArn"):
        yield f"Listener {s.name} has no certificate."


@RULES.register(
    "aws-lb-targetgroup-health-check",
    "Target groups health-check a real endpoint.",
    (TARGET_GROUP,),
    Severity.LOW,
    "Set health_check with path='/health/ready' and enabled=True.",
)
def _target_group_health(s: Subject) -> Iterator[str]:
    check = s.props.get("healthCheck") or {}
    if check.get("enabled") is False:
        yield f"Target group {s.name} disables health checks."
    elif (s.props.get("protocol") or "HTTP").startswith("HTTP") and not check.get("path"):
        yield f"Target group {s.name} health check has no path (defaults to /)."


# -- ECS ----------------------------------------------------------------------------


def containers(s: Subject) -> list[Mapping[str, Any]]:
    parsed = parse_json(s.props.get("containerDefinitions"))
    return [c for c in as_list(parsed) if isinstance(c, Mapping)]


@RULES.register(
    "aws-ecs-taskdefinition-no-plaintext-secrets",
    "Credentials reach containers through ECS secrets, never plain environment variables.",
    (TASK_DEFINITION,),
    Severity.CRITICAL,
    "Move the variable to the container's secrets list with valueFrom a Secrets Manager "
    "ARN (':json-key::' for JSON secrets).",
    control="ECS.8",
)
def _task_no_plaintext_secrets(s: Subject) -> Iterator[str]:
    for container in containers(s):
        env = [
            (str(e.get("name")), e.get("value"))
            for e in as_list(container.get("environment"))
            if isinstance(e, Mapping)
        ]
        yield from plaintext_secret_problems(env, f"{s.name}/{container.get('name')}")


@RULES.register(
    "aws-ecs-taskdefinition-non-privileged",
    "Containers do not run privileged or share host namespaces.",
    (TASK_DEFINITION,),
    Severity.HIGH,
    "Remove privileged=true and pidMode/ipcMode 'host'.",
    control="ECS.4 / ECS.3",
)
def _task_not_privileged(s: Subject) -> Iterator[str]:
    if s.props.get("pidMode") == "host" or s.props.get("ipcMode") == "host":
        yield f"Task definition {s.name} shares the host's process/IPC namespace."
    for container in containers(s):
        if is_true(container.get("privileged")):
            yield f"Container {container.get('name')} in {s.name} runs privileged."


@RULES.register(
    "aws-ecs-taskdefinition-logging",
    "Every container ships its logs.",
    (TASK_DEFINITION,),
    Severity.MEDIUM,
    "Give each container a logConfiguration (awslogs to the service's log group).",
    control="ECS.9",
)
def _task_logging(s: Subject) -> Iterator[str]:
    for container in containers(s):
        if not get(container, "logConfiguration.logDriver"):
            yield f"Container {container.get('name')} in {s.name} has no log configuration."


@RULES.register(
    "aws-ecs-service-circuit-breaker",
    "ECS services roll back a deployment that cannot become healthy.",
    (ECS_SERVICE,),
    Severity.MEDIUM,
    "Set deployment_circuit_breaker={'enable': True, 'rollback': True}.",
)
def _service_circuit_breaker(s: Subject) -> Iterator[str]:
    if get(s.props, "deploymentController.type", "ECS") != "ECS":
        return
    breaker = s.props.get("deploymentCircuitBreaker") or {}
    if not (is_true(breaker.get("enable")) and is_true(breaker.get("rollback"))):
        yield f"ECS service {s.name} does not roll back failed deployments automatically."


RULES.register(
    "aws-ecs-service-no-public-ip",
    "ECS tasks get no public IP.",
    (ECS_SERVICE,),
    Severity.HIGH,
    "Set network_configuration.assign_public_ip=False; egress via NAT or VPC endpoints.",
    control="ECS.2",
)(
    flag_check(
        "networkConfiguration.assignPublicIp",
        "ECS service {name} gives its tasks public IPs.",
        wanted=False,
    )
)


@RULES.register(
    "aws-ecs-cluster-container-insights",
    "ECS clusters collect Container Insights.",
    (ECS_CLUSTER,),
    Severity.LOW,
    "Add settings=[{'name': 'containerInsights', 'value': 'enabled'}].",
    control="ECS.12",
)
def _cluster_insights(s: Subject) -> Iterator[str]:
    values = {
        str(item.get("name")): str(item.get("value"))
        for item in as_list(s.props.get("settings"))
        if isinstance(item, Mapping)
    }
    if values.get("containerInsights") not in ("enabled", "enhanced"):
        yield f"ECS cluster {s.name} has Container Insights off."


# -- registry, logs, keys, secrets, IAM, WAF, S3 ------------------------------------------


RULES.register(
    "aws-ecr-repository-scan-on-push",
    "ECR repositories scan images on push.",
    (ECR_REPOSITORY,),
    Severity.HIGH,
    "Set image_scanning_configuration={'scan_on_push': True}.",
    control="ECR.1",
)(
    flag_check(
        "imageScanningConfiguration.scanOnPush",
        "ECR repository {name} does not scan images on push.",
    )
)


@RULES.register(
    "aws-ecr-repository-immutable-tags",
    "ECR tags are immutable so a deployed tag always means the same image.",
    (ECR_REPOSITORY,),
    Severity.MEDIUM,
    "Set image_tag_mutability='IMMUTABLE' and deploy unique tags (git sha).",
    control="ECR.2",
)
def _ecr_immutable(s: Subject) -> Iterator[str]:
    if not str(s.props.get("imageTagMutability") or "MUTABLE").startswith("IMMUTABLE"):
        yield f"ECR repository {s.name} lets a tag be overwritten with a different image."


@RULES.register(
    "aws-cloudwatch-loggroup-retention",
    "Log groups expire logs, keeping at least the environment minimum (7 days staging, "
    "365 production).",
    (LOG_GROUP,),
    Severity.MEDIUM,
    "Set retention_in_days (groundwork:logRetentionDays).",
    control="CloudWatch.16",
    config_schema={"minLogRetentionDays": {"type": "number", "minimum": 1}},
    defaults={
        Tier.STAGING: {"minLogRetentionDays": 7},
        Tier.PRODUCTION: {"minLogRetentionDays": 365},
    },
)
def _log_retention(s: Subject) -> Iterator[str]:
    minimum = _number(s.config.get("minLogRetentionDays"), 7)
    days = _number(s.props.get("retentionInDays"), 0)
    if days == 0:
        yield f"Log group {s.name} keeps logs forever (no retentionInDays)."
    elif days < minimum:
        yield f"Log group {s.name} keeps logs {days:g} days; the {s.tier} minimum is {minimum:g}."


@RULES.register(
    "aws-cloudwatch-metricalarm-actions",
    "Alarms notify someone.",
    (METRIC_ALARM,),
    Severity.MEDIUM,
    "Set alarm_actions=[alarm topic ARN] (and ok_actions).",
    control="CloudWatch.15",
)
def _alarm_actions(s: Subject) -> Iterator[str]:
    if s.props.get("actionsEnabled") is False or not as_list(s.props.get("alarmActions")):
        yield f"Alarm {s.name} notifies nobody (no alarmActions)."


@RULES.register(
    "aws-sns-topic-encrypted",
    "SNS topics are encrypted with KMS.",
    (SNS_TOPIC,),
    Severity.MEDIUM,
    "Set kms_master_key_id to a customer key whose policy lets cloudwatch.amazonaws.com "
    "use it (alias/aws/sns does not work with CloudWatch alarms).",
    control="SNS.1",
    enforcement=EnforcementLevel.ADVISORY,
)
def _sns_encrypted(s: Subject) -> Iterator[str]:
    if not s.props.get("kmsMasterKeyId"):
        yield f"SNS topic {s.name} is not encrypted with KMS."


# Where each store names its customer-managed key (absent: the AWS-managed key or the
# service's default encryption).
CMK_PATHS = {
    RDS_INSTANCE: "kmsKeyId",
    REDIS_GROUP: "kmsKeyId",
    SECRET: "kmsKeyId",
    LOG_GROUP: "kmsKeyId",
}


def _ecr_cmk(props: Mapping[str, Any]) -> bool:
    configs = as_list(props.get("encryptionConfigurations"))
    return bool(configs) and all(
        isinstance(c, Mapping) and c.get("encryptionType") == "KMS" and c.get("kmsKey")
        for c in configs
    )


@RULES.register(
    "aws-kms-datastore-cmk",
    "Data stores and logs (RDS, ElastiCache, Secrets Manager, ECR, CloudWatch Logs) encrypt "
    "with customer-managed KMS keys where the environment requires them.",
    (RDS_INSTANCE, REDIS_GROUP, SECRET, ECR_REPOSITORY, LOG_GROUP),
    Severity.MEDIUM,
    "Set groundwork:cmek=true on a new stack (RDS, ElastiCache and ECR cannot switch in "
    "place, docs/deploy-aws.md); a stack deliberately without CMKs sets requireCmk=false.",
    control="RDS.3 / ElastiCache.4 / KMS (customer managed keys)",
    relax_in_staging=True,
    config_schema={"requireCmk": {"type": "boolean"}},
    defaults={Tier.STAGING: {"requireCmk": False}, Tier.PRODUCTION: {"requireCmk": True}},
)
def _datastore_cmk(s: Subject) -> Iterator[str]:
    if not s.config.get("requireCmk", False):
        return
    if s.type == ECR_REPOSITORY:
        if not _ecr_cmk(s.props):
            yield f"Repository {s.name} is not encrypted with a customer-managed KMS key."
    elif not s.props.get(CMK_PATHS[s.type]):
        kind = s.type.rsplit(":", 1)[-1]
        yield f"{kind} {s.name} uses an AWS-managed key or default encryption, not a CMK."


@RULES.register(
    "aws-kms-key-rotation",
    "Symmetric KMS keys rotate yearly.",
    (KMS_KEY,),
    Severity.MEDIUM,
    "Set enable_key_rotation=True.",
    control="KMS.4 / CIS 3.6",
)
def _kms_rotation(s: Subject) -> Iterator[str]:
    spec = s.props.get("customerMasterKeySpec") or "SYMMETRIC_DEFAULT"
    if spec == "SYMMETRIC_DEFAULT" and not is_true(s.props.get("enableKeyRotation")):
        yield f"KMS key {s.name} does not rotate."


@RULES.register(
    "aws-secretsmanager-secret-recoverable",
    "Production secrets keep a recovery window when deleted.",
    (SECRET,),
    Severity.LOW,
    "Leave recovery_window_in_days unset (30) or >= 7; 0 only for throwaway stacks.",
    relax_in_staging=True,
)
def _secret_recoverable(s: Subject) -> Iterator[str]:
    window = s.props.get("recoveryWindowInDays")
    if window is not None and _number(window) < 7:
        yield f"Secret {s.name} is deleted without a recovery window ({window} days)."


def _policy_documents(s: Subject) -> Iterator[tuple[str, Any]]:
    if s.type == IAM_ROLE:
        for inline in as_list(s.props.get("inlinePolicies")):
            if isinstance(inline, Mapping):
                yield str(inline.get("name")), parse_json(inline.get("policy"))
    else:
        yield s.name, parse_json(s.props.get("policy"))


@RULES.register(
    "aws-iam-policy-no-admin",
    "IAM policies never allow '*' actions on '*' resources.",
    (IAM_POLICY, IAM_ROLE_POLICY, IAM_ROLE),
    Severity.CRITICAL,
    "List the actions and resource ARNs the role needs.",
    control="IAM.1 / CIS 1.16",
)
def _iam_no_admin(s: Subject) -> Iterator[str]:
    for label, document in _policy_documents(s):
        if not isinstance(document, Mapping):
            continue
        for statement in as_list(document.get("Statement")):
            if not isinstance(statement, Mapping) or statement.get("Effect") != "Allow":
                continue
            actions = as_list(statement.get("Action"))
            resources = as_list(statement.get("Resource"))
            if any(a in ("*", "*:*") for a in actions) and "*" in resources:
                yield f"Policy {label} allows every action on every resource."


@RULES.register(
    "aws-iam-rolepolicyattachment-no-admin",
    "Roles are not given administrator-level managed policies.",
    (IAM_ATTACHMENT,),
    Severity.CRITICAL,
    "Attach a scoped policy instead of AdministratorAccess/PowerUser.",
    control="IAM.1",
)
def _attachment_no_admin(s: Subject) -> Iterator[str]:
    if s.props.get("policyArn") in ADMIN_MANAGED_POLICIES:
        yield f"{s.name} attaches {s.props.get('policyArn')}."


@RULES.register(
    "aws-wafv2-webacl-rules",
    "Web ACLs contain rules and publish metrics.",
    (WEB_ACL,),
    Severity.MEDIUM,
    "Add managed rule groups (AWSManagedRulesCommonRuleSet, rate limit) and enable "
    "visibility_config.cloudwatch_metrics_enabled.",
    control="WAF.10",
)
def _waf_rules(s: Subject) -> Iterator[str]:
    if not as_list(s.props.get("rules")) and not as_list(s.props.get("ruleJson")):
        yield f"Web ACL {s.name} has no rules, so it inspects nothing."
    if not is_true(get(s.props, "visibilityConfig.cloudwatchMetricsEnabled")):
        yield f"Web ACL {s.name} does not publish CloudWatch metrics."


@RULES.register(
    "aws-wafv2-logging-redacts-authorization",
    "WAF request logs are delivered and never contain Authorization headers.",
    (WAF_LOGGING,),
    Severity.HIGH,
    "Set log_destination_configs and redacted_fields=[{single_header: {name: 'authorization'}}].",
    control="WAF.11",
)
def _waf_logging_redacts(s: Subject) -> Iterator[str]:
    if not as_list(s.props.get("logDestinationConfigs")):
        yield f"WAF logging {s.name} has no destination."
    redacted = {
        str(get(field, "singleHeader.name") or "").lower()
        for field in as_list(s.props.get("redactedFields"))
    }
    if "authorization" not in redacted:
        yield f"WAF logging {s.name} writes Authorization headers (bearer tokens) to its logs."


@RULES.register(
    "aws-rds-backup-replication-encrypted",
    "Cross-region automated backup replication names a KMS key of the destination region.",
    (RDS_BACKUP_REPLICATION,),
    Severity.HIGH,
    "Set kms_key_id to a key created in the destination region.",
)
def _backup_replication_encrypted(s: Subject) -> Iterator[str]:
    if not s.props.get("kmsKeyId"):
        yield (
            f"Backup replication {s.name} names no KMS key in the destination region: RDS "
            "refuses to replicate an encrypted instance's backups without one."
        )


@RULES.register(
    "aws-s3-bucketpublicaccessblock-enabled",
    "Bucket public access blocks turn on all four protections.",
    (S3_PUBLIC_ACCESS_BLOCK,),
    Severity.CRITICAL,
    "Set block_public_acls, block_public_policy, ignore_public_acls and "
    "restrict_public_buckets to True.",
    control="S3.8",
)
def _s3_block_public(s: Subject) -> Iterator[str]:
    flags = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
    off = [flag for flag in flags if not is_true(s.props.get(flag))]
    if off:
        yield f"Public access block {s.name} leaves off: {', '.join(off)}."


@RULES.register(
    "aws-s3-bucket-no-public-acl",
    "Buckets are never given a public canned ACL.",
    (*S3_BUCKETS, *S3_ACL),
    Severity.CRITICAL,
    "Remove the ACL; use BucketOwnershipControls BucketOwnerEnforced.",
    control="S3.2 / S3.3",
)
def _s3_no_public_acl(s: Subject) -> Iterator[str]:
    acl = s.props.get("acl")
    if acl in ("public-read", "public-read-write", "authenticated-read"):
        yield f"{s.name} grants a public canned ACL ({acl})."


@RULES.register(
    "aws-s3-bucket-encrypted",
    "Bucket encryption configurations set a default server-side algorithm.",
    S3_ENCRYPTION,
    Severity.MEDIUM,
    "Set rules=[{apply_server_side_encryption_by_default: {sse_algorithm: 'aws:kms'}}] "
    "(AES256 for ALB access-log buckets).",
)
def _s3_encryption(s: Subject) -> Iterator[str]:
    rules = as_list(s.props.get("rules"))
    algorithms = [get(r, "applyServerSideEncryptionByDefault.sseAlgorithm") for r in rules]
    if not algorithms or not all(a in ("AES256", "aws:kms", "aws:kms:dsse") for a in algorithms):
        yield f"Encryption configuration {s.name} sets no default server-side encryption."


@RULES.register(
    "aws-s3-bucketpolicy-tls-only",
    "Bucket policies deny requests made without TLS.",
    (S3_POLICY,),
    Severity.HIGH,
    "Add a Deny statement for s3:* with Condition Bool aws:SecureTransport = false.",
    control="S3.5",
)
def _s3_tls_only(s: Subject) -> Iterator[str]:
    document = parse_json(s.props.get("policy"))
    statements = as_list(document.get("Statement")) if isinstance(document, Mapping) else []
    for statement in statements:
        if not isinstance(statement, Mapping) or statement.get("Effect") != "Deny":
            continue
        secure = get(statement, "Condition.Bool.aws:SecureTransport")
        if str(secure).lower() == "false":
            return
    yield f"Bucket policy {s.name} does not deny requests made without TLS."


@RULES.register(
    "aws-s3-bucketownershipcontrols-enforced",
    "Bucket ACLs are disabled.",
    (S3_OWNERSHIP,),
    Severity.MEDIUM,
    "Set rule.object_ownership='BucketOwnerEnforced'.",
    control="S3.12",
)
def _s3_owner_enforced(s: Subject) -> Iterator[str]:
    if get(s.props, "rule.objectOwnership") != "BucketOwnerEnforced":
        yield f"Ownership controls {s.name} keep ACLs enabled."


@RULES.register(
    "aws-ecr-lifecyclepolicy-rules",
    "ECR lifecycle policies expire old images.",
    (ECR_LIFECYCLE,),
    Severity.LOW,
    "Add a rule expiring untagged images and keeping the last N tagged ones.",
    control="ECR.3",
)
def _ecr_lifecycle(s: Subject) -> Iterator[str]:
    document = parse_json(s.props.get("policy"))
    if not isinstance(document, Mapping) or not as_list(document.get("rules")):
        yield f"Lifecycle policy {s.name} has no rules, so old images are never expired."
