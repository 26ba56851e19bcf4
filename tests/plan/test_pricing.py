"""The pricing engine against hand-built graphs: each formula, each fallback."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from groundwork.plan.pricing import (
    PRICERS,
    CostStatus,
    PriceTableError,
    estimate,
    load_price_table,
)

H = 730  # hours per month in the table
S = 2_628_000  # seconds per month


def only(report):
    assert len(report.resources) == 1
    return report.resources[0]


# ---------------------------------------------------------------- table


def test_table_is_dated_and_sourced_for_each_region(table):
    for cloud in ("aws", "gcp"):
        assert table.regions(cloud), f"no {cloud} regions"
        for region in table.regions(cloud):
            data = table.region(cloud, region)
            dt.date.fromisoformat(data["as_of"])
            assert "pricing" in data["source"].lower() or "price list" in data["source"].lower()


def test_stack_regions_are_in_the_table(table):
    assert "us-east-1" in table.regions("aws")
    assert "europe-west1" in table.regions("gcp")


def test_a_type_is_either_priced_by_a_rule_or_free_never_both(table):
    both = [t for t in PRICERS if table.free_reason(t) is not None]
    assert both == []


def test_tiers_share_the_same_assumption_keys(table):
    assert set(table.assumptions("staging")) == set(table.assumptions("production"))


def test_unknown_region_and_tier_are_clear_errors(graph, table):
    graph.add("aws:ec2/natGateway:NatGateway", "nat")
    with pytest.raises(PriceTableError, match=r"no aws prices for region 'mars-1'.*us-east-1"):
        estimate(graph.run(), cloud="aws", region="mars-1", tier="staging")
    with pytest.raises(PriceTableError, match="no usage assumptions for tier 'qa'"):
        estimate(graph.run(), cloud="aws", region="us-east-1", tier="qa")


def test_malformed_table_is_rejected(tmp_path: Path):
    bad = tmp_path / "prices.yaml"
    bad.write_text("currency: USD\n")
    with pytest.raises(PriceTableError, match="schema: 1"):
        load_price_table(bad)
    with pytest.raises(PriceTableError, match="not found"):
        load_price_table(tmp_path / "missing.yaml")


# ---------------------------------------------------------------- statuses


def test_unknown_type_is_not_priced_and_not_counted_as_zero(graph):
    graph.add("aws:sagemaker/endpoint:Endpoint", "ml")
    cost = only(graph.price())
    assert cost.status is CostStatus.NOT_PRICED
    assert cost.note == "no pricing rule for this type"
    report = graph.price()
    assert [c.name for c in report.not_priced] == ["ml"]


def test_free_types_carry_their_reason_and_wildcards_match(graph):
    graph.add("aws:iam/role:Role", "role")
    graph.add("pulumi:providers:aws", "provider")
    graph.add("random:index/randomPassword:RandomPassword", "pw")
    report = graph.price()
    assert {c.status for c in report.resources} == {CostStatus.FREE}
    assert all(c.note for c in report.resources)
    assert report.total == 0


def test_components_are_not_priced_themselves(graph):
    graph.add("groundwork:aws:Network", "net", custom=False)
    assert graph.price().resources == []


def test_missing_instance_class_is_not_priced_with_the_class_named(graph):
    graph.add(
        "aws:rds/instance:Instance", "db", {"instanceClass": "db.x9.huge", "engine": "postgres"}
    )
    cost = only(graph.price())
    assert cost.status is CostStatus.NOT_PRICED
    assert "db.x9.huge" in cost.note


# ---------------------------------------------------------------- AWS network


def test_nat_gateway_hours_plus_assumed_gb(graph, aws_prices, usage):
    graph.add("aws:ec2/natGateway:NatGateway", "nat")
    for tier in ("staging", "production"):
        nat = aws_prices["nat_gateway"]
        expected = (
            H * nat["hourly"]
            + usage(tier)["nat_gb_processed_per_gateway"] * nat["per_gb_processed"]
        )
        assert only(graph.price(tier=tier)).monthly == pytest.approx(expected)


# The ELB pricing page's LCU (aws.amazon.com/elasticloadbalancing/pricing, Application
# Load Balancer): 25 new connections/s, 3,000 active connections/min, 1 GB/h processed
# (EC2, container and IP targets), 1,000 rule evaluations/s, the first 10 rules free.
# Written out here, not read from the table, so a wrong table value fails too.
# api_million_requests 1, floored at two requests per job (its POST and the GET of its result)
STAGING_REQUESTS = max(1e6, 2 * 2**30 / 1000)


def test_alb_hours_lcu_and_public_ipv4_per_az(graph, aws_prices):
    graph.add(
        "aws:lb/loadBalancer:LoadBalancer",
        "alb",
        {"loadBalancerType": "application", "subnets": ["a", "b", "c"]},
    )
    graph.add(
        "aws:lb/loadBalancer:LoadBalancer", "internal", {"internal": True, "subnets": ["a", "b"]}
    )
    report = graph.price()
    public, internal = report.resources
    alb = aws_prices["alb"]
    # One new connection per request dominates: 2.15 M (two requests for each of the
    # 1.07 M jobs) / (25 x 3,600) = 23.86 LCU-hours, not 730 (one LCU every hour).
    lcu_hours = STAGING_REQUESTS / (25 * 3600)
    assert lcu_hours == pytest.approx(23.86, abs=0.01)
    base = H * alb["hourly"] + lcu_hours * alb["lcu_hourly"]
    assert internal.monthly == pytest.approx(base)
    assert public.monthly == pytest.approx(base + 3 * H * aws_prices["public_ipv4"]["hourly"])
    assert "new connections" in public.items[1].description


def test_alb_lcu_dimensions_follow_the_published_definition(aws_prices):
    from groundwork.plan.pricing.pricers_aws import alb_lcu_hours

    lcu = aws_prices["alb_lcu"]
    got = alb_lcu_hours(3.6e6, 20_000, 15, 60, lcu)
    assert got == pytest.approx(
        {
            "new connections": 3.6e6 / 90_000,  # 40
            # each connection open at most 60 s: counted in at most 2 one-minute windows
            "active connections": 3.6e6 * 2 / (3000 * 60),  # 40
            "processed bytes": 3.6e6 * 20_000 / 1e9,  # 72 GB at 1 GB per LCU-hour
            "rule evaluations": 3.6e6 * (15 - 10) / (1000 * 3600),  # 5
        }
    )
    # A longer idle timeout keeps each connection in more windows.
    assert alb_lcu_hours(3.6e6, 20_000, 15, 120, lcu)["active connections"] == pytest.approx(60)
    # Ten rules or fewer per request are free.
    assert alb_lcu_hours(3.6e6, 20_000, 10, 60, lcu)["rule evaluations"] == 0


def test_alb_lcu_hours_take_the_highest_dimension_from_the_graph(graph, aws_prices, table):
    rate = aws_prices["alb"]["lcu_hourly"]
    graph.add("aws:lb/loadBalancer:LoadBalancer", "alb", {"internal": True})
    for i in range(99):
        graph.add("aws:lb/listenerRule:ListenerRule", f"rule-{i}", {"priority": i + 1})
    graph.add("aws:lb/loadBalancer:LoadBalancer", "slow", {"internal": True, "idleTimeout": 300})
    report = graph.price()
    got = {c.name: c for c in report.resources}
    # 99 rules + the default action, 90 of them billed per request.
    rules = STAGING_REQUESTS * 90 / (1000 * 3600)
    assert rules > STAGING_REQUESTS / 90_000
    hours = H * aws_prices["alb"]["hourly"]
    assert got["alb"].monthly == pytest.approx(hours + rules * rate)
    assert "rule evaluations" in got["alb"].items[1].description
    # A 300 s idle timeout: up to 6 windows per connection, above the new connections.
    active = STAGING_REQUESTS * 6 / (3000 * 60)
    assert active > rules
    assert got["slow"].monthly == pytest.approx(hours + active * rate)
    # Processed bytes stay below new connections at the measured size (under 11,111 B).
    assert table.data["measured_traffic"]["api_bytes_per_request"] < 1e9 / 90_000


def test_network_load_balancer_is_not_priced(graph):
    graph.add("aws:lb/loadBalancer:LoadBalancer", "nlb", {"loadBalancerType": "network"})
    assert only(graph.price()).status is CostStatus.NOT_PRICED


def test_interface_endpoints_per_az_gateway_endpoints_free(graph, aws_prices, usage):
    graph.add(
        "aws:ec2/vpcEndpoint:VpcEndpoint",
        "ecr",
        {"vpcEndpointType": "Interface", "subnetIds": ["a", "b", "c"]},
    )
    graph.add("aws:ec2/vpcEndpoint:VpcEndpoint", "s3", {"vpcEndpointType": "Gateway"})
    graph.add("aws:ec2/vpcEndpoint:VpcEndpoint", "nosubnets", {"vpcEndpointType": "Interface"})
    interface, gateway, unknown = graph.price().resources
    ep = aws_prices["vpc_interface_endpoint"]
    assert interface.monthly == pytest.approx(
        3 * H * ep["hourly_per_az"]
        + usage("staging")["interface_endpoint_gb_per_endpoint"] * ep["per_gb_processed"]
    )
    assert gateway.status is CostStatus.FREE
    assert unknown.status is CostStatus.NOT_PRICED


def test_eip_is_a_public_ipv4_address(graph, aws_prices):
    graph.add("aws:ec2/eip:Eip", "eip")
    assert only(graph.price()).monthly == pytest.approx(H * aws_prices["public_ipv4"]["hourly"])


# ---------------------------------------------------------------- AWS compute


def _task_def(graph, name, cpu, memory, arch=None):
    inputs = {"cpu": str(cpu), "memory": str(memory), "family": name}
    if arch:
        inputs["runtimePlatform"] = {"cpuArchitecture": arch, "operatingSystemFamily": "LINUX"}
    return graph.add(
        "aws:ecs/taskDefinition:TaskDefinition",
        name,
        inputs,
        state={"arn": f"arn:aws:ecs:us-east-1:123456789012:task-definition/{name}:1"},
    )


def test_fargate_service_uses_desired_count_and_task_size(graph, aws_prices):
    td = _task_def(graph, "api", 1024, 2048)
    graph.add(
        "aws:ecs/service:Service",
        "api-svc",
        {"desiredCount": 3, "launchType": "FARGATE", "taskDefinition": td.state["arn"]},
    )
    service = graph.price().resources[1]
    rates = aws_prices["fargate"]["x86_64"]
    assert service.monthly == pytest.approx(
        3 * H * (1 * rates["vcpu_hourly"] + 2 * rates["gb_hourly"])
    )


def test_fargate_arm64_rates(graph, aws_prices):
    td = _task_def(graph, "api", 512, 1024, arch="ARM64")
    graph.add(
        "aws:ecs/service:Service", "svc", {"desiredCount": 1, "taskDefinition": td.state["arn"]}
    )
    rates = aws_prices["fargate"]["arm64"]
    assert graph.price().resources[1].monthly == pytest.approx(
        H * (0.5 * rates["vcpu_hourly"] + 1 * rates["gb_hourly"])
    )


def test_fargate_spot_split_honours_base_then_weight(graph, aws_prices):
    td = _task_def(graph, "worker", 1024, 2048)
    graph.add(
        "aws:ecs/service:Service",
        "worker",
        {
            "desiredCount": 5,
            "taskDefinition": td.state["arn"],
            "capacityProviderStrategies": [
                {"capacityProvider": "FARGATE", "base": 1, "weight": 1},
                {"capacityProvider": "FARGATE_SPOT", "weight": 3},
            ],
        },
    )
    service = graph.price().resources[1]
    on_demand, spot = aws_prices["fargate"]["x86_64"], aws_prices["fargate"]["spot_x86_64"]
    # base 1 on FARGATE, the other 4 split 1:3.
    per_task = lambda r: r["vcpu_hourly"] + 2 * r["gb_hourly"]  # noqa: E731
    assert service.monthly == pytest.approx(H * (2 * per_task(on_demand) + 3 * per_task(spot)))
    assert any("Spot" in item.description for item in service.items)


def test_arm64_on_fargate_spot_is_priced_at_the_arm_spot_rate(graph, aws_prices):
    # ARM64 runs on FARGATE_SPOT (platform 1.4.0+, ECS API CapacityProviderStrategyItem):
    # the Spot rate of its own architecture, not x86's.
    td = _task_def(graph, "api", 256, 512, arch="ARM64")
    graph.add(
        "aws:ecs/service:Service",
        "svc",
        {
            "desiredCount": 1,
            "taskDefinition": td.state["arn"],
            "capacityProviderStrategies": [{"capacityProvider": "FARGATE_SPOT", "weight": 1}],
        },
    )
    service = graph.price().resources[1]
    arm, x86 = aws_prices["fargate"]["spot_arm64"], aws_prices["fargate"]["spot_x86_64"]
    assert service.monthly == pytest.approx(
        H * (0.25 * arm["vcpu_hourly"] + 0.5 * arm["gb_hourly"])
    )
    assert arm["vcpu_hourly"] < x86["vcpu_hourly"]
    assert any("Spot arm64" in item.description for item in service.items)


def test_fargate_service_with_zero_tasks_is_free_and_unknown_task_def_not_priced(graph):
    graph.add("aws:ecs/service:Service", "idle", {"desiredCount": 0})
    graph.add(
        "aws:ecs/service:Service", "orphan", {"desiredCount": 1, "taskDefinition": "arn:missing"}
    )
    idle, orphan = graph.price().resources
    assert idle.status is CostStatus.FREE
    assert orphan.status is CostStatus.NOT_PRICED
    assert "arn:missing" in orphan.note


def test_ec2_capacity_provider_is_not_priced(graph):
    td = _task_def(graph, "x", 256, 512)
    graph.add(
        "aws:ecs/service:Service",
        "svc",
        {
            "desiredCount": 1,
            "taskDefinition": td.state["arn"],
            "capacityProviderStrategies": [{"capacityProvider": "my-asg", "weight": 1}],
        },
    )
    assert graph.price().resources[1].status is CostStatus.NOT_PRICED


# ---------------------------------------------------------------- AWS data stores


def test_rds_multi_az_doubles_instance_and_storage(graph, aws_prices, usage):
    common = {
        "engine": "postgres",
        "instanceClass": "db.m7g.large",
        "allocatedStorage": 100,
        "storageType": "gp3",
        "backupRetentionPeriod": 30,
    }
    graph.add("aws:rds/instance:Instance", "single", {**common, "multiAz": False})
    graph.add("aws:rds/instance:Instance", "multi", {**common, "multiAz": True})
    single, multi = graph.price(tier="production").resources
    rds = aws_prices["rds_postgres"]
    instance = H * rds["instance_hourly"]["db.m7g.large"]
    storage = 100 * rds["storage_gb_month"]["gp3"]
    backup = (
        100 * 30 * usage("production")["db_backup_daily_change_fraction"] * rds["backup_gb_month"]
    )
    assert single.monthly == pytest.approx(instance + storage + backup)
    assert multi.monthly == pytest.approx(2 * instance + 2 * storage + backup)


def test_rds_managed_master_user_secret_is_priced_on_the_instance(graph, aws_prices, usage):
    common = {"engine": "postgres", "instanceClass": "db.t4g.micro", "allocatedStorage": 20}
    graph.add("aws:rds/instance:Instance", "plain", common)
    graph.add("aws:rds/instance:Instance", "managed", {**common, "manageMasterUserPassword": True})
    plain, managed = graph.price().resources
    sm = aws_prices["secrets_manager"]
    calls = usage("staging")["secrets_api_calls_per_secret"] / 1e4 * sm["per_10k_api_calls"]
    assert managed.monthly - plain.monthly == pytest.approx(0.40 + calls)
    assert sm["secret_month"] == 0.40


def test_log_metric_filter_metric_priced_once_when_it_has_a_default_value(graph, aws_prices):
    def metric_filter(name: str, metric: str, default: str | None) -> None:
        transformation = {"name": metric, "namespace": "Groundwork", "value": "1"}
        if default is not None:
            transformation["defaultValue"] = default
        graph.add(
            "aws:cloudwatch/logMetricFilter:LogMetricFilter",
            name,
            {"logGroupName": f"/ecs/{name}", "metricTransformation": transformation},
        )

    metric_filter("stuck-1", "stuck", "0")
    metric_filter("stuck-0", "stuck", "0")
    metric_filter("other", "other", "0")
    metric_filter("sparse", "sparse", None)
    got = {c.name: c for c in graph.price().resources}
    # Two filters into one metric (same namespace, name, no dimensions): one metric-month.
    assert got["stuck-0"].monthly == pytest.approx(0.30)
    assert got["stuck-1"].status is CostStatus.FREE
    assert "stuck-0" in got["stuck-1"].note
    assert got["other"].monthly == pytest.approx(0.30)
    # Without a default value the metric exists only in hours with a matching line.
    assert got["sparse"].status is CostStatus.FREE
    assert "defaultValue" in got["sparse"].note
    assert aws_prices["cloudwatch"]["custom_metric_month"] == 0.30


def test_rds_proxy_priced_per_vcpu_of_its_instance_with_minimum(graph, aws_prices):
    graph.add(
        "aws:rds/instance:Instance",
        "db",
        {"engine": "postgres", "instanceClass": "db.m7g.xlarge", "identifier": "app-db"},
    )
    graph.add(
        "aws:rds/instance:Instance",
        "replica",
        {"instanceClass": "db.t4g.micro", "replicateSourceDb": "app-db"},
    )
    graph.add("aws:rds/proxy:Proxy", "proxy", {"name": "app-proxy"})
    graph.add(
        "aws:rds/proxyTarget:ProxyTarget",
        "target",
        {"dbProxyName": "app-proxy", "dbInstanceIdentifier": "app-db"},
    )
    proxy = next(c for c in graph.price().resources if c.name == "proxy")
    assert proxy.monthly == pytest.approx(4 * H * aws_prices["rds_postgres"]["proxy_vcpu_hourly"])


def test_rds_proxy_minimum_two_vcpus(graph, aws_prices):
    graph.add(
        "aws:rds/instance:Instance", "db", {"engine": "postgres", "instanceClass": "db.t4g.micro"}
    )
    graph.add("aws:rds/proxy:Proxy", "proxy")
    proxy = graph.price().resources[1]
    assert proxy.monthly == pytest.approx(2 * H * aws_prices["rds_postgres"]["proxy_vcpu_hourly"])


def test_elasticache_nodes_and_valkey_discount(graph, aws_prices):
    graph.add(
        "aws:elasticache/replicationGroup:ReplicationGroup",
        "redis",
        {"nodeType": "cache.m7g.large", "numCacheClusters": 2, "engine": "redis"},
    )
    graph.add(
        "aws:elasticache/replicationGroup:ReplicationGroup",
        "valkey",
        {"nodeType": "cache.m7g.large", "numCacheClusters": 2, "engine": "valkey"},
    )
    graph.add(
        "aws:elasticache/replicationGroup:ReplicationGroup",
        "sharded",
        {"nodeType": "cache.m7g.large", "numNodeGroups": 2, "replicasPerNodeGroup": 1},
    )
    redis, valkey, sharded = graph.price().resources
    node = aws_prices["elasticache"]["node_hourly"]["cache.m7g.large"]
    assert redis.monthly == pytest.approx(2 * H * node)
    assert valkey.monthly == pytest.approx(
        2 * H * node * (1 - aws_prices["elasticache"]["valkey_discount"])
    )
    assert sharded.monthly == pytest.approx(4 * H * node)


def test_amazon_mq_cluster_is_three_nodes(graph, aws_prices):
    graph.add(
        "aws:mq/broker:Broker",
        "single",
        {
            "engineType": "RabbitMQ",
            "hostInstanceType": "mq.m5.large",
            "deploymentMode": "SINGLE_INSTANCE",
        },
    )
    graph.add(
        "aws:mq/broker:Broker",
        "cluster",
        {
            "engineType": "RabbitMQ",
            "hostInstanceType": "mq.m5.large",
            "deploymentMode": "CLUSTER_MULTI_AZ",
        },
    )
    graph.add(
        "aws:mq/broker:Broker",
        "activemq",
        {"engineType": "ActiveMQ", "hostInstanceType": "mq.m5.large"},
    )
    single, cluster, activemq = graph.price().resources
    mq = aws_prices["amazon_mq_rabbitmq"]
    per_node = (
        H * mq["node_hourly"]["mq.m5.large"]
        + mq["storage_gb_per_node"]["mq.m5"] * mq["storage_gb_month"]
    )
    assert single.monthly == pytest.approx(per_node)
    assert cluster.monthly == pytest.approx(3 * per_node)
    assert activemq.status is CostStatus.NOT_PRICED


# ---------------------------------------------------------------- AWS observability/security


def test_log_group_ingestion_and_retention_storage(graph, aws_prices, usage):
    graph.add("aws:cloudwatch/logGroup:LogGroup", "short", {"retentionInDays": 30})
    graph.add("aws:cloudwatch/logGroup:LogGroup", "long", {"retentionInDays": 365})
    graph.add("aws:cloudwatch/logGroup:LogGroup", "forever", {})
    short, long, forever = graph.price().resources
    cw = aws_prices["cloudwatch"]
    gb = usage("staging")["log_ingestion_gb_per_group"]
    assert short.monthly == pytest.approx(
        gb * cw["logs_ingestion_gb"] + gb * 1 * cw["logs_storage_gb_month"]
    )
    assert long.monthly == pytest.approx(
        gb * cw["logs_ingestion_gb"] + gb * 365 / 30 * cw["logs_storage_gb_month"]
    )
    assert forever.monthly == pytest.approx(
        gb * cw["logs_ingestion_gb"] + gb * 12 * cw["logs_storage_gb_month"]
    )


def test_the_key_rotation_group_is_priced_at_its_measured_bound(graph, aws_prices, usage):
    """Only the rotation function's group (components/aws/rotation.py names it) takes the
    measured bound; any other Lambda-looking or application group the per-group figure."""
    graph.add(
        "aws:cloudwatch/logGroup:LogGroup",
        "rotation",
        {"name": "/aws/lambda/groundwork-staging-key-rotation", "retentionInDays": 30},
    )
    graph.add(
        "aws:cloudwatch/logGroup:LogGroup",
        "other",
        {"name": "/aws/lambda/groundwork-staging-other", "retentionInDays": 30},
    )
    rotation, other = graph.price().resources
    cw = aws_prices["cloudwatch"]
    per_month = usage("staging")["rotation_log_gb_per_month"]
    per_group = usage("staging")["log_ingestion_gb_per_group"]
    assert per_month < per_group / 1000
    assert rotation.monthly == pytest.approx(
        per_month * cw["logs_ingestion_gb"] + per_month * cw["logs_storage_gb_month"]
    )
    assert other.monthly == pytest.approx(
        per_group * cw["logs_ingestion_gb"] + per_group * cw["logs_storage_gb_month"]
    )


def test_service_log_groups_are_priced_from_the_measured_volumes(graph, table, aws_prices, usage):
    """TaskLogs' groups (/ecs/<service>/<process>) take the measured bytes x traffic
    (services/app/tests/worker/test_log_volume.py measures them); the api's idle volume
    follows the graph: its task count and the ALB nodes' health checks."""
    from groundwork.plan.pricing.pricers_aws import service_log_gb_per_month

    for process in ("api", "worker", "relay", "migrate"):
        graph.add(
            "aws:cloudwatch/logGroup:LogGroup",
            f"{process}-logs",
            {"name": f"/ecs/gw-app/{process}", "retentionInDays": 30},
        )
    graph.add("aws:ecs/service:Service", "gw-app-api", {"desiredCount": 1})
    graph.add("aws:appautoscaling/target:Target", "gw-app-api-scaling", {"minCapacity": 2})
    graph.add("aws:ecs/service:Service", "gw-app-worker", {"desiredCount": 3})
    graph.add("aws:lb/loadBalancer:LoadBalancer", "alb", {"subnets": ["a", "b", "c"]})
    graph.add("aws:lb/targetGroup:TargetGroup", "tg", {"healthCheck": {"interval": 15}})
    graph.add(
        "aws:cloudwatch/logGroup:LogGroup",
        "lookalike",
        {"name": "/ecs/gw-app/api-extra", "retentionInDays": 30},
    )
    got = {c.name: c.monthly for c in graph.price(tier="production").resources}
    u = usage("production")
    logs = table.data["measured_logs"]
    cw = aws_prices["cloudwatch"]

    def cost(gb: float) -> float:
        return gb * cw["logs_ingestion_gb"] + gb * cw["logs_storage_gb_month"]

    # 3 ALB nodes every 15 s + the container check every 15 s, on 2 tasks (the
    # autoscaling minimum outranks the desired count).
    api = service_log_gb_per_month(
        "api", u, logs, tasks=2, health_checks_per_hour=4 * 240, hours=table.hours_per_month
    )
    worker = service_log_gb_per_month("worker", u, logs, tasks=3, hours=table.hours_per_month)
    assert got["api-logs"] == pytest.approx(cost(api))
    assert got["worker-logs"] == pytest.approx(cost(worker))
    # Production's 43 M requests (a POST and a GET for each of the 21.5 M jobs) at the
    # measured bytes, with the margin: the traffic sets it, not the flat 20 GB.
    requests = 2 * u["pubsub_gib_per_topic"] * 2**30 / 1000
    line = logs["api"]["bytes_per_request"]
    assert api > requests * line * logs["safety_margin"] / 1e9
    assert worker < api
    assert got["lookalike"] == pytest.approx(cost(u["log_ingestion_gb_per_group"]))
    # The ALB nodes' checks are in it: 3 nodes x 240 an hour on each of the 2 tasks.
    idle = logs["api"]["bytes_per_health_check"] * 3 * 240 * 2 * table.hours_per_month
    assert api - service_log_gb_per_month(
        "api", u, logs, tasks=2, health_checks_per_hour=240, hours=table.hours_per_month
    ) == pytest.approx(idle * logs["safety_margin"] / 1e9)


