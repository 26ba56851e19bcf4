"""The Prometheus rules, scrape config and Grafana dashboard of the local stack.

`promtool check rules` validates syntax, `promtool test rules` runs the unit tests in
deploy/local/prometheus/groundwork.rules.test.yml (each alert fires on a breach and
stays quiet inside its objective), and every metric the rules and the dashboard use
must be one the service registers, so a rename on either side fails here.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PROM_DIR = ROOT / "deploy/local/prometheus"
RULES = PROM_DIR / "groundwork.rules.yml"
RULE_TESTS = PROM_DIR / "groundwork.rules.test.yml"
DASHBOARD = ROOT / "deploy/local/grafana/dashboards/groundwork.json"
DATASOURCES = ROOT / "deploy/local/grafana/provisioning/datasources/datasources.yml"

# Series that come from elsewhere than the service: Prometheus itself and RabbitMQ's
# built-in exporter (rabbitmq_prometheus, per-object endpoint).
EXTERNAL_SERIES = re.compile(r"^(up|rabbitmq_queue_messages_(ready|unacked))$")
PROMQL_WORDS = {
    "sum",
    "max",
    "min",
    "avg",
    "count",
    "rate",
    "irate",
    "increase",
    "histogram_quantile",
    "round",
    "by",
    "without",
    "and",
    "or",
    "unless",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "offset",
    "bool",
    "abs",
    "clamp_min",
    "clamp_max",
    "topk",
    "bottomk",
}


def _promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool not found: apt-get install prometheus (scripts/bootstrap.sh does)")
    return found


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, check=False, cwd=PROM_DIR)


def test_promtool_check_rules() -> None:
    result = _run(_promtool(), "check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_rule_unit_tests() -> None:
    result = _run(_promtool(), "test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_config_is_valid(tmp_path: Path) -> None:
    # The config names the rules file by its in-container path; point it at the repo's.
    config = yaml.safe_load((PROM_DIR / "prometheus.yml").read_text())
    config["rule_files"] = [str(RULES)]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    result = _run(_promtool(), "check", "config", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def _rules() -> dict[str, dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    return {
        rule.get("alert") or rule["record"]: rule
        for group in doc["groups"]
        for rule in group["rules"]
    }


@pytest.mark.parametrize(
    ("alert", "threshold"),
    [("GroundworkApiLatencyP95High", "> 2"), ("GroundworkApiErrorRateHigh", "> 0.01")],
)
def test_slo_alerts_exist_with_their_objective(alert: str, threshold: str) -> None:
    rule = _rules()[alert]
    assert threshold in rule["expr"], rule["expr"]
    assert rule["labels"]["severity"] == "page"
    assert rule["annotations"]["summary"]


def _exprs() -> list[str]:
    exprs = [rule["expr"] for rule in _rules().values()]
    dashboard = json.loads(DASHBOARD.read_text())
    exprs += [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    return exprs


def _metric_names(expr: str) -> set[str]:
    expr = re.sub(r'"[^"]*"', "", expr)  # label values
    expr = re.sub(r"\{[^}]*\}", "", expr)  # matchers
    expr = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", expr)  # grouping labels
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # range durations
    names = set()
    for match in re.finditer(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b\s*(\()?", expr):
        word, call = match.group(1), match.group(2)
        if call or word in PROMQL_WORDS:
            continue
        names.add(word)
    return names


def _service_series() -> set[str]:
    """Every series name the service's metric modules register."""
    from prometheus_client import REGISTRY

    package = importlib.import_module("groundwork_app.observability")
    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"groundwork_app.observability.{module.name}")
    series: set[str] = set()
    for family in REGISTRY.collect():
        suffixes = {
            "counter": ("_total",),
            "histogram": ("_bucket", "_sum", "_count"),
            "summary": ("_sum", "_count"),
        }.get(family.type, ("",))
        series |= {family.name + suffix for suffix in suffixes}
    return series


def test_rules_and_dashboard_use_only_metrics_the_service_exports() -> None:
    recorded = {name for name in _rules() if ":" in name}
    exported = _service_series()
    for expr in _exprs():
        for name in _metric_names(expr):
            if name in recorded or EXTERNAL_SERIES.match(name):
                continue
            assert name in exported, f"{name!r} (in {expr!r}) is not a metric of the service"


def test_metric_name_extraction_sees_through_promql() -> None:
    # Guards the guard: a parser that found nothing would pass the test above vacuously.
    expr = (
        "histogram_quantile(0.95, sum by (le, route) "
        '(rate(http_request_duration_seconds_bucket{route!~"/health.*"}[5m]))) > 2 '
        "and max(relay_outbox_backlog) > 0"
    )
    assert _metric_names(expr) == {"http_request_duration_seconds_bucket", "relay_outbox_backlog"}


def test_dashboard_has_the_required_panels() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    panels = {panel["title"]: panel for panel in dashboard["panels"]}
    for title in (
        "Request rate",
        "Error rate (5xx)",
        "Latency p50 / p95 / p99",
        "Queue depth",
        "Job outcomes",
    ):
        assert title in panels, f"dashboard lacks the {title!r} panel"
    quantiles = " ".join(t["expr"] for t in panels["Latency p50 / p95 / p99"]["targets"])
    for q in ("0.5", "0.95", "0.99"):
        assert f"histogram_quantile({q}," in quantiles
    provisioned = {ds["uid"] for ds in yaml.safe_load(DATASOURCES.read_text())["datasources"]}
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] in provisioned, panel["title"]
        assert panel["targets"], f"panel {panel['title']!r} has no query"
