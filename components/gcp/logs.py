"""Logs: a regional log bucket with the stack's retention and a sink routing into it.

The service's Cloud Run logs (api, worker, relay, migrate) and the Cloud SQL instance's
logs (pgAudit entries land in its data-access audit log) are routed to a bucket in the
stack's region kept ``retention_days``; the ``_Default`` bucket keeps its 30 days.
A sink into a log bucket of the same project needs no IAM grant
(https://cloud.google.com/logging/docs/export/configure_export_v2#dest-auth).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_gcp as gcp


@dataclass
class ServiceLogsArgs:
    project: str
    region: str
    retention_days: int = 30
    """1-3650 days (Cloud Logging's limits for a user-defined bucket)."""
    run_service_prefix: str = ""
    """Cloud Run services and jobs whose name starts with this are routed."""
    sql_instance_id: pulumi.Input[str] | None = None
    """``<project>:<instance>``, the ``database_id`` label of Cloud SQL's log entries."""
    labels: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 1 <= self.retention_days <= 3650:
            raise ValueError(f"retention_days={self.retention_days}: use 1-3650")
        if not self.run_service_prefix:
            raise ValueError("run_service_prefix is required: the sink must not take every log")


def log_filter(prefix: str, sql_instance_id: str | None) -> str:
    run = (
        '(resource.type = "cloud_run_revision" AND '
        f'resource.labels.service_name = starts_with("{prefix}")) OR '
        '(resource.type = "cloud_run_job" AND '
        f'resource.labels.job_name = starts_with("{prefix}"))'
    )
    if sql_instance_id:
        run += (
            ' OR (resource.type = "cloudsql_database" AND '
            f'resource.labels.database_id = "{sql_instance_id}")'
        )
    return run


class ServiceLogs(pulumi.ComponentResource):
    bucket: gcp.logging.ProjectBucketConfig
    sink: gcp.logging.ProjectSink

    def __init__(
        self, name: str, args: ServiceLogsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("groundwork:gcp:ServiceLogs", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        bucket_id = f"{name}-logs"
        # A deleted bucket keeps its id for 7 days (DELETE_REQUESTED) and location is
        # immutable: never replace it implicitly.
        self.bucket = gcp.logging.ProjectBucketConfig(
            f"{name}-logs",
            project=args.project,
            location=args.region,
            bucket_id=bucket_id,
            retention_days=args.retention_days,
            description=f"{name}: service and database logs, {args.retention_days} days",
            opts=child,
        )
        self.sink = gcp.logging.ProjectSink(
            f"{name}-logs-sink",
            name=f"{name}-logs",
            project=args.project,
            destination=f"logging.googleapis.com/projects/{args.project}/locations/"
            f"{args.region}/buckets/{bucket_id}",
            filter=pulumi.Output.from_input(args.sql_instance_id or "").apply(
                lambda sql: log_filter(args.run_service_prefix, sql or None)
            ),
            unique_writer_identity=True,
            description="Routes the service's and its database's logs to the retained bucket",
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.bucket]),
        )
        self.register_outputs({"bucket": self.bucket.id})
