"""Both GCP stacks end to end under mocks: inventory, differences, contract, push wiring."""

from __future__ import annotations

from typing import Any

import pytest
from groundwork_app.contract import deployment_contract
from groundwork_app.settings import QueueBackend

from groundwork.mockrun import ProgramRun
from groundwork.stack_outputs import GcpOutputs
from stacks.config import ConfigError
from tests.gcp.helpers import (
    PROJECT,
    PUBSUB_AGENT,
    REDIS_CAS,
    REGION,
    SQL_CA,
    GcpMocks,
    by_name,
    containers,
    env_of,
    run_stack,
)

CONTRACT = deployment_contract(QueueBackend.PUBSUB)
PROCESSES = ("api", "worker", "relay", "migrate")
LABEL_KEYS = {"environment", "service", "managed-by", "cost-center"}
# The names groundwork ops reads back (groundwork/stack_outputs.py owns them).
EXPORTS = GcpOutputs.__required_keys__


def _one(graph: ProgramRun, type_token: str) -> dict[str, Any]:
    return graph.one(type_token).inputs


# --- the environment contract ------------------------------------------------------


@pytest.mark.parametrize("stack", ["staging", "production"])
@pytest.mark.parametrize("process", PROCESSES)
def test_every_container_gets_exactly_the_pubsub_contract(
    stack: str, process: str, request: pytest.FixtureRequest
) -> None:
    graph: ProgramRun = request.getfixturevalue(stack)
    plain, secrets = env_of(containers(graph)[process])
    assert set(plain) == CONTRACT.env
    assert set(secrets) == CONTRACT.secrets
    assert plain["APP_ENV"] == stack
    assert plain["QUEUE_BACKEND"] == "pubsub"
    assert plain["DB_SSLMODE"] == "verify-ca"  # see test_services_authenticate_cloud_sql
    assert plain["REDIS_TLS"] == "true"
    assert plain["PUBSUB_PROJECT_ID"] == PROJECT
    assert containers(graph)[process]["args"] == [process]


@pytest.mark.parametrize("process", PROCESSES)
def test_every_container_trusts_the_memorystore_server_cas(
    staging: ProgramRun, process: str
) -> None:
    """Memorystore's certificate chains to a CA private to the instance: with only the
    system trust store every TLS connection to Redis fails verification."""
    from groundwork_app.settings import Settings

    plain, _ = env_of(containers(staging)[process])
    bundle = plain["REDIS_TLS_CA_CERT"]
    assert bundle == "".join(REDIS_CAS)  # every CA: a rotation must not break clients
    assert Settings(redis_tls=True, redis_tls_ca_cert=bundle).redis_tls_ca_cert == bundle


def test_secret_values_come_from_the_resources_that_own_them(staging: ProgramRun) -> None:
    versions = by_name(staging, "gcp:secretmanager/secretVersion:SecretVersion")
    user = _one(staging, "gcp:sql/user:User")
    assert (
        versions["groundwork-staging-db-password-version"].inputs["secretData"] == user["password"]
    )
    redis = staging.one("gcp:redis/instance:Instance")
    assert (
        versions["groundwork-staging-redis-password-version"].inputs["secretData"]
        == redis.state["authString"]
    )
    plain, _ = env_of(containers(staging)["api"])
    assert (
        plain["DB_HOST"]
        == staging.one("gcp:sql/databaseInstance:DatabaseInstance").state["privateIpAddress"]
    )
    assert plain["REDIS_HOST"] == redis.state["host"]
    assert plain["REDIS_PORT"] == "6378"
    assert plain["QUEUE_NAME"] == staging.outputs["pubsub_topic"]


@pytest.mark.parametrize("stack", ["staging", "production"])
def test_worker_request_concurrency_and_drain_fit_cloud_run(
    stack: str, request: pytest.FixtureRequest
) -> None:
    graph: ProgramRun = request.getfixturevalue(stack)
    worker = graph.named(f"groundwork-{stack}-worker").inputs
    worker_env, _ = env_of(containers(graph)["worker"])
    # One push = one job: Cloud Run admits as many as the worker's slots.
    assert worker["template"]["maxInstanceRequestConcurrency"] == int(
        worker_env["WORKER_CONCURRENCY"]
    )
    # Cloud Run SIGKILLs 10 s after SIGTERM (container contract, not configurable).
    for container in containers(graph).values():
        plain, _ = env_of(container)
        assert float(plain["SHUTDOWN_TIMEOUT_SECONDS"]) < 10