def test_alarms_dashboards_secrets_keys_waf_buckets_ecr(graph, aws_prices, usage):
    graph.add("aws:cloudwatch/metricAlarm:MetricAlarm", "simple", {"metricName": "CPU"})
    graph.add(
        "aws:cloudwatch/metricAlarm:MetricAlarm",
        "math",
        {
            "metricQueries": [
                {"id": "a", "metric": {"metricName": "5xx"}},
                {"id": "b", "metric": {"metricName": "n"}},
                {"id": "e", "expression": "a/b"},
            ]
        },
    )
    graph.add("aws:cloudwatch/dashboard:Dashboard", "dash")
    graph.add("aws:secretsmanager/secret:Secret", "secret")
    graph.add("aws:kms/key:Key", "key")
    graph.add("aws:wafv2/webAcl:WebAcl", "waf", {"rules": [{"name": "a"}, {"name": "b"}]})
    graph.add("aws:s3/bucket:Bucket", "logs")
    graph.add("aws:ecr/repository:Repository", "repo")
    got = {c.name: c.monthly for c in graph.price(tier="production").resources}
    u = usage("production")
    p = aws_prices
    assert got["simple"] == pytest.approx(p["cloudwatch"]["alarm_metric_month"])
    assert got["math"] == pytest.approx(2 * p["cloudwatch"]["alarm_metric_month"])
    assert got["dash"] == pytest.approx(p["cloudwatch"]["dashboard_month"])
    assert got["secret"] == pytest.approx(
        p["secrets_manager"]["secret_month"]
        + u["secrets_api_calls_per_secret"] / 1e4 * p["secrets_manager"]["per_10k_api_calls"]
    )
    assert got["key"] == pytest.approx(
        p["kms"]["key_month"] + u["kms_requests_per_key"] / 1e4 * p["kms"]["per_10k_requests"]
    )
    assert got["waf"] == pytest.approx(
        p["waf"]["web_acl_month"]
        + 2 * p["waf"]["rule_month"]
        # production: 43 M requests (a POST and a GET for each of the 21.5 M jobs, more
        # than api_million_requests' 30 M)
        + 2 * u["pubsub_gib_per_topic"] * 2**30 / 1000 / 1e6 * p["waf"]["per_million_requests"]
    )
    assert got["logs"] == pytest.approx(
        u["s3_log_storage_gb_per_bucket"] * p["s3"]["standard_gb_month"]
    )
    assert got["repo"] == pytest.approx(
        u["ecr_storage_gb_per_repository"] * p["ecr"]["storage_gb_month"]
    )


