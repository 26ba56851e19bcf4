"""groundwork:gcpRelayBilling: the always-on relay (production) and the scheduled relay
(staging: a fraction of a vCPU, request-billed, held by Cloud Scheduler).

The rules asserted are Google's:
- "Configure CPU limits for services" (https://cloud.google.com/run/docs/configuring/services/cpu):
  below 1 vCPU, memory <= 512 MiB under 0.5 vCPU, maximum concurrency 1, request-based
  billing, first-generation execution environment.
- "Billing settings for services" (https://cloud.google.com/run/docs/configuring/billing-settings):
  with request-based billing an instance has CPU only while it handles a request, so the
  held call is what runs the relay; cpuIdle true is request-based billing.
- "Running services on a schedule" (https://cloud.google.com/run/docs/triggering/using-scheduler):
  a service the scheduler calls stays authenticated, the job's own service account holds
  roles/run.invoker, and the request carries an OIDC token from that account.
- "Authenticating service-to-service" (https://cloud.google.com/run/docs/authenticating/service-to-service):
  Cloud Run accepts a token whose audience is the service URL (or a custom audience);
  Scheduler defaults the audience to the full target URI, path and query included.
- Cloud Scheduler Job (magic-modules mmv1/products/cloudscheduler/Job.yaml):
  attemptDeadline 15 s-30 min for HTTP targets, retryCount 0-5.
"""

from __future__ import annotations

from typing import Any

import pytest

from groundwork.mockrun import ProgramRun
from stacks.config import ConfigError
from tests.gcp.helpers import REGION, by_name, run_stack

RELAY = "groundwork-staging-relay"
JOB = "gcp:cloudscheduler/job:Job"
INVOKERS = "gcp:cloudrunv2/serviceIamMember:ServiceIamMember"


def _seconds(duration: str) -> int:
    assert duration.endswith("s"), duration
    return int(duration[:-1])


def _relay_container(graph: ProgramRun, name: str) -> dict[str, Any]:
    (container,) = graph.named(name).inputs["template"]["containers"]
    return container


def test_staging_relay_is_fractional_request_billed_and_concurrency_one(
    staging: ProgramRun,
) -> None:
    relay = staging.named(RELAY).inputs
    template = relay["template"]
    container = _relay_container(staging, RELAY)
    cpu = float(container["resources"]["limits"]["cpu"])
    assert 0.08 <= cpu < 0.5
    assert container["resources"]["limits"]["memory"] == "512Mi"  # <= 512 MiB below 0.5 vCPU
    assert container["resources"]["cpuIdle"] is True  # request-based billing
    assert container["resources"]["startupCpuBoost"] is False
    assert template["maxInstanceRequestConcurrency"] == 1
    assert template["executionEnvironment"] == "EXECUTION_ENVIRONMENT_GEN1"
    assert template["scaling"] == {"minInstanceCount": 0, "maxInstanceCount": 1}
    # Still not public: internal ingress (Scheduler in the same project is internal
    # traffic: https://cloud.google.com/run/docs/securing/ingress) and the IAM check on.
    assert relay["ingress"] == "INGRESS_TRAFFIC_INTERNAL_ONLY"
    assert not relay.get("invokerIamDisabled")
    assert "volumes" not in template or not template["volumes"]  # no sidecar


def test_the_scheduler_job_holds_the_relay_with_an_oidc_token_for_its_url(
    staging: ProgramRun,
) -> None:
    relay = staging.named(RELAY)
    url = relay.state["uri"]
    (job,) = staging.of_type(JOB)
    spec = job.inputs
    target = spec["httpTarget"]
    assert target["httpMethod"] == "GET"
    assert target["uri"].startswith(f"{url}/relay/hold?seconds=")
    hold = int(target["uri"].rsplit("=", 1)[1])
    # Audience = the bare service URL: Cloud Run rejects the full URI Scheduler would use.
    assert target["oidcToken"]["audience"] == url
    accounts = by_name(staging, "gcp:serviceaccount/account:Account")
    scheduler_sa = accounts["groundwork-staging-relay-sched-sa"]
    assert target["oidcToken"]["serviceAccountEmail"] == scheduler_sa.state["email"]
    # Every minute, and each call held for less than the minute: no overlap on the one
    # instance (concurrency 1); the relay's timeout and the attempt deadline outlast it.
    assert spec["schedule"] == "* * * * *"
    assert spec["timeZone"] == "Etc/UTC"
    assert 10 <= hold < 60
    assert 15 <= _seconds(spec["attemptDeadline"]) <= 1800
    assert _seconds(spec["attemptDeadline"]) > hold
    assert _seconds(relay.inputs["template"]["timeout"]) > hold
    # The relay scales from zero, so a call may first wait for a new instance: as long as
    # its startup probe allows (Cloud Run keeps the request queued meanwhile), which at
    # 0.25 vCPU with Direct VPC egress can exceed a minute ("connection establishment
    # delays of a minute or more on instance startup", cloud.google.com/run/docs/
    # configuring/vpc-direct-vpc). Neither the deadline nor the timeout may end it first.
    probe = relay.inputs["template"]["containers"][0]["startupProbe"]
    startup = (
        probe.get("initialDelaySeconds", 0) + probe["periodSeconds"] * probe["failureThreshold"]
    )
    assert _seconds(spec["attemptDeadline"]) >= hold + startup - 5
    assert _seconds(relay.inputs["template"]["timeout"]) > _seconds(spec["attemptDeadline"])
    assert 0 <= spec["retryConfig"]["retryCount"] <= 5
    assert spec["region"] == REGION
    assert spec["name"] == "groundwork-staging-relay-hold"


