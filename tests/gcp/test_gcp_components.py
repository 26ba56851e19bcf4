"""Secrets, registry, services, edge and alerts components: secure defaults and options."""

from __future__ import annotations

import json
import re
from functools import partial
from pathlib import Path

import pulumi
import pytest
from groundwork_app.ports import HandleResult
from groundwork_app.worker import terminal

from components.gcp.alarms import Alarms, AlarmsArgs, Thresholds
from components.gcp.edge import OWASP_RULES, Edge, EdgeArgs
from components.gcp.registry import ContainerRegistry, RegistryArgs
from components.gcp.secrets import (
    OPERATOR_PLACEHOLDER,
    SecretReplication,
    SecretSource,
    SecretSpec,
    SecretStore,
    SecretStoreArgs,
)
from components.gcp.services import (
    ApiExposure,
    ContainerService,
    ContainerServiceArgs,
    ServiceSize,
    TrafficStrategy,
)
from tests.gcp.helpers import REGION, GcpMocks, by_name, env_of, run

# --- secrets -----------------------------------------------------------------------


def _store(**kwargs: object) -> SecretStore:
    specs = [
        SecretSpec("DB_PASSWORD", SecretSource.PROVIDED, "from-database"),
        SecretSpec("JWT_SECRET", SecretSource.GENERATED),
        SecretSpec("LLM_API_KEY", SecretSource.OPERATOR),
    ]
    return SecretStore("app", SecretStoreArgs(specs=specs, **kwargs))  # type: ignore[arg-type]


def test_secrets_automatic_replication_and_sources() -> None:
    graph = run(lambda: _store())
    secrets = by_name(graph, "gcp:secretmanager/secret:Secret")
    assert set(secrets) == {"app-db-password", "app-jwt-secret", "app-llm-api-key"}
    for secret in secrets.values():
        assert secret.inputs["replication"] == {"auto": {}}
        assert secret.inputs["labels"]["source"] in {"provided", "generated", "operator"}
    versions = by_name(graph, "gcp:secretmanager/secretVersion:SecretVersion")
    assert versions["app-db-password-version"].inputs["secretData"] == "from-database"
    generated = graph.named("app-jwt-secret-value")
    assert generated.inputs["length"] >= 32
    assert versions["app-jwt-secret-version"].inputs["secretData"] == generated.state["result"]
    operator = versions["app-llm-api-key-version"]
    assert operator.inputs["secretData"] == OPERATOR_PLACEHOLDER
    assert operator.ignore_changes == ["secretData"]


def test_secrets_user_managed_replication_stays_in_region() -> None:
    graph = run(
        lambda: _store(
            replication=SecretReplication.USER_MANAGED,
            replica_locations=[REGION],
            deletion_protection=True,
        )
    )
    for secret in graph.of_type("gcp:secretmanager/secret:Secret"):
        assert secret.inputs["replication"] == {"userManaged": {"replicas": [{"location": REGION}]}}
        assert secret.inputs["deletionProtection"] is True