def test_sqs_work_queue_requests_follow_jobs_and_the_idle_workers_long_polls(
    graph, aws_prices, usage
):
    """Three requests per job (send, receive, delete) plus one 20 s long poll at a time
    for each always-on worker task: SQS bills every ReceiveMessage, empty or not, and an
    idle worker keeps one open whatever its slots (sqs_consumer.PollGate,
    services/app/tests/worker/test_sqs.py). The dead-letter queue costs nothing."""
    graph.add("aws:sqs/queue:Queue", "queue", {"redrivePolicy": '{"maxReceiveCount": 6}'})
    graph.add("aws:sqs/queue:Queue", "dlq", {})
    graph.add("aws:ecs/service:Service", "app-worker", {"desiredCount": 1})
    graph.add("aws:appautoscaling/target:Target", "app-worker-scaling", {"minCapacity": 2})
    graph.add("aws:ecs/service:Service", "app-api", {"desiredCount": 5})
    got = {c.name: c for c in graph.price(tier="production").resources}
    jobs = usage("production")["pubsub_gib_per_topic"] * 2**30 / 1000
    idle_polls = 2 * S / 20  # the autoscaling minimum (2) is the always-on count
    per_million = aws_prices["sqs"]["standard_per_million_requests"]
    assert got["queue"].monthly == pytest.approx((3 * jobs + idle_polls) / 1e6 * per_million)
    # The api's five tasks poll nothing: only the worker service counts (above, 2).
    assert got["dlq"].status is CostStatus.FREE


