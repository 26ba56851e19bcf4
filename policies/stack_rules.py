"""Stack-level rules: properties of the whole graph no single resource can show.

They link resources through the engine's property dependencies (known during a
preview even when ids are not) and fall back to comparing identifiers.
"""

from __future__ import annotations

from collections.abc import Iterator

from pulumi_policy import PolicyResource

from policies import aws_rules as aws
from policies import gcp_rules as gcp
from policies.registry import (
    Rule,
    Severity,
    StackSubject,
    Subject,
    get,
    references,
    safe_props,
)

AWS_DATA_STORES = (aws.RDS_INSTANCE, aws.REDIS_GROUP, aws.MQ_BROKER)
GCP_DATA_STORES = (gcp.SQL_INSTANCE, gcp.REDIS_INSTANCE)
# Properties through which a resource puts itself behind a security group.
SG_ATTACHMENT_PROPS = (
    "securityGroups",
    "vpcSecurityGroupIds",
    "securityGroupIds",
    "networkConfiguration",
)
SG_RULE_TYPES = (aws.SECURITY_GROUP_RULE, aws.VPC_INGRESS_RULE)


def _label(resource: PolicyResource) -> str:
    return f"{resource.resource_type.rsplit(':', 1)[-1]} {resource.name}"


def _aws_alarmed(s: StackSubject) -> Iterator[tuple[str, str | None]]:
    alarms = s.of_type(aws.METRIC_ALARM)
    for store in s.of_type(*AWS_DATA_STORES):
        if not any(references(alarm, store) for alarm in alarms):
            yield (f"{_label(store)} has no CloudWatch alarm on its metrics.", store.urn)


def _dead_letter_topics(s: StackSubject) -> list[PolicyResource]:
    subscriptions = s.of_type(gcp.PUBSUB_SUBSCRIPTION)
    return [
        topic
        for topic in s.of_type(gcp.PUBSUB_TOPIC)
        if any(references(sub, topic, "deadLetterPolicy") for sub in subscriptions)
    ]


def _gcp_alerted(s: StackSubject) -> Iterator[tuple[str, str | None]]:
    alerts = s.of_type(gcp.ALERT_POLICY)
    for store in s.of_type(*GCP_DATA_STORES):
        if not any(references(alert, store) for alert in alerts):
            yield (f"{_label(store)} has no Cloud Monitoring alert policy.", store.urn)
    subscriptions = s.of_type(gcp.PUBSUB_SUBSCRIPTION)
    for topic in _dead_letter_topics(s):
        readers = [sub for sub in subscriptions if references(sub, topic, "topic")]
        if not any(references(alert, target) for alert in alerts for target in [topic, *readers]):
            yield (f"Dead-letter {_label(topic)} has no alert on undelivered messages.", topic.urn)


def _dead_lettered(s: StackSubject) -> Iterator[tuple[str, str | None]]:
    dead_letter_topics = _dead_letter_topics(s)
    for sub in s.of_type(gcp.PUBSUB_SUBSCRIPTION):
        if any(references(sub, topic, "topic") for topic in dead_letter_topics):
            continue  # the subscription that drains the dead-letter topic itself
        if not get(safe_props(sub), "deadLetterPolicy.deadLetterTopic"):
            yield (
                f"Subscription {sub.name} retries poison messages forever (no deadLetterPolicy).",
                sub.urn,
            )


def _subject(resource: PolicyResource, s: StackSubject) -> Subject:
    return Subject(
        type=resource.resource_type,
        name=resource.name,
        urn=resource.urn,
        props=safe_props(resource),
        tier=s.tier,
        config=s.config,
    )


def _public_lb_only(s: StackSubject) -> Iterator[tuple[str, str | None]]:
    groups = s.of_type(aws.SECURITY_GROUP)
    public = [g for g in groups if aws.world_ingress_ports(_subject(g, s))]
    for rule in s.of_type(*SG_RULE_TYPES):
        if aws.world_ingress_ports(_subject(rule, s)):
            public += [g for g in groups if references(rule, g, "securityGroupId")]
    for group in {g.urn: g for g in public}.values():
        for user in s.resources:
            if user.resource_type in (aws.LOAD_BALANCER, aws.SECURITY_GROUP, *SG_RULE_TYPES):
                continue
            if references(user, group, *SG_ATTACHMENT_PROPS):
                yield (
                    f"{_label(user)} uses internet-facing security group {group.name}; only "
                    "the load balancer may.",
                    user.urn,
                )