def test_secret_refs_pin_managed_versions_and_follow_latest_for_operator_ones() -> None:
    refs: dict[str, object] = {}

    def program() -> None:
        store = _store()
        for name, ref in store.refs.items():
            pulumi.Output.from_input(ref.version).apply(partial(refs.__setitem__, name))

    run(program)
    assert refs == {"DB_PASSWORD": "1", "JWT_SECRET": "1", "LLM_API_KEY": "latest"}


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: SecretStoreArgs(specs=[], replication=SecretReplication.USER_MANAGED), "needs"),
        (lambda: SecretStoreArgs(specs=[], replica_locations=["x"]), "only apply"),
        (lambda: SecretSpec("db_password", SecretSource.GENERATED), "UPPER_SNAKE"),
        (lambda: SecretSpec("DB_PASSWORD", SecretSource.PROVIDED), "value is required"),
        (lambda: SecretSpec("JWT", SecretSource.GENERATED, length=16), "length"),
        (
            lambda: SecretStoreArgs(
                specs=[SecretSpec("A", SecretSource.GENERATED), SecretSpec("A", "generated")]  # type: ignore[arg-type]
            ),
            "duplicate",
        ),
    ],
)
def test_secret_arguments_are_validated(build: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()  # type: ignore[operator]


# --- registry ----------------------------------------------------------------------


def test_registry_has_cleanup_policies_and_deploys_by_digest() -> None:
    captured: dict[str, str] = {}

    def program() -> None:
        registry = ContainerRegistry("app", RegistryArgs(location=REGION, image_tag="abc123"))
        registry.image_ref.apply(lambda v: captured.setdefault("ref", v))

    graph = run(program)
    repo = graph.one("gcp:artifactregistry/repository:Repository").inputs
    assert repo["format"] == "DOCKER"
    assert repo["dockerConfig"] == {"immutableTags": True}
    assert repo["cleanupPolicyDryRun"] is False
    policies = {p["id"]: p for p in repo["cleanupPolicies"]}
    assert policies["delete-untagged"]["condition"]["tagState"] == "UNTAGGED"
    assert policies["keep-recent"]["action"] == "KEEP"
    image = graph.one("docker:index/image:Image").inputs
    assert image["imageName"].endswith("/app-images/app:abc123")
    assert image["build"]["platform"] == "linux/amd64"
    assert image["build"]["context"].endswith("services/app")
    assert image["registry"]["username"] == "oauth2accesstoken"
    assert "@sha256:" in captured["ref"]


def test_registry_refuses_latest_with_immutable_tags() -> None:
    with pytest.raises(ValueError, match="immutable"):
        RegistryArgs(location=REGION)
    RegistryArgs(location=REGION, immutable_tags=False)


# --- services ----------------------------------------------------------------------


def _app(exposure: ApiExposure = ApiExposure.PRIVATE, **kwargs: object) -> ContainerService:
    store = _store()
    return ContainerService(
        "app",
        ContainerServiceArgs(
            region=REGION,
            image="repo/app@sha256:abc",
            network_id="vpc",
            subnet_id="subnet",
            network_tags=["groundwork-run"],
            env={"APP_ENV": "staging", "PUBSUB_PUSH_AUDIENCE": "aud"},
            secrets=store.refs,
            publish_topic="jobs",
            push_audience="aud",
            api_exposure=exposure,
            **kwargs,  # type: ignore[arg-type]
        ),
    )


def test_services_defaults_private_least_privilege_identities() -> None:
    graph = run(lambda: _app())
    services = by_name(graph, "gcp:cloudrunv2/service:Service")
    assert services["app-api"].inputs["ingress"] == "INGRESS_TRAFFIC_INTERNAL_ONLY"
    assert not graph.of_type("gcp:cloudrunv2/serviceIamMember:ServiceIamMember")
    accounts = by_name(graph, "gcp:serviceaccount/account:Account")
    emails = {a.state["email"] for a in accounts.values()}
    for service in [*services.values(), graph.one("gcp:cloudrunv2/job:Job")]:
        template = service.inputs["template"]
        template = template.get("template", template)
        assert template["serviceAccount"] in emails
        assert "compute@developer" not in template["serviceAccount"]
        assert template["vpcAccess"]["egress"] == "PRIVATE_RANGES_ONLY"
        assert template["vpcAccess"]["networkInterfaces"][0]["tags"] == ["groundwork-run"]
    # No project-level role anywhere: only per-resource bindings.
    assert not graph.of_type("gcp:projects/iAMMember:IAMMember")
    publishers = graph.of_type("gcp:pubsub/topicIAMMember:TopicIAMMember")
    assert sorted(p.name for p in publishers) == ["app-relay-publisher"]


def test_each_identity_reads_exactly_the_secrets_its_container_references() -> None:
    graph = run(lambda: _app())
    grants = graph.of_type("gcp:secretmanager/secretIamMember:SecretIamMember")
    accounts = {
        a.name.removeprefix("app-").removesuffix("-sa"): a.state["member"]
        for a in graph.of_type("gcp:serviceaccount/account:Account")
    }
    from tests.gcp.helpers import containers

    for process, container in containers(graph).items():
        _, secret_refs = env_of(container)
        granted = {g.inputs["secretId"] for g in grants if g.inputs["member"] == accounts[process]}
        assert granted == {ref["secret"] for ref in secret_refs.values()}, process
        for g in grants:
            assert g.inputs["role"] == "roles/secretmanager.secretAccessor"


def test_relay_is_always_on_and_uninvokable_worker_accepts_push_audience() -> None:
    graph = run(lambda: _app(relay_instances=2))
    services = by_name(graph, "gcp:cloudrunv2/service:Service")
    relay = services["app-relay"].inputs
    assert relay["ingress"] == "INGRESS_TRAFFIC_INTERNAL_ONLY"
    (container,) = relay["template"]["containers"]
    assert container["resources"]["cpuIdle"] is False
    assert relay["template"]["scaling"] == {"minInstanceCount": 2, "maxInstanceCount": 2}
    worker = services["app-worker"].inputs
    assert worker["ingress"] == "INGRESS_TRAFFIC_INTERNAL_ONLY"
    assert worker["customAudiences"] == ["aud"]
    (wc,) = worker["template"]["containers"]
    assert wc["args"] == ["worker"]
    # In Pub/Sub mode the push receiver on $PORT is the worker's only listener.
    assert wc["ports"]["containerPort"] == 8080
    # Process-only probes; tests/gcp/test_gcp_first_deploy.py shows why.
    assert wc["startupProbe"]["httpGet"] == {"path": "/health/live", "port": 8080}
    assert wc["livenessProbe"]["httpGet"] == {"path": "/health/live", "port": 8080}
    api = services["app-api"].inputs
    (ac,) = api["template"]["containers"]
    assert ac["startupProbe"]["httpGet"]["path"] == "/health/live"
    assert ac["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert api["template"]["maxInstanceRequestConcurrency"] == 80


async def _never_called(delivery: object) -> HandleResult:
    raise AssertionError("no push is delivered in this test")


def test_every_probe_targets_the_container_port_where_the_process_serves_health() -> None:
    """Cloud Run routes to one port per container and sets $PORT to it; a probe on any
    other port finds nothing listening (the Pub/Sub worker starts no 8081 server) and
    the revision never becomes ready."""
    from fastapi.routing import APIRoute
    from groundwork_app.worker.pubsub_push import create_push_app

    graph = run(lambda: _app())
    for service in graph.of_type("gcp:cloudrunv2/service:Service"):
        (container,) = service.inputs["template"]["containers"]
        port = container["ports"]["containerPort"]
        for probe in ("startupProbe", "livenessProbe"):
            assert container[probe]["httpGet"]["port"] == port, (service.name, probe)
    push_app = create_push_app(_never_called, None)
    routes = {r.path for r in push_app.routes if isinstance(r, APIRoute)}
    assert {"/health/ready", "/health/live", "/pubsub/push"} <= routes


def test_public_exposure_grants_all_users_on_the_api_only() -> None:
    graph = run(lambda: _app(ApiExposure.PUBLIC))
    (binding,) = graph.of_type("gcp:cloudrunv2/serviceIamMember:ServiceIamMember")
    assert binding.inputs["member"] == "allUsers"
    assert binding.inputs["name"] == "app-api"
    api = graph.named("app-api").inputs
    assert api["ingress"] == "INGRESS_TRAFFIC_ALL"


def test_load_balancer_exposure_uses_lb_ingress_without_all_users() -> None:
    graph = run(lambda: _app(ApiExposure.LOAD_BALANCER, deletion_protection=True))
    assert not graph.of_type("gcp:cloudrunv2/serviceIamMember:ServiceIamMember")
    api = graph.named("app-api").inputs
    assert api["ingress"] == "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"
    assert api["invokerIamDisabled"] is True
    for service in graph.of_type("gcp:cloudrunv2/service:Service"):
        assert service.inputs["deletionProtection"] is True
        if service.name != "app-api":
            assert service.inputs["invokerIamDisabled"] is False
    assert graph.one("gcp:cloudrunv2/job:Job").inputs["deletionProtection"] is True


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cpu": "0.5"}, "cpu"),
        ({"memory": "256Mi"}, "512Mi-32Gi"),
        ({"cpu": "1", "memory": "8Gi"}, "does not fit"),
        ({"min_instances": 4, "max_instances": 3}, "min_instances"),
        ({"concurrency": 0}, "concurrency"),
        ({"timeout": "2h"}, "timeout"),
    ],
)
def test_service_size_is_validated(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ServiceSize(**kwargs)  # type: ignore[arg-type]


def test_conflicting_app_arguments_are_rejected() -> None:
    base = {
        "region": REGION,
        "image": "img",
        "network_id": "vpc",
        "subnet_id": "subnet",
        "secrets": {},
        "publish_topic": "jobs",
        "push_audience": "aud",
    }
    with pytest.raises(ValueError, match="worker would reject"):
        ContainerServiceArgs(env={"PUBSUB_PUSH_AUDIENCE": "other"}, **base)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="set by Cloud Run"):
        ContainerServiceArgs(env={"PORT": "8080"}, **base)  # type: ignore[arg-type]