# ---------------------------------------------------------------- GCP


def _run_service(min_instances, cpu_idle, cpu="1", memory="512Mi"):
    resources = {"limits": {"cpu": cpu, "memory": memory}}
    if cpu_idle is not None:
        resources["cpuIdle"] = cpu_idle
    return {
        "location": "europe-west1",
        "template": {
            "scaling": {"minInstanceCount": min_instances},
            "containers": [{"image": "x", "resources": resources}],
        },
    }


def test_cloud_run_always_on_min_instances_instance_based(graph, gcp_prices, usage):
    graph.add("gcp:cloudrunv2/service:Service", "relay", _run_service(2, False, "1", "1Gi"))
    cost = only(graph.price(cloud="gcp"))
    rates = gcp_prices["cloud_run"]["instance_based"]
    burst = usage("staging")["cloud_run_burst_instance_hours_per_service"] * 3600
    assert cost.monthly == pytest.approx(
        (2 * S + burst) * (rates["vcpu_second"] + rates["gib_second"])
    )
    assert not any("requests" in i.description for i in cost.items)


def test_cloud_run_request_based_idle_min_instances_and_requests(graph, gcp_prices, usage):
    graph.add("gcp:cloudrunv2/service:Service", "api", _run_service(1, None, "1000m", "512Mi"))
    graph.add("gcp:cloudrunv2/service:Service", "scale-to-zero", _run_service(0, True))
    api, zero = graph.price(cloud="gcp").resources
    run = gcp_prices["cloud_run"]
    u = usage("staging")
    burst = u["cloud_run_burst_instance_hours_per_service"] * 3600
    requests = u["cloud_run_million_requests_per_service"] * run["per_million_requests"]
    active = burst * (
        run["request_based"]["vcpu_second"] + 0.5 * run["request_based"]["gib_second"]
    )
    idle = S * (
        run["idle_min_instance"]["vcpu_second"] + 0.5 * run["idle_min_instance"]["gib_second"]
    )
    assert api.monthly == pytest.approx(idle + requests + active)
    assert zero.monthly == pytest.approx(requests + active)
    assert api.monthly > zero.monthly


