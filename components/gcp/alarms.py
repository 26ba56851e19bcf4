"""Alarms: e-mail channel, uptime check, alert policies and a golden-signals dashboard.

Every policy is a threshold condition on a built-in metric (no log-based metrics to
pay for; the stuck-jobs policy matches the service's log events directly), groups per
service so one noisy service does not hide another, and links what to look at in its
documentation.

With ``service_metrics`` on, the service's own Prometheus metrics (exported by the
Managed Prometheus sidecar, components/gcp/services.py) drive PromQL conditions too:
outbox age, overdue jobs, dead letters, job failures, LLM errors and the LLM circuit.
Each mirrors an alert of deploy/local/prometheus/groundwork.rules.yml (same PromQL,
same ``for``), restricted to one Cloud Run service by the ``namespace`` label the
sidecar sets to the service name (run-gmp-sidecar confgenerator/config.go).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import pulumi
import pulumi_gcp as gcp

from components.args import renamed_from

RUN = 'resource.type = "cloud_run_revision"'
SELECTOR = "__SEL__"
"""Where a ServiceMetricAlert's PromQL takes the service selector: ``{__SEL__}`` or
``{__SEL__other="x"}``."""


@dataclass(frozen=True)
class ServiceMetricAlert:
    """A PromQL alert on the service's own metrics, the twin of a local Prometheus rule."""

    key: str
    rule: str
    """The alert of the same meaning in deploy/local/prometheus/groundwork.rules.yml."""
    role: str
    """The process that exports the metric (api, worker, relay)."""
    expr: str
    duration: str
    severity: str
    title: str
    doc: str

    def promql(self, namespace: str | None) -> str:
        """The PromQL with the selector for ``namespace`` (None: no selector, the
        local rule's form)."""
        if namespace is None:
            return self.expr.replace("{" + SELECTOR + "}", "").replace(SELECTOR, "")
        matcher = f'namespace="{namespace}"'
        return self.expr.replace(SELECTOR + "}", matcher + "}").replace(SELECTOR, matcher + ",")


SERVICE_METRIC_ALERTS: tuple[ServiceMetricAlert, ...] = (
    ServiceMetricAlert(
        key="outbox-stalled",
        rule="GroundworkOutboxStalled",
        role="relay",
        expr="max(relay_outbox_oldest_unsent_age_seconds{__SEL__}) > 60",
        duration="300s",
        severity="CRITICAL",
        title="Outbox rows are not being published",
        doc="The oldest unpublished outbox row is over a minute old: the relay is down or "
        "cannot publish to Pub/Sub (its logs; `relay_publish_failures_total`; the relay "
        "account's pubsub.publisher on the topic).",
    ),
    ServiceMetricAlert(
        key="jobs-overdue",
        rule="GroundworkJobsOverdue",
        role="relay",
        expr="max(jobs_unfinished_oldest_age_seconds{__SEL__}) > 1800",
        duration="300s",
        severity="WARNING",
        title="A job has made no progress for over 30 minutes",
        doc="Measured by the relay's reconciler. The deadline safety net will fail the job; "
        "look at the worker's logs and the push subscription before it does.",
    ),
    ServiceMetricAlert(
        key="jobs-dead-lettered",
        rule="GroundworkJobsDeadLettered",
        role="worker",
        expr="sum(increase(worker_jobs_dead_lettered_total{__SEL__}[15m])) > 0",
        duration="0s",
        severity="WARNING",
        title="Jobs were dead-lettered",
        doc="The worker parked messages it cannot process (by `reason`). See the "
        "dead-letter subscription alert and docs/message-flow.md.",
    ),
    ServiceMetricAlert(
        key="job-failures",
        rule="GroundworkJobFailuresHigh",
        role="worker",
        expr=(
            "sum(rate(worker_jobs_failed_total{__SEL__}[10m])) / "
            "(sum(rate(worker_jobs_processed_total{__SEL__}[10m])) + "
            "sum(rate(worker_jobs_failed_total{__SEL__}[10m]))) > 0.05 and "
            "sum(rate(worker_jobs_failed_total{__SEL__}[10m])) > 0.01"
        ),
        duration="600s",
        severity="WARNING",
        title="More than 5 % of job attempts fail",
        doc="`worker_jobs_failed_total` by `reason` says which class (LLM, database, "
        "validation). Failed attempts are retried; sustained failures end in dead letters.",
    ),
    ServiceMetricAlert(
        key="llm-errors",
        rule="GroundworkLlmErrorsHigh",
        role="worker",
        expr=(
            'sum(rate(llm_request_duration_seconds_count{__SEL__outcome!="ok"}[10m])) / '
            "sum(rate(llm_request_duration_seconds_count{__SEL__}[10m])) > 0.1 and "
            'sum(rate(llm_request_duration_seconds_count{__SEL__outcome!="ok"}[10m])) > 0.01'
        ),
        duration="600s",
        severity="WARNING",
        title="More than 10 % of LLM calls fail",
        doc="By `outcome`: timeout (raise the LLM timeout or check the provider's status), "
        "rate_limited (LLM_REQUESTS_PER_MINUTE above the account's quota), error.",
    ),
    ServiceMetricAlert(
        key="llm-circuit-open",
        rule="GroundworkLlmCircuitOpen",
        role="worker",
        expr="max by (provider) (llm_circuit_state{__SEL__}) >= 2",
        duration="300s",
        severity="ERROR",
        title="The LLM circuit breaker is open",
        doc="The worker stopped calling the LLM provider after repeated failures; jobs "
        "follow LLM_FALLBACK meanwhile. Check the provider's status and the API key.",
    ),
)


