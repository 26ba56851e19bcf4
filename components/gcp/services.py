"""Services: the API, worker and relay on Cloud Run v2, the migrate job, their identities.

One image, four processes (``groundwork-app api|worker|relay|migrate``), each with its
own service account that holds only what it uses: ``secretAccessor`` on exactly the
secrets its container references (one binding per secret) and, for the relay only,
``pubsub.publisher`` on the jobs topic. None uses the default compute account.

Every container gets the same environment contract (plain env + Secret Manager refs)
and Direct VPC egress for private ranges only (see ``network.py``).

The service's own Prometheus metrics (``/metrics`` on METRICS_PORT) reach Cloud
Monitoring through Google's Managed Service for Prometheus sidecar on the api, worker
and relay (https://cloud.google.com/run/docs/monitoring-managed-prometheus-sidecar):
its RunMonitoring config is a Secret Manager secret mounted at /etc/rungmp/config.yaml,
and the three runtime accounts get ``roles/monitoring.metricWriter`` on the project
(the one project-level role the stack grants; docs/bootstrap.md scopes the deploy
identity to exactly that grant).
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import pulumi
import pulumi_gcp as gcp

from components.args import ArgError, renamed_from
from components.gcp.naming import account_id
from components.gcp.secrets import SecretRef

API_PORT = 8000
WORKER_PORT = 8080
"""The Pub/Sub push receiver; it also serves /health/* and /metrics (the RabbitMQ-mode
health server on WORKER_HEALTH_PORT is not started in Pub/Sub mode)."""
HEALTH_PORT = 8081
"""The relay's only listener (WORKER_HEALTH_PORT, or $PORT on Cloud Run): its container
port, because a Cloud Run service must listen on the container port to become ready."""
PUSH_PATH = "/pubsub/push"
STARTUP_PROBE_PATH = "/health/live"
LIVENESS_PROBE_PATH = "/health/live"
"""The process answers (the relay: its poll loop beats). Neither needs PostgreSQL, the
schema or Redis; see tests/gcp/test_gcp_first_deploy.py."""

GMP_SIDECAR_IMAGE = (
    "us-docker.pkg.dev/cloud-ops-agents-artifacts/cloud-run-gmp-sidecar/cloud-run-gmp-sidecar:1.8.0"
)
"""Google's Managed Service for Prometheus collector for Cloud Run, pinned (release 1.8.0
of GoogleCloudPlatform/run-gmp-sidecar) so a sidecar update is a reviewed change."""
GMP_CONFIG_DIR = "/etc/rungmp"
"""Where the sidecar reads ``config.yaml`` (run-gmp-sidecar entrypoint.go
``userConfigFile``); without it the sidecar scrapes port 8080, which is the worker's
push port and nothing's metrics."""
GMP_HEALTH_PORT = 13133
"""The sidecar's own liveness endpoint (entrypoint.go ``livenessProbePort``)."""
METRICS_WRITER_ROLE = "roles/monitoring.metricWriter"
PROJECT_ROLES = frozenset({METRICS_WRITER_ROLE})
"""Every project-level role this component grants: docs/bootstrap.md lets the deploy
identity grant exactly these (an IAM condition on ``modifiedGrantsByRole``);
tests/gcp/test_gcp_metrics.py ties the two together."""
SCRAPED_ROLES = ("api", "worker", "relay")
_INTERVAL = re.compile(r"^([1-9][0-9]*)s$")
_TARGET_METADATA = frozenset({"instance", "revision", "service", "configuration"})


def run_monitoring_config(port: int, interval: str, name: str) -> str:
    """The sidecar's RunMonitoring config: scrape ``/metrics`` on ``port`` every
    ``interval``.

    ``targetLabels.metadata`` keeps service and revision (a canary's metrics stay
    apart) but not ``instance``: every Cloud Run instance would add its id as a metric
    label on every series (run-gmp-sidecar confgenerator/config.go). The service's own
    labels are bounded (route templates, outcomes, reasons: no job ids or tenants).
    """
    if not 1 <= port <= 65535:
        raise ValueError(f"metrics port {port}: use 1-65535")
    if not _INTERVAL.match(interval) or not 10 <= int(interval[:-1]) <= 3600:
        raise ValueError(f"metrics interval {interval!r}: use 10s-3600s, e.g. 60s")
    return textwrap.dedent(
        f"""\
        apiVersion: monitoring.googleapis.com/v1beta
        kind: RunMonitoring
        metadata:
          name: {name}
        spec:
          endpoints:
            - port: "{port}"
              path: /metrics
              interval: {interval}
              timeout: 10s
          targetLabels:
            metadata: [service, revision]
        """
    )


_CPU = ("1", "2", "4", "6", "8")
_FRACTIONAL_CPU = re.compile(r"^0\.[0-9]{1,3}$")

RELAY_HOLD_PATH = "/relay/hold"
"""The relay's hold endpoint (worker/health.py ``HOLD_PATH``): a request there keeps the
instance's CPU allocated under request-based billing for ``seconds``."""
RELAY_HOLD_MAX_SECONDS = 60
"""The relay caps a hold here (worker/health.py ``HOLD_MAX_SECONDS``)."""
SCHEDULER_PERIOD_SECONDS = 60
"""Cloud Scheduler's finest schedule: unix-cron, one run a minute at most."""
RELAY_COLD_START_SECONDS = 120
"""What a held relay call allows for a new instance to start before the hold begins (the
Scheduler attempt deadline and the request timeout add it): about the startup probe's
own budget (2 s, then 24 probes 5 s apart)."""


class RelayBilling(StrEnum):
    """How the relay service gets CPU (docs/cost-model.md, "GCP staging")."""

    INSTANCE = "instance"
    """CPU always allocated (instance-based billing), a fixed number of instances."""
    SCHEDULED = "scheduled"
    """Request-based billing at a fraction of a vCPU: a Cloud Scheduler job calls the hold
    endpoint every minute with an OIDC token and the held request keeps the CPU allocated
    (outside requests Cloud Run throttles an instance's CPU: "Billing settings for
    services"). One instance, concurrency 1."""


_MEMORY = re.compile(r"^([0-9]+)(Mi|Gi)$")
_DURATION = re.compile(r"^[0-9]+s$")
RESERVED_ENV = frozenset({"PORT", "K_SERVICE", "K_REVISION", "K_CONFIGURATION"})


class ApiExposure(StrEnum):
    """Who can reach the API."""

    PRIVATE = "private"
    """Internal ingress, IAM-authenticated callers only (the secure default)."""
    PUBLIC = "public"
    """Anyone on the internet, straight to run.app: ``allUsers`` gets ``run.invoker``."""
    LOAD_BALANCER = "load-balancer"
    """Only through the external HTTPS load balancer (Cloud Armor in front); the IAM
    invoker check is off because the load balancer forwards anonymous callers."""


class TrafficStrategy(StrEnum):
    """What ``pulumi up`` does with the API's traffic when it creates a new revision."""

    LATEST = "latest"
    """All traffic moves to the new revision as soon as it is ready."""
    PINNED = "pinned"
    """The split serving now is kept (read from the live service at deploy time) and the
    new revision starts at 0 %; ``groundwork ops shift-traffic`` then moves it gradually
    and rolls back on failure. A first deploy has nothing to pin and serves the new
    revision. Not ``ignore_changes``: the provider would still send the split recorded
    in the (stale) state, which sends everything to the new revision at once."""


REVISION_TARGET = "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION"


def pinned_split(
    statuses: Sequence[gcp.cloudrunv2.outputs.GetServiceTrafficStatusResult] | None,
) -> list[gcp.cloudrunv2.ServiceTrafficArgs] | None:
    """The serving split as explicit revision targets; None when there is none yet."""
    split: dict[str, int] = {}
    for status in statuses or []:
        if status.percent and status.revision:
            split[status.revision] = split.get(status.revision, 0) + status.percent
    if sum(split.values()) != 100:
        return None
    return [
        gcp.cloudrunv2.ServiceTrafficArgs(type=REVISION_TARGET, revision=revision, percent=pct)
        for revision, pct in sorted(split.items())
    ]


def is_not_found(exc: BaseException) -> bool:
    """The lookup failed because the service does not exist (and for no other reason).

    The provider's ``google_cloud_run_v2_service`` data source reads the service and, when
    the API answers 404, fails with ``"<id> not found"``; any other failure (403, 429,
    5xx) carries the API error instead ("googleapi: Error 403: ...").
    """
    text = str(exc).lower()
    if "googleapi: error" in text and "error 404" not in text:
        return False
    return "not found" in text or "error 404" in text


@dataclass
class ServiceSize:
    cpu: str = "1"
    memory: str = "512Mi"
    min_instances: int = 0
    max_instances: int = 3
    concurrency: int = 80
    """Requests per instance before Cloud Run adds one: the scaling signal."""
    timeout: str = "30s"

    def __post_init__(self) -> None:
        # ArgError names the field: the stack turns it into the config key that set it
        # (stacks/arg_keys.py).
        if self.cpu not in _CPU:
            # Below 1 vCPU Cloud Run forces concurrency 1 and request-based billing.
            raise ArgError("cpu", self.cpu, f"use one of {', '.join(_CPU)}")
        match = _MEMORY.match(self.memory)
        if not match:
            raise ArgError("memory", self.memory, "use e.g. 512Mi or 2Gi")
        mib = int(match.group(1)) * (1024 if match.group(2) == "Gi" else 1)
        if not 512 <= mib <= 32768:
            raise ArgError("memory", self.memory, "Cloud Run gen2 allows 512Mi-32Gi")
        if mib > 4096 * int(self.cpu) or (int(self.cpu) >= 4 and mib < 2048):
            raise ArgError(
                "memory",
                self.memory,
                f"does not fit {self.cpu} vCPU (Cloud Run: at most 4Gi per vCPU, at least "
                "2Gi from 4 vCPUs)",
            )
        if not 0 <= self.min_instances <= self.max_instances:
            raise ArgError(
                "min_instances",
                self.min_instances,
                f"must be between 0 and the maximum instances ({self.max_instances})",
            )
        if not 1 <= self.concurrency <= 1000:
            raise ArgError("concurrency", self.concurrency, "use 1-1000")
        if not _DURATION.match(self.timeout) or not 1 <= int(self.timeout[:-1]) <= 3600:
            raise ArgError("timeout", self.timeout, "use 1s-3600s")


@dataclass
class ContainerServiceArgs:
    region: str
    image: pulumi.Input[str]
    """Image by digest (``repo@sha256:...``)."""
    network_id: pulumi.Input[str]
    subnet_id: pulumi.Input[str]
    env: Mapping[str, pulumi.Input[str]]
    """Plain environment, identical for every process (the deployment contract)."""
    secrets: Mapping[str, SecretRef]
    """Env name -> Secret Manager ref, identical for every process."""
    publish_topic: pulumi.Input[str]
    """Jobs topic the relay publishes to."""
    push_audience: str
    """Custom audience the worker accepts on Pub/Sub push tokens."""
    network_tags: list[str] = field(default_factory=list)
    api: ServiceSize = field(default_factory=ServiceSize)
    worker: ServiceSize = field(default_factory=lambda: ServiceSize(concurrency=16, timeout="180s"))
    relay_instances: int = 1
    relay_cpu: str = "1"
    relay_memory: str = "512Mi"
    relay_billing: RelayBilling = RelayBilling.INSTANCE
    relay_hold_seconds: int = 55
    """SCHEDULED: how long each scheduled request holds the relay's CPU; the rest of the
    minute the relay runs throttled. Priced as hold / 60 s of request-billed time."""
    scheduler_region: str = ""
    """SCHEDULED: the Cloud Scheduler job's location (default ``region``; Cloud Scheduler
    is not offered in every Cloud Run region: https://cloud.google.com/scheduler/docs/locations)."""
    migrate_timeout: str = "900s"
    api_exposure: ApiExposure = ApiExposure.PRIVATE
    api_traffic: TrafficStrategy = TrafficStrategy.LATEST
    deletion_protection: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    project: str = ""
    """Project the runtime accounts get ``monitoring.metricWriter`` on (metrics export)."""
    metrics_port: int | None = None
    """METRICS_PORT of the processes; set, the api, worker and relay carry the Managed
    Prometheus sidecar scraping it. None: no sidecar, no grant, nothing exported."""
    metrics_interval: str = "60s"
    """Scrape interval: the samples Cloud Monitoring bills are series x instances x
    (month / interval); 60s is the sidecar docs' cost advice over its 30s default."""
    metrics_sidecar_image: str = GMP_SIDECAR_IMAGE
    metrics_sidecar_cpu: str = "1"
    metrics_sidecar_memory: str = "512Mi"
    """Cloud Run's per-container defaults, what Google's sidecar sample deploys with."""
    metrics_export: bool = True
    """With ``metrics_port``: run the sidecar and grant the metric writes. Off, the config
    secret still exists (so switching export off never deletes a protected secret) but
    nothing scrapes or writes: the sidecar's CPU is the expensive part (docs/cost-model.md)."""
    metrics_config_replication: gcp.secretmanager.SecretReplicationArgs | None = None
    """The config secret's replication, e.g. the SecretStore's (with its CMEK key); None:
    user-managed in ``region`` with Google-managed encryption."""
    metrics_config_depends_on: list[pulumi.Resource] = field(default_factory=list)
    """What the config secret waits for, e.g. its CMEK key's grant to the Secret Manager
    agent (a create with a key the agent may not use yet fails)."""

    def __post_init__(self) -> None:
        self.api_exposure = ApiExposure(self.api_exposure)
        if self.metrics_port is not None:
            if not self.project:
                raise ValueError(
                    "metrics_port is set but project is empty: the runtime accounts need "
                    "roles/monitoring.metricWriter on the project to write metrics"
                )
            if self.metrics_port in (API_PORT, WORKER_PORT, HEALTH_PORT, GMP_HEALTH_PORT):
                raise ValueError(
                    f"metrics_port={self.metrics_port} is a port Cloud Run routes to or the "
                    "sidecar listens on; use a port of its own (METRICS_PORT, 9464)"
                )
            env_port = self.env.get("METRICS_PORT")
            if isinstance(env_port, str) and env_port != str(self.metrics_port):
                raise ValueError(
                    f"METRICS_PORT={env_port!r} differs from metrics_port={self.metrics_port}: "
                    "the sidecar would scrape a port nothing serves"
                )
            run_monitoring_config(self.metrics_port, self.metrics_interval, "check")
        self.api_traffic = TrafficStrategy(self.api_traffic)
        overlap = sorted(set(self.env) & set(self.secrets))
        if overlap:
            raise ValueError(f"{', '.join(overlap)} given both as plain env and as secret")
        reserved = sorted((set(self.env) | set(self.secrets)) & RESERVED_ENV)
        if reserved:
            raise ValueError(f"{', '.join(reserved)} are set by Cloud Run and cannot be overridden")
        audience = self.env.get("PUBSUB_PUSH_AUDIENCE")
        if isinstance(audience, str) and audience != self.push_audience:
            raise ValueError(
                f"PUBSUB_PUSH_AUDIENCE={audience!r} differs from push_audience="
                f"{self.push_audience!r}: the worker would reject every push"
            )
        if not 1 <= self.relay_instances <= 10:
            raise ValueError(f"relay_instances={self.relay_instances}: use 1-10")
        self.relay_billing = RelayBilling(self.relay_billing)
        if self.relay_billing is RelayBilling.SCHEDULED:
            self._check_scheduled_relay()
        else:
            ServiceSize(cpu=self.relay_cpu, memory=self.relay_memory)
        if not _DURATION.match(self.migrate_timeout):
            raise ValueError(f"migrate_timeout={self.migrate_timeout!r}: use e.g. 900s")

    def _check_scheduled_relay(self) -> None:
        """Cloud Run's rules below 1 vCPU ("Configure CPU limits for services",
        https://cloud.google.com/run/docs/configuring/services/cpu): 0.08-1 in steps of
        0.001, more than 512 MiB needs 0.5 vCPU and more than 1 GiB needs 1 vCPU,
        concurrency 1, request-based billing, first-generation execution environment."""
        if not _FRACTIONAL_CPU.match(self.relay_cpu) or not 0.08 <= float(self.relay_cpu) < 1:
            raise ValueError(
                f"relay_cpu={self.relay_cpu!r}: a scheduled relay runs below 1 vCPU "
                "(0.08-0.999, e.g. 0.25); at 1 vCPU or more use relay_billing=instance"
            )
        match = _MEMORY.match(self.relay_memory)
        if not match:
            raise ValueError(f"relay_memory={self.relay_memory!r}: use e.g. 512Mi")
        mib = int(match.group(1)) * (1024 if match.group(2) == "Gi" else 1)
        limit = 512 if float(self.relay_cpu) < 0.5 else 1024
        if not 128 <= mib <= limit:
            raise ValueError(
                f"relay_memory={self.relay_memory!r} does not fit relay_cpu={self.relay_cpu!r}: "
                f"Cloud Run allows 128Mi-{limit}Mi there"
            )
        if self.relay_instances != 1:
            raise ValueError(
                f"relay_instances={self.relay_instances}: a scheduled relay is one instance "
                "(one Scheduler call a minute holds one instance)"
            )
        if self.metrics_port is not None and self.metrics_export:
            raise ValueError(
                "a scheduled relay runs below 1 vCPU, where Cloud Run's requirements list "
                "sidecars and the first-generation environment; turn metrics_export off"
            )
        # Cloud Scheduler's attempt deadline is 15 s-30 min for HTTP targets (Job
        # attemptDeadline, magic-modules cloudscheduler/Job.yaml); a hold at or past the
        # period would overlap the next run on the one instance (concurrency 1).
        if (
            not 10
            <= self.relay_hold_seconds
            < min(SCHEDULER_PERIOD_SECONDS, RELAY_HOLD_MAX_SECONDS)
        ):
            raise ValueError(
                f"relay_hold_seconds={self.relay_hold_seconds}: use 10-"
                f"{SCHEDULER_PERIOD_SECONDS - 1} (below the one-minute schedule)"
            )


class ContainerService(pulumi.ComponentResource):
    """api, worker and relay Cloud Run services, the migrate job, one identity each."""

    service_accounts: dict[str, gcp.serviceaccount.Account]
    api: gcp.cloudrunv2.Service
    worker: gcp.cloudrunv2.Service
    relay: gcp.cloudrunv2.Service
    migrate: gcp.cloudrunv2.Job
    api_url: pulumi.Output[str]
    worker_url: pulumi.Output[str]
    push_endpoint: pulumi.Output[str]
    scheduler_account: gcp.serviceaccount.Account | None = None
    relay_scheduler: gcp.cloudscheduler.Job | None = None
    """Set with RelayBilling.SCHEDULED: the job that holds the relay's CPU and its identity."""

    def __init__(
        self, name: str, args: ContainerServiceArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(
            "groundwork:gcp:ContainerService",
            name,
            None,
            renamed_from("groundwork:gcp:CloudRunApp", opts),
        )
        self._name = name
        self._args = args
        child = pulumi.ResourceOptions(parent=self)

        self.service_accounts = {}
        self._grants: dict[str, list[gcp.secretmanager.SecretIamMember]] = {}
        self._metrics_grants: dict[str, list[pulumi.Resource]] = {}
        for role in ("api", "worker", "relay", "migrate"):
            account = gcp.serviceaccount.Account(
                f"{name}-{role}-sa",
                account_id=account_id(name, role),
                display_name=f"{name} {role}",
                description=f"Runs the {role} process; least privilege",
                opts=child,
            )
            self.service_accounts[role] = account
            grants = [
                gcp.secretmanager.SecretIamMember(
                    f"{name}-{role}-{env_name.lower().replace('_', '-')}-access",
                    secret_id=ref.secret_id,
                    role="roles/secretmanager.secretAccessor",
                    member=account.member,
                    opts=child,
                )
                for env_name, ref in sorted(args.secrets.items())
            ]
            self._grants[role] = grants
        # Only the relay publishes: the API writes the outbox row in the job's transaction
        # and never calls Pub/Sub (adapters/broker_probe.py), the worker only receives.
        gcp.pubsub.TopicIAMMember(
            f"{name}-relay-publisher",
            topic=args.publish_topic,
            role="roles/pubsub.publisher",
            member=self.service_accounts["relay"].member,
            opts=child,
        )

        self.metrics_config: gcp.secretmanager.SecretVersion | None = None
        if args.metrics_port is not None:
            self._metrics_export(args.metrics_port)

        api_ingress = {
            ApiExposure.PRIVATE: "INGRESS_TRAFFIC_INTERNAL_ONLY",
            ApiExposure.PUBLIC: "INGRESS_TRAFFIC_ALL",
            ApiExposure.LOAD_BALANCER: "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER",
        }[args.api_exposure]
        self.api = self._service(
            "api",
            size=args.api,
            port=API_PORT,
            ingress=api_ingress,
            cpu_idle=True,
            invoker_iam_disabled=args.api_exposure is ApiExposure.LOAD_BALANCER,
            traffics=self._serving_split() if args.api_traffic is TrafficStrategy.PINNED else None,
        )
        if args.api_exposure is ApiExposure.PUBLIC:
            gcp.cloudrunv2.ServiceIamMember(
                f"{name}-api-public-invoker",
                name=self.api.name,
                location=args.region,
                role="roles/run.invoker",
                member="allUsers",
                opts=child,
            )
        # Push deliveries are the worker's requests: concurrency x instances bounds the
        # jobs in flight, and Cloud Run scales on the push rate.
        self.worker = self._service(
            "worker",
            size=args.worker,
            port=WORKER_PORT,
            ingress="INGRESS_TRAFFIC_INTERNAL_ONLY",
            cpu_idle=True,
            custom_audiences=[args.push_audience],
        )
        if args.relay_billing is RelayBilling.SCHEDULED:
            self.relay = self._scheduled_relay()
        else:
            # The relay polls the outbox: no requests drive it, so CPU must stay allocated
            # (cpu_idle False) and a fixed number of instances stay up. Nobody invokes it.
            self.relay = self._service(
                "relay",
                size=ServiceSize(
                    cpu=args.relay_cpu,
                    memory=args.relay_memory,
                    min_instances=args.relay_instances,
                    max_instances=args.relay_instances,
                    concurrency=1,
                    timeout="10s",
                ),
                port=HEALTH_PORT,
                ingress="INGRESS_TRAFFIC_INTERNAL_ONLY",
                cpu_idle=False,
            )
        self.migrate = self._job()

        self.api_url = self.api.uri
        self.worker_url = self.worker.uri
        self.push_endpoint = self.worker.uri.apply(lambda uri: f"{uri}{PUSH_PATH}")
        self.register_outputs(
            {
                "api_url": self.api_url,
                "worker_url": self.worker_url,
                "api_service_name": self.api.name,
                "worker_service_name": self.worker.name,
                "relay_service_name": self.relay.name,
                "migrate_job_name": self.migrate.name,
            }
        )

    def _scheduled_relay(self) -> gcp.cloudrunv2.Service:
        """The relay at a fraction of a vCPU, request-billed, held by Cloud Scheduler.

        Under request-based billing an instance gets CPU only while it serves a request
        (https://cloud.google.com/run/docs/configuring/billing-settings); the job calls
        ``RELAY_HOLD_PATH`` every minute and the relay answers after
        ``relay_hold_seconds``, so the poll loop and the reconciler run for that share of
        each minute. The service stays IAM-protected and internal: requests from Cloud
        Scheduler in the same project count as internal ingress
        (https://cloud.google.com/run/docs/securing/ingress), and only the job's own
        service account holds ``run.invoker`` on this service.
        """
        args, name = self._args, self._name
        child = pulumi.ResourceOptions(parent=self)
        hold = args.relay_hold_seconds
        relay = self._service(
            "relay",
            size=ServiceSize(
                min_instances=0,
                max_instances=1,
                concurrency=1,
                # The request outlives the hold, and the cold start before it, so the
                # relay, not Cloud Run, ends it.
                timeout=f"{hold + RELAY_COLD_START_SECONDS + 30}s",
            ),
            port=HEALTH_PORT,
            ingress="INGRESS_TRAFFIC_INTERNAL_ONLY",
            cpu_idle=True,
            cpu=args.relay_cpu,
            memory=args.relay_memory,
            execution_environment="EXECUTION_ENVIRONMENT_GEN1",
        )
        self.scheduler_account = gcp.serviceaccount.Account(
            f"{name}-relay-sched-sa",
            account_id=account_id(name, "relay-sched"),
            display_name=f"{name} relay scheduler",
            description="Cloud Scheduler's identity for the relay hold calls",
            opts=child,
        )
        invoker = gcp.cloudrunv2.ServiceIamMember(
            f"{name}-relay-sched-invoker",
            name=relay.name,
            location=args.region,
            role="roles/run.invoker",
            member=self.scheduler_account.member,
            opts=child,
        )
        # Cloud Run checks the token's audience against the service URL (or a custom
        # audience); Scheduler's default audience is the full target URI, path and query
        # included, so it is set to the bare URL
        # (https://cloud.google.com/run/docs/authenticating/service-to-service).
        self.relay_scheduler = gcp.cloudscheduler.Job(
            f"{name}-relay-hold",
            name=f"{name}-relay-hold",
            region=args.scheduler_region or args.region,
            description=f"Holds {name}-relay's CPU {hold}s a minute (request-based billing)",
            schedule="* * * * *",
            time_zone="Etc/UTC",
            # The hold plus a cold start: at 0.25 vCPU with no startup boost, and with
            # Direct VPC egress that "might experience connection establishment delays of
            # a minute or more on instance startup"
            # (https://cloud.google.com/run/docs/configuring/vpc-direct-vpc), a deadline
            # of hold + 15 s would fail and retry the first call after every new instance.
            attempt_deadline=f"{hold + RELAY_COLD_START_SECONDS}s",
            # A hold ended by a new revision's SIGTERM answers 503: retried once, soon,
            # and it lands on the new instance; the next minute's run follows anyway.
            retry_config=gcp.cloudscheduler.JobRetryConfigArgs(
                retry_count=1,
                min_backoff_duration="5s",
                max_backoff_duration="5s",
                max_doublings=0,
            ),
            http_target=gcp.cloudscheduler.JobHttpTargetArgs(
                http_method="GET",
                uri=relay.uri.apply(lambda uri: f"{uri}{RELAY_HOLD_PATH}?seconds={hold}"),
                oidc_token=gcp.cloudscheduler.JobHttpTargetOidcTokenArgs(
                    service_account_email=self.scheduler_account.email,
                    audience=relay.uri,
                ),
            ),
            # The first call must not find the binding missing (a 403 per minute).
            opts=pulumi.ResourceOptions(parent=self, depends_on=[invoker]),
        )
        return relay

    def _metrics_export(self, port: int) -> None:
        """The sidecar's config secret, its readers and the metric writers."""
        name, args = self._name, self._args
        child = pulumi.ResourceOptions(parent=self)
        secret = gcp.secretmanager.Secret(
            f"{name}-metrics-config",
            secret_id=f"{name}-metrics-config",
            # In the stack's region whatever groundwork:secretReplication says: allowed
            # under a gcp.resourceLocations org policy, and fixed, so never replaced.
            replication=args.metrics_config_replication
            or gcp.secretmanager.SecretReplicationArgs(
                user_managed=gcp.secretmanager.SecretReplicationUserManagedArgs(
                    replicas=[
                        gcp.secretmanager.SecretReplicationUserManagedReplicaArgs(
                            location=args.region
                        )
                    ]
                )
            ),
            labels=args.labels,
            # Protected like every production secret (policy gcp-pulumi-datastore-
            # protected): a revision mounts it, so losing it fails instance starts.
            deletion_protection=args.deletion_protection,
            opts=pulumi.ResourceOptions(
                parent=self,
                protect=args.deletion_protection,
                retain_on_delete=args.deletion_protection,
                depends_on=args.metrics_config_depends_on,
            ),
        )
        # Revisions mount this exact version (not "latest"), so a config change rolls out
        # as a new revision like any other change; ABANDON keeps the version a pinned
        # revision still mounts (components/gcp/secrets.py, the same reason).
        self.metrics_config = gcp.secretmanager.SecretVersion(
            f"{name}-metrics-config-v",
            secret=secret.id,
            secret_data=run_monitoring_config(port, args.metrics_interval, name),
            deletion_policy="ABANDON",
            opts=child,
        )
        self._metrics_secret_id = secret.secret_id
        if not args.metrics_export:
            return
        for role in SCRAPED_ROLES:
            member = self.service_accounts[role].member
            self._metrics_grants.setdefault(role, []).append(
                gcp.secretmanager.SecretIamMember(
                    f"{name}-{role}-metrics-config-access",
                    secret_id=secret.secret_id,
                    role="roles/secretmanager.secretAccessor",
                    member=member,
                    opts=child,
                )
            )
            # Metric writes are authorised on the project only (there is no narrower
            # resource to grant monitoring.timeSeries.create on).
            self._metrics_grants.setdefault(role, []).append(
                gcp.projects.IAMMember(
                    f"{name}-{role}-metric-writer",
                    project=args.project,
                    role=METRICS_WRITER_ROLE,
                    member=member,
                    opts=child,
                )
            )

    def _sidecar(self, role: str, cpu_idle: bool) -> gcp.cloudrunv2.ServiceTemplateContainerArgs:
        args = self._args
        return gcp.cloudrunv2.ServiceTemplateContainerArgs(
            name="metrics-collector",
            image=args.metrics_sidecar_image,
            # Starts once the app container passed its startup probe (Cloud Run
            # container dependencies; the sidecar docs' run.googleapis.com/
            # container-dependencies {"collector": ["app"]}).
            depends_ons=[role],
            resources=gcp.cloudrunv2.ServiceTemplateContainerResourcesArgs(
                limits={"cpu": args.metrics_sidecar_cpu, "memory": args.metrics_sidecar_memory},
                cpu_idle=cpu_idle,
            ),
            volume_mounts=[
                gcp.cloudrunv2.ServiceTemplateContainerVolumeMountArgs(
                    name="metrics-config", mount_path=GMP_CONFIG_DIR
                )
            ],
            liveness_probe=gcp.cloudrunv2.ServiceTemplateContainerLivenessProbeArgs(
                http_get=gcp.cloudrunv2.ServiceTemplateContainerLivenessProbeHttpGetArgs(
                    path="/liveness", port=GMP_HEALTH_PORT
                ),
                period_seconds=30,
                timeout_seconds=30,
            ),
        )

    def _sidecar_volume(self) -> gcp.cloudrunv2.ServiceTemplateVolumeArgs:
        assert self.metrics_config is not None
        return gcp.cloudrunv2.ServiceTemplateVolumeArgs(
            name="metrics-config",
            secret=gcp.cloudrunv2.ServiceTemplateVolumeSecretArgs(
                secret=self._metrics_secret_id,
                items=[
                    gcp.cloudrunv2.ServiceTemplateVolumeSecretItemArgs(
                        path="config.yaml", version=self.metrics_config.version
                    )
                ],
            ),
        )

    def secret_grants(self, role: str) -> list[gcp.secretmanager.SecretIamMember]:
        """The per-secret accessor bindings of one process's service account."""
        return list(self._grants[role])

    def _serving_split(self) -> list[gcp.cloudrunv2.ServiceTrafficArgs] | None:
        name = f"{self._name}-api"
        try:
            live = gcp.cloudrunv2.get_service(
                name=name, location=self._args.region, opts=pulumi.InvokeOptions(parent=self)
            )
        except Exception as exc:
            if not is_not_found(exc):
                # A permission, quota or transient error must not turn a canary into a
                # 100 % rollout: only a missing service means "first deploy".
                raise RuntimeError(
                    f"{name}: could not read the live traffic split to pin the new "
                    f"revision at 0 % ({exc}); fix the cause (the deploy identity needs "
                    "run.services.get) and re-run: without the split this update would "
                    "send all production traffic to the new revision"
                ) from exc
            pulumi.log.info(f"{name}: no live service to pin traffic to ({exc})", self)
            return None
        split = pinned_split(live.traffic_statuses)
        if split is None:
            pulumi.log.info(f"{name}: no serving split yet; the new revision takes traffic", self)
        return split

    def _envs(self) -> list[gcp.cloudrunv2.ServiceTemplateContainerEnvArgs]:
        plain = [
            gcp.cloudrunv2.ServiceTemplateContainerEnvArgs(name=key, value=value)
            for key, value in sorted(self._args.env.items())
        ]
        secret = [
            gcp.cloudrunv2.ServiceTemplateContainerEnvArgs(
                name=key,
                value_source=gcp.cloudrunv2.ServiceTemplateContainerEnvValueSourceArgs(
                    secret_key_ref=gcp.cloudrunv2.ServiceTemplateContainerEnvValueSourceSecretKeyRefArgs(
                        secret=ref.secret_id, version=ref.version
                    )
                ),
            )
            for key, ref in sorted(self._args.secrets.items())
        ]
        return plain + secret

    def _vpc_access(self) -> gcp.cloudrunv2.ServiceTemplateVpcAccessArgs:
        return gcp.cloudrunv2.ServiceTemplateVpcAccessArgs(
            network_interfaces=[
                gcp.cloudrunv2.ServiceTemplateVpcAccessNetworkInterfaceArgs(
                    network=self._args.network_id,
                    subnetwork=self._args.subnet_id,
                    tags=self._args.network_tags,
                )
            ],
            egress="PRIVATE_RANGES_ONLY",
        )

    def _service(
        self,
        role: str,
        *,
        size: ServiceSize,
        port: int,
        ingress: str,
        cpu_idle: bool,
        invoker_iam_disabled: bool = False,
        custom_audiences: list[str] | None = None,
        traffics: list[gcp.cloudrunv2.ServiceTrafficArgs] | None = None,
        cpu: str | None = None,
        memory: str | None = None,
        execution_environment: str = "EXECUTION_ENVIRONMENT_GEN2",
    ) -> gcp.cloudrunv2.Service:
        """``cpu``/``memory`` override ``size`` for a fractional relay, which ServiceSize
        (whole vCPUs, gen2's 512Mi floor) does not describe."""
        args = self._args
        fractional = cpu is not None
        name = f"{self._name}-{role}"
        scraped = self.metrics_config is not None and args.metrics_export and role in SCRAPED_ROLES
        return gcp.cloudrunv2.Service(
            name,
            name=name,
            location=args.region,
            description=f"groundwork-app {role}",
            ingress=ingress,
            invoker_iam_disabled=invoker_iam_disabled,
            custom_audiences=custom_audiences,
            traffics=traffics,
            deletion_protection=args.deletion_protection,
            launch_stage="GA",
            labels={**args.labels, "process": role},
            template=gcp.cloudrunv2.ServiceTemplateArgs(
                service_account=self.service_accounts[role].email,
                execution_environment=execution_environment,
                scaling=gcp.cloudrunv2.ServiceTemplateScalingArgs(
                    min_instance_count=size.min_instances,
                    max_instance_count=size.max_instances,
                ),
                max_instance_request_concurrency=size.concurrency,
                timeout=size.timeout,
                vpc_access=self._vpc_access(),
                labels={**args.labels, "process": role},
                volumes=[self._sidecar_volume()] if scraped else None,
                containers=[
                    gcp.cloudrunv2.ServiceTemplateContainerArgs(
                        name=role,
                        image=args.image,
                        args=[role],
                        ports=gcp.cloudrunv2.ServiceTemplateContainerPortsArgs(
                            name="http1", container_port=port
                        ),
                        envs=self._envs(),
                        resources=gcp.cloudrunv2.ServiceTemplateContainerResourcesArgs(
                            limits={"cpu": cpu or size.cpu, "memory": memory or size.memory},
                            cpu_idle=cpu_idle,
                            # Off below 1 vCPU: a boosted start is billed, and the
                            # scheduled relay starts at most once per idle spell.
                            startup_cpu_boost=not fractional,
                        ),
                        # Probes target the container port: it is the one port Cloud Run
                        # routes to, and every process serves /health/* there. Both check
                        # the process only (STARTUP_PROBE_PATH): a Redis maintenance
                        # restart or a database not migrated yet (the first `up` runs
                        # before the migrate job) must not block new instances or fail
                        # a deploy. Dependency health is /health/ready, read by the
                        # uptime check, the smoke test and the alerts.
                        startup_probe=gcp.cloudrunv2.ServiceTemplateContainerStartupProbeArgs(
                            http_get=gcp.cloudrunv2.ServiceTemplateContainerStartupProbeHttpGetArgs(
                                path=STARTUP_PROBE_PATH, port=port
                            ),
                            initial_delay_seconds=2,
                            period_seconds=5,
                            timeout_seconds=3,
                            failure_threshold=24,
                        ),
                        # Live means the process is not wedged; a dependency outage must
                        # not restart every instance, hence not /health/ready.
                        liveness_probe=gcp.cloudrunv2.ServiceTemplateContainerLivenessProbeArgs(
                            http_get=gcp.cloudrunv2.ServiceTemplateContainerLivenessProbeHttpGetArgs(
                                path=LIVENESS_PROBE_PATH, port=port
                            ),
                            period_seconds=15,
                            timeout_seconds=3,
                            failure_threshold=3,
                        ),
                    ),
                    *([self._sidecar(role, cpu_idle)] if scraped else []),
                ],
            ),
            # The revision mounts the config secret and the sidecar writes metrics from
            # its first scrape: both grants exist before the first revision starts.
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[*self.secret_grants(role), *self._metrics_grants.get(role, [])],
            ),
        )

    def _job(self) -> gcp.cloudrunv2.Job:
        args = self._args
        name = f"{self._name}-migrate"
        envs = [
            gcp.cloudrunv2.JobTemplateTemplateContainerEnvArgs(name=key, value=value)
            for key, value in sorted(args.env.items())
        ] + [
            gcp.cloudrunv2.JobTemplateTemplateContainerEnvArgs(
                name=key,
                value_source=gcp.cloudrunv2.JobTemplateTemplateContainerEnvValueSourceArgs(
                    secret_key_ref=gcp.cloudrunv2.JobTemplateTemplateContainerEnvValueSourceSecretKeyRefArgs(
                        secret=ref.secret_id, version=ref.version
                    )
                ),
            )
            for key, ref in sorted(args.secrets.items())
        ]
        return gcp.cloudrunv2.Job(
            name,
            name=name,
            location=args.region,
            deletion_protection=args.deletion_protection,
            launch_stage="GA",
            labels={**args.labels, "process": "migrate"},
            template=gcp.cloudrunv2.JobTemplateArgs(
                task_count=1,
                parallelism=1,
                labels={**args.labels, "process": "migrate"},
                template=gcp.cloudrunv2.JobTemplateTemplateArgs(
                    service_account=self.service_accounts["migrate"].email,
                    execution_environment="EXECUTION_ENVIRONMENT_GEN2",
                    # Alembic runs each migration in a transaction: one retry covers a
                    # transient connection error without looping on a broken migration.
                    max_retries=1,
                    timeout=args.migrate_timeout,
                    vpc_access=gcp.cloudrunv2.JobTemplateTemplateVpcAccessArgs(
                        network_interfaces=[
                            gcp.cloudrunv2.JobTemplateTemplateVpcAccessNetworkInterfaceArgs(
                                network=args.network_id,
                                subnetwork=args.subnet_id,
                                tags=args.network_tags,
                            )
                        ],
                        egress="PRIVATE_RANGES_ONLY",
                    ),
                    containers=[
                        gcp.cloudrunv2.JobTemplateTemplateContainerArgs(
                            name="migrate",
                            image=args.image,
                            args=["migrate"],
                            envs=envs,
                            resources=gcp.cloudrunv2.JobTemplateTemplateContainerResourcesArgs(
                                limits={"cpu": "1", "memory": "512Mi"}
                            ),
                        )
                    ],
                ),
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=self.secret_grants("migrate")),
        )
