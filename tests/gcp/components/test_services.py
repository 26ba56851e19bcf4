"""ContainerService (components/gcp/services.py): identities, probes, exposure, sizes, and
the API's traffic on deploy."""

from __future__ import annotations

import pytest
from groundwork_app.ports import HandleResult

from components.gcp.services import (
    ApiExposure,
    ContainerService,
    ContainerServiceArgs,
    ServiceSize,
    TrafficStrategy,
)
from tests.gcp.components.common import secret_store
from tests.gcp.helpers import REGION, GcpMocks, by_name, env_of, run


def _app(exposure: ApiExposure = ApiExposure.PRIVATE, **kwargs: object) -> ContainerService:
    store = secret_store()
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
