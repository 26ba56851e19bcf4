"""ContainerService: the service image on ECS Fargate (api, worker, relay, migrate).

ECR repository and the image (a prebuilt reference pinned by digest, as CI deploys it,
or built from ``services/app`` by pulumi-docker and deployed by digest), an ECS cluster
with Container Insights, one task definition per process with secrets injected through
``secrets`` only, the api service behind the load balancer (rolling or blue/green),
worker and relay services without one, and autoscaling: api on CPU and requests per
task, workers on queue depth per running task (Amazon MQ's MessageCount, or SQS's
ApproximateNumberOfMessagesVisible with groundwork:queue = sqs).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import partial
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_docker as docker

from components.args import ArgError
from components.aws.autoscaling import ServiceAutoscaling, ServiceAutoscalingArgs
from components.aws.kms import EncryptionKey, EncryptionKeyArgs
from components.image_ref import ImageReference, require_in_repository
from components.source import source_fingerprint

PROCESSES = ("api", "worker", "relay", "migrate")
SERVICES = ("api", "worker", "relay")
RUN_AS = "10001:10001"
"""The uid/gid the image creates (services/app/Dockerfile); stated again so ECS enforces it."""
SCRATCH_VOLUME = ("tmp", "/tmp")  # noqa: S108
# The SSM agent that ECS Exec injects writes its state and logs under these paths; on a
# read-only root filesystem it crashes at start unless they are writable volumes
# (github.com/aws/containers-roadmap/issues/1359). Mounted only when ECS Exec is on.
ECS_EXEC_VOLUMES = (("ssm-state", "/var/lib/amazon"), ("ssm-logs", "/var/log/amazon"))


# AWS managed policy for the ECS infrastructure role of blue/green deployments:
# describe and modify listeners, rules and target groups, nothing else.
ECS_LOAD_BALANCER_POLICY = "AmazonECSInfrastructureRolePolicyForLoadBalancers"


def task_volumes(ecs_exec: bool) -> list[tuple[str, str]]:
    """(volume name, container path) of every writable bind mount of a task."""
    return [SCRATCH_VOLUME, *(ECS_EXEC_VOLUMES if ecs_exec else ())]


@dataclass
class ProcessSize:
    cpu: int = 256
    memory_mb: int = 512
    min_count: int = 1
    max_count: int = 3

    def validate(self, process: str) -> None:
        """The one check of a Fargate task size (``ArgError`` field ``<process>.cpu`` ...)."""
        allowed = fargate_memory_options(self.cpu)
        if not allowed:
            raise ArgError(
                f"{process}.cpu", self.cpu, f"Fargate allows one of {sorted(FARGATE_MEMORY_STEPS)}"
            )
        if self.memory_mb not in allowed:
            raise ArgError(
                f"{process}.memory_mb",
                self.memory_mb,
                f"Fargate allows {describe_memory_options(self.cpu)} with cpu={self.cpu}",
            )
        if self.min_count > self.max_count:
            raise ValueError(f"{process}: min_count {self.min_count} > max_count {self.max_count}")


# Fargate (Linux, platform 1.4.0) CPU units -> (lowest, highest, step) task memory in MiB.
# A value inside the range but off the step is refused by RegisterTaskDefinition.
FARGATE_MEMORY_STEPS = {
    256: (512, 2048, 0),  # 512, 1024 or 2048 only
    512: (1024, 4096, 1024),
    1024: (2048, 8192, 1024),
    2048: (4096, 16384, 1024),
    4096: (8192, 30720, 1024),
    8192: (16384, 61440, 4096),
    16384: (32768, 122880, 8192),
}


def fargate_memory_options(cpu: int) -> tuple[int, ...]:
    """Every task memory size (MiB) Fargate accepts with ``cpu`` units; empty if none."""
    if cpu not in FARGATE_MEMORY_STEPS:
        return ()
    low, high, step = FARGATE_MEMORY_STEPS[cpu]
    if step == 0:
        return (512, 1024, 2048)
    return tuple(range(low, high + 1, step))


def describe_memory_options(cpu: int) -> str:
    low, high, step = FARGATE_MEMORY_STEPS[cpu]
    if step == 0:
        return "512, 1024 or 2048"
    return f"{low} to {high} in steps of {step}"


@dataclass
class ImageSource:
    """Build ``context`` with pulumi-docker and push it to the stack's ECR repository."""

    context: str = "services/app"
    """Relative to the Pulumi project directory (where `pulumi up` runs)."""
    dockerfile: str = "services/app/Dockerfile"
    platform: str = "linux/amd64"
    tag: str | None = None
    """Immutable tag; None derives one from the build context's content."""
    build_args: dict[str, str] = field(default_factory=dict)


