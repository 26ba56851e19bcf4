"""AWS operations with boto3: migrate task, smoke checks, ECS rollback, RDS drill, DLQ depth.

Functions take boto3 clients as arguments (the CLI builds them from the default
credential chain) and poll with an injectable ``sleep``/``clock`` so they are tested
against moto without waiting.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    TokenRetrievalError,
)

from groundwork.ops.errors import (
    MissingCredentialsError,
    OpsError,
    OpsTimeoutError,
    SmokeTestError,
    TaskFailedError,
    UserError,
)
from groundwork.ops.outputs import StackOutputs

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_ecs import ECSClient
    from mypy_boto3_elbv2 import ElasticLoadBalancingv2Client
    from mypy_boto3_rds import RDSClient

Sleep = Callable[[float], None]
Clock = Callable[[], float]

_CREDENTIAL_CODES = frozenset(
    {
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
    }
)
_ACCESS_CODES = frozenset({"AccessDenied", "AccessDeniedException", "UnauthorizedOperation"})

# Task-definition fields that RegisterTaskDefinition accepts back.
_REGISTERABLE = (
    "family",
    "taskRoleArn",
    "executionRoleArn",
    "networkMode",
    "containerDefinitions",
    "volumes",
    "placementConstraints",
    "requiresCompatibilities",
    "cpu",
    "memory",
    "pidMode",
    "ipcMode",
    "proxyConfiguration",
    "inferenceAccelerators",
    "ephemeralStorage",
    "runtimePlatform",
)


@contextmanager
def aws_errors(action: str) -> Iterator[None]:
    """Turn credential and permission failures into one actionable line."""
    try:
        yield
    except (NoCredentialsError, PartialCredentialsError, TokenRetrievalError):
        raise MissingCredentialsError(
            f"{action}: no AWS credentials found; in CI use aws-actions/configure-aws-credentials "
            "with the environment's role, locally `aws sso login` or set AWS_PROFILE"
        ) from None
    except NoRegionError:
        raise MissingCredentialsError(
            f"{action}: no AWS region; set AWS_REGION (the stack's `region` output)"
        ) from None
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        message = exc.response.get("Error", {}).get("Message", str(exc))
        if code in _CREDENTIAL_CODES:
            raise MissingCredentialsError(
                f"{action}: AWS rejected the credentials ({code}); refresh them and retry"
            ) from None
        if code in _ACCESS_CODES:
            raise UserError(
                f"{action}: access denied ({message}); the role needs this permission"
            ) from None
        raise OpsError(f"{action}: {code or 'error'}: {message}") from None
    except BotoCoreError as exc:
        raise OpsError(f"{action}: {exc}") from None


def cloudwatch_log_link(region: str, group: str, stream: str) -> str:
    """Console URL of one log stream (the console double-encodes with '$' for '%')."""

    def enc(value: str) -> str:
        return quote(quote(value, safe=""), safe="").replace("%", "$")

    return (
        f"https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}"
        f"#logsV2:log-groups/log-group/{enc(group)}/log-events/{enc(stream)}"
    )


def _region_of(arn: str) -> str:
    parts = arn.split(":")
    return parts[3] if len(parts) > 3 else ""


def _log_links(task_definition: dict[str, Any], task_arn: str) -> dict[str, str]:
    """Container name -> CloudWatch link of the stream the awslogs driver writes."""
    task_id = task_arn.rsplit("/", 1)[-1]
    links: dict[str, str] = {}
    for container in task_definition.get("containerDefinitions", []):
        config = container.get("logConfiguration") or {}
        options = config.get("options") or {}
        if config.get("logDriver") != "awslogs" or "awslogs-group" not in options:
            continue
        region = options.get("awslogs-region") or _region_of(task_arn)
        prefix = options.get("awslogs-stream-prefix")
        stream = f"{prefix}/{container['name']}/{task_id}" if prefix else task_id
        links[container["name"]] = cloudwatch_log_link(region, options["awslogs-group"], stream)
    return links


# --- migrate -------------------------------------------------------------------


@dataclass(frozen=True)
class StartedTask:
    cluster: str
    task_arn: str
    task_definition_arn: str
    log_links: dict[str, str]
    essential: frozenset[str]
    temporary_revision: bool
    label: str = "migrate"


@dataclass(frozen=True)
class TaskResult:
    task_arn: str
    exit_codes: dict[str, int | None]
    stopped_reason: str
    seconds: float
    log_links: dict[str, str] = field(default_factory=dict)


def _register_with_image(
    ecs: ECSClient, task_definition: dict[str, Any], image: str, tags: list[Any]
) -> dict[str, Any]:
    spec = {key: task_definition[key] for key in _REGISTERABLE if key in task_definition}
    spec["containerDefinitions"] = [
        {**container, "image": image} for container in task_definition["containerDefinitions"]
    ]
    if tags:
        spec["tags"] = tags
    return ecs.register_task_definition(**spec)["taskDefinition"]  # type: ignore[return-value]


def start_migrate_task(
    ecs: ECSClient, outputs: StackOutputs, *, image: str | None = None
) -> StartedTask:
    """Run the exported migrate task definition (optionally with a new image) on Fargate.

    ``image`` registers a one-off revision of the migrate family with that image, so the
    schema is migrated by the release about to be deployed *before* ``pulumi up`` lets
    its API revision take traffic.
    """
    cluster = outputs.string("cluster_name")
    task_definition_arn = outputs.string("migrate_task_definition_arn")
    subnets = outputs.strings("task_subnet_ids")
    security_groups = outputs.strings("task_security_group_ids")
    with aws_errors("describe the migrate task definition"):
        described = ecs.describe_task_definition(
            taskDefinition=task_definition_arn, include=["TAGS"]
        )
    definition: dict[str, Any] = dict(described["taskDefinition"])
    temporary = False
    if image:
        with aws_errors("register the migrate task definition with the new image"):
            definition = _register_with_image(
                ecs, definition, image, list(described.get("tags", []))
            )
        temporary = True
    run_arn = definition["taskDefinitionArn"]
    try:
        with aws_errors("run the migrate task"):
            response = ecs.run_task(
                cluster=cluster,
                taskDefinition=run_arn,
                count=1,
                launchType="FARGATE",
                startedBy="groundwork-ops-migrate",
                enableECSManagedTags=True,
                propagateTags="TASK_DEFINITION",
                networkConfiguration={
                    "awsvpcConfiguration": {
                        "subnets": subnets,
                        "securityGroups": security_groups,
                        # Private subnets reach ECR/Secrets Manager via NAT or endpoints.
                        "assignPublicIp": "DISABLED",
                    }
                },
            )
    except OpsError:
        if temporary:
            deregister_quietly(ecs, run_arn)
        raise
    failures = response.get("failures") or []
    tasks = response.get("tasks") or []
    if failures or not tasks:
        if temporary:
            deregister_quietly(ecs, run_arn)
        reasons = "; ".join(
            f"{item.get('arn', '?')}: {item.get('reason', '?')} {item.get('detail', '')}".strip()
            for item in failures
        )
        raise TaskFailedError(
            f"ECS did not start the migrate task: {reasons or 'no task returned'}"
        )
    task_arn = tasks[0]["taskArn"]
    essential = frozenset(
        c["name"] for c in definition["containerDefinitions"] if c.get("essential", True)
    )
    return StartedTask(
        cluster=cluster,
        task_arn=task_arn,
        task_definition_arn=run_arn,
        log_links=_log_links(definition, task_arn),
        essential=essential,
        temporary_revision=temporary,
    )


def deregister_quietly(ecs: ECSClient, task_definition_arn: str) -> None:
    """Remove the one-off migrate revision; failing to is not worth failing the deploy."""
    with suppress(ClientError):
        ecs.deregister_task_definition(taskDefinition=task_definition_arn)


def wait_for_task(
    ecs: ECSClient,
    started: StartedTask,
    *,
    timeout_seconds: float = 900.0,
    poll_seconds: float = 6.0,
    sleep: Sleep = time.sleep,
    clock: Clock = time.monotonic,
) -> TaskResult:
    """Poll until the task stops; raise ``TaskFailedError`` unless every essential container
    exited 0."""
    began = clock()
    task_id = started.task_arn.rsplit("/", 1)[-1]
    while True:
        with aws_errors("describe the migrate task"):
            described = ecs.describe_tasks(cluster=started.cluster, tasks=[started.task_arn])
        tasks = described.get("tasks") or []
        if not tasks:
            raise TaskFailedError(
                f"{started.label} task {task_id} vanished from cluster {started.cluster}"
            )
        task = tasks[0]
        if task.get("lastStatus") == "STOPPED":
            break
        if clock() - began >= timeout_seconds:
            raise OpsTimeoutError(
                f"{started.label} task {task_id} still {task.get('lastStatus')} after "
                f"{timeout_seconds:.0f} s; logs: {_first_link(started)}"
            )
        sleep(poll_seconds)
    exit_codes: dict[str, int | None] = {
        c["name"]: c.get("exitCode") for c in task.get("containers", [])
    }
    reason = task.get("stoppedReason", "") or "none given"
    result = TaskResult(
        task_arn=started.task_arn,
        exit_codes=exit_codes,
        stopped_reason=reason,
        seconds=clock() - began,
        log_links=started.log_links,
    )
    bad = {
        name: code
        for name, code in exit_codes.items()
        if (name in started.essential or not started.essential) and code != 0
    }
    if bad or not exit_codes:
        detail = (
            ", ".join(
                f"container {name} {'exited ' + str(code) if code is not None else 'never exited'}"
                for name, code in sorted(bad.items())
            )
            or "no container reported an exit code"
        )
        raise TaskFailedError(
            f"{started.label} task {task_id} failed: {detail}; stopped reason: {reason}; "
            f"logs: {_first_link(started)}"
        )
    return result


def _first_link(started: StartedTask) -> str:
    if not started.log_links:
        return "the task definition has no awslogs configuration"
    return next(iter(started.log_links.values()))


def run_migrate(
    ecs: ECSClient,
    outputs: StackOutputs,
    *,
    image: str | None = None,
    timeout_seconds: float = 900.0,
    poll_seconds: float = 6.0,
    sleep: Sleep = time.sleep,
    clock: Clock = time.monotonic,
) -> TaskResult:
    started = start_migrate_task(ecs, outputs, image=image)
    try:
        return wait_for_task(
            ecs,
            started,
            timeout_seconds=timeout_seconds,
            poll_seconds=poll_seconds,
            sleep=sleep,
            clock=clock,
        )
    finally:
        if started.temporary_revision:
            deregister_quietly(ecs, started.task_definition_arn)


# --- image: reuse what a previous attempt pushed -----------------------------------


def existing_image(ecr: Any, repository_url: str, tag: str) -> str | None:
    """``repository@sha256:...`` of ``tag`` when the repository already holds it.

    The stack's repositories have immutable tags: pushing a tag again is refused
    (PutImage: ImageTagAlreadyExistsException, or ImageAlreadyExistsException when the
    manifest is identical; https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_PutImage.html),
    so a re-run of a deploy deploys what the first attempt pushed under the commit's tag.
    """
    host, _, name = repository_url.partition("/")
    registry_id = host.split(".", 1)[0]
    try:
        with aws_errors(f"look up {name}:{tag} in ECR"):
            found = ecr.describe_images(
                registryId=registry_id, repositoryName=name, imageIds=[{"imageTag": tag}]
            )
    except OpsError as exc:
        if "ImageNotFoundException" in str(exc):
            return None
        raise
    details = found.get("imageDetails") or []
    if not details:
        return None
    return f"{repository_url}@{details[0]['imageDigest']}"


# --- one-off commands inside the VPC ----------------------------------------------


def run_service_command(
    ecs: ECSClient,
    cluster: str,
    service: str,
    command: list[str],
    *,
    timeout_seconds: float = 900.0,
    poll_seconds: float = 6.0,
    sleep: Sleep = time.sleep,
    clock: Clock = time.monotonic,
) -> TaskResult:
    """Run ``groundwork-app COMMAND`` once as a task of ``service``.

    Same task definition, subnets and security groups as the service's own tasks: the
    broker and the database accept connections from those security groups only (the
    migrate task may not reach the broker), and nothing outside the VPC reaches them.
    """
    with aws_errors(f"describe service {service}"):
        described = ecs.describe_services(cluster=cluster, services=[service])
    if not described.get("services"):
        raise UserError(f"service {service} not found in cluster {cluster}")
    svc = described["services"][0]
    network: dict[str, Any] = dict(
        (svc.get("networkConfiguration") or {}).get("awsvpcConfiguration") or {}
    )
    with aws_errors("describe the service's task definition"):
        definition: dict[str, Any] = dict(
            ecs.describe_task_definition(taskDefinition=svc["taskDefinition"])["taskDefinition"]
        )
    container = definition["containerDefinitions"][0]["name"]
    with aws_errors(f"run {' '.join(command)}"):
        response = ecs.run_task(
            cluster=cluster,
            taskDefinition=svc["taskDefinition"],
            count=1,
            launchType="FARGATE",
            startedBy="groundwork-ops",
            enableECSManagedTags=True,
            propagateTags="TASK_DEFINITION",
            overrides={"containerOverrides": [{"name": container, "command": command}]},
            networkConfiguration={
                "awsvpcConfiguration": {
                    "subnets": network.get("subnets", []),
                    "securityGroups": network.get("securityGroups", []),
                    "assignPublicIp": "DISABLED",
                }
            },
        )
    tasks = response.get("tasks") or []
    if response.get("failures") or not tasks:
        raise TaskFailedError(f"ECS did not start the task: {response.get('failures')}")
    task_arn = tasks[0]["taskArn"]
    started = StartedTask(
        cluster=cluster,
        task_arn=task_arn,
        task_definition_arn=svc["taskDefinition"],
        log_links=_log_links(definition, task_arn),
        essential=frozenset({container}),
        temporary_revision=False,
        label=" ".join(command),
    )
    return wait_for_task(
        ecs,
        started,
        timeout_seconds=timeout_seconds,
        poll_seconds=poll_seconds,
        sleep=sleep,
        clock=clock,
    )


# --- smoke: load balancer target health ------------------------------------------


@dataclass(frozen=True)
class TargetState:
    target_id: str
    state: str
    reason: str


def serving_target_group(elbv2: ElasticLoadBalancingv2Client, target_group_arn: str) -> str:
    """The API target group that takes production traffic now.

    With ECS blue/green the production listener rule forwards to two target groups and
    ECS moves the whole weight between them on every deployment, so the stack's
    exported group serves only every other release. Returns the group with the weight
    in a weighted rule that lists ``target_group_arn``; otherwise (rolling deployments,
    one group) ``target_group_arn`` itself.
    """
    with aws_errors("describe the API target group"):
        groups = elbv2.describe_target_groups(TargetGroupArns=[target_group_arn])
    for balancer in [arn for g in groups["TargetGroups"] for arn in g.get("LoadBalancerArns", [])]:
        with aws_errors("describe the load balancer's listeners and rules"):
            listeners = [
                listener["ListenerArn"]
                for page in elbv2.get_paginator("describe_listeners").paginate(
                    LoadBalancerArn=balancer
                )
                for listener in page.get("Listeners", [])
            ]
            rules = [
                rule for arn in listeners for rule in elbv2.describe_rules(ListenerArn=arn)["Rules"]
            ]
        for rule in rules:
            for action in rule.get("Actions", []):
                weights = {
                    group["TargetGroupArn"]: group.get("Weight", 1)
                    for group in action.get("ForwardConfig", {}).get("TargetGroups", [])
                }
                if len(weights) > 1 and target_group_arn in weights:
                    return max(sorted(weights), key=lambda arn: weights[arn])
    return target_group_arn


def target_health(
    elbv2: ElasticLoadBalancingv2Client,
    target_group_arn: str,
    *,
    timeout_seconds: float = 300.0,
    poll_seconds: float = 10.0,
    sleep: Sleep = time.sleep,
    clock: Clock = time.monotonic,
) -> list[TargetState]:
    """Wait until at least one target is healthy and none is unhealthy."""
    began = clock()
    while True:
        with aws_errors("describe the API target group health"):
            response = elbv2.describe_target_health(TargetGroupArn=target_group_arn)
        states = [
            TargetState(
                target_id=f"{d['Target']['Id']}:{d['Target'].get('Port', '')}",
                state=d.get("TargetHealth", {}).get("State", "unknown"),
                reason=d.get("TargetHealth", {}).get("Description")
                or d.get("TargetHealth", {}).get("Reason", ""),
            )
            for d in response.get("TargetHealthDescriptions", [])
        ]
        healthy = [s for s in states if s.state == "healthy"]
        unhealthy = [s for s in states if s.state == "unhealthy"]
        if healthy and not unhealthy:
            return states
        if clock() - began >= timeout_seconds:
            summary = ", ".join(f"{s.target_id} {s.state} ({s.reason})" for s in states)
            raise SmokeTestError(
                f"API target group not healthy after {timeout_seconds:.0f} s: "
                f"{summary or 'no registered targets'}"
            )
        sleep(poll_seconds)


def jwt_secret_from_secrets_manager(secretsmanager: Any, secret_arn: str) -> str:
    """The service's JWT signing secret (plain string or a JSON object with JWT_SECRET)."""
    with aws_errors("read the JWT secret from Secrets Manager"):
        value = secretsmanager.get_secret_value(SecretId=secret_arn)["SecretString"]
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        return str(value)
    if isinstance(parsed, dict):
        for key in ("JWT_SECRET", "jwt_secret", "value"):
            if isinstance(parsed.get(key), str):
                return str(parsed[key])
        raise UserError(f"secret {secret_arn} is a JSON object without a JWT_SECRET key")
    return str(value)