# --- Pub/Sub push wiring (fails silently in real life when wrong) -------------------


@pytest.mark.parametrize("stack", ["staging", "production"])
def test_push_wiring(stack: str, request: pytest.FixtureRequest) -> None:
    graph: ProgramRun = request.getfixturevalue(stack)
    prefix = f"groundwork-{stack}"
    subscription = graph.named(f"{prefix}-worker-push").inputs
    push = subscription["pushConfig"]
    worker = graph.named(f"{prefix}-worker")
    worker_env, _ = env_of(containers(graph)["worker"])

    # The audience in the token is what the worker checks and what Cloud Run accepts.
    assert push["oidcToken"]["audience"] == worker_env["PUBSUB_PUSH_AUDIENCE"]
    assert push["oidcToken"]["audience"] in worker.inputs["customAudiences"]
    assert push["pushEndpoint"] == f"{worker.state['uri']}/pubsub/push"

    # The token's identity is the only principal allowed to invoke the worker.
    push_sa = graph.named(f"{prefix}-push")
    assert push["oidcToken"]["serviceAccountEmail"] == push_sa.state["email"]
    assert worker_env["PUBSUB_PUSH_SERVICE_ACCOUNT"] == push_sa.state["email"]
    invokers = [
        b.inputs
        for b in graph.of_type("gcp:cloudrunv2/serviceIamMember:ServiceIamMember")
        if b.inputs["name"] == worker.state["name"]
    ]
    assert invokers == [
        {
            "name": worker.state["name"],
            "location": REGION,
            "role": "roles/run.invoker",
            "member": push_sa.state["member"],
        }
    ]
    assert (
        graph.named(f"{prefix}-worker-invoker").urn
        in graph.named(f"{prefix}-worker-push").depends_on
    )

    # One coherent push-auth design: Cloud Run's IAM invoker check stays on for the
    # worker, so Cloud Run validates the token and delivers it with its signature
    # replaced by SIGNATURE_REMOVED_BY_GOOGLE
    # (https://cloud.google.com/run/docs/authenticating/service-to-service); the app
    # must then check the claims, not the signature (services/app test_pubsub.py
    # pushes such a token).
    assert not worker.inputs.get("invokerIamDisabled")
    assert worker_env["PUBSUB_PUSH_AUTH"] == "cloud-run-iam"

    # The service agent is asked for explicitly (new projects may not have it yet) and
    # every grant to it waits for it.
    # (EncryptionKeys asks for the agents it grants CMEK keys to on its own.)
    (agent,) = [
        a
        for a in graph.of_type("gcp:projects/serviceIdentity:ServiceIdentity")
        if "gcp:JobQueue$" in a.urn
    ]
    assert agent.inputs["service"] == "pubsub.googleapis.com"
    for grant in ("dead-letter-publisher", "dead-letter-subscriber", "push-token-creator"):
        assert agent.urn in graph.named(f"{prefix}-{grant}").depends_on

    # Dead-lettering: the Pub/Sub service agent publishes to the DLT and acks the source.
    dlt = graph.named(f"{prefix}-jobs-dead-letter")
    assert subscription["deadLetterPolicy"]["deadLetterTopic"] == dlt.state["id"]
    assert subscription["deadLetterPolicy"]["maxDeliveryAttempts"] == 5
    publisher = graph.named(f"{prefix}-dead-letter-publisher").inputs
    assert publisher == {
        "topic": dlt.state["name"],
        "role": "roles/pubsub.publisher",
        "member": PUBSUB_AGENT,
    }
    subscriber = graph.named(f"{prefix}-dead-letter-subscriber").inputs
    assert subscriber == {
        "subscription": subscription["name"],
        "role": "roles/pubsub.subscriber",
        "member": PUBSUB_AGENT,
    }
    token_creator = graph.named(f"{prefix}-push-token-creator").inputs
    assert token_creator == {
        "serviceAccountId": push_sa.state["name"],
        "role": "roles/iam.serviceAccountTokenCreator",
        "member": PUBSUB_AGENT,
    }

    # Backoff, retention, and an ack deadline that covers the worker's timeout.
    assert subscription["retryPolicy"] == {"minimumBackoff": "10s", "maximumBackoff": "600s"}
    assert subscription["messageRetentionDuration"] == "604800s"
    worker_timeout = int(worker.inputs["template"]["timeout"].removesuffix("s"))
    assert subscription["ackDeadlineSeconds"] >= worker_timeout
    inspect = graph.named(f"{prefix}-jobs-dead-letter-inspect").inputs
    assert inspect["topic"] == dlt.state["id"] and "pushConfig" not in inspect

    # Every dead letter is also pushed to the worker, which ends its job (before, a job
    # whose message was dead-lettered while its worker died stayed `processing`): same
    # token identity and audience as the work push, so the worker's verifier accepts it.
    ended = graph.named(f"{prefix}-dead-letter-push").inputs
    assert ended["topic"] == dlt.state["id"]
    assert ended["pushConfig"]["pushEndpoint"] == f"{worker.state['uri']}/pubsub/dead-letter"
    assert ended["pushConfig"]["oidcToken"] == push["oidcToken"]
    assert "deadLetterPolicy" not in ended
    assert ended["ackDeadlineSeconds"] >= worker_timeout
    assert (
        graph.named(f"{prefix}-worker-invoker").urn
        in graph.named(f"{prefix}-dead-letter-push").depends_on
    )