# --- edge --------------------------------------------------------------------------


def test_edge_has_owasp_waf_rate_limit_managed_cert_and_redirect() -> None:
    graph = run(
        lambda: Edge("edge", EdgeArgs(region=REGION, api_service_name="api", domain="api.ex.com"))
    )
    policy = graph.one("gcp:compute/securityPolicy:SecurityPolicy").inputs
    rules = sorted(policy["rules"], key=lambda r: r["priority"])
    waf = [r for r in rules if "evaluatePreconfiguredWaf" in str(r["match"])]
    found = {
        re.search(r"evaluatePreconfiguredWaf\('([^']+)'", r["match"]["expr"]["expression"])[1]  # type: ignore[index]
        for r in waf
    }
    assert found == set(OWASP_RULES)
    assert all(r["action"] == "deny(403)" for r in waf)
    rate = next(r for r in rules if r["action"] == "rate_based_ban")
    assert rate["priority"] > max(r["priority"] for r in waf)
    assert rate["rateLimitOptions"]["exceedAction"] == "deny(429)"
    assert rate["rateLimitOptions"]["banDurationSec"] == 300
    assert rules[-1]["priority"] == 2147483647
    backend = graph.one("gcp:compute/backendService:BackendService").inputs
    assert backend["loadBalancingScheme"] == "EXTERNAL_MANAGED"
    assert backend["securityPolicy"]
    assert backend["logConfig"]["enable"] is True
    neg = graph.one("gcp:compute/regionNetworkEndpointGroup:RegionNetworkEndpointGroup").inputs
    assert neg["networkEndpointType"] == "SERVERLESS"
    assert neg["cloudRun"] == {"service": "api"}
    cert = graph.one("gcp:compute/managedSslCertificate:ManagedSslCertificate").inputs
    assert cert["managed"]["domains"] == ["api.ex.com"]
    tls = graph.one("gcp:compute/sSLPolicy:SSLPolicy").inputs
    assert (tls["minTlsVersion"], tls["profile"]) == ("TLS_1_2", "MODERN")
    maps = by_name(graph, "gcp:compute/uRLMap:URLMap")
    assert maps["edge-http-redirect"].inputs["defaultUrlRedirect"]["httpsRedirect"] is True
    rules_by_port = {
        r.inputs["portRange"]: r
        for r in graph.of_type("gcp:compute/globalForwardingRule:GlobalForwardingRule")
    }
    assert set(rules_by_port) == {"443", "80"}


