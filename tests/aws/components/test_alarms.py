"""Alarms (components/aws/alarms.py)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from components.aws import Alarms, AlarmsArgs


def _alarms(**kwargs: Any) -> AlarmsArgs:
    return AlarmsArgs(
        load_balancer_arn_suffix="app/lb/1",
        target_group_arn_suffix="tg/1",
        cluster_name="c",
        service_names={"api": "a", "worker": "w", "relay": "r"},
        db_instance_identifier="db",
        db_allocated_storage_gb=20,
        cache_cluster_ids=["cache-001"],
        broker_name="b",
        **kwargs,
    )


def test_alarms(helpers: Any) -> None:
    run = helpers.run_component(lambda: Alarms("al", _alarms(email="oncall@example.com")))
    assert run.one("aws:sns/topic:Topic").inputs["kmsMasterKeyId"]
    sub = run.one("aws:sns/topicSubscription:TopicSubscription").inputs
    assert (sub["protocol"], sub["endpoint"]) == ("email", "oncall@example.com")
    alarms = {
        r.name.removeprefix("al-"): r.inputs
        for r in run.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
    }
    assert set(alarms) == {
        "alb-5xx-rate",
        "api-p95-latency",
        "api-unhealthy-hosts",
        "api-cpu",
        "api-memory",
        "worker-cpu",
        "worker-memory",
        "db-cpu",
        "db-free-storage",
        "db-connections",
        "cache-001-memory",
        "cache-001-cpu",
        "cache-001-evictions",
        "queue-depth",
        "dlq-depth",
        # RabbitMQ blocks publishers at its memory or disk limit (rabbitmq.com/docs/alarms).
        "broker-memory",
        "broker-disk",
        "broker-cpu",
        "api-tasks-below-desired",
        "worker-tasks-below-desired",
        "relay-tasks-below-desired",
    }
    rate = next(q for q in alarms["alb-5xx-rate"]["metricQueries"] if q.get("expression"))
    assert "requests" in rate["expression"] and alarms["alb-5xx-rate"]["threshold"] == 1
    assert alarms["api-p95-latency"]["extendedStatistic"] == "p95"
    assert alarms["api-p95-latency"]["threshold"] == 2
    assert alarms["api-cpu"]["threshold"] == 80 and alarms["api-memory"]["threshold"] == 85
    assert alarms["dlq-depth"]["dimensions"]["Queue"] == "jobs.dlq"
    assert alarms["dlq-depth"]["threshold"] == 0
    assert alarms["db-free-storage"]["threshold"] == 20 * 1024**3 * 0.1
    key_policy = json.loads(run.one("aws:kms/key:Key").inputs["policy"])
    assert any(
        s["Principal"] == {"Service": "cloudwatch.amazonaws.com"} for s in key_policy["Statement"]
    )
    body = json.loads(run.one("aws:cloudwatch/dashboard:Dashboard").inputs["dashboardBody"])
    titles = {w["properties"]["title"] for w in body["widgets"]}
    assert {
        "API latency (s)",
        "API errors",
        "API throughput (requests/min)",
        "Queue depth",
    } <= titles


def test_stuck_jobs_alarm_counts_the_safety_nets_log_lines(helpers: Any) -> None:
    """The service logs these exact events when a job had to be ended by a net
    (services/app/src/groundwork_app/worker/terminal.py); one filter per log group
    feeds one metric, alarmed on any occurrence."""
    from groundwork_app.worker import terminal

    source = Path(terminal.__file__).read_text()
    for event in ("jobs past their deadline failed", "job ended by its dead letter"):
        assert f'"{event}"' in source
    run = helpers.run_component(
        lambda: Alarms("al", _alarms(job_log_group_names=["/ecs/worker", "/ecs/relay"]))
    )
    filters = run.of_type("aws:cloudwatch/logMetricFilter:LogMetricFilter")
    assert sorted(f.inputs["logGroupName"] for f in filters) == ["/ecs/relay", "/ecs/worker"]
    for f in filters:
        assert '$.event = "jobs past their deadline failed"' in f.inputs["pattern"]
        assert '$.event = "job ended by its dead letter"' in f.inputs["pattern"]
    metric = {f.inputs["metricTransformation"]["name"] for f in filters}
    stuck = next(
        r.inputs
        for r in run.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
        if r.name == "al-stuck-jobs"
    )
    assert {stuck["metricName"]} == metric
    assert (stuck["namespace"], stuck["threshold"], stuck["statistic"]) == ("Groundwork", 0, "Sum")


def _queries(alarm: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {q["id"]: q for q in alarm["metricQueries"]}


def test_alarms_optional_signals_and_autoscaling_ceiling(helpers: Any) -> None:
    run = helpers.run_component(
        lambda: Alarms(
            "al",
            _alarms(
                db_proxy_name="px",
                db_freeable_memory_bytes=100.0,
                service_max_counts={"api": 6, "worker": 4},
                nat_gateways=2,
            ),
        )
    )
    alarms = {
        r.name.removeprefix("al-"): r.inputs
        for r in run.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
    }
    assert alarms["db-freeable-memory"]["threshold"] == 100
    assert alarms["db-proxy-auth-failures"]["dimensions"] == {"ProxyName": "px"}
    assert alarms["db-proxy-auth-failures"]["metricName"] == "ClientConnectionsSetupFailedAuth"
    # The API autoscales on CPU at 60 %: 80 % is an incident only once it cannot add tasks.
    at_max = _queries(alarms["api-cpu"])["at_max"]["expression"]
    assert at_max == "IF(running >= 6, usage, 0)"
    assert _queries(alarms["worker-memory"])["at_max"]["expression"].startswith("IF(running >= 4")
    memory = _queries(alarms["broker-memory"])
    assert memory["used"]["metric"]["metricName"] == "RabbitMQMemUsed"
    assert memory["limit"]["metric"]["metricName"] == "RabbitMQMemLimit"
    (nat,) = alarms["nat-port-allocation"]["metricQueries"]
    assert "ErrorPortAllocation" in nat["expression"] and nat["period"] == 60
    below = _queries(alarms["relay-tasks-below-desired"])
    assert below["missing"]["expression"] == "desired - running"


def test_alarms_without_email(helpers: Any) -> None:
    run = helpers.run_component(lambda: Alarms("al", _alarms()))
    assert run.of_type("aws:sns/topicSubscription:TopicSubscription") == []
    with pytest.raises(ValueError, match="e-mail"):
        _alarms(email="nope")


def test_replication_lag_alarms_only_where_a_replica_reports_it(helpers: Any) -> None:
    """ElastiCache emits ReplicationLag only from read replicas, and failover moves the role:
    a replicated group alarms on every node, a single-node group on none (it could never fire)."""

    def lag_alarms(cluster_ids: list[str]) -> set[str]:
        args = dataclasses.replace(_alarms(), cache_cluster_ids=cluster_ids)
        run = helpers.run_component(lambda: Alarms("al", args))
        return {
            r.name.removeprefix("al-")
            for r in run.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
            if r.inputs.get("metricName") == "ReplicationLag"
        }

    assert lag_alarms(["g-001"]) == set()
    assert lag_alarms(["g-001", "g-002"]) == {
        "cache-001-replication-lag",
        "cache-002-replication-lag",
    }