def test_only_the_relay_publishes_and_only_to_the_jobs_topic(staging: ProgramRun) -> None:
    topic = staging.named("groundwork-staging-jobs").state["name"]
    accounts = by_name(staging, "gcp:serviceaccount/account:Account")
    publishers = {
        b.inputs["member"]
        for b in staging.of_type("gcp:pubsub/topicIAMMember:TopicIAMMember")
        if b.inputs["role"] == "roles/pubsub.publisher" and b.inputs["topic"] == topic
    }
    # The API only writes the outbox; a publisher grant there is privilege it never uses.
    assert publishers == {accounts["groundwork-staging-relay-sa"].state["member"]}


# --- staging is cheap, production is highly available -----------------------------


def test_staging_is_the_cheap_shape(staging: ProgramRun) -> None:
    sql = _one(staging, "gcp:sql/databaseInstance:DatabaseInstance")
    assert sql["settings"]["availabilityType"] == "ZONAL"
    assert sql["settings"]["tier"] == "db-g1-small"
    assert sql["deletionProtection"] is False
    assert sql["settings"]["backupConfiguration"]["backupRetentionSettings"]["retainedBackups"] == 7
    assert _one(staging, "gcp:redis/instance:Instance")["tier"] == "BASIC"
    assert not staging.of_type("gcp:compute/securityPolicy:SecurityPolicy")
    api = staging.named("groundwork-staging-api").inputs
    assert api["ingress"] == "INGRESS_TRAFFIC_ALL"
    assert api["template"]["scaling"]["minInstanceCount"] == 0
    (public,) = [
        b
        for b in staging.of_type("gcp:cloudrunv2/serviceIamMember:ServiceIamMember")
        if b.inputs["member"] == "allUsers"
    ]
    assert public.inputs["name"] == "groundwork-staging-api"
    # The scheduled relay (tests/gcp/test_gcp_relay_billing.py): no instance waits idle.
    relay = staging.named("groundwork-staging-relay").inputs
    assert relay["template"]["scaling"]["minInstanceCount"] == 0
    assert staging.outputs["api_url"].endswith(".run.app")