def test_edge_without_domain_falls_back_to_sslip() -> None:
    urls: list[str] = []

    def program() -> None:
        edge = Edge("edge", EdgeArgs(region=REGION, api_service_name="api"))
        edge.url.apply(urls.append)

    graph = run(program)
    cert = graph.one("gcp:compute/managedSslCertificate:ManagedSslCertificate").inputs
    assert cert["managed"]["domains"] == ["203-0-113-10.sslip.io"]
    assert urls == ["https://203-0-113-10.sslip.io"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"domain": "API.Example.com"}, "hostname"),
        ({"rate_limit_per_minute": 100, "ban_threshold_per_minute": 50}, "rate_limit"),
        ({"waf_sensitivity": 0}, "sensitivity"),
    ],
)
def test_edge_arguments_are_validated(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EdgeArgs(region=REGION, api_service_name="api", **kwargs)  # type: ignore[arg-type]


# --- alerts ------------------------------------------------------------------------


def _alerts(**kwargs: object) -> Alarms:
    return Alarms(
        "mon",
        AlarmsArgs(
            project="p",
            region=REGION,
            api_service_name="svc-api",
            run_service_names={"api": "svc-api", "worker": "svc-worker", "relay": "svc-relay"},
            sql_instance_name="pg",
            redis_instance_name="redis",
            push_subscription_name="push-sub",
            dead_letter_subscription_name="dl-sub",
            **kwargs,  # type: ignore[arg-type]
        ),
    )


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
        AlarmsArgs(
            project="p",
            region=REGION,
            api_service_name="a",
            run_service_names={"api": "a", "worker": "w", "relay": "r"},
            sql_instance_name="s",
            redis_instance_name="r",
            push_subscription_name="p",
            dead_letter_subscription_name="d",
            notification_email="nope",
        )


# --- API traffic on deploy -----------------------------------------------------------

REV = "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION"
LATEST = "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST"


def _target(revision: str, percent: int, type_: str = REV) -> dict[str, object]:
    return {"type": type_, "revision": revision, "percent": percent}


LIVE_SPLIT = [
    _target("app-api-00007-abc", 90),
    _target("app-api-00008-def", 10),
    _target("app-api-00006-xyz", 0),
]


def _mocks(live: list[dict[str, object]] | None) -> GcpMocks:
    return GcpMocks(region=REGION, gcp_project="acme-groundwork", live_api_traffic=live)


def test_pinned_traffic_keeps_the_serving_split_so_the_new_revision_starts_at_zero() -> None:
    """Without an explicit split the update carries the one recorded in the state (or
    none: Cloud Run's default, 100 % latest), so the new revision takes everything at
    once and `ops shift-traffic` finds nothing to shift."""
    mocks = _mocks(LIVE_SPLIT)
    graph = run(lambda: _app(api_traffic=TrafficStrategy.PINNED), mocks=mocks)
    assert graph.named("app-api").inputs["traffics"] == [
        _target("app-api-00007-abc", 90),
        _target("app-api-00008-def", 10),
    ]
    assert [lookup["name"] for lookup in mocks.service_lookups] == ["app-api"]
    assert mocks.service_lookups[0]["location"] == REGION
    for other in ("app-worker", "app-relay"):
        assert "traffics" not in graph.named(other).inputs


def test_a_latest_target_is_pinned_to_the_revision_it_resolves_to() -> None:
    live = [_target("app-api-00001-aaa", 100, LATEST)]
    graph = run(lambda: _app(api_traffic=TrafficStrategy.PINNED), mocks=_mocks(live))
    assert graph.named("app-api").inputs["traffics"] == [_target("app-api-00001-aaa", 100)]


def test_pinned_traffic_on_first_deploy_lets_the_first_revision_serve() -> None:
    graph = run(lambda: _app(api_traffic=TrafficStrategy.PINNED), mocks=_mocks(None))
    assert "traffics" not in graph.named("app-api").inputs


@pytest.mark.parametrize(
    "error",
    [
        # What the provider's data source reports for an API error other than 404
        # (https://cloud.google.com/run/docs/reference/iam/permissions: the deployer needs
        # run.services.get; quota: https://cloud.google.com/run/quotas).
        "googleapi: Error 403: Permission 'run.services.get' denied on resource "
        "'projects/acme-groundwork/locations/europe-west1/services/app-api', forbidden",
        "googleapi: Error 429: Quota exceeded for quota metric 'Read requests', rateLimitExceeded",
        "googleapi: Error 503: The service is currently unavailable., backendError",
    ],
)
def test_a_failed_split_lookup_stops_the_deploy_instead_of_skipping_the_canary(
    error: str,
) -> None:
    mocks = GcpMocks(region=REGION, gcp_project="acme-groundwork", lookup_error=error)
    with pytest.raises(Exception, match="could not read the live traffic split"):
        run(lambda: _app(api_traffic=TrafficStrategy.PINNED), mocks=mocks)


def test_only_not_found_means_first_deploy() -> None:
    from components.gcp.services import is_not_found

    # The provider's messages, read in hashicorp/terraform-provider-google at e03b7622
    # (google/services/cloudrunv2/data_source_google_cloud_run_v2_service.go and
    # google/transport/transport.go): a 404 makes the resource read clear the id
    # (HandleNotFoundError) and the data source then fails with "<id> not found"; any other
    # API error is wrapped as "Error when reading or editing CloudRunV2Service ...:
    # googleapi: Error <code>: ...". Pulumi prefixes the invoke's name.
    service_id = "projects/acme/locations/europe-west1/services/app-api"
    invoke = "Invoke of 'gcp:cloudrunv2/getService:getService' failed: "
    assert is_not_found(Exception(f"{invoke}{service_id} not found"))
    assert is_not_found(Exception(f"{service_id} not found"))
    for code, message in (
        (403, "Permission 'run.services.get' denied on resource (or it may not exist)."),
        (429, "Quota exceeded for quota metric 'Read requests'"),
        (503, "The service is currently unavailable."),
    ):
        wrapped = (
            f'{invoke}Error when reading or editing CloudRunV2Service "{service_id}": '
            f"googleapi: Error {code}: {message}"
        )
        assert not is_not_found(Exception(wrapped)), code
    assert not is_not_found(Exception("connection reset by peer"))


def test_latest_traffic_never_looks_the_service_up() -> None:
    mocks = _mocks(LIVE_SPLIT)
    graph = run(lambda: _app(), mocks=mocks)
    assert "traffics" not in graph.named("app-api").inputs
    assert mocks.service_lookups == []