# --- rollback ---------------------------------------------------------------------


@dataclass(frozen=True)
class Rollback:
    service: str
    from_task_definition: str
    to_task_definition: str


def _family_and_revision(arn: str) -> tuple[str, int]:
    family, _, revision = arn.rsplit("/", 1)[-1].rpartition(":")
    return family, int(revision)


def previous_revision(ecs: ECSClient, current_arn: str) -> str:
    """The newest ACTIVE revision of the same family older than ``current_arn``."""
    family, revision = _family_and_revision(current_arn)
    with aws_errors(f"list task definition revisions of {family}"):
        paginator = ecs.get_paginator("list_task_definitions")
        arns = [
            arn
            for page in paginator.paginate(familyPrefix=family, status="ACTIVE", sort="DESC")
            for arn in page.get("taskDefinitionArns", [])
        ]
    older = sorted(
        (
            (rev, arn)
            for arn in arns
            for fam, rev in [_family_and_revision(arn)]
            if fam == family and rev < revision
        ),
        reverse=True,
    )
    if not older:
        raise UserError(
            f"no ACTIVE revision of {family} older than {revision}: nothing to roll back to "
            "(the stacks keep old revisions with skip_destroy; deregistered ones cannot be used)"
        )
    return older[0][1]


def rollback_services(
    ecs: ECSClient,
    cluster: str,
    services: list[str],
    *,
    wait: bool = True,
    timeout_seconds: float = 900.0,
    poll_seconds: float = 15.0,
    sleep: Sleep = time.sleep,
    clock: Clock = time.monotonic,
) -> list[Rollback]:
    """Point each service at its previous task definition revision and wait until stable."""
    with aws_errors("describe the ECS services"):
        described = ecs.describe_services(cluster=cluster, services=services)
    missing = [f.get("arn", "?") for f in described.get("failures", [])]
    if missing:
        raise UserError(f"services not found in cluster {cluster}: {', '.join(missing)}")
    plans = [
        Rollback(
            service=svc["serviceName"],
            from_task_definition=svc["taskDefinition"],
            to_task_definition=previous_revision(ecs, svc["taskDefinition"]),
        )
        for svc in described["services"]
    ]
    for plan in plans:
        with aws_errors(f"roll back service {plan.service}"):
            ecs.update_service(
                cluster=cluster, service=plan.service, taskDefinition=plan.to_task_definition
            )
    if wait:
        _wait_stable(
            ecs, cluster, [p.service for p in plans], timeout_seconds, poll_seconds, sleep, clock
        )
    return plans