def test_production_is_highly_available_and_protected(production: ProgramRun) -> None:
    sql = _one(production, "gcp:sql/databaseInstance:DatabaseInstance")
    assert sql["settings"]["availabilityType"] == "REGIONAL"
    assert sql["deletionProtection"] is True
    assert sql["settings"]["deletionProtectionEnabled"] is True
    assert (
        sql["settings"]["backupConfiguration"]["backupRetentionSettings"]["retainedBackups"] == 30
    )
    redis = _one(production, "gcp:redis/instance:Instance")
    assert redis["tier"] == "STANDARD_HA"
    assert redis["persistenceConfig"]["persistenceMode"] == "RDB"
    api = production.named("groundwork-production-api").inputs
    assert api["ingress"] == "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"
    assert api["template"]["scaling"] == {"minInstanceCount": 1, "maxInstanceCount": 10}
    assert api["template"]["maxInstanceRequestConcurrency"] == 80
    for member in production.of_type("gcp:cloudrunv2/serviceIamMember:ServiceIamMember"):
        assert member.inputs["member"] != "allUsers"
    for service in production.of_type("gcp:cloudrunv2/service:Service"):
        assert service.inputs["deletionProtection"] is True
    relay = production.named("groundwork-production-relay").inputs
    assert relay["template"]["scaling"]["minInstanceCount"] == 2
    assert production.one("gcp:compute/securityPolicy:SecurityPolicy")
    cert = _one(production, "gcp:compute/managedSslCertificate:ManagedSslCertificate")
    assert cert["managed"]["domains"] == ["api.example.com"]
    assert production.outputs["api_url"] == "https://api.example.com"
    uptime = _one(production, "gcp:monitoring/uptimeCheckConfig:UptimeCheckConfig")
    assert uptime["monitoredResource"]["labels"]["host"] == "api.example.com"
    assert production.one("gcp:monitoring/notificationChannel:NotificationChannel")


def test_inventory_differs_only_by_the_edge(staging: ProgramRun, production: ProgramRun) -> None:
    def inventory(graph: ProgramRun) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in graph.resources:
            counts[r.type] = counts.get(r.type, 0) + 1
        return counts

    cheap, ha = inventory(staging), inventory(production)
    extra = {t for t in ha if t not in cheap}
    assert extra == {
        "groundwork:gcp:Edge",
        "gcp:compute/globalAddress:GlobalAddress",
        "gcp:compute/regionNetworkEndpointGroup:RegionNetworkEndpointGroup",
        "gcp:compute/securityPolicy:SecurityPolicy",
        "gcp:compute/backendService:BackendService",
        "gcp:compute/uRLMap:URLMap",
        "gcp:compute/managedSslCertificate:ManagedSslCertificate",
        "gcp:compute/sSLPolicy:SSLPolicy",
        "gcp:compute/targetHttpsProxy:TargetHttpsProxy",
        "gcp:compute/targetHttpProxy:TargetHttpProxy",
        "gcp:compute/globalForwardingRule:GlobalForwardingRule",
        "gcp:monitoring/notificationChannel:NotificationChannel",
        # groundwork:cmek (production default on): Cloud KMS keys and their suffix.
        "groundwork:gcp:EncryptionKeys",
        "gcp:kms/keyRing:KeyRing",
        "gcp:kms/cryptoKey:CryptoKey",
        "gcp:kms/cryptoKeyIAMMember:CryptoKeyIAMMember",
        "random:index/randomId:RandomId",
        "pulumi-python:dynamic:Resource",  # the grants' IAM propagation wait
        # groundwork:serviceMetrics (production default on): the metric writers' grants.
        "gcp:projects/iAMMember:IAMMember",
    } - set(cheap)
    assert cheap["gcp:cloudrunv2/service:Service"] == ha["gcp:cloudrunv2/service:Service"] == 3
    assert cheap["gcp:cloudrunv2/job:Job"] == ha["gcp:cloudrunv2/job:Job"] == 1
    # 4 app secrets + the Managed Prometheus sidecar's RunMonitoring config.
    assert cheap["gcp:secretmanager/secret:Secret"] == 6
    # 10 threshold policies, push deliveries by response class, 2 SLOs x 2 burn rates,
    # stuck jobs (log match); production adds 6 PromQL policies on the service's own
    # metrics (groundwork:serviceMetrics, off in staging), staging the scheduled relay's
    # relay-not-held (groundwork:gcpRelayBilling, tests/gcp/test_gcp_relay_billing.py).
    assert cheap["gcp:monitoring/alertPolicy:AlertPolicy"] == 16 + 1
    assert ha["gcp:monitoring/alertPolicy:AlertPolicy"] == 16 + 6
    # ...and the only type staging has that production lacks is the relay's scheduler.
    assert {t for t in cheap if t not in ha} == {"gcp:cloudscheduler/job:Job"}
    assert cheap["gcp:monitoring/slo:Slo"] == ha["gcp:monitoring/slo:Slo"] == 2
    assert cheap["gcp:logging/projectSink:ProjectSink"] == 1


