"""The service's own metrics in Cloud Monitoring: Managed Prometheus sidecar, grants, alerts.

Platform behaviour these tests hold the stack to:
- Cloud Run's Managed Service for Prometheus sidecar
  (https://cloud.google.com/run/docs/monitoring-managed-prometheus-sidecar, and its source
  GoogleCloudPlatform/run-gmp-sidecar): it reads a RunMonitoring config from
  /etc/rungmp/config.yaml (entrypoint.go ``userConfigFile``), mounted from Secret Manager;
  without one it scrapes port 8080 (confgenerator ``DefaultRunMonitoringConfig``), which
  on the worker is the Pub/Sub push receiver and serves no metrics. The config is parsed
  strictly (``yaml.Strict()``): apiVersion ``monitoring.googleapis.com/v1beta``, kind
  ``RunMonitoring``, ``targetLabels.metadata`` among instance/revision/service/
  configuration, a timeout not above the interval. It sets the ``namespace`` label to the
  Cloud Run service name, which the PromQL alerts select on.
- Writing metrics needs ``roles/monitoring.metricWriter`` on the project (the sidecar
  README's prerequisites); the deploy identity may grant only the roles docs/bootstrap.md
  allows through ``iam.googleapis.com/modifiedGrantsByRole``
  (https://cloud.google.com/iam/docs/setting-limits-on-granting-roles).
- Cloud Monitoring evaluates PromQL alert conditions like Prometheus rules
  (https://cloud.google.com/monitoring/promql/create-promql-alerts-console): the queries
  must be valid PromQL (promtool) over metrics the running code really registers.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from components.gcp.alarms import SERVICE_METRIC_ALERTS
from components.gcp.services import (
    GMP_CONFIG_DIR,
    GMP_HEALTH_PORT,
    GMP_SIDECAR_IMAGE,
    METRICS_WRITER_ROLE,
    PROJECT_ROLES,
    ContainerServiceArgs,
    run_monitoring_config,
)
from groundwork.mockrun import ProgramRun
from stacks.service_env import METRICS_PORT

from .helpers import PROJECT, env_of

ROOT = Path(__file__).resolve().parents[2]
SCRAPED = ("api", "worker", "relay")
SERVICE = "gcp:cloudrunv2/service:Service"


def _rules_test_module() -> ModuleType:
    """tests/test_prometheus_rules.py: its PromQL name parser and its reading of the real
    registry, so both alert sets are checked by one implementation."""
    spec = importlib.util.spec_from_file_location(
        "_prom_rules", ROOT / "tests" / "test_prometheus_rules.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


PROM = _rules_test_module()


def _services(run_: ProgramRun) -> dict[str, Any]:
    return {r.inputs["name"].rsplit("-", 1)[-1]: r for r in run_.of_type(SERVICE)}


@pytest.mark.parametrize("stack", ["staging_metrics", "production"])
def test_scraped_services_carry_the_sidecar_with_its_config_mounted(
    stack: str, request: pytest.FixtureRequest
) -> None:
    run_: ProgramRun = request.getfixturevalue(stack)
    services = _services(run_)
    assert set(services) == set(SCRAPED)
    (config,) = [
        v
        for v in run_.of_type("gcp:secretmanager/secretVersion:SecretVersion")
        if "metrics-config" in v.name
    ]
    # A pinned revision keeps mounting the version it started with.
    assert config.inputs["deletionPolicy"] == "ABANDON"
    for role, service in services.items():
        template = service.inputs["template"]
        app, sidecar = template["containers"]
        assert app["name"] == role and app["args"] == [role]
        assert sidecar["name"] == "metrics-collector"
        assert sidecar["image"] == GMP_SIDECAR_IMAGE
        assert "@sha256:" in sidecar["image"] or re.search(r":\d+\.\d+\.\d+$", sidecar["image"])
        # Only the app container takes requests; the sidecar starts after it.
        assert "ports" not in sidecar
        assert sidecar["dependsOns"] == [role]
        assert sidecar["livenessProbe"]["httpGet"]["port"] == GMP_HEALTH_PORT
        # Same billing mode as the app: the relay's CPU is always allocated (its gauges,
        # which the outbox/overdue alerts read, are scraped reliably); api and worker are
        # request-billed and may miss scrapes while idle (docs/deploy-gcp.md).
        assert sidecar["resources"]["cpuIdle"] == app["resources"]["cpuIdle"]
        assert sidecar["resources"]["cpuIdle"] is (role != "relay")
        (mount,) = sidecar["volumeMounts"]
        assert mount["mountPath"] == GMP_CONFIG_DIR
        (volume,) = template["volumes"]
        assert volume["name"] == mount["name"]
        (item,) = volume["secret"]["items"]
        assert item["path"] == "config.yaml"
        # The exact version, so a config change is a new revision, never a silent swap.
        assert item["version"] not in ("", "latest")
        assert volume["secret"]["secret"] == config.state.get("secret", "").rsplit("/", 1)[
            -1
        ] or volume["secret"]["secret"].endswith("metrics-config")
    # The migrate job exports nothing (it runs minutes, then exits).
    (job,) = run_.of_type("gcp:cloudrunv2/job:Job")
    assert len(job.inputs["template"]["template"]["containers"]) == 1


def _validate_run_monitoring(text: str) -> dict[str, Any]:
    """What run-gmp-sidecar's confgenerator accepts (ReadConfigFromFile + Validate +
    endpointScrapeConfig), or an AssertionError naming the problem."""
    doc = yaml.safe_load(text)
    assert set(doc) <= {"apiVersion", "kind", "metadata", "spec"}, doc
    assert doc["apiVersion"] == "monitoring.googleapis.com/v1beta"
    assert doc["kind"] == "RunMonitoring"
    assert set(doc["spec"]) <= {"endpoints", "targetLabels", "limits"}
    allowed = {"port", "scheme", "path", "params", "proxyUrl", "interval", "timeout"}
    for endpoint in doc["spec"]["endpoints"]:
        assert set(endpoint) <= allowed | {"metricRelabeling"}, endpoint
        # The Go struct's Port is a string: an unquoted YAML int fails strict decoding.
        assert isinstance(endpoint["port"], str), endpoint
        seconds = [
            re.fullmatch(r"(\d+)s", str(endpoint.get(key, endpoint["interval"])))
            for key in ("interval", "timeout")
        ]
        assert all(seconds), endpoint
        interval, timeout = (int(m.group(1)) for m in seconds if m)
        assert timeout <= interval
    metadata = doc["spec"]["targetLabels"]["metadata"]
    assert set(metadata) <= {"instance", "revision", "service", "configuration"}
    return doc


def test_sidecar_config_scrapes_the_port_the_processes_serve_metrics_on(
    production: ProgramRun,
) -> None:
    (config,) = [
        v
        for v in production.of_type("gcp:secretmanager/secretVersion:SecretVersion")
        if "metrics-config" in v.name
    ]
    doc = _validate_run_monitoring(config.inputs["secretData"])
    (endpoint,) = doc["spec"]["endpoints"]
    assert endpoint["path"] == "/metrics"
    assert endpoint["interval"] == "60s"
    # Every scraped process is told the same port (settings.metrics_port: the API's and
    # the relay's separate /metrics server, the push worker's start_metrics_server).
    for role, service in _services(production).items():
        plain, _ = env_of(service.inputs["template"]["containers"][0])
        assert plain["METRICS_PORT"] == endpoint["port"] == str(METRICS_PORT), role
    # No per-instance label: each new Cloud Run instance would start new series.
    assert "instance" not in doc["spec"]["targetLabels"]["metadata"]


def test_the_config_validator_rejects_what_the_sidecar_rejects() -> None:
    good = run_monitoring_config(9464, "60s", "x")
    _validate_run_monitoring(good)
    for bad in (
        good.replace('"9464"', "9464"),
        good.replace("v1beta", "v1"),
        good.replace("timeout: 10s", "timeout: 90s"),
        good.replace("[service, revision]", "[service, pod]"),
    ):
        with pytest.raises(AssertionError):
            _validate_run_monitoring(bad)
    with pytest.raises(ValueError, match="interval"):
        run_monitoring_config(9464, "5s", "x")


def test_runtime_accounts_may_write_metrics_and_read_the_config(production: ProgramRun) -> None:
    accounts = {
        r.name.rsplit("-", 2)[-2]: r.state["member"]
        for r in production.of_type("gcp:serviceaccount/account:Account")
        if r.name.endswith("-sa") and r.parent.endswith("ContainerService::groundwork-production")
    }
    writers = {
        r.inputs["member"]
        for r in production.of_type("gcp:projects/iAMMember:IAMMember")
        if r.inputs["role"] == METRICS_WRITER_ROLE
    }
    assert writers == {accounts[role] for role in SCRAPED}
    for r in production.of_type("gcp:projects/iAMMember:IAMMember"):
        assert r.inputs["project"] == PROJECT
    readers = {
        r.inputs["member"]
        for r in production.of_type("gcp:secretmanager/secretIamMember:SecretIamMember")
        if r.name.endswith("-metrics-config-access")
    }
    assert readers == {accounts[role] for role in SCRAPED}
    # Both grants exist before the revision that mounts the secret and writes metrics.
    grants = {
        r.urn: r
        for r in production.resources
        if r.name.endswith(("-metric-writer", "-metrics-config-access"))
    }
    for role, service in _services(production).items():
        needed = {u for u, g in grants.items() if g.inputs["member"] == accounts[role]}
        assert len(needed) == 2 and needed <= set(service.depends_on), role


def test_bootstrap_lets_the_deploy_identity_grant_exactly_the_stacks_project_roles(
    staging_metrics: ProgramRun, production: ProgramRun
) -> None:
    granted = {
        r.inputs["role"]
        for run_ in (staging_metrics, production)
        for r in run_.of_type("gcp:projects/iAMMember:IAMMember")
    }
    assert granted == set(PROJECT_ROLES)
    doc = (ROOT / "docs" / "bootstrap.md").read_text()
    match = re.search(
        r"api\.getAttribute\('iam\.googleapis\.com/modifiedGrantsByRole', \[\]\)"
        r"\.hasOnly\(\[([^\]]*)\]\)",
        doc,
    )
    assert match, "docs/bootstrap.md lacks the modifiedGrantsByRole condition"
    allowed = {role.strip().strip("'\"") for role in match.group(1).split(",")}
    assert allowed == granted
    # The unconditional grant list must not hand out projectIamAdmin as well.
    assert "roles/resourcemanager.projectIamAdmin roles/" not in doc
    conditional = r"--role roles/resourcemanager\.projectIamAdmin \\\n\s*--condition-from-file"
    assert re.search(conditional, doc)


def _promql_policies(run_: ProgramRun) -> dict[str, dict[str, Any]]:
    found = {}
    for policy in run_.of_type("gcp:monitoring/alertPolicy:AlertPolicy"):
        for condition in policy.inputs["conditions"]:
            if "conditionPrometheusQueryLanguage" in condition:
                found[policy.name] = condition["conditionPrometheusQueryLanguage"]
    return found


def test_promql_alerts_read_metrics_the_running_service_registers(production: ProgramRun) -> None:
    exported = PROM._service_series()
    policies = _promql_policies(production)
    assert len(policies) == len(SERVICE_METRIC_ALERTS)
    services = _services(production)
    for alert in SERVICE_METRIC_ALERTS:
        query = policies[f"groundwork-production-{alert.key}"]["query"]
        names = PROM._metric_names(query)
        assert names, query
        assert names <= exported, f"{names - exported} in {query!r} are not service metrics"
        # Scoped to the one Cloud Run service that exports the metric (GMP's namespace).
        service_name = services[alert.role].inputs["name"]
        selectors = re.findall(r"\{([^}]*)\}", query)
        assert selectors and all(f'namespace="{service_name}"' in s for s in selectors), query


def test_promql_alerts_mirror_the_local_prometheus_rules() -> None:
    rules = PROM._rules()
    severity = {"page": {"CRITICAL", "ERROR"}, "ticket": {"WARNING"}}
    for alert in SERVICE_METRIC_ALERTS:
        rule = rules[alert.rule]
        assert " ".join(alert.promql(None).split()) == " ".join(rule["expr"].split()), alert.key
        minutes = int(rule.get("for", "0m").rstrip("m"))
        assert int(alert.duration.rstrip("s")) == minutes * 60, alert.key
        assert alert.severity in severity[rule["labels"]["severity"]], alert.key


def test_promql_alert_queries_are_valid_promql(production: ProgramRun, tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool not found: apt-get install prometheus (scripts/bootstrap.sh does)")
    rules = {
        "groups": [
            {
                "name": "gcp",
                "rules": [
                    {"alert": c["alertRule"], "expr": c["query"], "for": c["duration"]}
                    for c in _promql_policies(production).values()
                ],
            }
        ]
    }
    path = tmp_path / "gcp.rules.yml"
    path.write_text(yaml.safe_dump(rules))
    result = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(SERVICE_METRIC_ALERTS)} rules found" in result.stdout


def _args(**overrides: Any) -> ContainerServiceArgs:
    base: dict[str, Any] = {
        "region": "europe-west1",
        "image": "img",
        "network_id": "n",
        "subnet_id": "s",
        "env": {"METRICS_PORT": "9464"},
        "secrets": {},
        "publish_topic": "t",
        "push_audience": "aud",
        "project": PROJECT,
        "metrics_port": 9464,
    }
    return ContainerServiceArgs(**{**base, **overrides})


def test_metrics_args_are_checked() -> None:
    _args()
    with pytest.raises(ValueError, match="metricWriter"):
        _args(project="")
    with pytest.raises(ValueError, match="METRICS_PORT='9000'"):
        _args(env={"METRICS_PORT": "9000"})
    with pytest.raises(ValueError, match="metrics_port=8080"):
        _args(metrics_port=8080, env={})
    with pytest.raises(ValueError, match="interval"):
        _args(metrics_interval="1m")


def test_series_assumptions_cover_what_the_registry_exposes_before_any_label() -> None:
    """docs/cost-model.md prices samples from per-process series counts; the part the
    registry exposes unconditionally is measured here, so a new metric family that
    outgrows the assumption fails."""
    from prometheus_client import REGISTRY

    from groundwork.plan.pricing import load_price_table

    PROM._service_series()  # imports every metric module into the registry
    # Labelled children exist only once used (other tests in the session may have used
    # some): count the collectors and the unlabelled series, which every process has.
    baseline = sum(
        1
        for family in REGISTRY.collect()
        for sample in family.samples
        if family.name.startswith(("process_", "python_")) or not sample.labels
    )
    assert baseline >= 30  # the collectors and unlabelled families really were counted
    for tier in ("staging", "production"):
        usage = load_price_table().assumptions(tier)
        for role in SCRAPED:
            assert usage[f"gmp_series_per_instance_{role}"] >= baseline, (tier, role)
        assert usage["gmp_scrape_interval_seconds"] == int(
            ContainerServiceArgs.__dataclass_fields__["metrics_interval"].default.rstrip("s")  # type: ignore[union-attr]
        )


def test_export_off_keeps_the_config_secret_and_drops_sidecars_grants_and_alerts(
    staging: ProgramRun, staging_metrics: ProgramRun
) -> None:
    # Staging's default (groundwork:serviceMetrics=false): the sidecar's vCPU on the
    # always-on relay would be the biggest line of the bill. Switching export off must not
    # delete the config secret (protected in production), only what costs or grants.
    def names(run_: ProgramRun, type_: str) -> set[str]:
        return {r.name for r in run_.of_type(type_)}

    secret = "gcp:secretmanager/secret:Secret"
    assert (
        {n for n in names(staging, secret) if "metrics-config" in n}
        == {n for n in names(staging_metrics, secret) if "metrics-config" in n}
        != set()
    )
    assert not [r for r in staging.resources if r.name.endswith("-metric-writer")]
    assert len([r for r in staging_metrics.resources if r.name.endswith("-metric-writer")]) == 3
    for service in _services_all(staging):
        containers = service.inputs["template"]["containers"]
        assert [c["name"] for c in containers] == [
            service.inputs["template"]["containers"][0]["name"]
        ]
        assert "volumes" not in service.inputs["template"]
    assert _promql_policies(staging) == {}
    assert len(_promql_policies(staging_metrics)) == len(SERVICE_METRIC_ALERTS)


def _services_all(run_: ProgramRun) -> list[Any]:
    return [
        r
        for r in run_.of_type("gcp:cloudrunv2/service:Service")
        if r.inputs["name"].rsplit("-", 1)[-1] in SCRAPED
    ]


def test_the_config_secret_is_encrypted_like_every_other_secret(production: ProgramRun) -> None:
    # Production has groundwork:cmek on: policy gcp-kms-datastore-cmek requires a key on
    # every secret, the sidecar's config included, and the same replication as the rest.
    secrets = {
        r.name: r.inputs["replication"]
        for r in production.of_type("gcp:secretmanager/secret:Secret")
    }
    config = next(v for n, v in secrets.items() if "metrics-config" in n)
    jwt = next(v for n, v in secrets.items() if n.endswith("jwt-secret"))
    assert config == jwt
    assert "customerManagedEncryption" in str(config)