def _wait_stable(
    ecs: ECSClient,
    cluster: str,
    services: list[str],
    timeout_seconds: float,
    poll_seconds: float,
    sleep: Sleep,
    clock: Clock,
) -> None:
    began = clock()
    while True:
        with aws_errors("describe the ECS services"):
            described = ecs.describe_services(cluster=cluster, services=services)
        pending = [
            svc["serviceName"]
            for svc in described["services"]
            if len(svc.get("deployments", [])) != 1
            or svc.get("runningCount", 0) != svc.get("desiredCount", 0)
        ]
        if not pending:
            return
        if clock() - began >= timeout_seconds:
            raise OpsTimeoutError(
                f"services not stable after {timeout_seconds:.0f} s: {', '.join(pending)}"
            )
        sleep(poll_seconds)


def serving_task_definitions(ecs: ECSClient, cluster: str, services: list[str]) -> dict[str, str]:
    """Service name -> the task definition it runs now (its PRIMARY deployment's)."""
    if not services:
        return {}
    with aws_errors("describe the ECS services"):
        described = ecs.describe_services(cluster=cluster, services=services)
    return {
        svc["serviceName"]: svc["taskDefinition"]
        for svc in described.get("services", [])
        if svc.get("status") == "ACTIVE"
    }


def restore_task_definitions(
    ecs: ECSClient,
    cluster: str,
    recorded: dict[str, str],
    *,
    wait: bool = True,
    timeout_seconds: float = 900.0,
    poll_seconds: float = 15.0,
    sleep: Sleep = time.sleep,
    clock: Clock = time.monotonic,
) -> tuple[list[Rollback], list[str]]:
    """Point each recorded service back at its recorded task definition, if it moved.

    Returns (services changed, services already serving their recorded revision): a
    service the deployment circuit breaker already rolled back is not touched.
    """
    now = serving_task_definitions(ecs, cluster, sorted(recorded))
    plans = [
        Rollback(service=name, from_task_definition=now[name], to_task_definition=arn)
        for name, arn in sorted(recorded.items())
        if name in now and now[name] != arn
    ]
    unchanged = sorted(name for name, arn in recorded.items() if now.get(name) == arn)
    for plan in plans:
        with aws_errors(f"roll back service {plan.service}"):
            ecs.update_service(
                cluster=cluster, service=plan.service, taskDefinition=plan.to_task_definition
            )
    if wait and plans:
        _wait_stable(
            ecs, cluster, [p.service for p in plans], timeout_seconds, poll_seconds, sleep, clock
        )
    return plans, unchanged