@pytest.mark.parametrize("stack", ["staging", "production"])
def test_every_labelable_resource_carries_the_shared_labels(
    stack: str, request: pytest.FixtureRequest
) -> None:
    graph: ProgramRun = request.getfixturevalue(stack)
    labelled = 0
    for resource in graph.resources:
        if not resource.custom:
            continue
        labels = resource.inputs.get("labels") or resource.inputs.get("userLabels")
        if resource.type == "gcp:sql/databaseInstance:DatabaseInstance":
            labels = resource.inputs["settings"]["userLabels"]
        if resource.type == "gcp:monitoring/notificationChannel:NotificationChannel":
            labels = resource.inputs["userLabels"]
        if labels is None:
            continue
        labelled += 1
        assert set(labels) >= LABEL_KEYS, resource.name
        assert labels["environment"] == stack
        for key, value in labels.items():
            assert value == value.lower() and len(value) <= 63, (resource.name, key)
    assert labelled >= 25


@pytest.mark.parametrize("stack", ["staging", "production"])
def test_exports_match_the_contract_and_hold_no_secret(
    stack: str, request: pytest.FixtureRequest
) -> None:
    graph: ProgramRun = request.getfixturevalue(stack)
    assert set(graph.outputs) == EXPORTS
    assert graph.outputs["cloud"] == "gcp"
    assert (graph.outputs["project"], graph.outputs["region"]) == (PROJECT, REGION)
    assert set(graph.outputs["secret_ids"]) == CONTRACT.secrets
    flat = repr(graph.outputs)
    for version in graph.of_type("gcp:secretmanager/secretVersion:SecretVersion"):
        assert version.inputs["secretData"] not in flat


def test_no_resource_uses_the_default_compute_service_account(production: ProgramRun) -> None:
    assert "-compute@developer.gserviceaccount.com" not in repr(
        [r.inputs for r in production.resources]
    )


# --- configuration errors ----------------------------------------------------------


def test_missing_project_is_a_clear_config_error() -> None:
    from groundwork.mockrun import run_program
    from stacks import program

    with pytest.raises(ConfigError, match=r"gcp:project.*pulumi config set gcp:project"):
        run_program(
            program, stack="staging", config={"groundwork:cloud": "gcp", "gcp:region": REGION}
        )


def test_missing_region_is_a_clear_config_error() -> None:
    from groundwork.mockrun import run_program
    from stacks import program

    with pytest.raises(ConfigError, match=r"pulumi config set gcp:region"):
        run_program(
            program, stack="staging", config={"groundwork:cloud": "gcp", "gcp:project": PROJECT}
        )


def test_private_api_with_edge_is_rejected() -> None:
    with pytest.raises(ConfigError, match="publicApi"):
        run_stack("production", {"publicApi": "false"})


def test_private_staging_api_has_no_public_invoker_and_no_uptime_check() -> None:
    graph = run_stack("staging", {"publicApi": "false"})
    api = graph.named("groundwork-staging-api").inputs
    assert api["ingress"] == "INGRESS_TRAFFIC_INTERNAL_ONLY"
    assert not [
        b
        for b in graph.of_type("gcp:cloudrunv2/serviceIamMember:ServiceIamMember")
        if b.inputs["member"] == "allUsers"
    ]
    assert not graph.of_type("gcp:monitoring/uptimeCheckConfig:UptimeCheckConfig")