def _hold_job(url, seconds, schedule="* * * * *"):
    return {
        "schedule": schedule,
        "httpTarget": {
            "uri": f"{url}/relay/hold?seconds={seconds}",
            "oidcToken": {"serviceAccountEmail": "sched@p.iam", "audience": url},
        },
    }


@pytest.mark.parametrize(
    ("seconds", "schedule", "period"), [(55, "* * * * *", 60), (30, "*/2 * * * *", 120)]
)
def test_a_scheduler_held_service_is_priced_for_the_held_time_only(
    graph, gcp_prices, seconds, schedule, period
):
    """The scheduled relay: request-billed for the job's hold x its runs (from the job's
    own URI and schedule), no burst or request assumption; the job $0.10 a month
    (https://cloud.google.com/scheduler/pricing)."""
    url = "https://relay-abc-ew.a.run.app"
    graph.add(
        "gcp:cloudrunv2/service:Service",
        "relay",
        _run_service(0, True, "0.25", "512Mi"),
        state={"uri": url},
    )
    graph.add("gcp:cloudscheduler/job:Job", "hold", _hold_job(url, seconds, schedule))
    relay, job = graph.price(cloud="gcp").resources
    run = gcp_prices["cloud_run"]
    runs = S / period
    held = runs * seconds
    assert relay.monthly == pytest.approx(
        held
        * (0.25 * run["request_based"]["vcpu_second"] + 0.5 * run["request_based"]["gib_second"])
        + runs / 1e6 * run["per_million_requests"]
    )
    assert not any("assumed" in i.description for i in relay.items)
    assert job.monthly == pytest.approx(gcp_prices["cloud_scheduler"]["job_month"]) == 0.10