@dataclass(frozen=True)
class ServedImage:
    service: str
    task_definition: str
    images: tuple[str, ...]
    rollout_state: str


@dataclass(frozen=True)
class EcsRollback:
    """Why a service does not run the deployed image: what ECS itself reports."""

    service: str
    serving: str
    """The task definition the service runs now (``family:revision``)."""
    reason: str
    """The failed deployment's ``rolloutStateReason``, when ECS still lists it."""
    alarms: tuple[str, ...]
    """The service's deployment alarms in ALARM now or since the deploy began: ECS
    rolled back because of them."""

    def describe(self, image: str) -> str:
        if self.alarms:
            cause = f"its deployment alarm(s) {', '.join(self.alarms)} went to ALARM"
        else:
            cause = "of the deployment circuit breaker (tasks never became healthy)"
        detail = f" ({self.reason})" if self.reason else ""
        if image in self.serving:
            return f"{self.service}: its ECS deployment failed because {cause}{detail}"
        return (
            f"{self.service} runs {self.serving}, not the deployed {image}: ECS rolled it "
            f"back because {cause}{detail}"
        )

    def as_dict(self) -> dict[str, object]:
        return {
            "service": self.service,
            "serving": self.serving,
            "reason": self.reason,
            "alarms": list(self.alarms),
            "cause": "deployment-alarm" if self.alarms else "circuit-breaker",
        }