def test_overrides_reach_the_resources() -> None:
    graph = run_stack(
        "staging",
        {
            "gcpDbTier": "db-custom-1-3840",
            "gcpRedisMemoryGb": "3",
            "gcpRunMemory": "1Gi",
            "secretReplication": "user-managed",
            "imageTag": "abc123",
            "costCenter": "Data Team",
            "gcpPushAudience": "https://push.example.com",
        },
    )
    assert _one(graph, "gcp:sql/databaseInstance:DatabaseInstance")["settings"]["tier"] == (
        "db-custom-1-3840"
    )
    assert _one(graph, "gcp:redis/instance:Instance")["memorySizeGb"] == 3
    api = containers(graph)["api"]
    assert api["resources"]["limits"]["memory"] == "1Gi"
    for secret in graph.of_type("gcp:secretmanager/secret:Secret"):
        assert secret.inputs["replication"] == {"userManaged": {"replicas": [{"location": REGION}]}}
        assert secret.inputs["labels"]["cost-center"] == "data_team"
    repo = _one(graph, "gcp:artifactregistry/repository:Repository")
    assert repo["dockerConfig"] == {"immutableTags": True}
    worker_env, _ = env_of(containers(graph)["worker"])
    assert worker_env["PUBSUB_PUSH_AUDIENCE"] == "https://push.example.com"
    assert (
        graph.named("groundwork-staging-worker-push").inputs["pushConfig"]["oidcToken"]["audience"]
        == "https://push.example.com"
    )


@pytest.mark.parametrize(("stack", "pinned"), [("staging", False), ("production", True)])
def test_production_keeps_the_serving_split_for_the_gradual_rollout(
    stack: str, pinned: bool
) -> None:
    """`pulumi up` then `ops shift-traffic` (deploy-environment.yml): in production the
    new API revision must start at 0 % or there is nothing left to shift gradually."""
    live = [
        {
            "type": "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION",
            "revision": f"groundwork-{stack}-api-00003-abc",
            "percent": 100,
        }
    ]
    mocks = GcpMocks(region=REGION, gcp_project=PROJECT, live_api_traffic=live)
    graph = run_stack(stack, {"domain": "api.example.com"}, mocks=mocks)
    api = graph.named(f"groundwork-{stack}-api").inputs
    if pinned:
        assert api["traffics"] == live
        assert [lookup["name"] for lookup in mocks.service_lookups] == [f"groundwork-{stack}-api"]
    else:
        assert "traffics" not in api
        assert mocks.service_lookups == []


# --- immutable properties on fixed names ---------------------------------------------

AUTO = {"autos": [{"customerManagedEncryptions": []}], "userManageds": []}
IN_REGION = {"autos": [], "userManageds": [{"replicas": [{"location": REGION}]}]}


@pytest.mark.parametrize(("live", "setting"), [(AUTO, "user-managed"), (IN_REGION, "automatic")])
def test_a_secret_replication_change_is_refused_naming_the_key(
    live: dict[str, Any], setting: str
) -> None:
    """Secret Manager cannot change ``replication`` in place
    (https://cloud.google.com/secret-manager/docs/reference/rest/v1/projects.secrets:
    "replication ... Immutable"): with fixed secret ids the replacement would either
    fail on the name or, delete-first, drop the operator's LLM_API_KEY versions."""
    mocks = GcpMocks(region=REGION, gcp_project=PROJECT, live_secret_replication=live)
    with pytest.raises(ConfigError, match=r"groundwork:secretReplication = .*cannot change"):
        run_stack("staging", {"secretReplication": setting}, mocks=mocks)


def test_unchanged_secret_replication_and_first_deploy_pass() -> None:
    for live, setting in ((AUTO, "automatic"), (IN_REGION, "user-managed"), (None, "automatic")):
        mocks = GcpMocks(region=REGION, gcp_project=PROJECT, live_secret_replication=live)
        graph = run_stack("staging", {"secretReplication": setting}, mocks=mocks)
        assert graph.of_type("gcp:secretmanager/secret:Secret")


def test_a_failed_secret_lookup_stops_the_deploy() -> None:
    mocks = GcpMocks(
        region=REGION,
        gcp_project=PROJECT,
        secret_lookup_error="googleapi: Error 403: Permission 'secretmanager.secrets.get' denied",
    )
    with pytest.raises(ConfigError, match=r"needs secretmanager\.secrets\.get"):
        run_stack("staging", mocks=mocks)