def test_a_job_for_another_service_does_not_change_a_services_price(graph, gcp_prices, usage):
    graph.add(
        "gcp:cloudrunv2/service:Service",
        "api",
        _run_service(0, True),
        state={"uri": "https://api-abc-ew.a.run.app"},
    )
    graph.add("gcp:cloudscheduler/job:Job", "hold", _hold_job("https://relay-abc-ew.a.run.app", 55))
    api, _ = graph.price(cloud="gcp").resources
    assert any("assumed" in i.description for i in api.items)


def test_a_schedule_the_pricer_cannot_count_is_not_priced(graph):
    url = "https://relay-abc-ew.a.run.app"
    graph.add(
        "gcp:cloudrunv2/service:Service", "relay", _run_service(0, True, "0.25"), state={"uri": url}
    )
    graph.add("gcp:cloudscheduler/job:Job", "hold", _hold_job(url, 55, "0 9 * * 1-5"))
    relay, _ = graph.price(cloud="gcp").resources
    assert relay.status == "not_priced"
    assert "0 9 * * 1-5" in relay.note


def test_cloud_run_with_the_prometheus_sidecar_adds_its_samples_and_its_size(
    graph, gcp_prices, usage
):
    from components.gcp.services import GMP_SIDECAR_IMAGE

    relay = _run_service(2, False, "1", "512Mi")
    relay["template"]["containers"][0]["args"] = ["relay"]
    graph.add("gcp:cloudrunv2/service:Service", "bare", _run_service(2, False, "1", "512Mi"))
    relay["template"]["containers"].append(
        {"image": GMP_SIDECAR_IMAGE, "resources": {"limits": {"cpu": "1", "memory": "512Mi"}}}
    )
    graph.add("gcp:cloudrunv2/service:Service", "relay", relay)
    bare, scraped = graph.price(cloud="gcp").resources
    u = usage("staging")
    burst = u["cloud_run_burst_instance_hours_per_service"] * 3600
    # Samples: series per relay instance x instance-seconds / scrape interval.
    samples = (
        u["gmp_series_per_instance_relay"] * (2 * S + burst) / u["gmp_scrape_interval_seconds"]
    )
    (item,) = [i for i in scraped.items if "Prometheus" in i.description]
    assert item.quantity == pytest.approx(samples / 1e6)
    assert item.unit_price == gcp_prices["monitoring"]["prometheus_per_million_samples"]
    # The sidecar's vCPU and memory are billed like the app's (same instance).
    assert scraped.monthly - item.quantity * item.unit_price == pytest.approx(2 * bare.monthly)
    assert not any("Prometheus" in i.description for i in bare.items)


