"""Every AWS resource rule rejects a realistic bad resource and accepts a good one.

The resources are real pulumi_aws objects registered under the mock runtime, so the
inputs the rules see carry the provider's exact property names.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pulumi_aws as aws
import pytest

from groundwork.mockrun import ProgramRun
from policies import aws_rules
from tests.policies import helpers as harness
from tests.policies.helpers import TAGS, record, violations

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

DB_SECRET_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:rds!db:password::"
EXEC_POLICY_ARN = "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
ALLOW_SECRET = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": ["secretsmanager:GetSecretValue"],
            "Resource": ["arn:aws:secretsmanager:us-east-1:123456789012:secret:app-*"],
        }
    ],
}
ADMIN = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
}
ASSUME_ECS = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "sts:AssumeRole",
                "Principal": {"Service": "ecs-tasks.amazonaws.com"},
            }
        ],
    }
)


def _container(**overrides: Any) -> dict[str, Any]:
    container = {
        "name": "api",
        "image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/app:abc123",
        "essential": True,
        "environment": [
            {"name": "DB_HOST", "value": "db.internal"},
            {"name": "DB_SSLMODE", "value": "require"},
        ],
        "secrets": [
            {
                "name": "DB_PASSWORD",
                "valueFrom": DB_SECRET_ARN,
            }
        ],
        "logConfiguration": {
            "logDriver": "awslogs",
            "options": {
                "awslogs-group": "/groundwork/api",
                "awslogs-region": "us-east-1",
                "awslogs-stream-prefix": "api",
            },
        },
    }
    container.update(overrides)
    return container


def _merge(defaults: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    return {**defaults, **overrides}


Builder = Callable[..., Any]

BUILDERS: dict[str, Builder] = {
    "vpc": harness.resource_builder(
        aws.ec2.Vpc, {"cidr_block": "10.40.0.0/16", "enable_dns_hostnames": True, "tags": TAGS}
    ),
    "subnet": harness.resource_builder(
        aws.ec2.Subnet,
        {
            "vpc_id": "vpc-0123",
            "cidr_block": "10.40.1.0/24",
            "map_public_ip_on_launch": False,
            "tags": TAGS,
        },
    ),
    "security_group": harness.resource_builder(
        aws.ec2.SecurityGroup,
        {
            "vpc_id": "vpc-0123",
            "description": "API load balancer: HTTPS from the internet",
            "ingress": [
                {
                    "protocol": "tcp",
                    "from_port": 443,
                    "to_port": 443,
                    "cidr_blocks": ["0.0.0.0/0"],
                    "description": "HTTPS from anywhere",
                }
            ],
            "egress": [
                {
                    "protocol": "tcp",
                    "from_port": 8000,
                    "to_port": 8000,
                    "cidr_blocks": ["10.40.0.0/16"],
                    "description": "to the API tasks",
                }
            ],
            "tags": TAGS,
        },
    ),
    "sg_rule": harness.resource_builder(
        aws.ec2.SecurityGroupRule,
        {
            "type": "ingress",
            "security_group_id": "sg-db",
            "protocol": "tcp",
            "from_port": 5432,
            "to_port": 5432,
            "source_security_group_id": "sg-tasks",
            "description": "Postgres from the tasks",
        },
    ),
    "ingress_rule": harness.resource_builder(
        aws.vpc.SecurityGroupIngressRule,
        {
            "security_group_id": "sg-lb",
            "ip_protocol": "tcp",
            "from_port": 80,
            "to_port": 80,
            "cidr_ipv4": "0.0.0.0/0",
            "description": "HTTP (redirected to HTTPS)",
            "tags": TAGS,
        },
    ),
    "egress_rule": harness.resource_builder(
        aws.vpc.SecurityGroupEgressRule,
        {
            "security_group_id": "sg-lb",
            "ip_protocol": "tcp",
            "from_port": 8000,
            "to_port": 8000,
            "cidr_ipv4": "10.40.0.0/16",
            "description": "to the API tasks",
            "tags": TAGS,
        },
    ),
    "default_sg": harness.resource_builder(
        aws.ec2.DefaultSecurityGroup, {"vpc_id": "vpc-0123", "tags": TAGS}
    ),
    "flow_log": harness.resource_builder(
        aws.ec2.FlowLog,
        {
            "vpc_id": "vpc-0123",
            "traffic_type": "ALL",
            "log_destination_type": "cloud-watch-logs",
            "log_destination": "arn:aws:logs:us-east-1:123456789012:log-group:/vpc/flow",
            "iam_role_arn": "arn:aws:iam::123456789012:role/flow",
            "tags": TAGS,
        },
    ),
    "endpoint": harness.resource_builder(
        aws.ec2.VpcEndpoint,
        {
            "vpc_id": "vpc-0123",
            "service_name": "com.amazonaws.us-east-1.secretsmanager",
            "vpc_endpoint_type": "Interface",
            "private_dns_enabled": True,
            "security_group_ids": ["sg-endpoints"],
            "subnet_ids": ["subnet-a", "subnet-b"],
            "tags": TAGS,
        },
    ),
    "rds": harness.resource_builder(
        aws.rds.Instance,
        {
            "engine": "postgres",
            "engine_version": "16.4",
            "instance_class": "db.m7g.large",
            "allocated_storage": 100,
            "max_allocated_storage": 1000,
            "storage_encrypted": True,
            "kms_key_id": "arn:aws:kms:us-east-1:123456789012:key/data",
            "multi_az": True,
            "backup_retention_period": 30,
            "deletion_protection": True,
            "publicly_accessible": False,
            "manage_master_user_password": True,
            "username": "app",
            "db_subnet_group_name": "groundwork-db",
            "vpc_security_group_ids": ["sg-db"],
            "tags": TAGS,
        },
    ),
    "parameter_group": harness.resource_builder(
        aws.rds.ParameterGroup,
        {
            "family": "postgres16",
            "parameters": [{"name": "rds.force_ssl", "value": "1"}],
            "tags": TAGS,
        },
    ),
    "proxy": harness.resource_builder(
        aws.rds.Proxy,
        {
            "engine_family": "POSTGRESQL",
            "role_arn": "arn:aws:iam::123456789012:role/proxy",
            "vpc_subnet_ids": ["subnet-a", "subnet-b"],
            "require_tls": True,
            "auths": [
                {
                    "auth_scheme": "SECRETS",
                    "iam_auth": "DISABLED",
                    "secret_arn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:rds!db",
                }
            ],
            "tags": TAGS,
        },
    ),
    "redis": harness.resource_builder(
        aws.elasticache.ReplicationGroup,
        {
            "description": "groundwork cache",
            "engine": "valkey",
            "node_type": "cache.m7g.large",
            "num_cache_clusters": 2,
            "at_rest_encryption_enabled": True,
            "kms_key_id": "arn:aws:kms:us-east-1:123456789012:key/data",
            "transit_encryption_enabled": True,
            "transit_encryption_mode": "required",
            "auth_token": "test-fixture-token-0123456789abcdef",
            "automatic_failover_enabled": True,
            "multi_az_enabled": True,
            "snapshot_retention_limit": 7,
            "tags": TAGS,
        },
    ),
    "sqs_queue": harness.resource_builder(
        aws.sqs.Queue,
        {
            "kms_master_key_id": "arn:aws:kms:us-east-1:123456789012:key/abc",
            "tags": TAGS,
        },
    ),
    "nat_instance": harness.resource_builder(
        aws.ec2.Instance,
        {
            "ami": "ami-0123456789abcdef0",
            "instance_type": "t4g.nano",
            "subnet_id": "subnet-a",
            "metadata_options": {"http_tokens": "required"},
            "root_block_device": {"volume_type": "gp3", "encrypted": True},
            "tags": TAGS,
        },
    ),
    "broker": lambda n, **kw: aws.mq.Broker(
        n,
        **_merge(
            {
                "broker_name": n,
                "engine_type": "RabbitMQ",
                "engine_version": "3.13",
                "host_instance_type": "mq.m5.large",
                "deployment_mode": "CLUSTER_MULTI_AZ",
                "publicly_accessible": False,
                "auto_minor_version_upgrade": True,
                "logs": {"general": True},
                "subnet_ids": ["subnet-a", "subnet-b"],
                "security_groups": ["sg-broker"],
                "users": [{"username": "app", "password": "test-fixture-password"}],
                "tags": TAGS,
            },
            kw,
        ),
    ),
    "lb": harness.resource_builder(
        aws.lb.LoadBalancer,
        {
            "load_balancer_type": "application",
            "internal": False,
            "drop_invalid_header_fields": True,
            "enable_deletion_protection": True,
            "subnets": ["subnet-a", "subnet-b"],
            "security_groups": ["sg-lb"],
            "tags": TAGS,
        },
    ),
    "https_listener": harness.resource_builder(
        aws.lb.Listener,
        {
            "load_balancer_arn": "arn:aws:elasticloadbalancing:lb",
            "port": 443,
            "protocol": "HTTPS",
            "ssl_policy": "ELBSecurityPolicy-TLS13-1-2-2021-06",
            "certificate_arn": "arn:aws:acm:us-east-1:123456789012:certificate/abc",
            "default_actions": [{"type": "forward", "target_group_arn": "arn:tg"}],
            "tags": TAGS,
        },
    ),
    "http_listener": harness.resource_builder(
        aws.lb.Listener,
        {
            "load_balancer_arn": "arn:aws:elasticloadbalancing:lb",
            "port": 80,
            "protocol": "HTTP",
            "default_actions": [
                {
                    "type": "redirect",
                    "redirect": {"protocol": "HTTPS", "port": "443", "status_code": "HTTP_301"},
                }
            ],
            "tags": TAGS,
        },
    ),
    "target_group": harness.resource_builder(
        aws.lb.TargetGroup,
        {
            "port": 8000,
            "protocol": "HTTP",
            "target_type": "ip",
            "vpc_id": "vpc-0123",
            "health_check": {"enabled": True, "path": "/health/ready", "matcher": "200"},
            "tags": TAGS,
        },
    ),
    "task": lambda n, containers=None, **kw: aws.ecs.TaskDefinition(
        n,
        **_merge(
            {
                "family": n,
                "cpu": "256",
                "memory": "512",
                "network_mode": "awsvpc",
                "requires_compatibilities": ["FARGATE"],
                "execution_role_arn": "arn:aws:iam::123456789012:role/exec",
                "container_definitions": json.dumps(containers or [_container()]),
                "tags": TAGS,
            },
            kw,
        ),
    ),
    "ecs_service": harness.resource_builder(
        aws.ecs.Service,
        {
            "cluster": "arn:cluster",
            "task_definition": "arn:td",
            "desired_count": 2,
            "launch_type": "FARGATE",
            "deployment_circuit_breaker": {"enable": True, "rollback": True},
            "network_configuration": {
                "subnets": ["subnet-a"],
                "security_groups": ["sg-tasks"],
                "assign_public_ip": False,
            },
            "tags": TAGS,
        },
    ),
    "cluster": harness.resource_builder(
        aws.ecs.Cluster,
        {"settings": [{"name": "containerInsights", "value": "enabled"}], "tags": TAGS},
    ),
    "ecr": harness.resource_builder(
        aws.ecr.Repository,
        {
            "image_tag_mutability": "IMMUTABLE",
            "image_scanning_configuration": {"scan_on_push": True},
            "encryption_configurations": [
                {
                    "encryption_type": "KMS",
                    "kms_key": "arn:aws:kms:us-east-1:123456789012:key/data",
                }
            ],
            "tags": TAGS,
        },
    ),
    "log_group": harness.resource_builder(
        aws.cloudwatch.LogGroup,
        {
            "retention_in_days": 365,
            "kms_key_id": "arn:aws:kms:us-east-1:123456789012:key/data",
            "tags": TAGS,
        },
    ),
    "alarm": harness.resource_builder(
        aws.cloudwatch.MetricAlarm,
        {
            "comparison_operator": "GreaterThanThreshold",
            "evaluation_periods": 3,
            "metric_name": "CPUUtilization",
            "namespace": "AWS/RDS",
            "period": 300,
            "statistic": "Average",
            "threshold": 80,
            "dimensions": {"DBInstanceIdentifier": "db"},
            "alarm_actions": ["arn:aws:sns:us-east-1:123456789012:alarms"],
            "tags": TAGS,
        },
    ),
    "topic": harness.resource_builder(
        aws.sns.Topic,
        {"kms_master_key_id": "arn:aws:kms:us-east-1:123456789012:key/alarms", "tags": TAGS},
    ),
    "kms": harness.resource_builder(
        aws.kms.Key,
        {
            "description": "groundwork data",
            "enable_key_rotation": True,
            "deletion_window_in_days": 30,
            "tags": TAGS,
        },
    ),
    "secret": harness.resource_builder(
        aws.secretsmanager.Secret,
        {
            "description": "JWT signing key",
            "kms_key_id": "arn:aws:kms:us-east-1:123456789012:key/data",
            "tags": TAGS,
        },
    ),
    "iam_policy": harness.resource_builder(
        aws.iam.Policy, {"policy": json.dumps(ALLOW_SECRET), "tags": TAGS}
    ),
    "role_policy": harness.resource_builder(
        aws.iam.RolePolicy, {"role": "task-role", "policy": json.dumps(ALLOW_SECRET)}
    ),
    "role": harness.resource_builder(
        aws.iam.Role,
        {
            "assume_role_policy": ASSUME_ECS,
            "tags": TAGS,
            "inline_policies": [{"name": "secrets", "policy": json.dumps(ALLOW_SECRET)}],
        },
    ),
    "attachment": harness.resource_builder(
        aws.iam.RolePolicyAttachment,
        {
            "role": "exec-role",
            "policy_arn": EXEC_POLICY_ARN,
        },
    ),
    "waf_logging": harness.resource_builder(
        aws.wafv2.WebAclLoggingConfiguration,
        {
            "resource_arn": "arn:aws:wafv2:us-east-1:1:regional/webacl/x/1",
            "log_destination_configs": ["arn:aws:logs:us-east-1:1:log-group:aws-waf-logs-x"],
            "redacted_fields": [{"single_header": {"name": "authorization"}}],
        },
    ),
    "backup_replication": harness.resource_builder(
        aws.rds.InstanceAutomatedBackupsReplication,
        {
            "source_db_instance_arn": "arn:aws:rds:us-east-1:1:db:x",
            "kms_key_id": "arn:aws:kms:us-west-2:1:key/k",
        },
    ),
    "web_acl": harness.resource_builder(
        aws.wafv2.WebAcl,
        {
            "scope": "REGIONAL",
            "default_action": {"allow": {}},
            "rules": [
                {
                    "name": "common",
                    "priority": 1,
                    "override_action": {"none": {}},
                    "statement": {
                        "managed_rule_group_statement": {
                            "name": "AWSManagedRulesCommonRuleSet",
                            "vendor_name": "AWS",
                        }
                    },
                    "visibility_config": {
                        "cloudwatch_metrics_enabled": True,
                        "metric_name": "common",
                        "sampled_requests_enabled": True,
                    },
                }
            ],
            "visibility_config": {
                "cloudwatch_metrics_enabled": True,
                "metric_name": "acl",
                "sampled_requests_enabled": True,
            },
            "tags": TAGS,
        },
    ),
    "bucket": harness.resource_builder(aws.s3.Bucket, {"tags": TAGS}),
    "public_access_block": harness.resource_builder(
        aws.s3.BucketPublicAccessBlock,
        {
            "bucket": "logs",
            "block_public_acls": True,
            "block_public_policy": True,
            "ignore_public_acls": True,
            "restrict_public_buckets": True,
        },
    ),
    "sse": harness.resource_builder(
        aws.s3.BucketServerSideEncryptionConfiguration,
        {
            "bucket": "logs",
            "rules": [{"apply_server_side_encryption_by_default": {"sse_algorithm": "AES256"}}],
        },
    ),
    "bucket_policy": harness.resource_builder(
        aws.s3.BucketPolicy,
        {
            "bucket": "logs",
            "policy": json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Sid": "DenyInsecureTransport",
                            "Effect": "Deny",
                            "Principal": "*",
                            "Action": "s3:*",
                            "Resource": ["arn:aws:s3:::logs", "arn:aws:s3:::logs/*"],
                            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                        }
                    ],
                }
            ),
        },
    ),
    "ownership": harness.resource_builder(
        aws.s3.BucketOwnershipControls,
        {"bucket": "logs", "rule": {"object_ownership": "BucketOwnerEnforced"}},
    ),
    "ecr_lifecycle": harness.resource_builder(
        aws.ecr.LifecyclePolicy,
        {
            "repository": "groundwork",
            "policy": json.dumps(
                {
                    "rules": [
                        {
                            "rulePriority": 1,
                            "description": "expire untagged",
                            "selection": {
                                "tagStatus": "untagged",
                                "countType": "sinceImagePushed",
                                "countUnit": "days",
                                "countNumber": 7,
                            },
                            "action": {"type": "expire"},
                        }
                    ]
                }
            ),
        },
    ),
}

# (rule, builder, overrides that break it). Several rows per rule cover each resource
# type the rule guards and each way of failing it.
BAD: list[tuple[str, str, dict[str, Any]]] = [
    ("aws-sqs-queue-encrypted", "sqs_queue", {"kms_master_key_id": None}),
    (
        "aws-sqs-queue-encrypted",
        "sqs_queue",
        {"kms_master_key_id": None, "sqs_managed_sse_enabled": False},
    ),
    ("aws-ec2-instance-imdsv2", "nat_instance", {"metadata_options": {"http_tokens": "optional"}}),
    ("aws-ec2-instance-imdsv2", "nat_instance", {"metadata_options": None}),
    (
        "aws-ec2-instance-volume-encrypted",
        "nat_instance",
        {"root_block_device": {"volume_type": "gp3"}},
    ),
    ("aws-any-resource-tagged", "vpc", {"tags": {"environment": "production"}}),
    ("aws-any-resource-tagged", "ecs_service", {"tags": {**TAGS, "environment": "prod"}}),
    ("aws-any-resource-tagged", "rds", {"tags": None}),
    ("aws-rds-instance-encrypted", "rds", {"storage_encrypted": False}),
    ("aws-rds-instance-not-public", "rds", {"publicly_accessible": True}),
    ("aws-rds-instance-backup-retention", "rds", {"backup_retention_period": 7}),
    ("aws-rds-instance-multi-az", "rds", {"multi_az": False}),
    ("aws-rds-instance-deletion-protection", "rds", {"deletion_protection": False}),
    (
        "aws-rds-parametergroup-force-ssl",
        "parameter_group",
        {"parameters": [{"name": "log_min_duration_statement", "value": "500"}]},
    ),
    (
        "aws-rds-parametergroup-force-ssl",
        "parameter_group",
        {"family": "mysql8.0", "parameters": []},
    ),
    ("aws-rds-proxy-tls-required", "proxy", {"require_tls": False}),
    ("aws-elasticache-replicationgroup-encrypted", "redis", {"at_rest_encryption_enabled": False}),
    ("aws-elasticache-replicationgroup-tls", "redis", {"transit_encryption_enabled": False}),
    ("aws-elasticache-replicationgroup-tls", "redis", {"transit_encryption_mode": "preferred"}),
    ("aws-elasticache-replicationgroup-auth", "redis", {"auth_token": None}),
    ("aws-elasticache-replicationgroup-backups", "redis", {"snapshot_retention_limit": 0}),
    (
        "aws-elasticache-replicationgroup-multi-az",
        "redis",
        {"num_cache_clusters": 1, "automatic_failover_enabled": False, "multi_az_enabled": False},
    ),
    ("aws-mq-broker-not-public", "broker", {"publicly_accessible": True}),
    (
        "aws-mq-broker-encrypted",
        "broker",
        {"engine_type": "ActiveMQ", "encryption_options": {"use_aws_owned_key": False}},
    ),
    ("aws-mq-broker-cluster", "broker", {"deployment_mode": "SINGLE_INSTANCE"}),
    ("aws-mq-broker-logs", "broker", {"logs": {"general": False}}),
    ("aws-mq-broker-minor-upgrades", "broker", {"auto_minor_version_upgrade": False}),
    (
        "aws-ec2-securitygroup-no-public-ingress",
        "security_group",
        {
            "ingress": [
                {
                    "protocol": "tcp",
                    "from_port": 22,
                    "to_port": 22,
                    "cidr_blocks": ["0.0.0.0/0"],
                    "description": "SSH",
                }
            ]
        },
    ),
    (
        "aws-ec2-securitygroup-no-public-ingress",
        "security_group",
        {
            "ingress": [
                {
                    "protocol": "-1",
                    "from_port": 0,
                    "to_port": 0,
                    "ipv6_cidr_blocks": ["::/0"],
                    "description": "everything",
                }
            ]
        },
    ),
    (
        "aws-ec2-securitygroup-no-public-ingress",
        "sg_rule",
        {"source_security_group_id": None, "cidr_blocks": ["0.0.0.0/0"]},
    ),
    ("aws-ec2-securitygroup-no-public-ingress", "ingress_rule", {"from_port": 0, "to_port": 65535}),
    ("aws-ec2-securitygroup-described", "security_group", {"description": "Managed by Pulumi"}),
    (
        "aws-ec2-securitygroup-described",
        "security_group",
        {
            "egress": [
                {"protocol": "-1", "from_port": 0, "to_port": 0, "cidr_blocks": ["10.40.0.0/16"]}
            ]
        },
    ),
    ("aws-ec2-securitygrouprule-described", "sg_rule", {"description": None}),
    ("aws-ec2-securitygrouprule-described", "ingress_rule", {"description": None}),
    ("aws-ec2-securitygrouprule-described", "egress_rule", {"description": None}),
    (
        "aws-ec2-defaultsecuritygroup-closed",
        "default_sg",
        {"ingress": [{"protocol": "-1", "from_port": 0, "to_port": 0, "self": True}]},
    ),
    ("aws-ec2-subnet-no-auto-public-ip", "subnet", {"map_public_ip_on_launch": True}),
    ("aws-ec2-flowlog-all-traffic", "flow_log", {"traffic_type": "REJECT"}),
    ("aws-ec2-vpcendpoint-private-dns", "endpoint", {"private_dns_enabled": False}),
    ("aws-ec2-vpcendpoint-private-dns", "endpoint", {"security_group_ids": None}),
    ("aws-lb-loadbalancer-drop-invalid-headers", "lb", {"drop_invalid_header_fields": False}),
    ("aws-lb-loadbalancer-deletion-protection", "lb", {"enable_deletion_protection": False}),
    (
        "aws-lb-listener-http-redirect",
        "http_listener",
        {"default_actions": [{"type": "forward", "target_group_arn": "arn:tg"}]},
    ),
    ("aws-lb-listener-tls-policy", "https_listener", {"ssl_policy": "ELBSecurityPolicy-2016-08"}),
    ("aws-lb-listener-tls-policy", "https_listener", {"ssl_policy": None}),
    ("aws-lb-targetgroup-health-check", "target_group", {"health_check": {"enabled": False}}),
    ("aws-lb-targetgroup-health-check", "target_group", {"health_check": None}),
    (
        "aws-ecs-taskdefinition-no-plaintext-secrets",
        "task",
        {"containers": [_container(environment=[{"name": "DB_PASSWORD", "value": "hunter2"}])]},
    ),
    (
        "aws-ecs-taskdefinition-no-plaintext-secrets",
        "task",
        {
            "containers": [
                _container(
                    environment=[{"name": "BROKER_URL", "value": "amqps://app:hunter2@broker:5671"}]
                )
            ]
        },
    ),
    (
        "aws-ecs-taskdefinition-non-privileged",
        "task",
        {"containers": [_container(privileged=True)]},
    ),
    ("aws-ecs-taskdefinition-non-privileged", "task", {"pid_mode": "host"}),
    ("aws-ecs-taskdefinition-logging", "task", {"containers": [_container(logConfiguration=None)]}),
    (
        "aws-ecs-service-circuit-breaker",
        "ecs_service",
        {"deployment_circuit_breaker": {"enable": True, "rollback": False}},
    ),
    ("aws-ecs-service-circuit-breaker", "ecs_service", {"deployment_circuit_breaker": None}),
    (
        "aws-ecs-service-no-public-ip",
        "ecs_service",
        {
            "network_configuration": {
                "subnets": ["subnet-a"],
                "security_groups": ["sg"],
                "assign_public_ip": True,
            }
        },
    ),
    ("aws-ecs-cluster-container-insights", "cluster", {"settings": None}),
    (
        "aws-ecr-repository-scan-on-push",
        "ecr",
        {"image_scanning_configuration": {"scan_on_push": False}},
    ),
    ("aws-ecr-repository-immutable-tags", "ecr", {"image_tag_mutability": "MUTABLE"}),
    ("aws-cloudwatch-loggroup-retention", "log_group", {"retention_in_days": None}),
    ("aws-cloudwatch-loggroup-retention", "log_group", {"retention_in_days": 30}),
    ("aws-cloudwatch-metricalarm-actions", "alarm", {"alarm_actions": None}),
    ("aws-cloudwatch-metricalarm-actions", "alarm", {"actions_enabled": False}),
    ("aws-sns-topic-encrypted", "topic", {"kms_master_key_id": None}),
    ("aws-kms-key-rotation", "kms", {"enable_key_rotation": False}),
    # Production requires CMKs (groundwork:cmek); the AWS-managed key / service default.
    ("aws-kms-datastore-cmk", "rds", {"kms_key_id": None}),
    ("aws-kms-datastore-cmk", "redis", {"kms_key_id": None}),
    ("aws-kms-datastore-cmk", "secret", {"kms_key_id": None}),
    ("aws-kms-datastore-cmk", "log_group", {"kms_key_id": None}),
    (
        "aws-kms-datastore-cmk",
        "ecr",
        {"encryption_configurations": [{"encryption_type": "AES256"}]},
    ),
    ("aws-kms-datastore-cmk", "ecr", {"encryption_configurations": [{"encryption_type": "KMS"}]}),
    ("aws-kms-datastore-cmk", "ecr", {"encryption_configurations": None}),
    ("aws-secretsmanager-secret-recoverable", "secret", {"recovery_window_in_days": 0}),
    ("aws-iam-policy-no-admin", "iam_policy", {"policy": json.dumps(ADMIN)}),
    ("aws-iam-policy-no-admin", "role_policy", {"policy": json.dumps(ADMIN)}),
    (
        "aws-iam-policy-no-admin",
        "role",
        {"inline_policies": [{"name": "admin", "policy": json.dumps(ADMIN)}]},
    ),
    (
        "aws-iam-rolepolicyattachment-no-admin",
        "attachment",
        {"policy_arn": "arn:aws:iam::aws:policy/AdministratorAccess"},
    ),
    ("aws-wafv2-webacl-rules", "web_acl", {"rules": None}),
    ("aws-wafv2-logging-redacts-authorization", "waf_logging", {"redacted_fields": None}),
    (
        "aws-wafv2-logging-redacts-authorization",
        "waf_logging",
        {"redacted_fields": [{"single_header": {"name": "cookie"}}]},
    ),
    ("aws-rds-backup-replication-encrypted", "backup_replication", {"kms_key_id": None}),
    (
        "aws-s3-bucketpublicaccessblock-enabled",
        "public_access_block",
        {"restrict_public_buckets": False},
    ),
    ("aws-s3-bucket-no-public-acl", "bucket", {"acl": "public-read"}),
    (
        "aws-s3-bucketpolicy-tls-only",
        "bucket_policy",
        {
            "policy": json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {
                                "Service": "logdelivery.elasticloadbalancing.amazonaws.com"
                            },
                            "Action": "s3:PutObject",
                            "Resource": "arn:aws:s3:::logs/*",
                        }
                    ],
                }
            )
        },
    ),
    (
        "aws-s3-bucketownershipcontrols-enforced",
        "ownership",
        {"rule": {"object_ownership": "ObjectWriter"}},
    ),
    ("aws-ecr-lifecyclepolicy-rules", "ecr_lifecycle", {"policy": json.dumps({"rules": []})}),
    ("aws-s3-bucket-encrypted", "sse", {"rules": [{"bucket_key_enabled": True}]}),
]

# Good variants beyond the baselines: legitimate shapes a naive rule would reject.
GOOD_EXTRA: list[tuple[str, str, dict[str, Any]]] = [
    (
        "aws-sqs-queue-encrypted",
        "sqs_queue",
        {"kms_master_key_id": None, "sqs_managed_sse_enabled": True},
    ),
    (
        "aws-ec2-securitygroup-no-public-ingress",
        "sg_rule",
        {"source_security_group_id": None, "cidr_blocks": ["10.40.0.0/16"]},
    ),
    ("aws-lb-listener-http-redirect", "https_listener", {}),
    ("aws-lb-listener-tls-policy", "http_listener", {}),
    ("aws-rds-instance-backup-retention", "rds", {"backup_retention_period": 14}),
    ("aws-secretsmanager-secret-recoverable", "secret", {"recovery_window_in_days": 7}),
    (
        "aws-kms-key-rotation",
        "kms",
        {
            "customer_master_key_spec": "RSA_2048",
            "key_usage": "SIGN_VERIFY",
            "enable_key_rotation": False,
        },
    ),
    (
        "aws-ecs-taskdefinition-no-plaintext-secrets",
        "task",
        {
            "containers": [
                _container(
                    environment=[
                        {"name": "JWT_ALGORITHM", "value": "HS256"},
                        {"name": "RABBITMQ_USER", "value": "app"},
                        {"name": "LLM_BASE_URL", "value": "https://api.example.com/v1"},
                    ]
                )
            ]
        },
    ),
]


def _bad_name(index: int) -> str:
    return f"bad-{index}"


def _program() -> None:
    for key, build in BUILDERS.items():
        build(f"good-{key}")
    for index, (_, builder, overrides) in enumerate(BAD):
        build_bad = BUILDERS[builder]
        build_bad(_bad_name(index), **overrides)
    for index, (_, builder, overrides) in enumerate(GOOD_EXTRA):
        BUILDERS[builder](f"extra-{index}", **overrides)


@pytest.fixture(scope="module")
def graph() -> ProgramRun:
    return record(_program)


def _rules_for(resource_type: str) -> list[str]:
    return [r.name for r in aws_rules.RULES if resource_type in r.resource_types]


@pytest.mark.parametrize(**harness.rule_cases(BAD))
def test_rule_rejects_bad_resource(
    graph: ProgramRun, index: int, case: tuple[str, str, dict[str, Any]]
) -> None:
    harness.assert_rejected(case[0], graph.named(_bad_name(index)))


@pytest.mark.parametrize("key", list(BUILDERS))
def test_good_baseline_passes_every_rule(graph: ProgramRun, key: str) -> None:
    resource = graph.named(f"good-{key}")
    harness.assert_passes_every_rule("AWS", _rules_for(resource.type), resource)


@pytest.mark.parametrize(**harness.rule_cases(GOOD_EXTRA))
def test_rule_accepts_legitimate_variant(
    graph: ProgramRun, index: int, case: tuple[str, str, dict[str, Any]]
) -> None:
    assert violations(case[0], graph.named(f"extra-{index}")) == []


def test_every_aws_resource_rule_has_a_rejecting_and_an_accepting_case() -> None:
    resource_rules = {r.name for r in aws_rules.RULES}
    assert {rule for rule, _, _ in BAD} == resource_rules
    baseline_types = _baseline_types()
    for rule in aws_rules.RULES:
        assert baseline_types & set(rule.resource_types), f"{rule.name} has no good baseline"


def _baseline_types() -> set[str]:
    def program() -> None:
        for key, build in BUILDERS.items():
            build(f"t-{key}")

    return {r.type for r in record(program).resources}


def test_tls_policy_and_retention_minimum_follow_the_environment(graph: ProgramRun) -> None:
    thirty_days = graph.named(
        _bad_name(
            next(
                i
                for i, (rule, _, kw) in enumerate(BAD)
                if rule == "aws-cloudwatch-loggroup-retention" and kw.get("retention_in_days") == 30
            )
        )
    )
    assert violations("aws-cloudwatch-loggroup-retention", thirty_days)
    assert (
        violations("aws-cloudwatch-loggroup-retention", thirty_days, {"environment": "staging"})
        == []
    )
    assert (
        violations(
            "aws-cloudwatch-loggroup-retention",
            thirty_days,
            {"environment": "production", "minLogRetentionDays": 30},
        )
        == []
    )


def test_cmks_are_required_only_where_the_environment_configures_them(graph: ProgramRun) -> None:
    """Staging's default (``groundwork:cmek`` false) keeps the AWS-managed keys: the rule is
    silent there and advisory; production requires CMKs and blocks."""
    from policies.pack import pack_config

    rule = "aws-kms-datastore-cmk"
    staging = pack_config("staging")[rule]
    production = pack_config("production")[rule]
    assert (staging["requireCmk"], staging["enforcementLevel"]) == (False, "advisory")
    assert (production["requireCmk"], production["enforcementLevel"]) == (True, "mandatory")
    plain = [graph.named(_bad_name(i)) for i, (r, _, _) in enumerate(BAD) if r == rule]
    assert len(plain) == 7
    for resource in plain:
        assert violations(rule, resource, staging) == [], resource.name
        assert violations(rule, resource, production), resource.name
