"""Every GCP resource rule rejects a realistic bad resource and accepts a good one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pulumi_gcp as gcp
import pytest

from groundwork.mockrun import ProgramRun
from policies import gcp_rules
from tests.policies import helpers as harness
from tests.policies.helpers import TAGS, record, violations

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

LOCATION = "europe-west1"
PUBSUB_AGENT = "serviceAccount:service-111122223333@gcp-sa-pubsub.iam.gserviceaccount.com"
SA = "groundwork-worker@groundwork-test.iam.gserviceaccount.com"


def _merge(defaults: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    return {**defaults, **overrides}


def _sql_settings(**overrides: Any) -> dict[str, Any]:
    settings = {
        "tier": "db-custom-2-7680",
        "availability_type": "REGIONAL",
        "deletion_protection_enabled": True,
        "ip_configuration": {
            "ipv4_enabled": False,
            "ssl_mode": "ENCRYPTED_ONLY",
            "private_network": "projects/p/global/networks/groundwork",
        },
        "backup_configuration": {"enabled": True, "point_in_time_recovery_enabled": True},
        "user_labels": TAGS,
    }
    settings.update(overrides)
    return settings


def _containers(*envs: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "image": "europe-west1-docker.pkg.dev/p/app/app:abc123",
            "envs": [
                {"name": "DB_HOST", "value": "10.60.0.3"},
                {
                    "name": "DB_PASSWORD",
                    "value_source": {
                        "secret_key_ref": {"secret": "db-password", "version": "latest"}
                    },
                },
                *envs,
            ],
        }
    ]


# Production requires CMEK (gcp-kms-datastore-cmek): the baselines carry keys.
KMS_KEY = f"projects/p/locations/{LOCATION}/keyRings/r/cryptoKeys/k"
GLOBAL_KEY = "projects/p/locations/global/keyRings/r/cryptoKeys/secrets"

BUILDERS: dict[str, Callable[..., Any]] = {
    "sql": harness.resource_builder(
        gcp.sql.DatabaseInstance,
        {
            "database_version": "POSTGRES_16",
            "region": LOCATION,
            "deletion_protection": True,
            "encryption_key_name": KMS_KEY,
            "settings": _sql_settings(),
        },
    ),
    "redis": harness.resource_builder(
        gcp.redis.Instance,
        {
            "memory_size_gb": 1,
            "tier": "STANDARD_HA",
            "region": LOCATION,
            "auth_enabled": True,
            "transit_encryption_mode": "SERVER_AUTHENTICATION",
            "authorized_network": "projects/p/global/networks/groundwork",
            "connect_mode": "PRIVATE_SERVICE_ACCESS",
            "customer_managed_key": KMS_KEY,
            "labels": TAGS,
        },
    ),
    "topic": harness.resource_builder(gcp.pubsub.Topic, {"labels": TAGS, "kms_key_name": KMS_KEY}),
    "subscription": harness.resource_builder(
        gcp.pubsub.Subscription,
        {
            "topic": "projects/p/topics/jobs",
            "ack_deadline_seconds": 60,
            "dead_letter_policy": {
                "dead_letter_topic": "projects/p/topics/jobs-dlq",
                "max_delivery_attempts": 5,
            },
            "push_config": {
                "push_endpoint": "https://worker-abc-ew.a.run.app/pubsub/push",
                "oidc_token": {
                    "service_account_email": SA,
                    "audience": "https://worker-abc-ew.a.run.app",
                },
            },
            "labels": TAGS,
        },
    ),
    "secret": lambda n, **kw: gcp.secretmanager.Secret(
        n,
        **_merge(
            {
                "secret_id": n,
                "replication": {
                    "auto": {"customer_managed_encryption": {"kms_key_name": GLOBAL_KEY}}
                },
                "labels": TAGS,
            },
            kw,
        ),
    ),
    "secret_iam": harness.resource_builder(
        gcp.secretmanager.SecretIamMember,
        {
            "secret_id": "db-password",
            "role": "roles/secretmanager.secretAccessor",
            "member": f"serviceAccount:{SA}",
        },
    ),
    "topic_iam": harness.resource_builder(
        gcp.pubsub.TopicIAMMember,
        {
            "topic": "jobs-dlq",
            "role": "roles/pubsub.publisher",
            "member": PUBSUB_AGENT,
        },
    ),
    "run_service": harness.resource_builder(
        gcp.cloudrunv2.Service,
        {
            "name": "groundwork-production-worker",
            "location": LOCATION,
            "ingress": "INGRESS_TRAFFIC_INTERNAL_ONLY",
            "labels": TAGS,
            "template": {"service_account": SA, "containers": _containers()},
        },
    ),
    # The scheduled relay's hold job (components/gcp/services.py): OIDC, audience = the URL.
    "scheduler_job": harness.resource_builder(
        gcp.cloudscheduler.Job,
        {
            "region": LOCATION,
            "schedule": "* * * * *",
            "http_target": {
                "uri": "https://relay-abc-ew.a.run.app/relay/hold?seconds=55",
                "http_method": "GET",
                "oidc_token": {
                    "service_account_email": "relay-sched@p.iam.gserviceaccount.com",
                    "audience": "https://relay-abc-ew.a.run.app",
                },
            },
        },
    ),
    "run_job": harness.resource_builder(
        gcp.cloudrunv2.Job,
        {
            "name": "groundwork-production-migrate",
            "location": LOCATION,
            "labels": TAGS,
            "template": {"template": {"service_account": SA, "containers": _containers()}},
        },
    ),
    "service_iam": harness.resource_builder(
        gcp.cloudrunv2.ServiceIamMember,
        {
            "name": "groundwork-production-worker",
            "location": LOCATION,
            "role": "roles/run.invoker",
            "member": f"serviceAccount:{SA}",
        },
    ),
    "job_iam": harness.resource_builder(
        gcp.cloudrunv2.JobIamMember,
        {
            "name": "groundwork-production-migrate",
            "location": LOCATION,
            "role": "roles/run.invoker",
            "member": f"serviceAccount:{SA}",
        },
    ),
    "registry": harness.resource_builder(
        gcp.artifactregistry.Repository,
        {
            "repository_id": "groundwork",
            "location": LOCATION,
            "format": "DOCKER",
            "docker_config": {"immutable_tags": True},
            "kms_key_name": KMS_KEY,
            "labels": TAGS,
        },
    ),
    "crypto_key": harness.resource_builder(
        gcp.kms.CryptoKey,
        {
            "name": "sql",
            "key_ring": f"projects/p/locations/{LOCATION}/keyRings/r",
            "rotation_period": "7776000s",
            "labels": TAGS,
        },
    ),
    "crypto_key_iam": harness.resource_builder(
        gcp.kms.CryptoKeyIAMMember,
        {
            "crypto_key_id": KMS_KEY,
            "role": "roles/cloudkms.cryptoKeyEncrypterDecrypter",
            "member": "serviceAccount:service-1@gcp-sa-cloud-sql.iam.gserviceaccount.com",
        },
    ),
    "service_account": harness.resource_builder(
        gcp.serviceaccount.Account,
        {"account_id": "groundwork-worker", "display_name": "groundwork worker"},
    ),
    "project_iam": harness.resource_builder(
        gcp.projects.IAMMember,
        {
            "project": "groundwork-test",
            "role": "roles/cloudsql.client",
            "member": f"serviceAccount:{SA}",
        },
    ),
    "alert": harness.resource_builder(
        gcp.monitoring.AlertPolicy,
        {
            "display_name": "Cloud SQL CPU",
            "combiner": "OR",
            "conditions": [
                {
                    "display_name": "cpu",
                    "condition_threshold": {
                        "filter": 'resource.type="cloudsql_database" AND '
                        'metric.type="cloudsql.googleapis.com/database/cpu/utilization"',
                        "comparison": "COMPARISON_GT",
                        "duration": "300s",
                        "threshold_value": 0.8,
                    },
                }
            ],
            "notification_channels": ["projects/p/notificationChannels/1"],
            "user_labels": TAGS,
        },
    ),
    "log_bucket": lambda n, **kw: gcp.logging.ProjectBucketConfig(
        n,
        **_merge(
            {"project": "p", "location": "europe-west1", "bucket_id": n, "retention_days": 30},
            kw,
        ),
    ),
    "log_sink": harness.resource_builder(
        gcp.logging.ProjectSink,
        {
            "destination": "logging.googleapis.com/projects/p/locations/europe-west1/buckets/b",
            "filter": 'resource.type = "cloud_run_revision"',
        },
    ),
    "slo": harness.resource_builder(
        gcp.monitoring.Slo,
        {
            "service": "api",
            "goal": 0.995,
            "rolling_period_days": 28,
            "request_based_sli": {
                "good_total_ratio": {
                    "bad_service_filter": 'metric.type="run.googleapis.com/request_count"',
                    "total_service_filter": 'metric.type="run.googleapis.com/request_count"',
                }
            },
        },
    ),
    "network": harness.resource_builder(gcp.compute.Network, {"auto_create_subnetworks": False}),
    "subnetwork": harness.resource_builder(
        gcp.compute.Subnetwork,
        {
            "network": "groundwork",
            "ip_cidr_range": "10.60.0.0/20",
            "region": LOCATION,
            "private_ip_google_access": True,
            "log_config": {
                "aggregation_interval": "INTERVAL_10_MIN",
                "flow_sampling": 0.5,
                "metadata": "INCLUDE_ALL_METADATA",
            },
        },
    ),
    "firewall": harness.resource_builder(
        gcp.compute.Firewall,
        {
            "network": "groundwork",
            "description": "HTTPS to the edge load balancer",
            "direction": "INGRESS",
            "source_ranges": ["0.0.0.0/0"],
            "allows": [{"protocol": "tcp", "ports": ["443"]}],
        },
    ),
    "security_policy": harness.resource_builder(
        gcp.compute.SecurityPolicy,
        {
            "labels": TAGS,
            "rules": [
                {
                    "action": "deny(403)",
                    "priority": 1000,
                    "description": "OWASP XSS",
                    "match": {"expr": {"expression": "evaluatePreconfiguredWaf('xss-v33-stable')"}},
                },
                {
                    "action": "allow",
                    "priority": 2147483647,
                    "description": "default",
                    "match": {
                        "versioned_expr": "SRC_IPS_V1",
                        "config": {"src_ip_ranges": ["*"]},
                    },
                },
            ],
        },
    ),
    "backend": harness.resource_builder(
        gcp.compute.BackendService,
        {
            "load_balancing_scheme": "EXTERNAL_MANAGED",
            "protocol": "HTTPS",
            "security_policy": "groundwork-armor",
            "log_config": {"enable": True},
            "backends": [{"group": "projects/p/regions/europe-west1/networkEndpointGroups/api"}],
        },
    ),
    "ssl_policy": harness.resource_builder(
        gcp.compute.SSLPolicy, {"min_tls_version": "TLS_1_2", "profile": "MODERN"}
    ),
    "https_proxy": harness.resource_builder(
        gcp.compute.TargetHttpsProxy,
        {
            "url_map": "groundwork-api",
            "ssl_certificates": ["groundwork-cert"],
            "ssl_policy": "groundwork-modern",
        },
    ),
}

BAD: list[tuple[str, str, dict[str, Any]]] = [
    ("gcp-any-resource-labeled", "topic", {"labels": {"environment": "production"}}),
    ("gcp-any-resource-labeled", "sql", {"settings": _sql_settings(user_labels=None)}),
    ("gcp-any-resource-labeled", "alert", {"user_labels": {**TAGS, "environment": "qa"}}),
    (
        "gcp-sql-instance-no-public-ip",
        "sql",
        {"settings": _sql_settings(ip_configuration={"ssl_mode": "ENCRYPTED_ONLY"})},
    ),
    (
        "gcp-sql-instance-no-public-ip",
        "sql",
        {
            "settings": _sql_settings(
                ip_configuration={
                    "ipv4_enabled": False,
                    "ssl_mode": "ENCRYPTED_ONLY",
                    "authorized_networks": [{"name": "anywhere", "value": "0.0.0.0/0"}],
                }
            )
        },
    ),
    (
        "gcp-sql-instance-ssl-required",
        "sql",
        {
            "settings": _sql_settings(
                ip_configuration={
                    "ipv4_enabled": False,
                    "ssl_mode": "ALLOW_UNENCRYPTED_AND_ENCRYPTED",
                }
            )
        },
    ),
    (
        "gcp-sql-instance-backups",
        "sql",
        {"settings": _sql_settings(backup_configuration={"enabled": False})},
    ),
    (
        "gcp-sql-instance-backups",
        "sql",
        {"settings": _sql_settings(backup_configuration={"enabled": True})},
    ),
    ("gcp-sql-instance-regional", "sql", {"settings": _sql_settings(availability_type="ZONAL")}),
    ("gcp-sql-instance-deletion-protection", "sql", {"deletion_protection": False}),
    ("gcp-redis-instance-tls", "redis", {"transit_encryption_mode": "DISABLED"}),
    ("gcp-redis-instance-auth", "redis", {"auth_enabled": False}),
    ("gcp-redis-instance-private-network", "redis", {"authorized_network": None}),
    ("gcp-redis-instance-standard-ha", "redis", {"tier": "BASIC"}),
    ("gcp-cloudrunv2-service-ingress-restricted", "run_service", {"ingress": None}),
    ("gcp-cloudrunv2-service-no-public-invoker", "service_iam", {"member": "allUsers"}),
    ("gcp-cloudrunv2-service-no-public-invoker", "job_iam", {"member": "allAuthenticatedUsers"}),
    (
        "gcp-cloudrunv2-service-dedicated-sa",
        "run_service",
        {"template": {"containers": _containers()}},
    ),
    (
        "gcp-cloudrunv2-service-dedicated-sa",
        "run_service",
        {
            "template": {
                "service_account": "111122223333-compute@developer.gserviceaccount.com",
                "containers": _containers(),
            }
        },
    ),
    (
        "gcp-cloudrunv2-job-dedicated-sa",
        "run_job",
        {"template": {"template": {"containers": _containers()}}},
    ),
    (
        "gcp-cloudrunv2-service-no-plaintext-secrets",
        "run_service",
        {
            "template": {
                "service_account": SA,
                "containers": _containers({"name": "JWT_SECRET", "value": "not-so-secret"}),
            }
        },
    ),
    (
        "gcp-cloudrunv2-job-no-plaintext-secrets",
        "run_job",
        {
            "template": {
                "template": {
                    "service_account": SA,
                    "containers": _containers({"name": "REDIS_PASSWORD", "value": "plain"}),
                }
            }
        },
    ),
    (
        "gcp-compute-firewall-no-public-ingress",
        "firewall",
        {"allows": [{"protocol": "tcp", "ports": ["22"]}]},
    ),
    ("gcp-compute-firewall-no-public-ingress", "firewall", {"allows": [{"protocol": "all"}]}),
    ("gcp-compute-firewall-described", "firewall", {"description": None}),
    ("gcp-compute-network-custom-mode", "network", {"auto_create_subnetworks": None}),
    ("gcp-compute-subnetwork-flow-logs", "subnetwork", {"log_config": None}),
    ("gcp-compute-subnetwork-private-access", "subnetwork", {"private_ip_google_access": False}),
    (
        "gcp-compute-securitypolicy-rules",
        "security_policy",
        {
            "rules": [
                {
                    "action": "allow",
                    "priority": 2147483647,
                    "match": {"versioned_expr": "SRC_IPS_V1", "config": {"src_ip_ranges": ["*"]}},
                }
            ]
        },
    ),
    ("gcp-compute-backendservice-protected", "backend", {"security_policy": None}),
    ("gcp-compute-backendservice-protected", "backend", {"log_config": None}),
    ("gcp-compute-sslpolicy-modern", "ssl_policy", {"min_tls_version": "TLS_1_0"}),
    ("gcp-compute-sslpolicy-modern", "ssl_policy", {"profile": "COMPATIBLE"}),
    ("gcp-compute-targethttpsproxy-ssl-policy", "https_proxy", {"ssl_policy": None}),
    ("gcp-artifactregistry-repository-immutable-tags", "registry", {"docker_config": None}),
    ("gcp-serviceaccount-account-described", "service_account", {"display_name": None}),
    ("gcp-projects-iammember-no-primitive-roles", "project_iam", {"role": "roles/editor"}),
    ("gcp-iam-member-not-public", "secret_iam", {"member": "allUsers"}),
    ("gcp-iam-member-not-public", "topic_iam", {"member": "allAuthenticatedUsers"}),
    ("gcp-monitoring-alertpolicy-notifications", "alert", {"notification_channels": None}),
    ("gcp-logging-bucket-retention", "log_bucket", {"retention_days": 7}),
    ("gcp-logging-bucket-retention", "log_bucket", {"location": "global"}),
    ("gcp-logging-sink-scoped", "log_sink", {"filter": None}),
    ("gcp-logging-sink-scoped", "log_sink", {"disabled": True}),
    ("gcp-monitoring-slo-goal", "slo", {"goal": 1.0}),
    (
        "gcp-pubsub-subscription-push-auth",
        "subscription",
        {"push_config": {"push_endpoint": "https://worker-abc-ew.a.run.app/pubsub/push"}},
    ),
    (
        "gcp-pubsub-subscription-push-auth",
        "subscription",
        {
            "push_config": {
                "push_endpoint": "http://worker.internal/pubsub/push",
                "oidc_token": {"service_account_email": SA},
            }
        },
    ),
    ("gcp-kms-datastore-cmek", "sql", {"encryption_key_name": None}),
    ("gcp-kms-datastore-cmek", "redis", {"customer_managed_key": None}),
    ("gcp-kms-datastore-cmek", "topic", {"kms_key_name": None}),
    ("gcp-kms-datastore-cmek", "registry", {"kms_key_name": None}),
    ("gcp-kms-datastore-cmek", "secret", {"replication": {"auto": {}}}),
    (
        "gcp-kms-datastore-cmek",
        "secret",
        {"replication": {"user_managed": {"replicas": [{"location": LOCATION}]}}},
    ),
    ("gcp-kms-cryptokey-rotated", "crypto_key", {"rotation_period": None}),
    ("gcp-kms-cryptokey-rotated", "crypto_key", {"rotation_period": "31536000s"}),
    ("gcp-iam-member-not-public", "crypto_key_iam", {"member": "allUsers"}),
]

BAD += [
    # No token: the relay would have to allow unauthenticated calls.
    (
        "gcp-cloudscheduler-job-oidc-to-run",
        "scheduler_job",
        {"http_target": {"uri": "https://relay-abc-ew.a.run.app/relay/hold?seconds=55"}},
    ),
    # Scheduler's default audience, the full URI: Cloud Run rejects the token.
    (
        "gcp-cloudscheduler-job-oidc-to-run",
        "scheduler_job",
        {
            "http_target": {
                "uri": "https://relay-abc-ew.a.run.app/relay/hold?seconds=55",
                "oidc_token": {"service_account_email": "relay-sched@p.iam.gserviceaccount.com"},
            }
        },
    ),
]

GOOD_EXTRA: list[tuple[str, str, dict[str, Any]]] = [
    # The public API is the one service allUsers may call and that may take internet traffic.
    (
        "gcp-cloudrunv2-service-no-public-invoker",
        "service_iam",
        {"name": "groundwork-production-api", "member": "allUsers"},
    ),
    (
        "gcp-cloudrunv2-service-ingress-restricted",
        "run_service",
        {"name": "groundwork-production-api", "ingress": "INGRESS_TRAFFIC_ALL"},
    ),
    (
        "gcp-cloudrunv2-service-ingress-restricted",
        "run_service",
        {
            "name": "groundwork-production-relay",
            "ingress": "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER",
        },
    ),
    (
        "gcp-compute-firewall-no-public-ingress",
        "firewall",
        {
            "source_ranges": ["35.191.0.0/16", "130.211.0.0/22"],
            "allows": [{"protocol": "tcp", "ports": ["8080"]}],
        },
    ),
    (
        "gcp-compute-firewall-no-public-ingress",
        "firewall",
        {"denies": [{"protocol": "all"}], "allows": None, "priority": 65000},
    ),
    ("gcp-pubsub-subscription-push-auth", "subscription", {"push_config": None}),
    ("gcp-sql-instance-deletion-protection", "sql", {"deletion_protection": None}),
    (
        "gcp-kms-datastore-cmek",
        "secret",
        {
            "replication": {
                "user_managed": {
                    "replicas": [
                        {
                            "location": LOCATION,
                            "customer_managed_encryption": {"kms_key_name": KMS_KEY},
                        }
                    ]
                }
            }
        },
    ),
    ("gcp-kms-cryptokey-rotated", "crypto_key", {"rotation_period": "86400s"}),
    # A Pub/Sub-target job has no HTTP call to authenticate.
    (
        "gcp-cloudscheduler-job-oidc-to-run",
        "scheduler_job",
        {
            "http_target": None,
            "pubsub_target": {"topic_name": "projects/p/topics/t", "data": "eA=="},
        },
    ),
]


def _program() -> None:
    for key, build in BUILDERS.items():
        build(f"good-{key}")
    for index, (_, builder, overrides) in enumerate(BAD):
        BUILDERS[builder](f"bad-{index}", **overrides)
    for index, (_, builder, overrides) in enumerate(GOOD_EXTRA):
        BUILDERS[builder](f"extra-{index}", **overrides)


@pytest.fixture(scope="module")
def graph() -> ProgramRun:
    return record(_program)


@pytest.mark.parametrize(**harness.rule_cases(BAD))
def test_rule_rejects_bad_resource(
    graph: ProgramRun, index: int, case: tuple[str, str, dict[str, Any]]
) -> None:
    harness.assert_rejected(case[0], graph.named(f"bad-{index}"))


@pytest.mark.parametrize("key", list(BUILDERS))
def test_good_baseline_passes_every_rule(graph: ProgramRun, key: str) -> None:
    resource = graph.named(f"good-{key}")
    rules = [r.name for r in gcp_rules.RULES if resource.type in r.resource_types]
    harness.assert_passes_every_rule("GCP", rules, resource)


@pytest.mark.parametrize(**harness.rule_cases(GOOD_EXTRA))
def test_rule_accepts_legitimate_variant(
    graph: ProgramRun, index: int, case: tuple[str, str, dict[str, Any]]
) -> None:
    assert violations(case[0], graph.named(f"extra-{index}")) == []


def test_every_gcp_resource_rule_has_a_rejecting_and_an_accepting_case(graph: ProgramRun) -> None:
    assert {rule for rule, _, _ in BAD} == {r.name for r in gcp_rules.RULES}
    good_types = {graph.named(f"good-{key}").type for key in BUILDERS}
    for rule in gcp_rules.RULES:
        assert good_types & set(rule.resource_types), f"{rule.name} has no good baseline"


def test_public_service_pattern_is_configurable(graph: ProgramRun) -> None:
    public_api = graph.named(f"extra-{0}")
    config = {"environment": "production", "publicServices": ["^groundwork-production-web$"]}
    assert violations("gcp-cloudrunv2-service-no-public-invoker", public_api, config)


def test_cmek_is_required_only_where_the_environment_configures_it(graph: ProgramRun) -> None:
    """Staging's default (``groundwork:cmek`` false) keeps Google-managed keys: the rule
    is silent there and advisory; production requires CMEK and blocks."""
    from policies.pack import pack_config

    plain = graph.named(f"bad-{[r for r, _, _ in BAD].index('gcp-kms-datastore-cmek')}")
    staging = pack_config("staging")["gcp-kms-datastore-cmek"]
    production = pack_config("production")["gcp-kms-datastore-cmek"]
    assert (staging["requireCmek"], staging["enforcementLevel"]) == (False, "advisory")
    assert (production["requireCmek"], production["enforcementLevel"]) == (True, "mandatory")
    assert violations("gcp-kms-datastore-cmek", plain, staging) == []
    assert violations("gcp-kms-datastore-cmek", plain, production)


@pytest.mark.parametrize("module", ["aws_rules", "gcp_rules"])
def test_each_rule_is_read_in_one_place(module: str) -> None:
    """Issue 19 item 6: a rule's metadata sits on the decorator right above its check
    (``RuleList.register``), not in a table hundreds of lines away."""
    import importlib
    import inspect

    rules_module = importlib.import_module(f"policies.{module}")
    source = inspect.getsource(rules_module)
    assert "Rule(" not in source.replace("RuleList(", "")
    for rule in rules_module.RULES:
        assert rule.check is not None
        if rule.check.__module__ != rules_module.__name__:
            # A check made by a factory (registry.flag_check) sits in the call right
            # after its registration: RULES.register(...)(flag_check(...)).
            at = source.index(f'RULES.register(\n    "{rule.name}",')
            assert source[at:].split("\n)(", 1)[1].lstrip().startswith("flag_check("), rule.name
            continue
        # A decorated function's source starts at its first decorator.
        lines, _ = inspect.getsourcelines(rule.check)
        text = "".join(lines)
        decorators = text[: text.index("\ndef ")]
        assert decorators.startswith("@RULES.register(\n"), rule.name
        assert f'@RULES.register(\n    "{rule.name}",' in decorators, rule.name