def test_only_the_scheduler_account_may_invoke_the_relay(staging: ProgramRun) -> None:
    accounts = by_name(staging, "gcp:serviceaccount/account:Account")
    scheduler = accounts["groundwork-staging-relay-sched-sa"].state["member"]
    on_relay = [b for b in staging.of_type(INVOKERS) if b.inputs["name"] == RELAY]
    assert [(b.inputs["role"], b.inputs["member"]) for b in on_relay] == [
        ("roles/run.invoker", scheduler)
    ]
    # ...and that account invokes nothing else.
    assert [
        b.inputs["name"] for b in staging.of_type(INVOKERS) if b.inputs["member"] == scheduler
    ] == [RELAY]
    # The first call must find the binding in place (else a 403 a minute until it lands).
    (job,) = staging.of_type(JOB)
    (binding,) = on_relay
    assert binding.urn in job.depends_on


def test_production_relays_stay_always_on_and_unscheduled(production: ProgramRun) -> None:
    assert not production.of_type(JOB)
    relay = production.named("groundwork-production-relay").inputs
    container = next(c for c in relay["template"]["containers"] if c["name"] == "relay")
    assert container["resources"]["limits"]["cpu"] == "1"
    assert container["resources"]["cpuIdle"] is False
    assert relay["template"]["executionEnvironment"] == "EXECUTION_ENVIRONMENT_GEN2"
    assert relay["template"]["scaling"] == {"minInstanceCount": 2, "maxInstanceCount": 2}
    accounts = by_name(production, "gcp:serviceaccount/account:Account")
    assert "groundwork-production-relay-sched-sa" not in accounts
    assert not [
        b for b in production.of_type(INVOKERS) if b.inputs["name"] == "groundwork-production-relay"
    ]


def test_staging_with_an_always_on_relay_is_the_previous_shape() -> None:
    graph = run_stack("staging", {"gcpRelayBilling": "instance"})
    assert not graph.of_type(JOB)
    relay = graph.named(RELAY).inputs
    container = _relay_container(graph, RELAY)
    assert container["resources"]["limits"]["cpu"] == "1"
    assert container["resources"]["cpuIdle"] is False
    assert relay["template"]["scaling"] == {"minInstanceCount": 1, "maxInstanceCount": 1}


def test_a_scheduled_relay_with_the_metrics_sidecar_is_refused_naming_both_keys() -> None:
    with pytest.raises(ConfigError) as err:
        run_stack("staging", {"serviceMetrics": "true"})
    message = str(err.value)
    assert "groundwork:gcpRelayBilling = 'scheduled'" in message
    assert "groundwork:serviceMetrics = true" in message
    assert "gcpRelayBilling instance" in message  # how to fix it


def test_an_unknown_relay_billing_is_refused() -> None:
    with pytest.raises(ConfigError, match="groundwork:gcpRelayBilling = 'spot' is invalid"):
        run_stack("staging", {"gcpRelayBilling": "spot"})


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"relay_cpu": "1"}, "runs below 1 vCPU"),
        ({"relay_cpu": "0.05"}, "runs below 1 vCPU"),
        ({"relay_cpu": "0.25", "relay_memory": "1Gi"}, "128Mi-512Mi"),
        ({"relay_cpu": "0.5", "relay_memory": "2Gi"}, "128Mi-1024Mi"),
        ({"relay_instances": 2}, "one instance"),
        ({"relay_hold_seconds": 60}, "relay_hold_seconds=60"),
        ({"relay_hold_seconds": 5}, "relay_hold_seconds=5"),
    ],
)
def test_scheduled_relay_args_follow_cloud_runs_rules(
    overrides: dict[str, Any], message: str
) -> None:
    from components.gcp.services import ContainerServiceArgs, RelayBilling

    base: dict[str, Any] = {
        "region": REGION,
        "image": "img@sha256:" + "a" * 64,
        "network_id": "n",
        "subnet_id": "s",
        "env": {},
        "secrets": {},
        "publish_topic": "t",
        "push_audience": "https://a",
        "relay_billing": RelayBilling.SCHEDULED,
        "relay_cpu": "0.25",
    }
    with pytest.raises(ValueError, match=message):
        ContainerServiceArgs(**{**base, **overrides})


def test_a_starved_scheduled_relay_alerts(staging: ProgramRun, production: ProgramRun) -> None:
    """The outbox-age alert is PromQL and needs the metrics sidecar a relay below 1 vCPU
    cannot carry, and a starved relay logs nothing: the policy watches the relay's own
    successful (2xx) requests, i.e. completed hold calls, and fires on their absence.
    Absence conditions: https://cloud.google.com/monitoring/alerts/types-of-conditions."""
    policies = by_name(staging, "gcp:monitoring/alertPolicy:AlertPolicy")
    policy = policies["groundwork-staging-relay-not-held"].inputs
    (condition,) = policy["conditions"]
    absent = condition["conditionAbsent"]
    assert f'resource.label.service_name = "{RELAY}"' in absent["filter"]
    assert 'metric.type = "run.googleapis.com/request_count"' in absent["filter"]
    assert 'metric.label.response_code_class = "2xx"' in absent["filter"]
    # Several missed minutes, not one retried call.
    assert _seconds(absent["duration"]) >= 300
    assert "groundwork-staging-relay-hold" in policy["documentation"]["content"]
    assert "groundwork-production-relay-not-held" not in by_name(
        production, "gcp:monitoring/alertPolicy:AlertPolicy"
    )


def test_the_component_and_the_relay_agree_on_the_hold_endpoint() -> None:
    """One fact in two packages (the component cannot import the service's health
    server): the path the job calls and the cap the relay applies."""
    from groundwork_app.worker import health

    from components.gcp import services

    assert services.RELAY_HOLD_PATH == health.HOLD_PATH
    assert services.RELAY_HOLD_MAX_SECONDS == health.HOLD_MAX_SECONDS