def test_cloud_sql_custom_tier_regional_doubles(graph, gcp_prices, usage):
    settings = {
        "tier": "db-custom-2-7680",
        "diskSize": 100,
        "diskType": "PD_SSD",
        "backupConfiguration": {
            "enabled": True,
            "backupRetentionSettings": {"retainedBackups": 30},
        },
    }
    graph.add(
        "gcp:sql/databaseInstance:DatabaseInstance",
        "zonal",
        {"databaseVersion": "POSTGRES_16", "settings": {**settings, "availabilityType": "ZONAL"}},
    )
    graph.add(
        "gcp:sql/databaseInstance:DatabaseInstance",
        "regional",
        {
            "databaseVersion": "POSTGRES_16",
            "settings": {**settings, "availabilityType": "REGIONAL"},
        },
    )
    zonal, regional = graph.price(cloud="gcp", tier="production").resources
    sql = gcp_prices["cloud_sql_postgres"]
    compute = H * (2 * sql["vcpu_hourly"] + 7.5 * sql["memory_gb_hourly"])
    storage = 100 * sql["storage_gb_month"]["PD_SSD"]
    backup = (
        100 * 30 * usage("production")["db_backup_daily_change_fraction"] * sql["backup_gb_month"]
    )
    assert zonal.monthly == pytest.approx(compute + storage + backup)
    assert regional.monthly == pytest.approx(2 * compute + 2 * storage + backup)


def test_cloud_sql_shared_core_and_unknown_tier(graph, gcp_prices):
    graph.add(
        "gcp:sql/databaseInstance:DatabaseInstance",
        "micro",
        {"databaseVersion": "POSTGRES_16", "settings": {"tier": "db-f1-micro", "diskSize": 10}},
    )
    graph.add(
        "gcp:sql/databaseInstance:DatabaseInstance",
        "odd",
        {"databaseVersion": "POSTGRES_16", "settings": {"tier": "db-n1-standard-1"}},
    )
    micro, odd = graph.price(cloud="gcp").resources
    sql = gcp_prices["cloud_sql_postgres"]
    assert micro.monthly == pytest.approx(
        H * sql["shared_core_hourly"]["db-f1-micro"] + 10 * sql["storage_gb_month"]["PD_SSD"]
    )
    assert odd.status is CostStatus.NOT_PRICED


def test_memorystore_capacity_bands(graph, gcp_prices):
    graph.add("gcp:redis/instance:Instance", "small", {"tier": "BASIC", "memorySizeGb": 1})
    graph.add("gcp:redis/instance:Instance", "ha", {"tier": "STANDARD_HA", "memorySizeGb": 5})
    small, ha = graph.price(cloud="gcp").resources
    ms = gcp_prices["memorystore_redis"]
    assert small.monthly == pytest.approx(H * ms["basic_gb_hourly"][0])
    assert ha.monthly == pytest.approx(5 * H * ms["standard_ha_gb_hourly"][1])


def test_pubsub_secret_versions_registry_armor(graph, gcp_prices, usage):
    graph.add("gcp:pubsub/topic:Topic", "jobs")
    graph.add("gcp:pubsub/subscription:Subscription", "push")
    graph.add(
        "gcp:secretmanager/secret:Secret",
        "db-password",
        {
            "secretId": "db-password",
            "replication": {
                "userManaged": {
                    "replicas": [{"location": "europe-west1"}, {"location": "europe-west4"}]
                }
            },
        },
        state={"id": "projects/p/secrets/db-password"},
    )
    graph.add(
        "gcp:secretmanager/secret:Secret",
        "auto",
        {"secretId": "auto", "replication": {"auto": {}}},
        state={"id": "projects/p/secrets/auto"},
    )
    graph.add(
        "gcp:secretmanager/secretVersion:SecretVersion",
        "db-password-v",
        {"secret": "projects/p/secrets/db-password"},
    )
    graph.add(
        "gcp:secretmanager/secretVersion:SecretVersion",
        "auto-v",
        {"secret": "projects/p/secrets/auto"},
    )
    graph.add("gcp:artifactregistry/repository:Repository", "images")
    graph.add(
        "gcp:compute/securityPolicy:SecurityPolicy",
        "armor",
        {"rules": [{"priority": 1}, {"priority": 2}, {"priority": 2147483647}]},
    )
    got = {c.name: c for c in graph.price(cloud="gcp").resources}
    u, p = usage("staging"), gcp_prices
    assert got["jobs"].monthly == pytest.approx(
        u["pubsub_gib_per_topic"] / 1024 * p["pubsub"]["per_tib_throughput"]
    )
    assert got["push"].monthly == pytest.approx(
        u["pubsub_gib_per_subscription"] / 1024 * p["pubsub"]["per_tib_throughput"]
    )
    access = u["secret_accesses_per_version"] / 1e4 * p["secret_manager"]["per_10k_access"]
    version = p["secret_manager"]["active_version_location_month"]
    assert got["db-password-v"].monthly == pytest.approx(2 * version + access)
    assert got["auto-v"].monthly == pytest.approx(version + access)
    assert got["db-password"].status is CostStatus.FREE
    assert got["images"].monthly == pytest.approx(
        u["artifact_registry_gb_per_repository"] * p["artifact_registry"]["storage_gb_month"]
    )
    armor = p["cloud_armor"]
    assert got["armor"].monthly == pytest.approx(
        armor["policy_month"]
        + 3 * armor["rule_month"]
        # staging: api_million_requests 1, floored at two requests per job (2.15 M)
        + STAGING_REQUESTS / 1e6 * armor["per_million_requests"]
    )


def test_forwarding_rules_hourly_data_counted_once_on_https(graph, gcp_prices, usage, table):
    graph.add(
        "gcp:compute/globalForwardingRule:GlobalForwardingRule", "https", {"portRange": "443"}
    )
    graph.add("gcp:compute/globalForwardingRule:GlobalForwardingRule", "http", {"portRange": "80"})
    https, http = graph.price(cloud="gcp").resources
    lb = gcp_prices["load_balancing"]
    # Google bills the first five forwarding rules of a project in a scope as one flat
    # hourly minimum (cloud.google.com/vpc/network-pricing, Cloud Load Balancing: "First
    # 5 forwarding rules $0.025/hour, per additional forwarding rule $0.01/hour"): the
    # stack's two global rules cost $0.025 an hour together, not $0.05.
    assert http.status is CostStatus.FREE
    assert http.monthly == 0
    # The API's requests (at least the jobs, each a POST and a GET of its result) x the
    # bytes measured per request and response, billed per GiB.
    requests = max(usage("staging")["api_million_requests"] * 1e6, 2 * 2**30 / 1000)
    measured = table.data["measured_traffic"]["api_bytes_per_request"]
    assert https.monthly == pytest.approx(
        H * lb["forwarding_rules_minimum_hourly"]
        + requests * measured / 2**30 * lb["per_gib_processed"]
    )