@dataclass
class PrebuiltImage:
    """Deploy exactly ``uri`` (``repo@sha256:...``, in this stack's ECR repository).

    Nothing is built: CI built the image once, pushed it and ran the migration with it,
    so the services must run those very bytes.
    """

    uri: ImageReference | str
    """Parsed once: the stack passes the ImageReference the settings already parsed."""

    reference: ImageReference = field(init=False)

    def __post_init__(self) -> None:
        self.reference = (
            self.uri if isinstance(self.uri, ImageReference) else ImageReference.parse(self.uri)
        )


class DeploymentStrategy(StrEnum):
    """How a new API task definition replaces the running one."""

    ROLLING = "rolling"
    """Tasks are replaced in place (100 % min healthy, 200 % max); the deployment circuit
    breaker rolls back a revision whose tasks never turn healthy."""
    BLUE_GREEN = "blue-green"
    """ECS starts a full set of new tasks behind the alternate target group, swaps the
    production listener rule to it once healthy, keeps the old set for the bake time
    and swaps back on failure (circuit breaker or a rollback alarm) or on demand."""


@dataclass
class BlueGreenTraffic:
    """The load balancer pieces ECS swaps during a blue/green deployment."""

    alternate_target_group_arn: pulumi.Input[str]
    alternate_target_group_arn_suffix: pulumi.Input[str]
    production_listener_rule_arn: pulumi.Input[str]
    """A listener RULE forwarding to both target groups: ECS shifts its weights."""
    test_listener_rule_arn: pulumi.Input[str] | None = None


