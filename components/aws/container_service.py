"""ContainerService: the service image on ECS Fargate (api, worker, relay, migrate).

A thin composer, as pulumi-awsx's FargateService composes a task definition and
terraform-aws-ecs splits cluster, service and container definition; the parts are small
components of their own (components/aws/ecs/, components/aws/autoscaling.py):

- ``ImageRepository``: the ECR repository (its KMS key) and the image, prebuilt and
  pinned by digest as CI deploys it, or built from ``services/app`` by pulumi-docker;
- ``EcsCluster``: the cluster with Container Insights and both Fargate providers;
- ``TaskLogs``: one log group per process;
- ``TaskRoles``: the execution role (pull, log, read exactly the injected secrets) and
  the application's task role; ``EcsInfrastructureRole`` (blue_green.py) for blue/green;
- ``FargateTaskDefinition``: one per process, secrets injected through ``secrets`` only;
- ``FargateService``: api behind the load balancer (rolling or blue/green), worker and
  relay without one;
- ``ServiceAutoscaling``: api on CPU and requests per task, workers on queue depth per
  running task (Amazon MQ's MessageCount, or SQS's ApproximateNumberOfMessagesVisible).

Each part is named like this component and keeps its children's names; every child that
moved here from this component aliases it (``components.args.moved_children``), so no
resource of a deployed stack is replaced (tests/test_urn_aliases.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from components.aws.autoscaling import ServiceAutoscaling, ServiceAutoscalingArgs
from components.aws.ecs.blue_green import (
    ECS_LOAD_BALANCER_POLICY,
    BlueGreenTraffic,
    DeploymentStrategy,
    EcsInfrastructureRole,
    EcsInfrastructureRoleArgs,
    blue_green_configuration,
    validate_bake_time,
)
from components.aws.ecs.cluster import EcsCluster, EcsClusterArgs
from components.aws.ecs.iam import TaskRoles, TaskRolesArgs, execution_policy
from components.aws.ecs.image import (
    ImageRepository,
    ImageRepositoryArgs,
    ImageSource,
    PrebuiltImage,
)
from components.aws.ecs.logs import TaskLogs, TaskLogsArgs
from components.aws.ecs.service import (
    SERVICES,
    FargateService,
    FargateServiceArgs,
    ServiceLoadBalancer,
)
from components.aws.ecs.sizes import (
    FARGATE_MEMORY_STEPS,
    ProcessSize,
    describe_memory_options,
    fargate_memory_options,
)
from components.aws.ecs.task_definition import (
    PROCESSES,
    RUN_AS,
    FargateTaskDefinition,
    FargateTaskDefinitionArgs,
    container_definition,
    task_volumes,
    validate_task_settings,
)
from components.source import source_fingerprint

__all__ = [
    "ECS_LOAD_BALANCER_POLICY",
    "FARGATE_MEMORY_STEPS",
    "PROCESSES",
    "RUN_AS",
    "SERVICES",
    "BlueGreenTraffic",
    "ContainerService",
    "ContainerServiceArgs",
    "DeploymentStrategy",
    "ImageSource",
    "PrebuiltImage",
    "ProcessSize",
    "blue_green_configuration",
    "container_definition",
    "describe_memory_options",
    "execution_policy",
    "fargate_memory_options",
    "source_fingerprint",
    "task_volumes",
]


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
        validate_task_settings(self.cpu_architecture, self.stop_timeout_seconds)
        self.api_deployment = DeploymentStrategy(self.api_deployment)
        if self.api_deployment is DeploymentStrategy.BLUE_GREEN and self.blue_green is None:
            raise ValueError(
                "api_deployment=blue-green needs blue_green (alternate target group and "
                "production listener rule, see Edge)"
            )
        if self.api_deployment is DeploymentStrategy.ROLLING and self.blue_green is not None:
            raise ValueError("blue_green is set but api_deployment is rolling: pick one")
        validate_bake_time(self.bake_time_minutes)
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

    def image_repository(self) -> ImageRepositoryArgs:
        """The ImageRepository part: the ECR repository and the image."""
        return ImageRepositoryArgs(
            image=self.image,
            customer_managed_key=self.repository_cmk,
            force_delete=self.repository_force_delete,
            protect=self.protect,
        )

    def task_logs(self) -> TaskLogsArgs:
        """The TaskLogs part: one log group per process."""
        return TaskLogsArgs(
            processes=PROCESSES,
            retention_days=self.log_retention_days,
            kms_key_arn=self.log_kms_key_arn,
            protect=self.protect,
        )


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
        # Each part is a child of this component; moved_children() in each aliases the
        # part's own children to their old place directly under this component.
        part = pulumi.ResourceOptions(parent=self)
        region = aws.get_region_output(opts=pulumi.InvokeOutputOptions(parent=self)).region

        image = ImageRepository(name, args.image_repository(), opts=part)
        self.repository_url = image.repository_url
        self.image_ref = image.image_ref

        cluster = EcsCluster(name, EcsClusterArgs(), opts=part)
        self.cluster_name = cluster.cluster_name

        logs = TaskLogs(name, args.task_logs(), opts=part)
        self.log_group_names = logs.log_group_names

        roles = TaskRoles(
            name,
            TaskRolesArgs(
                repository_arn=image.repository_arn,
                log_group_arns=[g.arn for g in logs.log_groups.values()],
                secret_arns=args.secret_arns,
                kms_key_arns=args.kms_key_arns,
                task_policy_statements=args.task_policy_statements,
                ecs_exec=args.ecs_exec,
            ),
            opts=part,
        )
        self.execution_role_arn = roles.execution_role_arn
        self.task_role_arn = roles.task_role_arn

        sizes = {"api": args.api, "worker": args.worker}
        task_definitions = {
            process: FargateTaskDefinition(
                f"{name}-{process}",
                FargateTaskDefinitionArgs(
                    process=process,
                    image=image.image_ref,
                    log_group_name=logs.log_group_names[process],
                    region=region,
                    execution_role_arn=roles.execution_role_arn,
                    task_role_arn=roles.task_role_arn,
                    size=sizes.get(process, ProcessSize()),
                    environment={**args.environment, **args.process_environment.get(process, {})},
                    secrets={
                        k: v
                        for k, v in args.secrets.items()
                        if process == "migrate" or k not in args.migrate_only_secrets
                    },
                    cpu_architecture=args.cpu_architecture,
                    container_port=args.container_port,
                    stop_timeout_seconds=args.stop_timeout_seconds,
                    ecs_exec=args.ecs_exec,
                ),
                opts=part,
            )
            for process in PROCESSES
        }
        self.task_definition_arns = {p: td.arn for p, td in task_definitions.items()}
        self.migrate_task_definition_arn = task_definitions["migrate"].arn
        self.task_subnet_ids = list(args.subnet_ids)
        self.migrate_security_group_ids = [args.security_group_ids["migrate"]]

        self.infrastructure_role_arn = None
        api_depends: list[pulumi.Resource] = []
        if args.blue_green is not None:
            infrastructure = EcsInfrastructureRole(name, EcsInfrastructureRoleArgs(), opts=part)
            self.infrastructure_role_arn = infrastructure.role_arn
            # ECS assumes the role as soon as the service exists.
            api_depends.append(infrastructure.attachment)
        desired = {"api": args.api.min_count, "worker": args.worker.min_count}
        spot = {"api": args.api_spot, "worker": args.worker_spot, "relay": args.relay_spot}
        services = {
            process: FargateService(
                f"{name}-{process}",
                FargateServiceArgs(
                    cluster_arn=cluster.cluster_arn,
                    task_definition_arn=task_definitions[process].arn,
                    subnet_ids=args.subnet_ids,
                    security_group_id=args.security_group_ids[process],
                    desired_count=desired.get(process, args.relay_count),
                    spot=spot[process],
                    # The relay keeps its fixed count; the others are autoscaled.
                    autoscaled=process != "relay",
                    ecs_exec=args.ecs_exec,
                    wait_for_steady_state=process == "api",
                    **(self._api(args) if process == "api" else {}),
                    depends_on=[
                        cluster.capacity_providers,
                        *(api_depends + list(args.depends_on) if process == "api" else ()),
                    ],
                ),
                opts=part,
            )
            for process in SERVICES
        }
        self.service_names = {p: s.service_name for p, s in services.items()}
        ServiceAutoscaling(
            name,
            ServiceAutoscalingArgs(
                service=args,
                cluster=cluster.cluster,
                services={p: s.service for p, s in services.items()},
            ),
            opts=part,
        )

        self.register_outputs(
            {
                "repository_url": self.repository_url,
                "cluster_name": self.cluster_name,
                "service_names": self.service_names,
                "migrate_task_definition_arn": self.migrate_task_definition_arn,
            }
        )

    def _api(self, args: ContainerServiceArgs) -> dict[str, Any]:
        """The API service's load balancer and the alarms that roll its deployments back."""
        return {
            "load_balancer": ServiceLoadBalancer(
                target_group_arn=args.target_group_arn,
                container_name="api",
                container_port=args.container_port,
                blue_green=args.blue_green,
                infrastructure_role_arn=self.infrastructure_role_arn,
                bake_time_minutes=args.bake_time_minutes,
            ),
            # ECS honours them in the rolling and the ECS blue/green strategy alike.
            "deployment_alarm_names": args.deployment_alarm_names,
        }