def test_secret_versions_are_abandoned_not_deleted(staging: ProgramRun) -> None:
    """Revisions pin version numbers; DELETE (the provider default) would destroy the
    version a serving revision references when the value changes, DISABLE would make
    its new instances fail to read it. ABANDON keeps it
    (pulumi_gcp SecretVersion ``deletion_policy`` docstring)."""
    versions = staging.of_type("gcp:secretmanager/secretVersion:SecretVersion")
    assert len(versions) == 6  # 5 + the metrics sidecar's config
    assert {v.inputs.get("deletionPolicy") for v in versions} == {"ABANDON"}


# --- the deploy identity's roles (docs/bootstrap.md) --------------------------------

# The predefined role that manages each resource module the GCP program creates
# (https://cloud.google.com/iam/docs/understanding-roles). Compute splits in two:
# firewalls, SSL certificates/policies and Cloud Armor policies are securityAdmin.
ROLE_OF_MODULE = {
    "artifactregistry": {"roles/artifactregistry.admin"},
    # Jobs with an OIDC token act as the token's account: serviceAccountUser.
    "cloudscheduler": {"roles/cloudscheduler.admin", "roles/iam.serviceAccountUser"},
    "cloudrunv2": {"roles/run.admin", "roles/iam.serviceAccountUser"},
    "compute": {"roles/compute.networkAdmin", "roles/compute.securityAdmin"},
    # Key rings, keys and their IAM; cloudkms.admin has no encrypt/decrypt permission.
    "kms": {"roles/cloudkms.admin"},
    "monitoring": {"roles/monitoring.admin"},
    "logging": {"roles/logging.configWriter"},
    "projects": {"roles/serviceusage.serviceUsageAdmin"},
    "pubsub": {"roles/pubsub.admin"},
    "redis": {"roles/redis.admin"},
    "secretmanager": {"roles/secretmanager.admin"},
    "serviceaccount": {"roles/iam.serviceAccountAdmin"},
    "servicenetworking": {"roles/servicenetworking.networksAdmin"},
    "sql": {"roles/cloudsql.admin"},
}


def _deploy_roles() -> set[str]:
    import re
    from pathlib import Path

    text = Path(__file__).resolve().parents[2].joinpath("docs/bootstrap.md").read_text()
    block = text[
        text.index('sa "groundwork-deploy-$env"') : text.index('state "groundwork-deploy-$env"')
    ]
    # The roles the condition lets it grant to others (the condition file, and the
    # comments explaining it) are not roles it holds.
    block = re.sub(r"<<'YAML'\n.*?\nYAML\n", "", block, flags=re.S)
    block = re.sub(r"#[^\n]*", "", block)
    return set(re.findall(r"roles/[A-Za-z.]+", block))


def test_deploy_identity_holds_what_the_program_creates_and_nothing_more(
    production: ProgramRun, staging: ProgramRun
) -> None:
    roles = _deploy_roles()
    needed: set[str] = set()
    for graph in (staging, production):
        for resource in graph.resources:
            if resource.custom and resource.type.startswith("gcp:") and "/" in resource.type:
                if resource.type == "gcp:projects/iAMMember:IAMMember":
                    # Conditional: it may grant the allow-listed roles only
                    # (tests/gcp/test_gcp_metrics.py checks the list).
                    needed.add("roles/resourcemanager.projectIamAdmin")
                    continue
                module = resource.type.split(":")[1].split("/")[0]
                assert module in ROLE_OF_MODULE, f"no deploy role documented for {resource.type}"
                needed |= ROLE_OF_MODULE[module]
    assert needed <= roles, sorted(needed - roles)
    assert roles <= set().union(
        *ROLE_OF_MODULE.values(), {"roles/resourcemanager.projectIamAdmin"}
    ), "a documented role nothing needs"
    # No VPC Access connector is created; projectIamAdmin only under its condition.
    assert not any(r.type == "gcp:vpcaccess/connector:Connector" for r in production.resources)
    assert "roles/vpcaccess.admin" not in roles


# --- database TLS, backups, audit -------------------------------------------------