@dataclass
class ContainerServiceArgs:
    vpc_id: pulumi.Input[str]
    subnet_ids: Sequence[pulumi.Input[str]]
    """Private subnets: tasks get no public IP and reach out through NAT/endpoints."""
    security_group_ids: Mapping[str, pulumi.Input[str]]
    """One per process in ``PROCESSES`` (see ServiceFirewall)."""
    target_group_arn: pulumi.Input[str]
    load_balancer_arn_suffix: pulumi.Input[str]
    target_group_arn_suffix: pulumi.Input[str]
    environment: Mapping[str, pulumi.Input[str]]
    """Plain configuration, identical for every process."""
    secrets: Mapping[str, pulumi.Input[str]]
    """Env name -> Secrets Manager ``valueFrom`` (ARN, ``ARN:json-key::`` for JSON)."""
    secret_arns: Sequence[pulumi.Input[str]]
    """The secrets above as plain ARNs: all the execution role may read."""
    kms_key_arns: Sequence[pulumi.Input[str]]
    """Keys those secrets are encrypted with."""
    broker_name: pulumi.Input[str] | None = None
    """The Amazon MQ broker the workers scale on; or ``sqs_queue_name``."""
    sqs_queue_name: pulumi.Input[str] | None = None
    """The SQS work queue the workers scale on (groundwork:queue = sqs)."""
    process_environment: Mapping[str, Mapping[str, pulumi.Input[str]]] = field(default_factory=dict)
    """Per-process values over ``environment`` (process -> name -> value), e.g. migrate's
    database user. Only names already in ``environment`` may be overridden."""
    migrate_only_secrets: frozenset[str] = frozenset()
    """Names in ``secrets`` injected into the migrate task alone (the master password)."""
    task_policy_statements: Sequence[pulumi.Input[Mapping[str, Any]]] = ()
    """IAM statements for the application's task role (e.g. ``rds-db:connect``, the SQS
    queues and their key)."""
    cpu_architecture: str = "X86_64"
    """X86_64 or ARM64 (Graviton: ~20 % cheaper per vCPU-hour). The image must be built
    for it (a multi-arch image from CI, or ImageSource.platform)."""
    api_spot: bool = False
    """Run the API on Fargate Spot (staging: an interruption restarts the task)."""
    relay_spot: bool = False
    """Run the relay on Fargate Spot (rows wait in the outbox while it restarts)."""
    image: ImageSource | PrebuiltImage = field(default_factory=ImageSource)
    """Build ``services/app`` here, or deploy a prebuilt image CI pushed (by digest)."""
    api: ProcessSize = field(default_factory=ProcessSize)
    worker: ProcessSize = field(default_factory=ProcessSize)
    relay_count: int = 1
    """Always-on outbox relays; several are safe (rows are claimed with SKIP LOCKED)."""
    container_port: int = 8000
    worker_spot: bool = False
    """Run workers on Fargate Spot (~70 % cheaper; interrupted tasks are re-queued)."""
    ecs_exec: bool = False
    """Shell access into tasks (ECS Exec). Convenient in staging, an audit finding in prod."""
    log_retention_days: int = 30
    log_kms_key_arn: pulumi.Input[str] | None = None
    repository_cmk: bool = True
    """Encrypt images with a customer-managed KMS key (rotated yearly, its use in
    CloudTrail) instead of ECR's default AES256 (S3-managed keys, no KMS key at all).
    Changing it replaces the repository (ECR fixes encryption at creation)."""
    repository_force_delete: bool = False
    """Let `pulumi destroy` delete an ECR repository that still holds images."""
    protect: bool = False
    """Pulumi ``protect`` + ``retain_on_delete`` on the image repository and the log groups."""
    stop_timeout_seconds: int = 30
    """SIGTERM-to-SIGKILL: the app drains within its 25 s SHUTDOWN_TIMEOUT_SECONDS."""
    api_cpu_target: float = 60.0
    api_requests_per_target: float = 500.0
    queue_name: str = "jobs"
    queue_vhost: str = "/"
    worker_backlog_per_task: float = 100.0
    """Target messages waiting per running worker task."""
    depends_on: Sequence[pulumi.Resource] = ()
    """The load balancer listener: ECS refuses a target group not attached to a listener."""
    api_deployment: DeploymentStrategy = DeploymentStrategy.ROLLING
    blue_green: BlueGreenTraffic | None = None
    """Required with ``BLUE_GREEN`` (the alternate target group and the listener rule)."""
    bake_time_minutes: int = 10
    """BLUE_GREEN: how long the old tasks stay ready for an instant swap back."""
    deployment_alarm_names: Sequence[str] = ()
    """CloudWatch alarms (by name: see alarms.deployment_alarm_names) that fail an API
    deployment and roll it back when one goes to ALARM during the rollout or its bake
    time; both the rolling and the ECS blue/green strategy honour them (the ECS
    deployment controller; CODE_DEPLOY would not)."""

    def __post_init__(self) -> None:
        if (self.broker_name is None) == (self.sqs_queue_name is None):
            raise ValueError("set exactly one of broker_name (Amazon MQ) and sqs_queue_name")
        if self.cpu_architecture not in ("X86_64", "ARM64"):
            raise ValueError(f"cpu_architecture={self.cpu_architecture!r}: X86_64 or ARM64")
        # ARM64 on Fargate Spot is allowed: "FARGATE_SPOT supports Linux tasks with the
        # ARM64 architecture on platform version 1.4.0 or later" (ECS API reference,
        # CapacityProviderStrategyItem; the same text in botocore's ecs service model).
        # The services run platform LATEST, which is 1.4.0 for Linux.
        self.api_deployment = DeploymentStrategy(self.api_deployment)
        if self.api_deployment is DeploymentStrategy.BLUE_GREEN and self.blue_green is None:
            raise ValueError(
                "api_deployment=blue-green needs blue_green (alternate target group and "
                "production listener rule, see PublicLoadBalancer)"
            )
        if self.api_deployment is DeploymentStrategy.ROLLING and self.blue_green is not None:
            raise ValueError("blue_green is set but api_deployment is rolling: pick one")
        if not 0 <= self.bake_time_minutes <= 1440:
            raise ValueError(f"bake_time_minutes={self.bake_time_minutes}: ECS allows 0 to 1440")
        missing = sorted(set(PROCESSES) - set(self.security_group_ids))
        if missing:
            raise ValueError(f"security_group_ids lacks {missing}")
        bad = [n for n in self.deployment_alarm_names if not 0 < len(n) <= 255]
        if bad or len(set(self.deployment_alarm_names)) != len(self.deployment_alarm_names):
            raise ValueError(
                f"deployment_alarm_names={list(self.deployment_alarm_names)!r}: distinct "
                "CloudWatch alarm names of 1 to 255 characters"
            )
        self.api.validate("api")
        self.worker.validate("worker")
        if self.worker.min_count < 1:
            raise ValueError(
                "worker min_count must be at least 1: queue-depth scaling divides the backlog "
                "by running workers, and with none the metric has no data to scale from"
            )
        if self.relay_count < 1:
            raise ValueError("relay_count must be at least 1: the outbox relay is always on")
        overlap = sorted(set(self.environment) & set(self.secrets))
        if overlap:
            raise ValueError(f"{overlap} are both plain environment and secrets")
        for process, values in self.process_environment.items():
            if process not in PROCESSES:
                raise ValueError(f"process_environment: unknown process {process!r}")
            unknown = sorted(set(values) - set(self.environment))
            if unknown:
                raise ValueError(f"process_environment[{process!r}]: {unknown} not in environment")
        unknown_secrets = sorted(self.migrate_only_secrets - set(self.secrets))
        if unknown_secrets:
            raise ValueError(f"migrate_only_secrets: {unknown_secrets} not in secrets")
        if not 2 <= self.stop_timeout_seconds <= 120:
            raise ValueError("stop_timeout_seconds: Fargate allows 2 to 120")