class EcsRolledBackError(SmokeTestError):
    """ECS rolled a service back on its own (circuit breaker or deployment alarm)."""

    def __init__(self, rollbacks: list[EcsRollback], image: str) -> None:
        self.rollbacks = rollbacks
        super().__init__("; ".join(r.describe(image) for r in rollbacks))


def _triggered_alarms(cloudwatch: Any, service: Any, since: float | None) -> list[str]:
    """The service's deployment alarms (``deploymentConfiguration.alarms``) in ALARM now,
    or that went to ALARM at or after ``since``: an alarm that fired, made ECS roll back
    and is OK again once the old tasks serve shows only in its history (a StateUpdate
    item whose HistoryData ``newState.stateValue`` is ALARM, DescribeAlarmHistory)."""
    config = service.get("deploymentConfiguration", {}).get("alarms", {})
    names = config.get("alarmNames", []) if config.get("enable") else []
    if cloudwatch is None or not names:
        return []
    with aws_errors("describe the deployment alarms"):
        found = cloudwatch.describe_alarms(AlarmNames=names, AlarmTypes=["MetricAlarm"])
    fired = {a["AlarmName"] for a in found.get("MetricAlarms", []) if a["StateValue"] == "ALARM"}
    if since is not None:
        for name in sorted(set(names) - fired):
            # Best effort: the diagnosis must not hide the rollback it explains.
            try:
                history = cloudwatch.describe_alarm_history(
                    AlarmName=name,
                    HistoryItemType="StateUpdate",
                    StartDate=datetime.fromtimestamp(since, UTC),
                )
            except (BotoCoreError, ClientError):
                continue
            for item in history.get("AlarmHistoryItems", []):
                with suppress(ValueError, KeyError, TypeError):
                    data = json.loads(item.get("HistoryData", "{}"))
                    if data["newState"]["stateValue"] == "ALARM":
                        fired.add(name)
    return sorted(fired)