def _vpc_flow_logs(s: StackSubject) -> Iterator[tuple[str, str | None]]:
    flow_logs = s.of_type(aws.FLOW_LOG)
    for vpc in s.of_type(aws.VPC):
        if not any(references(log, vpc, "vpcId") for log in flow_logs):
            yield (f"VPC {vpc.name} has no flow log.", vpc.urn)


def _bucket_blocked(s: StackSubject) -> Iterator[tuple[str, str | None]]:
    blocks = s.of_type(aws.S3_PUBLIC_ACCESS_BLOCK)
    for bucket in s.of_type(*aws.S3_BUCKETS):
        if not any(references(block, bucket, "bucket") for block in blocks):
            yield (f"Bucket {bucket.name} has no BucketPublicAccessBlock.", bucket.urn)


HTTP_PROXY = "gcp:compute/targetHttpProxy:TargetHttpProxy"
URL_MAP = "gcp:compute/uRLMap:URLMap"


def _http_redirects(s: StackSubject) -> Iterator[tuple[str, str | None]]:
    maps = s.of_type(URL_MAP)
    for proxy in s.of_type(HTTP_PROXY):
        targets = [m for m in maps if references(proxy, m, "urlMap")]
        if not targets or not all(
            get(safe_props(m), "defaultUrlRedirect.httpsRedirect") is True for m in targets
        ):
            yield (
                f"HTTP proxy {proxy.name} serves plain HTTP instead of redirecting to HTTPS.",
                proxy.urn,
            )


RULES: list[Rule] = [
    Rule(
        "aws-cloudwatch-datastore-alarmed",
        "Every data store (RDS instance, ElastiCache replication group, MQ broker) has a "
        "CloudWatch alarm on its metrics.",
        (*AWS_DATA_STORES, aws.METRIC_ALARM),
        Severity.HIGH,
        "Create a cloudwatch.MetricAlarm whose dimensions name the store (CPU, free storage, "
        "memory, queue depth) with alarm_actions to the alarm topic.",
        stack_check=_aws_alarmed,
    ),
    Rule(
        "aws-ec2-securitygroup-public-lb-only",
        "Security groups open to the internet are attached to load balancers only.",
        (aws.SECURITY_GROUP, *SG_RULE_TYPES, aws.LOAD_BALANCER),
        Severity.CRITICAL,
        "Give tasks, databases and endpoints their own security group that admits the load "
        "balancer's security group, not the internet.",
        control="EC2.18",
        stack_check=_public_lb_only,
    ),
    Rule(
        "aws-ec2-vpc-flow-logs",
        "Every VPC has a flow log.",
        (aws.VPC, aws.FLOW_LOG),
        Severity.MEDIUM,
        "Create an ec2.FlowLog(vpc_id=vpc.id, traffic_type='ALL') to CloudWatch Logs.",
        control="EC2.6 / CIS 3.7",
        stack_check=_vpc_flow_logs,
    ),
    Rule(
        "aws-s3-bucket-access-blocked",
        "Every bucket has a public access block.",
        (*aws.S3_BUCKETS, aws.S3_PUBLIC_ACCESS_BLOCK),
        Severity.CRITICAL,
        "Create an s3.BucketPublicAccessBlock for the bucket with all four flags true.",
        control="S3.8",
        stack_check=_bucket_blocked,
    ),
    Rule(
        "gcp-monitoring-datastore-alerted",
        "Every data store (Cloud SQL, Memorystore, Pub/Sub dead-letter topic) has a Cloud "
        "Monitoring alert policy referencing it.",
        (*GCP_DATA_STORES, gcp.PUBSUB_TOPIC, gcp.ALERT_POLICY),
        Severity.HIGH,
        "Create a monitoring.AlertPolicy whose condition filter names the instance / "
        "dead-letter subscription (e.g. undelivered messages > 0).",
        stack_check=_gcp_alerted,
    ),
    Rule(
        "gcp-compute-targethttpproxy-https-redirect",
        "Plain-HTTP proxies only redirect to HTTPS.",
        (HTTP_PROXY, URL_MAP),
        Severity.HIGH,
        "Point the port-80 proxy at a URL map with default_url_redirect={'https_redirect': True}.",
        control="CIS GCP 3.9 (related)",
        stack_check=_http_redirects,
    ),
    Rule(
        "gcp-pubsub-subscription-dead-letter",
        "Work subscriptions dead-letter messages that keep failing.",
        (gcp.PUBSUB_SUBSCRIPTION,),
        Severity.HIGH,
        "Set dead_letter_policy={'dead_letter_topic': dlq.id, 'max_delivery_attempts': 5} and "
        "grant the Pub/Sub service agent publisher on the DLQ and subscriber on the "
        "subscription.",
        stack_check=_dead_lettered,
    ),
]