@pytest.mark.parametrize("stack", ["staging", "production"])
def test_services_authenticate_cloud_sql_by_its_own_ca(
    stack: str, request: pytest.FixtureRequest
) -> None:
    """sslmode=require encrypts but accepts any certificate. Cloud SQL's per-instance CA
    (GOOGLE_MANAGED_INTERNAL_CA, https://cloud.google.com/sql/docs/postgres/authorize-ssl)
    signs a certificate whose CN is "<project>:<instance>" and that names no IP, so the
    services verify the chain to that CA (verify-ca); services/app test_db_tls.py does it
    against a real PostgreSQL with such a certificate."""
    graph: ProgramRun = request.getfixturevalue(stack)
    sql = _one(graph, "gcp:sql/databaseInstance:DatabaseInstance")
    assert sql["settings"]["ipConfiguration"]["serverCaMode"] == "GOOGLE_MANAGED_INTERNAL_CA"
    for process in PROCESSES:
        plain, _ = env_of(containers(graph)[process])
        assert plain["DB_SSLMODE"] == "verify-ca"
        assert plain["DB_TLS_CA_CERT"] == SQL_CA


def test_backups_stay_in_the_region_and_production_audits(
    staging: ProgramRun, production: ProgramRun
) -> None:
    for graph in (staging, production):
        sql = _one(graph, "gcp:sql/databaseInstance:DatabaseInstance")
        assert sql["settings"]["backupConfiguration"]["location"] == REGION

    def flags(graph: ProgramRun) -> dict[str, str]:
        sql = _one(graph, "gcp:sql/databaseInstance:DatabaseInstance")
        return {f["name"]: f["value"] for f in sql["settings"]["databaseFlags"]}

    assert flags(production)["cloudsql.enable_pgaudit"] == "on"
    assert {"ddl", "role", "write"} <= set(flags(production)["pgaudit.log"].split(","))
    for flag in ("log_connections", "log_hostname", "log_duration"):
        assert flags(production)[flag] == "on"
    assert "cloudsql.enable_pgaudit" not in flags(staging)


def test_log_retention_is_honoured_by_a_bucket_the_service_logs_are_routed_to(
    staging: ProgramRun, production: ProgramRun
) -> None:
    for graph, days in ((staging, 30), (production, 365)):
        bucket = graph.one("gcp:logging/projectBucketConfig:ProjectBucketConfig").inputs
        assert (bucket["retentionDays"], bucket["location"]) == (days, REGION)
        sink = graph.one("gcp:logging/projectSink:ProjectSink").inputs
        assert sink["destination"].endswith(f"/locations/{REGION}/buckets/{bucket['bucketId']}")
        prefix = f"groundwork-{graph.stack}-"
        assert f'service_name = starts_with("{prefix}")' in sink["filter"]
        assert f'job_name = starts_with("{prefix}")' in sink["filter"]
        assert 'resource.type = "cloudsql_database"' in sink["filter"]


@pytest.mark.parametrize("stack", ["staging", "production"])
def test_cloud_sql_accepts_every_connection_the_services_can_open(
    stack: str, request: pytest.FixtureRequest
) -> None:
    """Each api/worker/relay/migrate process opens up to DB_POOL_SIZE + DB_MAX_OVERFLOW
    connections; Cloud SQL refuses beyond max_connections (default by tier memory:
    https://cloud.google.com/sql/docs/postgres/flags, 50 on db-g1-small)."""
    from groundwork_app.settings import Settings as AppSettings

    from stacks.gcp import SUPERUSER_RESERVED_CONNECTIONS, default_max_connections

    graph: ProgramRun = request.getfixturevalue(stack)
    per_process = AppSettings().db_pool_size + AppSettings().db_max_overflow
    services = by_name(graph, "gcp:cloudrunv2/service:Service")
    instances = {
        name.removeprefix(f"groundwork-{stack}-"): svc.inputs["template"]["scaling"][
            "maxInstanceCount"
        ]
        for name, svc in services.items()
    }
    peak = (
        (instances["api"] + instances["worker"]) * per_process
        + instances["relay"] * (per_process + 1)  # + the LISTEN connection
        + per_process  # a migrate run
        + SUPERUSER_RESERVED_CONNECTIONS
    )
    sql = _one(graph, "gcp:sql/databaseInstance:DatabaseInstance")["settings"]
    flags = {f["name"]: f["value"] for f in sql["databaseFlags"]}
    limit = int(flags.get("max_connections", default_max_connections(sql["tier"])))
    assert peak <= limit, (peak, limit)