def verify_served_image(
    ecs: ECSClient,
    cluster: str,
    services: list[str],
    image: str,
    *,
    cloudwatch: Any | None = None,
    since: float | None = None,
    timeout_seconds: float = 900.0,
    poll_seconds: float = 15.0,
    sleep: Sleep = time.sleep,
    clock: Clock = time.monotonic,
) -> list[ServedImage]:
    """Wait until every service's rollout ends, then insist it runs ``image``.

    With deployment alarms the rollout stays IN_PROGRESS through a bake time after the
    new tasks run; an alarm that fires in it fails the deployment and ECS promotes the
    previous deployment back to PRIMARY (deployment-alarm-failure.html). Either way the
    service ends up stable on the old task definition: ``EcsRolledBackError`` names the
    services and, given ``cloudwatch``, the alarms that fired (in ALARM now or since
    ``since``, epoch seconds).

    ``pulumi up`` waits for the API only; the ECS deployment circuit breaker can still
    fail the worker's or relay's rollout and roll it back to the previous task
    definition, after which the service is "stable" on the old release and nothing
    fails. The PRIMARY deployment's ``rolloutState`` (IN_PROGRESS / COMPLETED / FAILED,
    https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_Deployment.html) and
    the image of the task definition the service runs tell what really serves.
    """
    began = clock()
    while True:
        with aws_errors("describe the ECS services"):
            described = ecs.describe_services(cluster=cluster, services=services)
        missing = [f.get("arn", "?") for f in described.get("failures", [])]
        if missing:
            raise UserError(f"services not found in cluster {cluster}: {', '.join(missing)}")
        primaries: dict[str, Any] = {
            svc["serviceName"]: next(
                (d for d in svc.get("deployments", []) if d.get("status") == "PRIMARY"), {}
            )
            for svc in described["services"]
        }
        pending = sorted(
            name for name, d in primaries.items() if d.get("rolloutState") == "IN_PROGRESS"
        )
        if not pending:
            break
        if clock() - began >= timeout_seconds:
            raise OpsTimeoutError(
                f"rollout still in progress after {timeout_seconds:.0f} s: {', '.join(pending)}"
            )
        sleep(poll_seconds)
    served = []
    rollbacks = []
    for svc in described["services"]:
        with aws_errors(f"describe the task definition of {svc['serviceName']}"):
            definition = ecs.describe_task_definition(taskDefinition=svc["taskDefinition"])
        primary = primaries[svc["serviceName"]]
        served.append(
            ServedImage(
                service=svc["serviceName"],
                task_definition=svc["taskDefinition"],
                images=tuple(
                    c["image"] for c in definition["taskDefinition"]["containerDefinitions"]
                ),
                rollout_state=primary.get("rolloutState", "UNKNOWN"),
            )
        )
        failed = [d for d in svc.get("deployments", []) if d.get("rolloutState") == "FAILED"]
        if image in served[-1].images and primary.get("rolloutState") != "FAILED":
            continue
        rollbacks.append(
            EcsRollback(
                service=svc["serviceName"],
                serving=f"{', '.join(served[-1].images)} "
                f"({svc['taskDefinition'].rsplit('/', 1)[-1]})",
                reason=" ".join(d.get("rolloutStateReason", "") for d in failed).strip(),
                alarms=tuple(_triggered_alarms(cloudwatch, svc, since)),
            )
        )
    if rollbacks:
        raise EcsRolledBackError(rollbacks, image)
    return served


