"""Alarms: an encrypted SNS topic, CloudWatch alarms on every tier and a dashboard."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from components.aws.kms import EncryptionKey, EncryptionKeyArgs

DEPLOYMENT_ALARMS = ("alb-5xx-rate", "api-p95-latency")
"""The alarms that gate an API deployment (ECS deployment alarms, rollback on ALARM)."""


def deployment_alarm_names(name: str) -> list[str]:
    """CloudWatch names of the deployment alarms of the ``Alarms`` component ``name``.

    The one place these names are made: the container service is built before the
    alarms (the alarms watch its services), so it gets the names, not the resources.
    Alarm names are unique per account and region; ``name`` carries the service, the
    tier or review stack (``<service>-<tier>-alarms``), so two stacks never share one.
    """
    return [f"{name}-{suffix}" for suffix in DEPLOYMENT_ALARMS]


def statistic(
    namespace: str,
    metric_name: str,
    dimensions: Mapping[str, Any] | None,
    stat: str,
    period: int = 300,
) -> dict[str, Any]:
    """The ``MetricAlarm`` inputs of an alarm on one metric: ``stat`` over ``period`` s.

    A percentile (``p95``) is an extended statistic to CloudWatch, which takes either
    ``Statistic`` or ``ExtendedStatistic``, never both (PutMetricAlarm API reference).
    """
    watched: dict[str, Any] = {"namespace": namespace, "metric_name": metric_name}
    if dimensions is not None:
        watched["dimensions"] = dimensions
    watched["extended_statistic" if stat.startswith("p") else "statistic"] = stat
    watched["period"] = period
    return watched


def above(threshold: float, *, periods: int, of: int | None = None) -> dict[str, Any]:
    """Alarm when ``of`` (default: every one) of the last ``periods`` values exceed it."""
    return _breach("GreaterThanThreshold", threshold, periods, of)


def below(threshold: float, *, periods: int, of: int | None = None) -> dict[str, Any]:
    """Alarm when ``of`` (default: every one) of the last ``periods`` values fall below it."""
    return _breach("LessThanThreshold", threshold, periods, of)


def _breach(operator: str, threshold: float, periods: int, of: int | None) -> dict[str, Any]:
    condition: dict[str, Any] = {
        "comparison_operator": operator,
        "threshold": threshold,
        "evaluation_periods": periods,
    }
    if of is not None:
        condition["datapoints_to_alarm"] = of
    return condition


def expression(id_: str, label: str, expr: str, **extra: object) -> dict[str, object]:
    """The metric query an alarm evaluates: ``expr`` over the other (non-returned) queries."""
    return {"id": id_, "label": label, "return_data": True, "expression": expr, **extra}


@dataclass
class AlarmsArgs:
    """Resource names to watch and the thresholds; one alarm per signal."""

    load_balancer_arn_suffix: pulumi.Input[str]
    target_group_arn_suffix: pulumi.Input[str]
    cluster_name: pulumi.Input[str]
    service_names: Mapping[str, pulumi.Input[str]]
    """``api`` and ``worker`` get CPU/memory alarms; others are on the dashboard only."""
    db_instance_identifier: pulumi.Input[str]
    db_allocated_storage_gb: int
    cache_cluster_ids: Sequence[str]
    broker_name: pulumi.Input[str] | None = None
    """Amazon MQ: queue alarms on the broker's queues; or the ``sqs_*`` names."""
    sqs_queue_name: pulumi.Input[str] | None = None
    sqs_dlq_name: pulumi.Input[str] | None = None
    email: str | None = None
    alternate_target_group_arn_suffix: pulumi.Input[str] | None = None
    """ECS blue/green: the target group that serves every other deployment."""
    queue_name: str = "jobs"
    dlq_name: str = "jobs.dlq"
    queue_vhost: str = "/"
    error_rate_percent: float = 1.0
    p95_latency_seconds: float = 2.0
    ecs_cpu_percent: float = 80.0
    ecs_memory_percent: float = 85.0
    db_cpu_percent: float = 80.0
    db_free_storage_percent: float = 10.0
    db_max_connections: int = 100
    cache_memory_percent: float = 80.0
    protect: bool = False
    """Pulumi ``protect`` + ``retain_on_delete`` on the notification topic's key."""
    cache_cpu_percent: float = 80.0
    queue_depth: int = 1000
    queue_age_seconds: int = 900
    """SQS: the oldest waiting message is older than this (workers stuck or too few)."""
    watched_services: tuple[str, ...] = field(default=("api", "worker"))
    service_max_counts: Mapping[str, int] = field(default_factory=dict)
    """Autoscaling ceilings: a watched service's CPU/memory alarm then fires only while it
    runs at its maximum, when scaling out can no longer help (below it, high CPU is the
    scaling signal itself, not an incident)."""
    db_proxy_name: pulumi.Input[str] | None = None
    db_freeable_memory_bytes: float | None = None
    """Alarm when RDS FreeableMemory drops below this (e.g. 10 % of the class's memory)."""
    nat_gateways: int = 0
    """NAT gateways in the VPC: > 0 adds an alarm on ErrorPortAllocation (source-port
    exhaustion: new outbound connections fail)."""
    cache_replication_lag_seconds: float = 30.0
    broker_memory_percent: float = 80.0
    """Of the RabbitMQ memory high watermark: at 100 % the broker blocks every publisher."""
    broker_cpu_percent: float = 80.0
    broker_disk_free_factor: float = 2.0
    """Alarm when free disk falls below this multiple of RabbitMQ's disk_free_limit
    (at the limit the broker blocks publishers)."""
    job_log_group_names: Sequence[pulumi.Input[str]] = ()
    """The worker's and relay's log groups. A metric filter on each counts the jobs a
    safety net had to end (the relay's reconciler: "jobs past their deadline failed";
    the worker's dead-letter tap: "job ended by its dead letter", see the service's
    worker/terminal.py) and the ``stuck-jobs`` alarm fires on any."""

    def __post_init__(self) -> None:
        if self.email is not None and "@" not in self.email:
            raise ValueError(f"email={self.email!r} is not an e-mail address")
        missing = [s for s in self.watched_services if s not in self.service_names]
        if missing:
            raise ValueError(f"service_names lacks {missing}")
        if not self.cache_cluster_ids:
            raise ValueError("cache_cluster_ids is empty")
        queue, dlq = self.sqs_queue_name is not None, self.sqs_dlq_name is not None
        if queue != dlq or queue == (self.broker_name is not None):
            raise ValueError("set broker_name (Amazon MQ) or both sqs_queue_name and sqs_dlq_name")

    @property
    def sqs(self) -> bool:
        return self.sqs_queue_name is not None