@pytest.mark.parametrize(("rules", "hourly"), [(1, 0.025), (3, 0.025), (5, 0.025), (7, 0.045)])
def test_forwarding_rules_are_billed_as_a_minimum_for_five_then_each(graph, rules, hourly):
    # The pricing page's arithmetic: 1, 3 or 5 rules in one scope cost the minimum, 7 cost
    # the minimum plus two additional rules.
    for i in range(rules):
        graph.add(
            "gcp:compute/globalForwardingRule:GlobalForwardingRule", f"r{i}", {"portRange": "80"}
        )
    report = graph.price(cloud="gcp")
    assert report.total == pytest.approx(hourly * H)


def test_forwarding_rule_minimums_are_per_scope(graph, gcp_prices):
    # Global and regional rules are billed under different SKUs (the SKU list has "Cloud
    # Load Balancer Forwarding Rule Additional" SKUs for global and for each region):
    # each scope has its own minimum.
    lb = gcp_prices["load_balancing"]
    graph.add("gcp:compute/globalForwardingRule:GlobalForwardingRule", "g", {"portRange": "80"})
    graph.add("gcp:compute/forwardingRule:ForwardingRule", "r1", {"region": "europe-west1"})
    graph.add("gcp:compute/forwardingRule:ForwardingRule", "r2", {"region": "europe-west1"})
    graph.add("gcp:compute/forwardingRule:ForwardingRule", "r3", {"region": "us-central1"})
    report = graph.price(cloud="gcp")
    assert report.total == pytest.approx(3 * H * lb["forwarding_rules_minimum_hourly"])


def test_uptime_checks_share_the_per_project_free_allowance(graph, gcp_prices):
    # 60 s from 6 regions = 262,800 executions; four checks exceed the 1M allowance.
    for i in range(4):
        graph.add(
            "gcp:monitoring/uptimeCheckConfig:UptimeCheckConfig", f"check-{i}", {"period": "60s"}
        )
    report = graph.price(cloud="gcp")
    executions = 4 * S / 60 * 6
    billable = executions - gcp_prices["monitoring"]["uptime_free_executions_per_project"]
    assert report.total == pytest.approx(
        billable / 1000 * gcp_prices["monitoring"]["uptime_per_1k_executions"]
    )
    assert report.resources[0].monthly == pytest.approx(0)
    assert report.resources[3].monthly > 0


def test_alert_policies_priced_per_condition(graph, gcp_prices):
    graph.add(
        "gcp:monitoring/alertPolicy:AlertPolicy",
        "pol",
        {"conditions": [{"displayName": "a"}, {"displayName": "b"}]},
    )
    assert only(graph.price(cloud="gcp")).monthly == pytest.approx(
        2 * gcp_prices["monitoring"]["alert_condition_month"]
    )


def test_cloud_nat_and_connector(graph, gcp_prices, usage):
    graph.add("gcp:compute/routerNat:RouterNat", "nat")
    graph.add(
        "gcp:vpcaccess/connector:Connector", "conn", {"minInstances": 2, "machineType": "e2-micro"}
    )
    nat, conn = graph.price(cloud="gcp").resources
    u, p = usage("staging"), gcp_prices
    assert nat.monthly == pytest.approx(
        H * u["cloud_nat_vm_equivalents"] * p["cloud_nat"]["gateway_vm_hourly"]
        + u["cloud_nat_gb_processed"] * p["cloud_nat"]["per_gb_processed"]
    )
    assert conn.monthly == pytest.approx(
        2 * H * p["vpc_access_connector"]["instance_hourly"]["e2-micro"]
    )


def test_malformed_inputs_surface_as_not_priced(graph):
    graph.add(
        "gcp:cloudrunv2/service:Service",
        "bad",
        {"template": {"containers": [{"resources": {"limits": {"memory": "lots"}}}]}},
    )
    cost = only(graph.price(cloud="gcp"))
    assert cost.status is CostStatus.NOT_PRICED
    assert "lots" in cost.note


SDK_PACKAGES = {
    "aws": "pulumi_aws",
    "gcp": "pulumi_gcp",
    "random": "pulumi_random",
    "docker": "pulumi_docker",
}


def test_every_type_token_in_the_table_and_rules_exists_in_the_installed_sdks(table):
    """A misspelt token (``urlMap`` for ``uRLMap``) would silently never match."""
    import importlib.util
    import keyword

    tokens = [t for t in table.data["free"] if not any(c in t for c in "*?[")] + list(PRICERS)
    missing = []
    for token in tokens:
        package, module, _ = token.split(":")
        assert package in SDK_PACKAGES, f"{token}: unknown provider package"
        spec = importlib.util.find_spec(SDK_PACKAGES[package])
        assert spec is not None and spec.submodule_search_locations
        root = Path(next(iter(spec.submodule_search_locations)))
        name = module.split("/")[0]
        name = f"{name}_" if keyword.iskeyword(name) else name  # aws:lambda -> lambda_
        folder = root if module.startswith("index") else root / name
        if not any(f"'{token}'" in f.read_text() for f in folder.glob("*.py")):
            missing.append(token)
    assert missing == []


def test_docs_state_every_assumption_and_the_priced_types(table):
    docs = (Path(__file__).parents[2] / "docs" / "cost-model.md").read_text()
    for key, value in table.assumptions("production").items():
        assert f"`{key}` | {table.assumptions('staging')[key]:g} | {value:g} |" in docs, key
    for token in PRICERS:
        short = token.split(":")[1].split("/")[0] + "." + token.rsplit(":", 1)[1]
        assert short in docs, f"{token} is priced but its formula is not documented"