@dataclass
class Thresholds:
    uptime_ratio: float = 0.995
    error_ratio: float = 0.01
    latency_p95_ms: float = 2000.0
    cpu_utilization: float = 0.80
    memory_utilization: float = 0.85
    sql_cpu_utilization: float = 0.80
    sql_disk_utilization: float = 0.85
    redis_memory_ratio: float = 0.85
    oldest_unacked_seconds: float = 600.0
    dead_letters: float = 0.0
    push_rejected_ratio: float = 0.05

    def __post_init__(self) -> None:
        for name in (
            "uptime_ratio",
            "error_ratio",
            "cpu_utilization",
            "memory_utilization",
            "sql_cpu_utilization",
            "sql_disk_utilization",
            "redis_memory_ratio",
            "push_rejected_ratio",
        ):
            value = getattr(self, name)
            if not 0.0 < value < 1.0:
                raise ValueError(f"{name}={value}: a ratio strictly between 0 and 1")
        if self.latency_p95_ms <= 0 or self.oldest_unacked_seconds <= 0:
            raise ValueError("latency_p95_ms and oldest_unacked_seconds must be positive")


@dataclass
class AlarmsArgs:
    project: str
    region: str
    api_service_name: pulumi.Input[str]
    run_service_names: Mapping[str, pulumi.Input[str]]
    """Role -> Cloud Run service name (api, worker, relay): CPU/memory saturation."""
    sql_instance_name: pulumi.Input[str]
    redis_instance_name: pulumi.Input[str]
    push_subscription_name: pulumi.Input[str]
    dead_letter_subscription_name: pulumi.Input[str]
    uptime_host: pulumi.Input[str] | None = None
    """Public hostname of the API; None (private API) skips the uptime check and its alert."""
    uptime_path: str = "/health/ready"
    notification_email: str | None = None
    thresholds: Thresholds = field(default_factory=Thresholds)
    labels: dict[str, str] = field(default_factory=dict)
    service_metrics: bool = False
    """The services export their Prometheus metrics (the Managed Prometheus sidecar):
    add the PromQL policies of SERVICE_METRIC_ALERTS."""
    relay_scheduled: bool = False
    """The relay gets CPU only while Cloud Scheduler's hold calls are in flight
    (components/gcp/services.py RelayBilling.SCHEDULED): alert when none completes."""

    def __post_init__(self) -> None:
        if self.notification_email is not None and "@" not in self.notification_email:
            raise ValueError(f"notification_email={self.notification_email!r} is not an address")
        if not self.uptime_path.startswith("/"):
            raise ValueError(f"uptime_path={self.uptime_path!r} must start with '/'")
        if not {"api", "worker", "relay"} <= set(self.run_service_names):
            raise ValueError("run_service_names needs api, worker and relay")


P95_PER_SERVICE: dict[str, Any] = {
    "aligner": "ALIGN_PERCENTILE_95",
    "reducer": "REDUCE_MAX",
    "group_by": ["resource.label.service_name"],
}
"""Each Cloud Run service's 95th percentile: one time series per service."""