class Alarms(pulumi.ComponentResource):
    topic_arn: pulumi.Output[str]
    dashboard_name: pulumi.Output[str]
    alarm_names: list[str]
    deployment_alarm_names: list[str]
    """CloudWatch names of the alarms in ``DEPLOYMENT_ALARMS`` (fixed, not auto-named)."""

    def __init__(
        self, name: str, args: AlarmsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("groundwork:aws:Alarms", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        # CloudWatch publishes to an encrypted topic as itself: its service needs the key.
        key = EncryptionKey(
            f"{name}-kms",
            EncryptionKeyArgs(
                description=f"{name}: alarm notifications",
                service_principals=["cloudwatch.amazonaws.com"],
                protect=args.protect,
            ),
            opts=child,
        )
        topic = aws.sns.Topic(f"{name}-topic", kms_master_key_id=key.key_arn, opts=child)
        if args.email:
            aws.sns.TopicSubscription(
                f"{name}-email",
                topic=topic.arn,
                protocol="email",
                endpoint=args.email,
                opts=child,
            )
        self.topic_arn = topic.arn
        self.alarm_names = []
        alb = {"LoadBalancer": args.load_balancer_arn_suffix}

        self.deployment_alarm_names = deployment_alarm_names(name)

        def alarm(suffix: str, description: str, **kwargs: Any) -> None:
            self.alarm_names.append(suffix)
            if suffix in DEPLOYMENT_ALARMS:
                # ECS looks deployment alarms up by name: a fixed name, the one the
                # service was given (deployment_alarm_names).
                kwargs["name"] = f"{name}-{suffix}"
            aws.cloudwatch.MetricAlarm(
                f"{name}-{suffix}",
                alarm_description=description,
                alarm_actions=[topic.arn],
                ok_actions=[topic.arn],
                treat_missing_data=kwargs.pop("treat_missing_data", "notBreaching"),
                **kwargs,
                opts=child,
            )

        def metric(
            id_: str, namespace: str, metric_name: str, dims: Mapping[str, object], stat: str
        ) -> dict[str, object]:
            return {
                "id": id_,
                "return_data": False,
                "metric": {
                    "namespace": namespace,
                    "metric_name": metric_name,
                    "dimensions": dict(dims),
                    "period": 60,
                    "stat": stat,
                },
            }

        alarm(
            "alb-5xx-rate",
            f"More than {args.error_rate_percent} % of API requests fail with 5xx",
            **above(args.error_rate_percent, periods=5, of=3),
            metric_queries=[
                metric("elb5xx", "AWS/ApplicationELB", "HTTPCode_ELB_5XX_Count", alb, "Sum"),
                metric("target5xx", "AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", alb, "Sum"),
                metric("requests", "AWS/ApplicationELB", "RequestCount", alb, "Sum"),
                expression(
                    "rate",
                    "5xx rate (%)",
                    "IF(requests > 0, 100 * (FILL(elb5xx, 0) + FILL(target5xx, 0)) / requests, 0)",
                ),
            ],
        )
        alarm(
            "api-p95-latency",
            f"API p95 target response time above {args.p95_latency_seconds} s",
            **statistic("AWS/ApplicationELB", "TargetResponseTime", alb, "p95", period=60),
            **above(args.p95_latency_seconds, periods=5, of=3),
        )
        # Blue/green deployments alternate between two target groups: watch both.
        groups = {"api-unhealthy-hosts": args.target_group_arn_suffix}
        if args.alternate_target_group_arn_suffix is not None:
            groups["api-unhealthy-hosts-alt"] = args.alternate_target_group_arn_suffix
        for suffix, group in groups.items():
            alarm(
                suffix,
                "The load balancer sees unhealthy API tasks",
                **statistic(
                    "AWS/ApplicationELB",
                    "UnHealthyHostCount",
                    {**alb, "TargetGroup": group},
                    "Maximum",
                    period=60,
                ),
                **above(0, periods=3),
            )
        for service in args.watched_services:
            dims = {"ClusterName": args.cluster_name, "ServiceName": args.service_names[service]}
            ceiling = args.service_max_counts.get(service)
            for metric_name, limit in (
                ("CPUUtilization", args.ecs_cpu_percent),
                ("MemoryUtilization", args.ecs_memory_percent),
            ):
                suffix = f"{service}-{metric_name.removesuffix('Utilization').lower()}"
                if ceiling is None:
                    alarm(
                        suffix,
                        f"{service} tasks average {metric_name} above {limit} %",
                        **statistic("AWS/ECS", metric_name, dims, "Average", period=60),
                        **above(limit, periods=5),
                    )
                    continue
                alarm(
                    suffix,
                    f"{service} at its autoscaling maximum ({ceiling} tasks) and still "
                    f"averaging {metric_name} above {limit} %",
                    **above(limit, periods=5),
                    metric_queries=[
                        metric("usage", "AWS/ECS", metric_name, dims, "Average"),
                        metric(
                            "running", "ECS/ContainerInsights", "RunningTaskCount", dims, "Average"
                        ),
                        expression(
                            "at_max",
                            f"{metric_name} while at {ceiling} tasks",
                            f"IF(running >= {ceiling}, usage, 0)",
                        ),
                    ],
                )
        for service, service_name in args.service_names.items():
            dims = {"ClusterName": args.cluster_name, "ServiceName": service_name}
            alarm(
                f"{service}-tasks-below-desired",
                f"{service}: fewer tasks running than desired for 10 minutes (crash loop, "
                "failed pulls or secrets, capacity)",
                **above(0, periods=10),
                treat_missing_data="breaching",
                metric_queries=[
                    metric("desired", "ECS/ContainerInsights", "DesiredTaskCount", dims, "Average"),
                    metric("running", "ECS/ContainerInsights", "RunningTaskCount", dims, "Average"),
                    expression("missing", "desired - running tasks", "desired - running"),
                ],
            )
        db = {"DBInstanceIdentifier": args.db_instance_identifier}
        alarm(
            "db-cpu",
            f"RDS CPU above {args.db_cpu_percent} %",
            **statistic("AWS/RDS", "CPUUtilization", db, "Average"),
            **above(args.db_cpu_percent, periods=3),
        )
        free_bytes = args.db_allocated_storage_gb * 1024**3 * args.db_free_storage_percent / 100
        alarm(
            "db-free-storage",
            f"RDS free storage below {args.db_free_storage_percent} % of the allocated size",
            **statistic("AWS/RDS", "FreeStorageSpace", db, "Minimum"),
            **below(free_bytes, periods=1),
        )
        alarm(
            "db-connections",
            f"RDS connections above {args.db_max_connections}",
            **statistic("AWS/RDS", "DatabaseConnections", db, "Maximum"),
            **above(args.db_max_connections, periods=2),
        )
        if args.db_freeable_memory_bytes is not None:
            alarm(
                "db-freeable-memory",
                f"RDS freeable memory below {args.db_freeable_memory_bytes / 1024**2:.0f} MiB",
                **statistic("AWS/RDS", "FreeableMemory", db, "Minimum"),
                **below(args.db_freeable_memory_bytes, periods=3),
            )
        if args.db_proxy_name is not None:
            proxy = {"ProxyName": args.db_proxy_name}
            alarm(
                "db-proxy-auth-failures",
                "RDS Proxy refuses client logins (IAM token, rds-db:connect or rds_iam grant)",
                **statistic("AWS/RDS", "ClientConnectionsSetupFailedAuth", proxy, "Sum"),
                **above(0, periods=1),
            )
            alarm(
                "db-proxy-availability",
                "RDS Proxy cannot reach its database target",
                **statistic(
                    "AWS/RDS",
                    "AvailabilityPercentage",
                    {**proxy, "TargetGroup": "default", "TargetRole": "READ_WRITE"},
                    "Minimum",
                    period=60,
                ),
                **below(100, periods=3),
            )
        # Only a replica reports ReplicationLag ("This metric is only applicable for a node
        # running as a read replica", ElastiCache User Guide, Metrics for Valkey and Redis
        # OSS), and which node that is changes on failover: every node of a replicated
        # group gets the alarm; a lone primary never reports it, so its alarm could not fire.
        replicated = len(args.cache_cluster_ids) > 1
        for cluster_id in args.cache_cluster_ids if replicated else ():
            alarm(
                f"cache-{cluster_id.rsplit('-', 1)[-1]}-replication-lag",
                f"Cache node {cluster_id} lags its primary by more than "
                f"{args.cache_replication_lag_seconds:g} s",
                **statistic(
                    "AWS/ElastiCache",
                    "ReplicationLag",
                    {"CacheClusterId": cluster_id},
                    "Maximum",
                    period=60,
                ),
                **above(args.cache_replication_lag_seconds, periods=5),
            )
        for cluster_id in args.cache_cluster_ids:
            cache = {"CacheClusterId": cluster_id}
            for suffix, metric_name, limit, stat in (
                ("memory", "DatabaseMemoryUsagePercentage", args.cache_memory_percent, "Maximum"),
                ("cpu", "EngineCPUUtilization", args.cache_cpu_percent, "Average"),
                ("evictions", "Evictions", 0, "Sum"),
            ):
                alarm(
                    f"cache-{cluster_id.rsplit('-', 1)[-1]}-{suffix}",
                    f"Cache node {cluster_id}: {metric_name} above {limit}",
                    **statistic("AWS/ElastiCache", metric_name, cache, stat),
                    **above(limit, periods=2),
                )

        if args.sqs:
            self._sqs_alarms(args, alarm)
        else:
            self._broker_alarms(args, alarm, metric)

        if args.job_log_group_names:
            stuck_metric = f"{name}-jobs-ended-by-safety-net"
            for index, group in enumerate(args.job_log_group_names):
                aws.cloudwatch.LogMetricFilter(
                    f"{name}-stuck-jobs-{index}",
                    log_group_name=group,
                    pattern='{ ($.event = "jobs past their deadline failed") || '
                    '($.event = "job ended by its dead letter") }',
                    metric_transformation=aws.cloudwatch.LogMetricFilterMetricTransformationArgs(
                        name=stuck_metric, namespace="Groundwork", value="1", default_value="0"
                    ),
                    opts=child,
                )
            alarm(
                "stuck-jobs",
                "Jobs got stuck and were failed by a safety net (deadline or dead letter); "
                "their error column says why",
                **statistic("Groundwork", stuck_metric, None, "Sum"),
                **above(0, periods=1),
            )

        body = pulumi.Output.all(
            region=aws.get_region_output(opts=pulumi.InvokeOutputOptions(parent=self)).region,
            alb=args.load_balancer_arn_suffix,
            cluster=args.cluster_name,
            services=pulumi.Output.all(**dict(args.service_names)),
            db=args.db_instance_identifier,
            broker=args.broker_name or "",
            sqs_queue=args.sqs_queue_name or "",
            sqs_dlq=args.sqs_dlq_name or "",
        ).apply(lambda a: dashboard_body(a, args))
        dashboard = aws.cloudwatch.Dashboard(
            f"{name}-dashboard", dashboard_name=name, dashboard_body=body, opts=child
        )
        self.dashboard_name = dashboard.dashboard_name
        self.register_outputs({"topic_arn": self.topic_arn, "dashboard_name": self.dashboard_name})

    @staticmethod
    def _broker_alarms(args: AlarmsArgs, alarm: Any, metric: Any) -> None:
        def queue_dims(queue: str) -> dict[str, pulumi.Input[str]]:
            assert args.broker_name is not None
            return {"Broker": args.broker_name, "VirtualHost": args.queue_vhost, "Queue": queue}

        if args.nat_gateways:
            # A Metrics Insights query: one alarm over every NAT gateway of the region,
            # whose IDs the alarm need not know (alarms cannot use SEARCH; they can use
            # Metrics Insights: cloudwatch-metrics-insights-alarms.html).
            alarm(
                "nat-port-allocation",
                "A NAT gateway ran out of source ports (ErrorPortAllocation): outbound "
                "connections fail",
                **above(0, periods=1),
                metric_queries=[
                    expression(
                        "errors",
                        "ErrorPortAllocation (all NAT gateways)",
                        "SELECT SUM(ErrorPortAllocation) "
                        'FROM SCHEMA("AWS/NATGateway", NatGatewayId)',
                        period=60,
                    )
                ],
            )
        broker = {"Broker": args.broker_name}
        alarm(
            "broker-memory",
            f"RabbitMQ memory above {args.broker_memory_percent} % of its high watermark "
            "(at 100 % publishers are blocked)",
            **above(args.broker_memory_percent, periods=3),
            metric_queries=[
                metric("used", "AWS/AmazonMQ", "RabbitMQMemUsed", broker, "Maximum"),
                metric("limit", "AWS/AmazonMQ", "RabbitMQMemLimit", broker, "Minimum"),
                expression("pct", "memory used (% of watermark)", "100 * used / limit"),
            ],
        )
        alarm(
            "broker-disk",
            f"RabbitMQ free disk below {args.broker_disk_free_factor:g}x its limit "
            "(at the limit publishers are blocked)",
            **below(args.broker_disk_free_factor, periods=3),
            metric_queries=[
                metric("free", "AWS/AmazonMQ", "RabbitMQDiskFree", broker, "Minimum"),
                metric("limit", "AWS/AmazonMQ", "RabbitMQDiskFreeLimit", broker, "Maximum"),
                expression("ratio", "free disk / disk_free_limit", "free / limit"),
            ],
        )
        alarm(
            "broker-cpu",
            f"Broker CPU above {args.broker_cpu_percent} %",
            **statistic("AWS/AmazonMQ", "SystemCpuUtilization", broker, "Average"),
            **above(args.broker_cpu_percent, periods=3),
        )
        alarm(
            "queue-depth",
            f"More than {args.queue_depth} messages waiting in {args.queue_name}",
            **statistic("AWS/AmazonMQ", "MessageCount", queue_dims(args.queue_name), "Maximum"),
            **above(args.queue_depth, periods=3),
        )
        alarm(
            "dlq-depth",
            f"Messages in the dead-letter queue {args.dlq_name}: jobs failed for good",
            **statistic(
                "AWS/AmazonMQ", "MessageCount", queue_dims(args.dlq_name), "Maximum", period=60
            ),
            **above(0, periods=1),
        )

    @staticmethod
    def _sqs_alarms(args: AlarmsArgs, alarm: Any) -> None:
        # SQS sends these every minute, and stops for a queue idle for 6 hours (SQS
        # Developer Guide, "Available CloudWatch metrics for Amazon SQS"): missing data
        # is an idle queue, not breaching (the alarm() default).
        queue = {"QueueName": args.sqs_queue_name}
        alarm(
            "queue-depth",
            f"More than {args.queue_depth} messages waiting in the SQS work queue",
            **statistic("AWS/SQS", "ApproximateNumberOfMessagesVisible", queue, "Maximum"),
            **above(args.queue_depth, periods=3),
        )
        alarm(
            "queue-age",
            f"The oldest waiting job is older than {args.queue_age_seconds} s: workers stuck "
            "or too few",
            **statistic("AWS/SQS", "ApproximateAgeOfOldestMessage", queue, "Maximum", period=60),
            **above(args.queue_age_seconds, periods=5, of=3),
        )
        alarm(
            "dlq-depth",
            "Messages in the SQS dead-letter queue: jobs failed for good",
            **statistic(
                "AWS/SQS",
                "ApproximateNumberOfMessagesVisible",
                {"QueueName": args.sqs_dlq_name},
                "Maximum",
                period=60,
            ),
            **above(0, periods=1),
        )


def dashboard_body(a: Mapping[str, object], args: AlarmsArgs) -> str:
    """Latency, errors, throughput, queue depth, then the saturation of each tier."""
    region, alb, cluster, db, broker = (
        str(a["region"]),
        a["alb"],
        a["cluster"],
        a["db"],
        a["broker"],
    )
    services = a["services"]
    assert isinstance(services, dict)

    def widget(
        title: str, metrics: list[list[object]], x: int, y: int, stat: str = "Sum"
    ) -> dict[str, object]:
        return {
            "type": "metric",
            "x": x,
            "y": y,
            "width": 12,
            "height": 6,
            "properties": {
                "title": title,
                "region": region,
                "stat": stat,
                "period": 60,
                "view": "timeSeries",
                "metrics": metrics,
            },
        }

    lb = ["LoadBalancer", alb]
    q = ["Broker", broker, "VirtualHost", args.queue_vhost]
    widgets = [
        widget(
            "API latency (s)",
            [
                ["AWS/ApplicationELB", "TargetResponseTime", *lb, {"stat": "p50"}],
                ["AWS/ApplicationELB", "TargetResponseTime", *lb, {"stat": "p95"}],
                ["AWS/ApplicationELB", "TargetResponseTime", *lb, {"stat": "p99"}],
            ],
            0,
            0,
            stat="p95",
        ),
        widget(
            "API errors",
            [
                ["AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", *lb],
                ["AWS/ApplicationELB", "HTTPCode_ELB_5XX_Count", *lb],
                ["AWS/ApplicationELB", "HTTPCode_Target_4XX_Count", *lb],
            ],
            12,
            0,
        ),
        widget(
            "API throughput (requests/min)",
            [
                ["AWS/ApplicationELB", "RequestCount", *lb],
            ],
            0,
            6,
        ),
        widget(
            "Queue depth",
            [
                ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", a["sqs_queue"]],
                ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", a["sqs_dlq"]],
            ]
            if args.sqs
            else [
                ["AWS/AmazonMQ", "MessageCount", *q, "Queue", args.queue_name],
                ["AWS/AmazonMQ", "MessageCount", *q, "Queue", args.dlq_name],
            ],
            12,
            6,
            stat="Maximum",
        ),
        widget(
            "ECS CPU / memory (%)",
            [
                ["AWS/ECS", metric, "ClusterName", cluster, "ServiceName", services[s]]
                for s in sorted(services)
                for metric in ("CPUUtilization", "MemoryUtilization")
            ],
            0,
            12,
            stat="Average",
        ),
        widget(
            "Database",
            [
                ["AWS/RDS", "CPUUtilization", "DBInstanceIdentifier", db],
                ["AWS/RDS", "DatabaseConnections", "DBInstanceIdentifier", db],
            ],
            12,
            12,
            stat="Average",
        ),
    ]
    return json.dumps({"widgets": widgets})