# --- RDS restore drill ------------------------------------------------------------


@dataclass
class DrillReport:
    source_instance: str
    snapshot_id: str
    restored_instance: str
    snapshot_seconds: float = 0.0
    restore_seconds: float = 0.0
    endpoint: str = ""
    deleted: bool = False

    @property
    def total_seconds(self) -> float:
        return self.snapshot_seconds + self.restore_seconds


def _wait_for(
    probe: Callable[[], str],
    wanted: str,
    what: str,
    timeout_seconds: float,
    poll_seconds: float,
    sleep: Sleep,
    clock: Clock,
) -> float:
    began = clock()
    while True:
        status = probe()
        if status == wanted:
            return clock() - began
        if status in ("failed", "incompatible-restore", "incompatible-parameters"):
            raise OpsError(f"{what} is {status}; see the RDS events for the reason")
        if clock() - began >= timeout_seconds:
            raise OpsTimeoutError(f"{what} still {status} after {timeout_seconds:.0f} s")
        sleep(poll_seconds)


def restore_drill(
    rds: RDSClient,
    instance_id: str,
    *,
    delete_after: bool = True,
    instance_class: str | None = None,
    timeout_seconds: float = 3600.0,
    poll_seconds: float = 30.0,
    sleep: Sleep = time.sleep,
    clock: Clock = time.monotonic,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> DrillReport:
    """Snapshot ``instance_id``, restore it to a new private instance, time both steps.

    The restored instance joins the source's subnet group and security groups, is never
    public and has no deletion protection so the drill can clean up after itself.
    """
    stamp = now().strftime("%Y%m%d%H%M%S")
    report = DrillReport(
        source_instance=instance_id,
        snapshot_id=f"{instance_id}-drill-{stamp}",
        restored_instance=f"{instance_id}-drill-{stamp}"[:63],
    )
    with aws_errors(f"describe RDS instance {instance_id}"):
        source = rds.describe_db_instances(DBInstanceIdentifier=instance_id)["DBInstances"][0]
    tags: list[Any] = [{"Key": "purpose", "Value": "restore-drill"}] + [
        t for t in source.get("TagList", []) if t.get("Key") != "purpose"
    ]
    with aws_errors("create the drill snapshot"):
        rds.create_db_snapshot(
            DBInstanceIdentifier=instance_id, DBSnapshotIdentifier=report.snapshot_id, Tags=tags
        )

    def snapshot_status() -> str:
        with aws_errors("describe the drill snapshot"):
            snaps = rds.describe_db_snapshots(DBSnapshotIdentifier=report.snapshot_id)
        return snaps["DBSnapshots"][0].get("Status", "unknown")

    report.snapshot_seconds = _wait_for(
        snapshot_status,
        "available",
        f"snapshot {report.snapshot_id}",
        timeout_seconds,
        poll_seconds,
        sleep,
        clock,
    )
    restore_args: dict[str, Any] = {
        "DBInstanceIdentifier": report.restored_instance,
        "DBSnapshotIdentifier": report.snapshot_id,
        "DBInstanceClass": instance_class or source["DBInstanceClass"],
        "PubliclyAccessible": False,
        "MultiAZ": False,
        "DeletionProtection": False,
        "CopyTagsToSnapshot": True,
        "Tags": tags,
        "VpcSecurityGroupIds": [
            g["VpcSecurityGroupId"] for g in source.get("VpcSecurityGroups", [])
        ],
    }
    subnet_group = (source.get("DBSubnetGroup") or {}).get("DBSubnetGroupName")
    if subnet_group:
        restore_args["DBSubnetGroupName"] = subnet_group
    with aws_errors("restore the drill snapshot to a new instance"):
        rds.restore_db_instance_from_db_snapshot(**restore_args)

    def instance_status() -> str:
        with aws_errors("describe the restored instance"):
            found = rds.describe_db_instances(DBInstanceIdentifier=report.restored_instance)
        instance = found["DBInstances"][0]
        report.endpoint = (instance.get("Endpoint") or {}).get("Address", "")
        return instance.get("DBInstanceStatus", "unknown")

    report.restore_seconds = _wait_for(
        instance_status,
        "available",
        f"restored instance {report.restored_instance}",
        timeout_seconds,
        poll_seconds,
        sleep,
        clock,
    )
    if delete_after:
        with aws_errors("delete the restored drill instance"):
            rds.delete_db_instance(
                DBInstanceIdentifier=report.restored_instance,
                SkipFinalSnapshot=True,
                DeleteAutomatedBackups=True,
            )
            rds.delete_db_snapshot(DBSnapshotIdentifier=report.snapshot_id)
        report.deleted = True
    return report


# --- DLQ depth --------------------------------------------------------------------


@dataclass(frozen=True)
class DlqReport:
    broker: str
    queue: str
    depth: int | None
    at: datetime | None


def dlq_depth(
    cloudwatch: CloudWatchClient,
    mq: Any,
    broker_id: str,
    queue: str = "jobs.dlq",
    *,
    virtual_host: str = "/",
    minutes: int = 15,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> DlqReport:
    """Latest ``AWS/AmazonMQ MessageCount`` of the dead-letter queue (RabbitMQ metrics are
    keyed by broker *name*, virtual host and queue)."""
    with aws_errors(f"describe Amazon MQ broker {broker_id}"):
        broker_name = mq.describe_broker(BrokerId=broker_id)["BrokerName"]
    end = now()
    with aws_errors("read the DLQ depth from CloudWatch"):
        stats = cloudwatch.get_metric_statistics(
            Namespace="AWS/AmazonMQ",
            MetricName="MessageCount",
            Dimensions=[
                {"Name": "Broker", "Value": broker_name},
                {"Name": "VirtualHost", "Value": virtual_host},
                {"Name": "Queue", "Value": queue},
            ],
            StartTime=end - timedelta(minutes=minutes),
            EndTime=end,
            Period=60,
            Statistics=["Maximum"],
        )
    points = sorted(stats.get("Datapoints", []), key=lambda p: p["Timestamp"])
    if not points:
        return DlqReport(broker=broker_name, queue=queue, depth=None, at=None)
    latest = points[-1]
    return DlqReport(
        broker=broker_name, queue=queue, depth=int(latest["Maximum"]), at=latest["Timestamp"]
    )


def sqs_dlq_depth(
    sqs: Any, dlq_url: str, now: Callable[[], datetime] = lambda: datetime.now(UTC)
) -> DlqReport:
    """Messages in the SQS dead-letter queue, read from the queue itself (visible +
    in flight + delayed): current, where CloudWatch's SQS metrics arrive each minute and
    stop for an idle queue. SQS calls the counts approximate (eventually consistent,
    "Amazon SQS message counts"); a parked message shows within about a minute."""
    with aws_errors(f"read the attributes of {dlq_url}"):
        attributes = sqs.get_queue_attributes(
            QueueUrl=dlq_url,
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            ],
        )["Attributes"]
    depth = sum(int(value) for value in attributes.values())
    return DlqReport(broker="sqs", queue=dlq_url.rsplit("/", 1)[-1], depth=depth, at=now())
