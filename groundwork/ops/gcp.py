"""GCP operations with google-cloud-run (v2): migrate job, gradual traffic shift, rollback.

Clients are arguments so tests drive the real client library over a local gRPC server.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from google.api_core import exceptions as api_exceptions
from google.auth import exceptions as auth_exceptions
from google.cloud import run_v2

from groundwork.ops.errors import (
    MissingCredentialsError,
    OpsError,
    OpsTimeoutError,
    RevisionNotReadyError,
    RolledBackError,
    TaskFailedError,
    UserError,
)
from groundwork.ops.outputs import StackOutputs

Sleep = Callable[[float], None]
Clock = Callable[[], float]
HealthCheck = Callable[[], None]

REVISION = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION
LATEST = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST
SUCCEEDED = run_v2.Condition.State.CONDITION_SUCCEEDED
FAILED = run_v2.Condition.State.CONDITION_FAILED


@contextmanager
def gcp_errors(action: str) -> Iterator[None]:
    try:
        yield
    except auth_exceptions.DefaultCredentialsError:
        raise MissingCredentialsError(
            f"{action}: no Google credentials found; in CI use google-github-actions/auth with "
            "workload identity federation, locally `gcloud auth application-default login`"
        ) from None
    except auth_exceptions.RefreshError as exc:
        raise MissingCredentialsError(
            f"{action}: Google credentials could not be refreshed ({exc}); log in again"
        ) from None
    except api_exceptions.Unauthenticated as exc:
        raise MissingCredentialsError(f"{action}: unauthenticated: {exc.message}") from None
    except api_exceptions.PermissionDenied as exc:
        raise UserError(
            f"{action}: permission denied ({exc.message}); grant the deployer this role"
        ) from None
    except api_exceptions.NotFound as exc:
        raise UserError(f"{action}: not found ({exc.message}); check --stack") from None
    except api_exceptions.GoogleAPICallError as exc:
        raise OpsError(f"{action}: {exc.__class__.__name__}: {exc.message}") from None


@dataclass(frozen=True)
class GcpNames:
    project: str
    region: str

    @classmethod
    def from_outputs(cls, outputs: StackOutputs) -> GcpNames:
        outputs.expect_cloud("gcp")
        return cls(project=outputs.string("project"), region=outputs.string("region"))

    @property
    def parent(self) -> str:
        return f"projects/{self.project}/locations/{self.region}"

    def service(self, name: str) -> str:
        return name if name.startswith("projects/") else f"{self.parent}/services/{name}"

    def job(self, name: str) -> str:
        return name if name.startswith("projects/") else f"{self.parent}/jobs/{name}"


def short_name(resource: str) -> str:
    return resource.rsplit("/", 1)[-1]


def _condition_text(conditions: Sequence[run_v2.Condition]) -> str:
    for condition in conditions:
        if condition.state == FAILED or condition.message:
            return f"{condition.type_}: {condition.message or condition.reason}"
    return "no condition message"


# --- migrate job ------------------------------------------------------------------


@dataclass(frozen=True)
class ExecutionResult:
    name: str
    succeeded: int
    seconds: float
    log_uri: str


def run_migrate_job(
    jobs: run_v2.JobsClient,
    executions: run_v2.ExecutionsClient,
    job_name: str,
    *,
    image: str | None = None,
    timeout_seconds: float = 900.0,
    poll_seconds: float = 5.0,
    sleep: Sleep = time.sleep,
    clock: Clock = time.monotonic,
) -> ExecutionResult:
    """Execute the migrate job (with ``image`` when given) and wait for it to finish."""
    began = clock()
    if image:
        with gcp_errors(f"read job {short_name(job_name)}"):
            job = jobs.get_job(name=job_name)
        containers = job.template.template.containers
        if not containers:
            raise UserError(f"job {short_name(job_name)} has no container to set the image on")
        if containers[0].image != image:
            containers[0].image = image
            with gcp_errors(f"update job {short_name(job_name)} to {image}"):
                jobs.update_job(job=job).result(timeout=timeout_seconds)
    with gcp_errors(f"run job {short_name(job_name)}"):
        operation = jobs.run_job(name=job_name)
        execution_name = operation.metadata.name
    if not execution_name:
        raise OpsError(f"run job {short_name(job_name)}: the API returned no execution name")
    while True:
        with gcp_errors(f"read execution {short_name(execution_name)}"):
            execution = executions.get_execution(name=execution_name)
        if execution.completion_time:
            break
        if clock() - began >= timeout_seconds:
            raise OpsTimeoutError(
                f"migrate execution {short_name(execution_name)} still running after "
                f"{timeout_seconds:.0f} s; logs: {execution.log_uri or 'n/a'}"
            )
        sleep(poll_seconds)
    if execution.failed_count or execution.cancelled_count or not execution.succeeded_count:
        raise TaskFailedError(
            f"migrate execution {short_name(execution_name)} failed "
            f"({execution.failed_count} failed, {execution.cancelled_count} cancelled): "
            f"{_condition_text(execution.conditions)}; logs: {execution.log_uri or 'n/a'}"
        )
    return ExecutionResult(
        name=execution_name,
        succeeded=execution.succeeded_count,
        seconds=clock() - began,
        log_uri=execution.log_uri,
    )


# --- traffic ----------------------------------------------------------------------


def _revision_ready(revisions: run_v2.RevisionsClient, service_name: str, revision: str) -> None:
    full = f"{service_name}/revisions/{short_name(revision)}"
    with gcp_errors(f"read revision {short_name(revision)}"):
        found = revisions.get_revision(name=full)
    ready = [c for c in found.conditions if c.type_ == "Ready"]
    if not ready or ready[0].state != SUCCEEDED:
        why = (ready[0].message or ready[0].reason) if ready else "no Ready condition yet"
        raise RevisionNotReadyError(
            f"revision {short_name(revision)} is not ready: {why}; it will not get traffic "
            f"(logs: {found.log_uri or 'n/a'})"
        )


def current_split(service: run_v2.Service) -> list[tuple[str, int]]:
    """(revision, percent) actually serving, LATEST resolved to the latest ready revision."""
    statuses = list(service.traffic_statuses) or list(service.traffic)
    split: dict[str, int] = {}
    for status in statuses:
        if not status.percent:
            continue
        revision = status.revision
        if status.type_ == LATEST or not revision:
            revision = short_name(service.latest_ready_revision)
        split[revision] = split.get(revision, 0) + status.percent
    return sorted(split.items(), key=lambda item: -item[1])


def _targets(split: Sequence[tuple[str, int]]) -> list[run_v2.TrafficTarget]:
    return [
        run_v2.TrafficTarget(type_=REVISION, revision=revision, percent=percent)
        for revision, percent in split
        if percent > 0
    ]


def _apply(
    services: run_v2.ServicesClient,
    service_name: str,
    split: Sequence[tuple[str, int]],
    timeout_seconds: float,
) -> run_v2.Service:
    with gcp_errors(f"read service {short_name(service_name)}"):
        service = services.get_service(name=service_name)
    del service.traffic[:]
    service.traffic.extend(_targets(split))
    with gcp_errors(f"update traffic of {short_name(service_name)}"):
        return services.update_service(service=service).result(timeout=timeout_seconds)


def parse_steps(raw: str) -> list[int]:
    try:
        steps = [int(part) for part in raw.split(",") if part.strip()]
    except ValueError:
        raise UserError(
            f"--steps {raw!r} must be comma-separated percentages, e.g. 10,50,100"
        ) from None
    if not steps or steps != sorted(set(steps)) or steps[-1] != 100 or steps[0] <= 0:
        raise UserError(
            f"--steps {raw!r} must be strictly increasing percentages in 1..100 ending at 100"
        )
    return steps


@dataclass
class ShiftReport:
    service: str
    candidate: str
    previous: list[tuple[str, int]]
    applied_steps: list[int] = field(default_factory=list)
    rolled_back: bool = False


def shift_traffic(
    services: run_v2.ServicesClient,
    revisions: run_v2.RevisionsClient,
    service_name: str,
    steps: Sequence[int],
    health_check: HealthCheck,
    *,
    revision: str | None = None,
    bake_seconds: float = 60.0,
    timeout_seconds: float = 600.0,
    sleep: Sleep = time.sleep,
) -> ShiftReport:
    """Move traffic to ``revision`` (default: the newest created) step by step.

    After each step the service must stay ready for ``bake_seconds`` and ``health_check``
    must pass; otherwise the original split is restored and ``RolledBackError`` raised.
    """
    with gcp_errors(f"read service {short_name(service_name)}"):
        service = services.get_service(name=service_name)
    candidate = short_name(revision or service.latest_created_revision)
    if not candidate:
        raise UserError(f"service {short_name(service_name)} has no revision to shift to")
    _revision_ready(revisions, service_name, candidate)
    original = current_split(service)
    report = ShiftReport(service=service_name, candidate=candidate, previous=original)
    others = [(rev, pct) for rev, pct in original if rev != candidate]
    if not others:
        report.applied_steps.append(100)
        return report
    previous = others[0][0]
    for step in steps:
        split = [(candidate, step)] + ([(previous, 100 - step)] if step < 100 else [])
        try:
            updated = _apply(services, service_name, split, timeout_seconds)
            condition = updated.terminal_condition
            if condition.state == FAILED:
                raise RevisionNotReadyError(
                    f"service {short_name(service_name)} not ready at {step}%: "
                    f"{condition.message or condition.reason}"
                )
            if bake_seconds:
                sleep(bake_seconds)
            health_check()
        except OpsError as exc:
            _apply(services, service_name, original, timeout_seconds)
            report.rolled_back = True
            raise RolledBackError(
                f"rollout of {candidate} failed at {step}% ({exc}); traffic restored to "
                + ", ".join(f"{rev} {pct}%" for rev, pct in original)
            ) from None
        report.applied_steps.append(step)
    return report


def rollback_traffic(
    services: run_v2.ServicesClient,
    revisions: run_v2.RevisionsClient,
    service_name: str,
    *,
    to_revision: str | None = None,
    timeout_seconds: float = 600.0,
) -> tuple[list[tuple[str, int]], str]:
    """Send 100% to ``to_revision`` or the newest ready revision older than the one
    serving most traffic. Returns (split before, revision now serving)."""
    with gcp_errors(f"read service {short_name(service_name)}"):
        service = services.get_service(name=service_name)
    before = current_split(service)
    target = short_name(to_revision) if to_revision else ""
    if not target:
        serving = before[0][0] if before else short_name(service.latest_ready_revision)
        with gcp_errors(f"list revisions of {short_name(service_name)}"):
            listed = list(revisions.list_revisions(parent=service_name))
        listed.sort(key=lambda r: r.create_time, reverse=True)
        names = [short_name(r.name) for r in listed]
        if serving not in names:
            raise UserError(f"serving revision {serving} not found among the service's revisions")
        older = [
            r
            for r in listed[names.index(serving) + 1 :]
            if any(c.type_ == "Ready" and c.state == SUCCEEDED for c in r.conditions)
        ]
        if not older:
            raise UserError(
                f"no ready revision older than {serving} to roll back to; pass --to-revision"
            )
        target = short_name(older[0].name)
    _revision_ready(revisions, service_name, target)
    _apply(services, service_name, [(target, 100)], timeout_seconds)
    return before, target


def serving_splits(
    services: run_v2.ServicesClient, service_names: Sequence[str]
) -> dict[str, list[tuple[str, int]]]:
    """Service name -> the (revision, percent) split serving now."""
    splits = {}
    for name in service_names:
        with gcp_errors(f"read service {short_name(name)}"):
            service = services.get_service(name=name)
        splits[name] = current_split(service)
    return splits


def restore_splits(
    services: run_v2.ServicesClient,
    recorded: dict[str, list[tuple[str, int]]],
    *,
    timeout_seconds: float = 600.0,
) -> tuple[list[tuple[str, list[tuple[str, int]], list[tuple[str, int]]]], list[str]]:
    """Give each service back its recorded split where it differs.

    Returns ([(service, split before, restored split)], services left alone): after
    ``shift-traffic`` restored the split itself, nothing is changed.
    """
    changed = []
    unchanged = []
    for name, split in sorted(recorded.items()):
        now = serving_splits(services, [name])[name]
        if sorted(now) == sorted(split) or not split:
            unchanged.append(name)
            continue
        _apply(services, name, split, timeout_seconds)
        changed.append((name, now, split))
    return changed, unchanged


def verify_served_image(
    services: run_v2.ServicesClient,
    revisions: run_v2.RevisionsClient,
    service_name: str,
    image: str,
) -> list[str]:
    """Every revision with traffic runs ``image``; returns those revisions."""
    with gcp_errors(f"read service {short_name(service_name)}"):
        service = services.get_service(name=service_name)
    serving = [revision for revision, _ in current_split(service)]
    for revision in serving:
        with gcp_errors(f"read revision {revision}"):
            found = revisions.get_revision(name=f"{service_name}/revisions/{revision}")
        images = [c.image for c in found.containers]
        if image not in images:
            raise RevisionNotReadyError(
                f"{short_name(service_name)}: revision {revision} serves {', '.join(images)}, "
                f"not the deployed {image}"
            )
    return serving


def service_ready(services: run_v2.ServicesClient, service_name: str) -> str:
    """Raise unless the service's terminal condition is ready; returns its URI."""
    with gcp_errors(f"read service {short_name(service_name)}"):
        service = services.get_service(name=service_name)
    condition = service.terminal_condition
    if condition.state != SUCCEEDED:
        raise RevisionNotReadyError(
            f"service {short_name(service_name)} is not ready: "
            f"{condition.message or condition.reason or condition.state.name}"
        )
    return service.uri
