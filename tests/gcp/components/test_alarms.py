"""Alarms (components/gcp/alarms.py): alert policies, SLO burn rates, dashboard, uptime check."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from groundwork_app.worker import terminal

from components.gcp.alarms import Alarms, AlarmsArgs, Thresholds
from tests.gcp.helpers import REGION, run


def _alarms_args(**kwargs: object) -> AlarmsArgs:
    return AlarmsArgs(
        project="p",
        region=REGION,
        api_service_name="svc-api",
        run_service_names={"api": "svc-api", "worker": "svc-worker", "relay": "svc-relay"},
        sql_instance_name="pg",
        redis_instance_name="redis",
        push_subscription_name="push-sub",
        dead_letter_subscription_name="dl-sub",
        **kwargs,  # type: ignore[arg-type]
    )


def _alerts(**kwargs: object) -> Alarms:
    return Alarms("mon", _alarms_args(**kwargs))


def test_alerts_cover_every_signal_and_notify_the_channel() -> None:
    graph = run(lambda: _alerts(uptime_host="api.ex.com", notification_email="ops@ex.com"))
    channel = graph.one("gcp:monitoring/notificationChannel:NotificationChannel")
    assert channel.inputs["type"] == "email"
    assert channel.inputs["labels"] == {"email_address": "ops@ex.com"}
    uptime = graph.one("gcp:monitoring/uptimeCheckConfig:UptimeCheckConfig").inputs
    assert uptime["httpCheck"]["path"] == "/health/ready"
    assert uptime["httpCheck"]["useSsl"] is True
    assert uptime["monitoredResource"]["labels"]["host"] == "api.ex.com"
    policies = {
        p.name.removeprefix("mon-"): p.inputs
        for p in graph.of_type("gcp:monitoring/alertPolicy:AlertPolicy")
    }
    expected = {
        "uptime": 0.995,
        "api-5xx-ratio": 0.01,
        "api-latency-p95": 2000,
        "run-cpu": 0.8,
        "run-memory": 0.85,
        "sql-cpu": 0.8,
        "sql-disk": 0.85,
        "redis-memory": 0.85,
        "pubsub-oldest-unacked": 600,
        "dead-letters": 0,
        "push-rejected": 0.05,
    }
    burn = {f"slo-{k}-{s}-burn" for k in ("availability", "latency") for s in ("fast", "slow")}
    assert set(policies) == set(expected) | burn | {"stuck-jobs"}
    # Stuck jobs: a log match on the events the service logs when a safety net ended a
    # job (services/app/src/groundwork_app/worker/terminal.py), worker and relay only.
    (stuck,) = policies["stuck-jobs"]["conditions"]
    log_filter = stuck["conditionMatchedLog"]["filter"]
    for event in ("jobs past their deadline failed", "job ended by its dead letter"):
        assert f'jsonPayload.event = "{event}"' in log_filter
        assert f'"{event}"' in Path(terminal.__file__).read_text()
    assert "api" not in log_filter.split("service_name")[1].split(")")[0]
    assert policies["stuck-jobs"]["alertStrategy"]["notificationRateLimit"]["period"] == "300s"
    assert policies["stuck-jobs"]["notificationChannels"] == [channel.state["id"]]
    for key, threshold in expected.items():
        (condition,) = policies[key]["conditions"]
        assert condition["conditionThreshold"]["thresholdValue"] == threshold, key
        assert policies[key]["notificationChannels"] == [channel.state["id"]], key
    ratio = policies["api-5xx-ratio"]["conditions"][0]["conditionThreshold"]
    assert 'response_code_class = "5xx"' in ratio["filter"]
    assert "response_code_class" not in ratio["denominatorFilter"]
    uptime_filter = policies["uptime"]["conditions"][0]["conditionThreshold"]
    assert uptime_filter["comparison"] == "COMPARISON_LT"
    assert "mon-api-uptime-check" in uptime_filter["filter"]
    assert '"dl-sub"' in policies["dead-letters"]["conditions"][0]["conditionThreshold"]["filter"]
    assert '"p:pg"' in policies["sql-disk"]["conditions"][0]["conditionThreshold"]["filter"]


def test_push_deliveries_are_alerted_by_response_class() -> None:
    """Pub/Sub reports every push by ``response_class`` (ack, remote_server_4xx, ...,
    https://cloud.google.com/monitoring/api/metrics_gcp#gcp-pubsub): a worker answering
    401 to every push (defect 1) crosses this ratio at once."""
    graph = run(lambda: _alerts(notification_email="ops@ex.com"))
    (policy,) = [
        p
        for p in graph.of_type("gcp:monitoring/alertPolicy:AlertPolicy")
        if p.name == "mon-push-rejected"
    ]
    condition = policy.inputs["conditions"][0]["conditionThreshold"]
    assert "subscription/push_request_count" in condition["filter"]
    assert 'response_class != "ack"' in condition["filter"]
    assert "response_class" not in condition["denominatorFilter"]


def test_api_slos_have_multi_window_burn_rate_alerts() -> None:
    graph = run(lambda: _alerts(notification_email="ops@ex.com"))
    slos = {s.inputs["sloId"]: s.inputs for s in graph.of_type("gcp:monitoring/slo:Slo")}
    assert slos["availability"]["goal"] == 0.995
    ratio = slos["availability"]["requestBasedSli"]["goodTotalRatio"]
    assert 'response_code_class = "5xx"' in ratio["badServiceFilter"]
    cut = slos["latency"]["requestBasedSli"]["distributionCut"]
    assert (slos["latency"]["goal"], cut["range"]["max"]) == (0.95, 2000)
    policies = {p.name: p.inputs for p in graph.of_type("gcp:monitoring/alertPolicy:AlertPolicy")}
    fast = policies["mon-slo-availability-fast-burn"]
    assert fast["combiner"] == "AND"  # both windows: fast to fire, fast to recover
    filters = [c["conditionThreshold"]["filter"] for c in fast["conditions"]]
    assert [f.split('", "')[1] for f in filters] == ['60m")', '5m")']
    assert all(f.startswith("select_slo_burn_rate(") for f in filters)
    assert {c["conditionThreshold"]["thresholdValue"] for c in fast["conditions"]} == {14.4}


def test_dashboard_has_the_four_golden_signals() -> None:
    graph = run(lambda: _alerts())
    dashboard = json.loads(graph.one("gcp:monitoring/dashboard:Dashboard").inputs["dashboardJson"])
    titles = [t["widget"]["title"] for t in dashboard["mosaicLayout"]["tiles"]]
    for signal in ("Latency", "Traffic", "Errors", "Saturation"):
        assert any(title.startswith(signal) for title in titles), signal
    filters = json.dumps(dashboard)
    assert "svc-worker" in filters and "run.googleapis.com/request_latencies" in filters


def test_every_dashboard_chart_filters_on_one_real_metric_type() -> None:
    # A Monitoring filter names its metric as metric.type="<type>" (Cloud Monitoring,
    # "Monitoring filters"); a template left unfilled ({metric}) or a chart with no type
    # is accepted by the API and draws an empty chart, so only this test notices.
    graph = run(lambda: _alerts())
    dashboard = json.loads(graph.one("gcp:monitoring/dashboard:Dashboard").inputs["dashboardJson"])
    for tile in dashboard["mosaicLayout"]["tiles"]:
        widget = tile["widget"]
        for data_set in widget["xyChart"]["dataSets"]:
            flt = data_set["timeSeriesQuery"]["timeSeriesFilter"]["filter"]
            assert "{" not in flt and "}" not in flt, (widget["title"], flt)
            types = re.findall(r'metric\.type\s*=\s*"([^"]+)"', flt)
            assert len(types) == 1, (widget["title"], flt)
            assert re.fullmatch(r"[a-z]+\.googleapis\.com/[a-z_/]+", types[0]), types[0]


def test_private_api_has_no_uptime_check_and_no_email_means_no_channel() -> None:
    graph = run(lambda: _alerts())
    assert not graph.of_type("gcp:monitoring/uptimeCheckConfig:UptimeCheckConfig")
    assert not graph.of_type("gcp:monitoring/notificationChannel:NotificationChannel")
    names = {p.name for p in graph.of_type("gcp:monitoring/alertPolicy:AlertPolicy")}
    assert "mon-uptime" not in names and "mon-dead-letters" in names


def test_alert_arguments_are_validated() -> None:
    with pytest.raises(ValueError, match="ratio"):
        Thresholds(error_ratio=1.5)
    with pytest.raises(ValueError, match="address"):
        _alarms_args(notification_email="nope")