def _with_metric(
    resources: pulumi.Output[str], metric_type: str, labels: str = ""
) -> pulumi.Output[str]:
    """``resources`` (a monitoring filter) narrowed to one metric, then to ``labels``."""
    return resources.apply(lambda f: f'{f} AND metric.type = "{metric_type}"{labels}')


def _subscription(name: pulumi.Input[str]) -> pulumi.Output[str]:
    """The monitoring filter of one Pub/Sub subscription's metrics, for ``_with_metric``."""
    return pulumi.Output.from_input(name).apply(
        lambda n: (
            f'resource.type = "pubsub_subscription" AND resource.label.subscription_id = "{n}"'
        )
    )


def _burn_rate_filter(window: str, slo_name: str) -> str:
    return f'select_slo_burn_rate("{slo_name}", "{window}")'


def _quoted(values: list[str]) -> str:
    return ", ".join(f'"{v}"' for v in values)


class Alarms(pulumi.ComponentResource):
    """Notification channel, uptime check, alert policies, dashboard."""

    policies: dict[str, gcp.monitoring.AlertPolicy]
    notification_channel: gcp.monitoring.NotificationChannel | None
    uptime_check: gcp.monitoring.UptimeCheckConfig | None
    dashboard: gcp.monitoring.Dashboard
    dashboard_url: pulumi.Output[str]

    def __init__(
        self, name: str, args: AlarmsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(
            "groundwork:gcp:Alarms", name, None, renamed_from("groundwork:gcp:Alerts", opts)
        )
        self._name = name
        self._args = args
        child = pulumi.ResourceOptions(parent=self)
        t = args.thresholds

        self.notification_channel = None
        if args.notification_email:
            self.notification_channel = gcp.monitoring.NotificationChannel(
                f"{name}-email",
                display_name=f"{name} on-call e-mail",
                type="email",
                labels={"email_address": args.notification_email},
                user_labels=args.labels,
                opts=child,
            )
        else:
            pulumi.log.warn(
                f"{name}: no groundwork:alarmEmail, alert policies will notify nobody; "
                "`pulumi config set groundwork:alarmEmail oncall@example.com`"
            )

        self.policies = {}
        api = pulumi.Output.from_input(args.api_service_name)
        services = pulumi.Output.all(*args.run_service_names.values())
        run_any = services.apply(
            lambda names: f"{RUN} AND resource.label.service_name = one_of({_quoted(names)})"
        )
        run_api = api.apply(lambda n: f'{RUN} AND resource.label.service_name = "{n}"')

        self.uptime_check = None
        if args.uptime_host is not None:
            self.uptime_check = gcp.monitoring.UptimeCheckConfig(
                f"{name}-api-uptime",
                display_name=f"{name} API {args.uptime_path}",
                timeout="10s",
                period="60s",
                http_check=gcp.monitoring.UptimeCheckConfigHttpCheckArgs(
                    path=args.uptime_path,
                    port=443,
                    use_ssl=True,
                    validate_ssl=True,
                    request_method="GET",
                    accepted_response_status_codes=[
                        gcp.monitoring.UptimeCheckConfigHttpCheckAcceptedResponseStatusCodeArgs(
                            status_class="STATUS_CLASS_2XX"
                        )
                    ],
                ),
                monitored_resource=gcp.monitoring.UptimeCheckConfigMonitoredResourceArgs(
                    type="uptime_url",
                    labels={"project_id": args.project, "host": args.uptime_host},
                ),
                user_labels=args.labels,
                opts=child,
            )
            check_id = self.uptime_check.uptime_check_id.apply(lambda i: i or "")
            self._policy(
                "uptime",
                f"API uptime below {t.uptime_ratio:.1%}",
                check_id.apply(
                    lambda i: (
                        'metric.type = "monitoring.googleapis.com/uptime_check/check_passed" '
                        f'AND resource.type = "uptime_url" AND metric.label.check_id = "{i}"'
                    )
                ),
                aligner="ALIGN_FRACTION_TRUE",
                reducer="REDUCE_MEAN",
                group_by=["metric.label.check_id"],
                period="3600s",
                comparison="COMPARISON_LT",
                threshold=t.uptime_ratio,
                severity="CRITICAL",
                doc="The health endpoint failed from several regions over the last hour. "
                "Check the load balancer, the API revision's logs and /health/ready deps.",
            )

        self._policy(
            "api-5xx-ratio",
            f"API 5xx ratio above {t.error_ratio:.0%}",
            _with_metric(
                run_api,
                "run.googleapis.com/request_count",
                ' AND metric.label.response_code_class = "5xx"',
            ),
            denominator=_with_metric(run_api, "run.googleapis.com/request_count"),
            aligner="ALIGN_RATE",
            reducer="REDUCE_SUM",
            group_by=["resource.label.service_name"],
            threshold=t.error_ratio,
            duration="300s",
            severity="CRITICAL",
            doc="More than the error budget of API requests fail. Look at the latest "
            "revision's logs; roll back with the traffic script if it started with a deploy.",
        )
        self._policy(
            "api-latency-p95",
            f"API p95 latency above {t.latency_p95_ms / 1000:g} s",
            _with_metric(run_api, "run.googleapis.com/request_latencies"),
            **P95_PER_SERVICE,
            threshold=t.latency_p95_ms,
            duration="300s",
            severity="WARNING",
            doc="Slow API: check Cloud SQL Query Insights, Redis and instance saturation.",
        )
        for resource, label, utilization, doc in (
            (
                "cpu",
                "CPU",
                t.cpu_utilization,
                "Instances are CPU bound: raise gcpRunCpu or max instances.",
            ),
            (
                "memory",
                "memory",
                t.memory_utilization,
                "Instances near their memory limit get killed: raise gcpRunMemory.",
            ),
        ):
            self._policy(
                f"run-{resource}",
                f"Cloud Run {label} above {utilization:.0%}",
                _with_metric(run_any, f"run.googleapis.com/container/{resource}/utilizations"),
                **P95_PER_SERVICE,
                threshold=utilization,
                duration="600s",
                severity="WARNING",
                doc=doc,
            )
        sql = pulumi.Output.from_input(args.sql_instance_name).apply(
            lambda n: (
                f'resource.type = "cloudsql_database" '
                f'AND resource.label.database_id = "{args.project}:{n}"'
            )
        )
        self._policy(
            "sql-cpu",
            f"Cloud SQL CPU above {t.sql_cpu_utilization:.0%}",
            _with_metric(sql, "cloudsql.googleapis.com/database/cpu/utilization"),
            aligner="ALIGN_MEAN",
            threshold=t.sql_cpu_utilization,
            duration="600s",
            severity="WARNING",
            doc="Check Query Insights for the top queries; raise gcpDbTier if sustained.",
        )
        self._policy(
            "sql-disk",
            f"Cloud SQL disk above {t.sql_disk_utilization:.0%}",
            _with_metric(sql, "cloudsql.googleapis.com/database/disk/utilization"),
            aligner="ALIGN_MEAN",
            threshold=t.sql_disk_utilization,
            duration="600s",
            severity="CRITICAL",
            doc="Autoresize stops at its limit: raise dbMaxStorageGb before the disk fills.",
        )
        redis = pulumi.Output.from_input(args.redis_instance_name).apply(
            lambda n: (
                'resource.type = "redis_instance" AND resource.label.instance_id = '
                f'"projects/{args.project}/locations/{args.region}/instances/{n}"'
            )
        )
        self._policy(
            "redis-memory",
            f"Memorystore memory above {t.redis_memory_ratio:.0%}",
            _with_metric(redis, "redis.googleapis.com/stats/memory/usage_ratio"),
            aligner="ALIGN_MEAN",
            threshold=t.redis_memory_ratio,
            duration="600s",
            severity="WARNING",
            doc="The cache evicts under pressure: raise gcpRedisMemoryGb.",
        )
        push = _subscription(args.push_subscription_name)
        self._policy(
            "pubsub-oldest-unacked",
            f"Jobs waiting longer than {t.oldest_unacked_seconds:g} s",
            _with_metric(
                push,
                "pubsub.googleapis.com/subscription/oldest_unacked_message_age",
            ),
            aligner="ALIGN_MAX",
            period="60s",
            threshold=t.oldest_unacked_seconds,
            duration="300s",
            severity="CRITICAL",
            doc="The worker is not keeping up or rejects pushes: check its 4xx/5xx (403 means "
            "the push identity lost run.invoker) and max instances.",
        )
        self._policy(
            "dead-letters",
            "Jobs in the dead-letter subscription",
            _with_metric(
                _subscription(args.dead_letter_subscription_name),
                "pubsub.googleapis.com/subscription/num_undelivered_messages",
            ),
            aligner="ALIGN_MAX",
            period="60s",
            threshold=t.dead_letters,
            duration="0s",
            severity="ERROR",
            doc="Messages exhausted their delivery attempts. Inspect them with `gcloud pubsub "
            "subscriptions pull` on the dead-letter subscription, fix, then republish.",
        )

        # Every push delivery by response class: a worker rejecting pushes (401/403 from
        # a broken auth design, 5xx) shows here within minutes, long before the oldest
        # unacked age or the dead-letter count move.
        push_requests = _with_metric(
            push,
            "pubsub.googleapis.com/subscription/push_request_count",
        )
        self._policy(
            "push-rejected",
            f"Push deliveries not acked above {t.push_rejected_ratio:.0%}",
            push_requests.apply(lambda f: f + ' AND metric.label.response_class != "ack"'),
            denominator=push_requests,
            aligner="ALIGN_RATE",
            reducer="REDUCE_SUM",
            group_by=["resource.label.subscription_id"],
            period="300s",
            threshold=t.push_rejected_ratio,
            duration="600s",
            severity="CRITICAL",
            doc="Pub/Sub pushes are answered with something other than 2xx. By "
            "response_class: remote_server_4xx = the worker refuses them (401/403: push "
            "auth, PUBSUB_PUSH_AUTH / audience / run.invoker of the push identity; 400/422: "
            "bad messages), remote_server_5xx = jobs fail transiently, unreachable / "
            "deadline_exceeded = the worker is down or too slow.",
        )
        self.slos: dict[str, gcp.monitoring.Slo] = {}
        self._api_slos(api, t)
        if args.service_metrics:
            for alert in SERVICE_METRIC_ALERTS:
                self._promql_policy(alert)

        # Log-match condition (no log-based metric to pay for): the service logs these
        # events when a safety net had to end a job no worker ended (the relay's
        # reconciler, the dead-letter push; services/app/.../worker/terminal.py).
        jobs = pulumi.Output.all(
            *(args.run_service_names[role] for role in ("worker", "relay"))
        ).apply(
            lambda names: (
                f"{RUN} AND resource.labels.service_name = ("
                + " OR ".join(f'"{n}"' for n in names)
                + ") "
                'AND (jsonPayload.event = "jobs past their deadline failed" OR '
                'jsonPayload.event = "job ended by its dead letter")'
            )
        )
        channel = self.notification_channel
        self.policies["stuck-jobs"] = gcp.monitoring.AlertPolicy(
            f"{name}-stuck-jobs",
            display_name=f"{name}: Jobs got stuck and were failed",
            combiner="OR",
            severity="ERROR",
            conditions=[
                gcp.monitoring.AlertPolicyConditionArgs(
                    display_name="Jobs ended by a safety net",
                    condition_matched_log=gcp.monitoring.AlertPolicyConditionConditionMatchedLogArgs(
                        filter=jobs
                    ),
                )
            ],
            documentation=gcp.monitoring.AlertPolicyDocumentationArgs(
                content="A job made no progress for JOB_DEADLINE_SECONDS, or Pub/Sub "
                "dead-lettered its message, and it was failed; the job's `error` says which. "
                "See docs/message-flow.md (terminal states).",
                mime_type="text/markdown",
                subject="[ERROR] Jobs got stuck and were failed",
            ),
            alert_strategy=gcp.monitoring.AlertPolicyAlertStrategyArgs(
                auto_close="1800s",
                # Required for log-match conditions: at most one notification per period.
                notification_rate_limit=gcp.monitoring.AlertPolicyAlertStrategyNotificationRateLimitArgs(
                    period="300s"
                ),
            ),
            notification_channels=[channel.id] if channel else [],
            user_labels=args.labels,
            opts=child,
        )

        if args.relay_scheduled:
            self._relay_not_held()

        self.dashboard = gcp.monitoring.Dashboard(
            f"{name}-dashboard",
            dashboard_json=pulumi.Output.json_dumps(self._dashboard(run_any, run_api)),
            opts=child,
        )
        self.dashboard_url = self.dashboard.id.apply(
            lambda i: (
                "https://console.cloud.google.com/monitoring/dashboards/builder/"
                f"{(i or '').rsplit('/', 1)[-1]}?project={args.project}"
            )
        )
        self.register_outputs({"dashboard_url": self.dashboard_url})

    def _relay_not_held(self) -> None:
        """No hold call to the scheduled relay succeeded for 10 minutes: the relay and
        the reconciler run on no CPU, so outbox rows wait (nothing is lost). Whatever the
        cause (a paused or failing Scheduler job, a lost invoker binding, a Cloud
        Scheduler outage, a relay that cannot start), the relay's own 2xx responses stop:
        a metric-absence condition on them, since a starved relay exports nothing and the
        PromQL outbox alert needs the metrics sidecar, which a relay below 1 vCPU cannot
        carry. A held call is counted when it completes, about once a minute."""
        name, args = self._name, self._args
        channel = self.notification_channel
        relay = pulumi.Output.from_input(args.run_service_names["relay"])
        self.policies["relay-not-held"] = gcp.monitoring.AlertPolicy(
            f"{name}-relay-not-held",
            display_name=f"{name}: The relay got no scheduled CPU for 10 minutes",
            combiner="OR",
            severity="ERROR",
            conditions=[
                gcp.monitoring.AlertPolicyConditionArgs(
                    display_name="No successful hold call to the relay",
                    condition_absent=gcp.monitoring.AlertPolicyConditionConditionAbsentArgs(
                        filter=relay.apply(
                            lambda n: (
                                f'{RUN} AND resource.label.service_name = "{n}" AND '
                                'metric.type = "run.googleapis.com/request_count" AND '
                                'metric.label.response_code_class = "2xx"'
                            )
                        ),
                        duration="600s",
                        aggregations=[
                            gcp.monitoring.AlertPolicyConditionConditionAbsentAggregationArgs(
                                alignment_period="300s",
                                per_series_aligner="ALIGN_SUM",
                                cross_series_reducer="REDUCE_SUM",
                                group_by_fields=["resource.label.service_name"],
                            )
                        ],
                    ),
                )
            ],
            documentation=gcp.monitoring.AlertPolicyDocumentationArgs(
                content="The Cloud Scheduler job `"
                + name
                + "-relay-hold` has not completed a call to the relay for 10 minutes: the "
                "relay publishes nothing and the stuck-jobs reconciler does not run; new jobs "
                "wait in the outbox. Check the job (`gcloud scheduler jobs describe`, its "
                "execution logs: 403 = the invoker binding, 429/503 = the relay), the relay "
                "revision's logs, then resume or re-run the job. docs/cost-model.md, GCP staging.",
                mime_type="text/markdown",
                subject="[ERROR] The relay got no scheduled CPU for 10 minutes",
            ),
            alert_strategy=gcp.monitoring.AlertPolicyAlertStrategyArgs(auto_close="1800s"),
            notification_channels=[channel.id] if channel else [],
            user_labels=args.labels,
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _api_slos(self, api: pulumi.Output[str], t: Thresholds) -> None:
        """Availability and latency SLOs of the API with multi-window burn-rate alerts
        (https://cloud.google.com/stackdriver/docs/solutions/slo-monitoring/alerting-on-budget-burn-rate;
        windows and factors from the SRE workbook: 14.4x over 1 h and 5 min pages, 6x
        over 6 h and 30 min warns)."""
        name = self._name
        child = pulumi.ResourceOptions(parent=self)
        service = gcp.monitoring.CustomService(
            f"{name}-api-service",
            service_id=f"{name}-api",
            display_name=f"{name} API",
            user_labels=self._args.labels,
            opts=child,
        )
        requests = api.apply(
            lambda n: (
                f'{RUN} AND resource.label.service_name = "{n}" AND '
                'metric.type = "run.googleapis.com/request_count"'
            )
        )
        self.slos["availability"] = gcp.monitoring.Slo(
            f"{name}-api-availability",
            service=service.service_id,
            slo_id="availability",
            display_name=f"{name} API: {t.uptime_ratio:.1%} of requests without 5xx",
            goal=t.uptime_ratio,
            rolling_period_days=28,
            request_based_sli=gcp.monitoring.SloRequestBasedSliArgs(
                good_total_ratio=gcp.monitoring.SloRequestBasedSliGoodTotalRatioArgs(
                    bad_service_filter=requests.apply(
                        lambda f: f + ' AND metric.label.response_code_class = "5xx"'
                    ),
                    total_service_filter=requests,
                )
            ),
            user_labels=self._args.labels,
            opts=child,
        )
        self.slos["latency"] = gcp.monitoring.Slo(
            f"{name}-api-latency",
            service=service.service_id,
            slo_id="latency",
            display_name=f"{name} API: 95% of requests under {t.latency_p95_ms:g} ms",
            goal=0.95,
            rolling_period_days=28,
            request_based_sli=gcp.monitoring.SloRequestBasedSliArgs(
                distribution_cut=gcp.monitoring.SloRequestBasedSliDistributionCutArgs(
                    distribution_filter=api.apply(
                        lambda n: (
                            f'{RUN} AND resource.label.service_name = "{n}" AND '
                            'metric.type = "run.googleapis.com/request_latencies"'
                        )
                    ),
                    range=gcp.monitoring.SloRequestBasedSliDistributionCutRangeArgs(
                        max=t.latency_p95_ms
                    ),
                )
            ),
            user_labels=self._args.labels,
            opts=child,
        )
        channel = self.notification_channel
        for key, slo in self.slos.items():
            for speed, factor, windows, severity in (
                ("fast", 14.4, ("60m", "5m"), "CRITICAL"),
                ("slow", 6.0, ("360m", "30m"), "WARNING"),
            ):
                title = f"API {key} SLO burning {factor:g}x ({windows[0]} and {windows[1]})"
                self.policies[f"slo-{key}-{speed}-burn"] = gcp.monitoring.AlertPolicy(
                    f"{name}-slo-{key}-{speed}-burn",
                    display_name=f"{name}: {title}",
                    combiner="AND",
                    severity=severity,
                    conditions=[
                        gcp.monitoring.AlertPolicyConditionArgs(
                            display_name=f"burn rate over {window}",
                            condition_threshold=gcp.monitoring.AlertPolicyConditionConditionThresholdArgs(
                                filter=slo.name.apply(partial(_burn_rate_filter, window)),
                                comparison="COMPARISON_GT",
                                threshold_value=factor,
                                duration="0s",
                            ),
                        )
                        for window in windows
                    ],
                    documentation=gcp.monitoring.AlertPolicyDocumentationArgs(
                        content=f"The API {key} error budget burns {factor:g}x faster than "
                        "the SLO allows. Check the dashboard's error and latency charts, "
                        "the last rollout (`groundwork ops rollback`) and Cloud SQL.",
                        mime_type="text/markdown",
                        subject=f"[{severity}] {title}",
                    ),
                    alert_strategy=gcp.monitoring.AlertPolicyAlertStrategyArgs(auto_close="1800s"),
                    notification_channels=[channel.id] if channel else [],
                    user_labels=self._args.labels,
                    opts=child,
                )

    def _policy(
        self,
        key: str,
        title: str,
        metric_filter: pulumi.Input[str],
        *,
        aligner: str,
        threshold: float,
        severity: str,
        doc: str,
        reducer: str | None = None,
        group_by: list[str] | None = None,
        period: str = "300s",
        duration: str = "0s",
        comparison: str = "COMPARISON_GT",
        denominator: pulumi.Input[str] | None = None,
    ) -> None:
        # A ratio's denominator is aligned and reduced exactly as its numerator.
        aligned: dict[str, Any] = {
            "alignment_period": period,
            "per_series_aligner": aligner,
            "cross_series_reducer": reducer,
            "group_by_fields": group_by if reducer else None,
        }
        aggregation = gcp.monitoring.AlertPolicyConditionConditionThresholdAggregationArgs(
            **aligned
        )
        denominator_aggregations = None
        if denominator is not None:
            denominator_aggregations = [
                gcp.monitoring.AlertPolicyConditionConditionThresholdDenominatorAggregationArgs(
                    **aligned
                )
            ]
        channel = self.notification_channel
        self.policies[key] = gcp.monitoring.AlertPolicy(
            f"{self._name}-{key}",
            display_name=f"{self._name}: {title}",
            combiner="OR",
            severity=severity,
            conditions=[
                gcp.monitoring.AlertPolicyConditionArgs(
                    display_name=title,
                    condition_threshold=gcp.monitoring.AlertPolicyConditionConditionThresholdArgs(
                        filter=metric_filter,
                        comparison=comparison,
                        threshold_value=threshold,
                        duration=duration,
                        aggregations=[aggregation],
                        denominator_filter=denominator,
                        denominator_aggregations=denominator_aggregations,
                        trigger=gcp.monitoring.AlertPolicyConditionConditionThresholdTriggerArgs(
                            count=1
                        ),
                    ),
                )
            ],
            documentation=gcp.monitoring.AlertPolicyDocumentationArgs(
                content=doc, mime_type="text/markdown", subject=f"[{severity}] {title}"
            ),
            alert_strategy=gcp.monitoring.AlertPolicyAlertStrategyArgs(auto_close="1800s"),
            notification_channels=[channel.id] if channel else [],
            user_labels=self._args.labels,
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _promql_policy(self, alert: ServiceMetricAlert) -> None:
        """A PromQL condition (Cloud Monitoring evaluates it like a Prometheus rule:
        https://cloud.google.com/monitoring/promql/create-promql-alerts-console)."""
        channel = self.notification_channel
        query = pulumi.Output.from_input(self._args.run_service_names[alert.role]).apply(
            alert.promql
        )
        self.policies[alert.key] = gcp.monitoring.AlertPolicy(
            f"{self._name}-{alert.key}",
            display_name=f"{self._name}: {alert.title}",
            combiner="OR",
            severity=alert.severity,
            conditions=[
                gcp.monitoring.AlertPolicyConditionArgs(
                    display_name=alert.title,
                    condition_prometheus_query_language=gcp.monitoring.AlertPolicyConditionConditionPrometheusQueryLanguageArgs(
                        query=query,
                        duration=alert.duration,
                        evaluation_interval="60s",
                        alert_rule=alert.rule,
                        rule_group="groundwork",
                    ),
                )
            ],
            documentation=gcp.monitoring.AlertPolicyDocumentationArgs(
                content=alert.doc,
                mime_type="text/markdown",
                subject=f"[{alert.severity}] {alert.title}",
            ),
            alert_strategy=gcp.monitoring.AlertPolicyAlertStrategyArgs(auto_close="1800s"),
            notification_channels=[channel.id] if channel else [],
            user_labels=self._args.labels,
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _dashboard(
        self, run_any: pulumi.Output[str], run_api: pulumi.Output[str]
    ) -> dict[str, Any]:
        def chart(
            title: str,
            metric_filter: pulumi.Output[str],
            metric: str,
            aligner: str,
            reducer: str,
            group_by: list[str],
        ) -> dict[str, Any]:
            return {
                "title": title,
                "xyChart": {
                    "dataSets": [
                        {
                            "plotType": "LINE",
                            "timeSeriesQuery": {
                                "timeSeriesFilter": {
                                    "filter": _with_metric(metric_filter, metric),
                                    "aggregation": {
                                        "alignmentPeriod": "60s",
                                        "perSeriesAligner": aligner,
                                        "crossSeriesReducer": reducer,
                                        "groupByFields": group_by,
                                    },
                                }
                            },
                        }
                    ]
                },
            }

        by_service = ["resource.label.service_name"]
        widgets = [
            # Latency
            chart(
                "Latency: API p95 (ms)",
                run_api,
                "run.googleapis.com/request_latencies",
                "ALIGN_PERCENTILE_95",
                "REDUCE_MAX",
                by_service,
            ),
            # Traffic
            chart(
                "Traffic: requests/s per service",
                run_any,
                "run.googleapis.com/request_count",
                "ALIGN_RATE",
                "REDUCE_SUM",
                by_service,
            ),
            # Errors
            chart(
                "Errors: requests/s by response class",
                run_api,
                "run.googleapis.com/request_count",
                "ALIGN_RATE",
                "REDUCE_SUM",
                ["metric.label.response_code_class"],
            ),
            # Saturation
            chart(
                "Saturation: CPU p95 per service",
                run_any,
                "run.googleapis.com/container/cpu/utilizations",
                "ALIGN_PERCENTILE_95",
                "REDUCE_MAX",
                by_service,
            ),
            chart(
                "Saturation: memory p95 per service",
                run_any,
                "run.googleapis.com/container/memory/utilizations",
                "ALIGN_PERCENTILE_95",
                "REDUCE_MAX",
                by_service,
            ),
            chart(
                "Saturation: instances per service",
                run_any,
                "run.googleapis.com/container/instance_count",
                "ALIGN_MAX",
                "REDUCE_SUM",
                by_service,
            ),
        ]
        tiles = [
            {"xPos": (i % 2) * 6, "yPos": (i // 2) * 4, "width": 6, "height": 4, "widget": w}
            for i, w in enumerate(widgets)
        ]
        return {
            "displayName": f"{self._name}: golden signals",
            "mosaicLayout": {"columns": 12, "tiles": tiles},
            "labels": {},
        }