def _policy(statements: list[dict[str, object]]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": statements})


def _assume_ecs_tasks(account: str) -> str:
    return _policy(
        [
            {
                "Effect": "Allow",
                "Principal": {"Service": "ecs-tasks.amazonaws.com"},
                "Action": "sts:AssumeRole",
                # Only ECS tasks of this account may assume it (confused deputy).
                "Condition": {"StringEquals": {"aws:SourceAccount": account}},
            }
        ]
    )


def container_definition(
    process: str,
    image: str,
    environment: Mapping[str, str],
    secrets: Mapping[str, str],
    log_group: str,
    region: str,
    container_port: int,
    stop_timeout: int,
    ecs_exec: bool = False,
) -> dict[str, object]:
    """One container of ``process``: read-only root, non-root, secrets via ``secrets``."""
    definition: dict[str, object] = {
        "name": process,
        "image": image,
        "essential": True,
        "command": [process],
        "user": RUN_AS,
        "readonlyRootFilesystem": True,
        "stopTimeout": stop_timeout,
        "environment": [{"name": k, "value": environment[k]} for k in sorted(environment)],
        "secrets": [{"name": k, "valueFrom": secrets[k]} for k in sorted(secrets)],
        # The only writable paths: task-local bind mounts (the root filesystem is read-only).
        "mountPoints": [
            {"sourceVolume": volume, "containerPath": path, "readOnly": False}
            for volume, path in task_volumes(ecs_exec)
        ],
        "linuxParameters": {"initProcessEnabled": True, "capabilities": {"drop": ["ALL"]}},
        "logConfiguration": {
            "logDriver": "awslogs",
            "options": {
                "awslogs-group": log_group,
                "awslogs-region": region,
                "awslogs-stream-prefix": process,
                "mode": "non-blocking",
                "max-buffer-size": "4m",
            },
        },
    }
    if process == "api":
        definition["portMappings"] = [
            {"containerPort": container_port, "protocol": "tcp", "name": "http"}
        ]
    if process != "migrate":
        definition["healthCheck"] = {
            "command": ["CMD", "groundwork-app", "healthcheck", process],
            "interval": 15,
            "timeout": 5,
            "retries": 3,
            "startPeriod": 30,
        }
    return definition


class ContainerService(pulumi.ComponentResource):
    repository_url: pulumi.Output[str]
    image_ref: pulumi.Output[str]
    """``repo@sha256:...``: what every task definition runs."""
    cluster_name: pulumi.Output[str]
    service_names: dict[str, pulumi.Output[str]]
    task_definition_arns: dict[str, pulumi.Output[str]]
    migrate_task_definition_arn: pulumi.Output[str]
    log_group_names: dict[str, pulumi.Output[str]]
    task_subnet_ids: list[pulumi.Input[str]]
    migrate_security_group_ids: list[pulumi.Input[str]]
    execution_role_arn: pulumi.Output[str]
    task_role_arn: pulumi.Output[str]
    infrastructure_role_arn: pulumi.Output[str] | None
    """BLUE_GREEN only: the role ECS assumes to shift the listener rule's weights."""

    def __init__(
        self, name: str, args: ContainerServiceArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("groundwork:aws:ContainerService", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        invoke = pulumi.InvokeOutputOptions(parent=self)
        region = aws.get_region_output(opts=invoke).region
        account = aws.get_caller_identity_output(opts=invoke).account_id

        repository, image_ref = self._image(name, args)
        self.repository_url = repository.repository_url
        self.image_ref = image_ref

        cluster = aws.ecs.Cluster(
            f"{name}-cluster",
            settings=[{"name": "containerInsights", "value": "enhanced"}],
            opts=child,
        )
        providers = aws.ecs.ClusterCapacityProviders(
            f"{name}-capacity",
            cluster_name=cluster.name,
            capacity_providers=["FARGATE", "FARGATE_SPOT"],
            default_capacity_provider_strategies=[{"capacity_provider": "FARGATE", "weight": 1}],
            opts=child,
        )
        self.cluster_name = cluster.name

        log_groups = {
            process: aws.cloudwatch.LogGroup(
                f"{name}-{process}-logs",
                name=f"/ecs/{name}/{process}",
                retention_in_days=args.log_retention_days,
                kms_key_id=args.log_kms_key_arn,
                opts=pulumi.ResourceOptions(
                    parent=self, protect=args.protect, retain_on_delete=args.protect
                ),
            )
            for process in PROCESSES
        }
        self.log_group_names = {p: g.name for p, g in log_groups.items()}

        execution_role, task_role = self._roles(name, args, account, repository, log_groups)
        self.execution_role_arn = execution_role.arn
        self.task_role_arn = task_role.arn

        secrets_of = {
            process: pulumi.Output.all(
                **{
                    k: v
                    for k, v in args.secrets.items()
                    if process == "migrate" or k not in args.migrate_only_secrets
                }
            )
            for process in PROCESSES
        }
        sizes = {
            "api": args.api,
            "worker": args.worker,
            "relay": ProcessSize(),
            "migrate": ProcessSize(),
        }
        task_definitions: dict[str, aws.ecs.TaskDefinition] = {}
        for process in PROCESSES:
            environment = pulumi.Output.all(
                **{**args.environment, **args.process_environment.get(process, {})}
            )
            definitions = pulumi.Output.all(
                image_ref, environment, secrets_of[process], log_groups[process].name, region
            ).apply(partial(self._definitions, process, args))
            task_definitions[process] = aws.ecs.TaskDefinition(
                f"{name}-{process}",
                family=f"{name}-{process}",
                cpu=str(sizes[process].cpu),
                memory=str(sizes[process].memory_mb),
                network_mode="awsvpc",
                requires_compatibilities=["FARGATE"],
                runtime_platform={
                    "operating_system_family": "LINUX",
                    "cpu_architecture": args.cpu_architecture,
                },
                execution_role_arn=execution_role.arn,
                task_role_arn=task_role.arn,
                container_definitions=definitions,
                volumes=[{"name": volume} for volume, _ in task_volumes(args.ecs_exec)],
                # Keep each replaced revision ACTIVE: rolling back (ops rollback, the
                # deployment circuit breaker) runs a previous revision.
                skip_destroy=True,
                opts=child,
            )
        self.task_definition_arns = {p: td.arn for p, td in task_definitions.items()}
        self.migrate_task_definition_arn = task_definitions["migrate"].arn
        self.task_subnet_ids = list(args.subnet_ids)
        self.migrate_security_group_ids = [args.security_group_ids["migrate"]]

        self.infrastructure_role_arn = None
        services: dict[str, aws.ecs.Service] = {}
        for process in SERVICES:
            desired = {
                "api": args.api.min_count,
                "worker": args.worker.min_count,
                "relay": args.relay_count,
            }[process]
            spot = {"api": args.api_spot, "worker": args.worker_spot, "relay": args.relay_spot}[
                process
            ]
            extra: dict[str, Any] = {}
            depends: list[pulumi.Resource] = [providers]
            if process == "api":
                balancer: dict[str, Any] = {
                    "target_group_arn": args.target_group_arn,
                    "container_name": "api",
                    "container_port": args.container_port,
                }
                if args.blue_green is not None:
                    role, attachment = self._infrastructure_role(name)
                    self.infrastructure_role_arn = role.arn
                    balancer["advanced_configuration"] = blue_green_configuration(
                        args.blue_green, role.arn
                    )
                    extra["deployment_configuration"] = {
                        "strategy": "BLUE_GREEN",
                        "bake_time_in_minutes": str(args.bake_time_minutes),
                    }
                    # ECS assumes the role as soon as the service exists.
                    depends.append(attachment)
                extra["load_balancers"] = [balancer]
                if args.deployment_alarm_names:
                    # ECS reads the alarms when a deployment starts, not when the service
                    # is created, and can roll back only to a COMPLETED deployment
                    # (deployment-alarm-failure.html; aws/copilot-cli#4294 names alarms
                    # it creates after the service), so later-created alarms are fine.
                    # An alarm already in ALARM when a deployment starts is not watched
                    # for that deployment: a fix still ships.
                    extra["alarms"] = {
                        "alarm_names": list(args.deployment_alarm_names),
                        "enable": True,
                        "rollback": True,
                    }
                extra["health_check_grace_period_seconds"] = 60
                depends.extend(args.depends_on)
            services[process] = aws.ecs.Service(
                f"{name}-{process}",
                cluster=cluster.arn,
                task_definition=task_definitions[process].arn,
                desired_count=desired,
                capacity_provider_strategies=[
                    {"capacity_provider": "FARGATE_SPOT" if spot else "FARGATE", "weight": 1}
                ],
                platform_version="LATEST",
                network_configuration={
                    "subnets": list(args.subnet_ids),
                    "security_groups": [args.security_group_ids[process]],
                    "assign_public_ip": False,
                },
                deployment_circuit_breaker={"enable": True, "rollback": True},
                deployment_minimum_healthy_percent=100,
                deployment_maximum_percent=200,
                deployment_controller={"type": "ECS"},
                enable_execute_command=args.ecs_exec,
                enable_ecs_managed_tags=True,
                propagate_tags="SERVICE",
                wait_for_steady_state=process == "api",
                **extra,
                opts=pulumi.ResourceOptions(
                    parent=self,
                    depends_on=depends,
                    # Autoscaling owns the running count; a deploy must never reset it.
                    ignore_changes=["desiredCount"] if process != "relay" else None,
                ),
            )
        self.service_names = {p: s.name for p, s in services.items()}
        ServiceAutoscaling(
            name,
            ServiceAutoscalingArgs(service=args, cluster=cluster, services=services),
            opts=pulumi.ResourceOptions(parent=self),
        )

        self.register_outputs(
            {
                "repository_url": self.repository_url,
                "cluster_name": self.cluster_name,
                "service_names": self.service_names,
                "migrate_task_definition_arn": self.migrate_task_definition_arn,
            }
        )

    @staticmethod
    def _definitions(process: str, args: ContainerServiceArgs, a: list[Any]) -> str:
        image, environment, secrets, log_group, region = a
        return json.dumps(
            [
                container_definition(
                    process,
                    image,
                    environment,
                    secrets,
                    log_group,
                    region,
                    args.container_port,
                    args.stop_timeout_seconds,
                    args.ecs_exec,
                )
            ]
        )

    def _image(
        self, name: str, args: ContainerServiceArgs
    ) -> tuple[aws.ecr.Repository, pulumi.Output[str]]:
        child = pulumi.ResourceOptions(parent=self)
        # ECR creates a grant on the key with the deployer's permissions and decrypts
        # layers for pullers itself (encryption-at-rest.html): no key policy entry needed.
        key = (
            EncryptionKey(
                f"{name}-ecr-kms",
                # Kept whenever the images are (a destroy that keeps the repository's
                # images must keep the key that decrypts them).
                EncryptionKeyArgs(
                    description=f"{name}: container images",
                    protect=not args.repository_force_delete,
                ),
                opts=child,
            )
            if args.repository_cmk
            else None
        )
        repository = aws.ecr.Repository(
            f"{name}-repo",
            image_tag_mutability="IMMUTABLE",
            image_scanning_configuration={"scan_on_push": True},
            encryption_configurations=[
                {"encryption_type": "KMS", "kms_key": key.key_arn}
                if key is not None
                else {"encryption_type": "AES256"}
            ],
            force_delete=args.repository_force_delete,
            opts=pulumi.ResourceOptions(
                parent=self, protect=args.protect, retain_on_delete=args.protect
            ),
        )
        aws.ecr.LifecyclePolicy(
            f"{name}-repo-lifecycle",
            repository=repository.name,
            policy=json.dumps(
                {
                    "rules": [
                        {
                            "rulePriority": 1,
                            "description": "Drop untagged layers after a week",
                            "selection": {
                                "tagStatus": "untagged",
                                "countType": "sinceImagePushed",
                                "countUnit": "days",
                                "countNumber": 7,
                            },
                            "action": {"type": "expire"},
                        },
                        {
                            "rulePriority": 2,
                            "description": "Keep the 30 newest images (rollback window)",
                            "selection": {
                                "tagStatus": "any",
                                "countType": "imageCountMoreThan",
                                "countNumber": 30,
                            },
                            "action": {"type": "expire"},
                        },
                    ]
                }
            ),
            opts=child,
        )
        if isinstance(args.image, PrebuiltImage):
            reference = args.image.reference
            # Unknown on a first preview (no repository yet); known on every deploy CI
            # makes, since CI pushes to this very repository before `pulumi up`.
            return repository, repository.repository_url.apply(
                lambda url: require_in_repository(reference, url)
            )
        tag = args.image.tag or source_fingerprint(args.image.context)
        auth = aws.ecr.get_authorization_token_output(
            registry_id=repository.registry_id, opts=pulumi.InvokeOutputOptions(parent=self)
        )
        image = docker.Image(
            f"{name}-image",
            image_name=repository.repository_url.apply(lambda url: f"{url}:{tag}"),
            build={
                "context": args.image.context,
                "dockerfile": args.image.dockerfile,
                "platform": args.image.platform,
                "builder_version": docker.BuilderVersion.BUILDER_BUILD_KIT,
                "args": {"REVISION": tag, **args.image.build_args},
            },
            registry={
                "server": repository.repository_url,
                "username": auth.user_name,
                "password": pulumi.Output.secret(auth.password),
            },
            opts=child,
        )
        return repository, image.repo_digest

    def _roles(
        self,
        name: str,
        args: ContainerServiceArgs,
        account: pulumi.Output[str],
        repository: aws.ecr.Repository,
        log_groups: Mapping[str, aws.cloudwatch.LogGroup],
    ) -> tuple[aws.iam.Role, aws.iam.Role]:
        child = pulumi.ResourceOptions(parent=self)
        trust = account.apply(_assume_ecs_tasks)
        execution = aws.iam.Role(
            f"{name}-execution",
            description="ECS agent: pull the image, write logs, resolve the task's secrets",
            assume_role_policy=trust,
            opts=child,
        )
        aws.iam.RolePolicy(
            f"{name}-execution-policy",
            role=execution.id,
            policy=pulumi.Output.all(
                repository.arn,
                [g.arn for g in log_groups.values()],
                list(args.secret_arns),
                list(args.kms_key_arns),
            ).apply(lambda a: execution_policy(a[0], a[1], a[2], a[3])),
            opts=child,
        )
        task = aws.iam.Role(
            f"{name}-task",
            description="Application processes: no AWS permissions beyond what is listed",
            assume_role_policy=trust,
            opts=child,
        )
        if args.task_policy_statements:
            aws.iam.RolePolicy(
                f"{name}-task-policy",
                role=task.id,
                policy=pulumi.Output.all(*args.task_policy_statements).apply(
                    lambda statements: _policy(list(statements))
                ),
                opts=child,
            )
        if args.ecs_exec:
            aws.iam.RolePolicy(
                f"{name}-task-exec",
                role=task.id,
                policy=_policy(
                    [
                        {
                            "Sid": "EcsExecChannel",
                            "Effect": "Allow",
                            "Action": [
                                "ssmmessages:CreateControlChannel",
                                "ssmmessages:CreateDataChannel",
                                "ssmmessages:OpenControlChannel",
                                "ssmmessages:OpenDataChannel",
                            ],
                            "Resource": "*",
                        }
                    ]
                ),
                opts=child,
            )
        return execution, task

    def _infrastructure_role(self, name: str) -> tuple[aws.iam.Role, aws.iam.RolePolicyAttachment]:
        """The role ECS assumes to move the production listener rule between groups."""
        child = pulumi.ResourceOptions(parent=self)
        partition = aws.get_partition_output(opts=pulumi.InvokeOutputOptions(parent=self))
        role = aws.iam.Role(
            f"{name}-ecs-infra",
            description="ECS blue/green: shift the API listener rule between target groups",
            assume_role_policy=_policy(
                [
                    {
                        "Sid": "AllowAccessToECSForInfrastructureManagement",
                        "Effect": "Allow",
                        "Principal": {"Service": "ecs.amazonaws.com"},
                        "Action": "sts:AssumeRole",
                    }
                ]
            ),
            opts=child,
        )
        attachment = aws.iam.RolePolicyAttachment(
            f"{name}-ecs-infra-lb",
            role=role.name,
            policy_arn=partition.partition.apply(
                lambda p: f"arn:{p}:iam::aws:policy/{ECS_LOAD_BALANCER_POLICY}"
            ),
            opts=child,
        )
        return role, attachment


def blue_green_configuration(
    traffic: BlueGreenTraffic, role_arn: pulumi.Input[str]
) -> dict[str, Any]:
    """The load balancer's ``advanced_configuration`` for an ECS blue/green service."""
    config: dict[str, Any] = {
        "alternate_target_group_arn": traffic.alternate_target_group_arn,
        "production_listener_rule": traffic.production_listener_rule_arn,
        "role_arn": role_arn,
    }
    if traffic.test_listener_rule_arn is not None:
        config["test_listener_rule"] = traffic.test_listener_rule_arn
    return config


def execution_policy(
    repository_arn: str, log_group_arns: list[str], secret_arns: list[str], kms_arns: list[str]
) -> str:
    """Exactly what the ECS agent needs to start these tasks, nothing else."""
    return _policy(
        [
            {
                "Sid": "EcrLogin",
                "Effect": "Allow",
                "Action": "ecr:GetAuthorizationToken",
                "Resource": "*",
            },
            {
                "Sid": "PullImage",
                "Effect": "Allow",
                "Action": [
                    "ecr:BatchCheckLayerAvailability",
                    "ecr:BatchGetImage",
                    "ecr:GetDownloadUrlForLayer",
                ],
                "Resource": repository_arn,
            },
            {
                "Sid": "WriteLogs",
                "Effect": "Allow",
                "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": [f"{arn}:*" for arn in log_group_arns],
            },
            {
                "Sid": "ReadTaskSecrets",
                "Effect": "Allow",
                "Action": "secretsmanager:GetSecretValue",
                "Resource": sorted(set(secret_arns)),
            },
            # kms:Decrypt "only if your secret uses a customer managed key, not the default
            # key" (ECS Developer Guide, task execution IAM role, Secrets Manager); with
            # groundwork:cmek off there is none, and IAM refuses an empty Resource.
            *_decrypt(kms_arns),
        ]
    )


def _decrypt(kms_arns: list[str]) -> list[dict[str, object]]:
    if not kms_arns:
        return []
    return [
        {
            "Sid": "DecryptTaskSecrets",
            "Effect": "Allow",
            "Action": "kms:Decrypt",
            "Resource": sorted(set(kms_arns)),
        }
    ]
