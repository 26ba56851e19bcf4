"""``groundwork ops``: the commands the deploy workflow and on-call engineers run.

Each command reads the stack outputs, picks the cloud from the ``cloud`` output and
prints one line per result. Failures print one ``error:`` line, no traceback: exit
code 2 for user errors (credentials, outputs, arguments), 1 for failed operations.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import typer

from groundwork.ops.errors import OpsError, UserError
from groundwork.ops.outputs import StackOutputs, load_outputs
from groundwork.stack_outputs import SERVICE_NAME_OUTPUT

app = typer.Typer(
    name="ops",
    help="Operate a deployed stack: migrate, smoke test, roll back, restore drill, DLQ depth.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

P = ParamSpec("P")
R = TypeVar("R")

StackOpt = Annotated[
    str, typer.Option("--stack", "-s", help="Stack name, e.g. staging or production.")
]
OutputsOpt = Annotated[
    Path | None,
    typer.Option(
        "--outputs-file",
        help="JSON of `pulumi stack output --json` (default: ask the pulumi CLI).",
    ),
]
TimeoutOpt = Annotated[float, typer.Option("--timeout", help="Seconds to wait.", min=1)]
PollOpt = Annotated[float, typer.Option("--poll-seconds", help="Seconds between polls.", min=0)]
TOKEN_ENV = "GROUNDWORK_SMOKE_TOKEN"  # noqa: S105 - an env var name, not a secret
JWT_SECRET_ENV = "GROUNDWORK_SMOKE_JWT_SECRET"  # noqa: S105 - an env var name, not a secret
DEFAULT_ISSUER = "groundwork"
DEFAULT_AUDIENCE = "groundwork-api"


def _one_line_errors(func: Callable[P, R]) -> Callable[P, R]:
    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except OpsError as exc:
            message = " ".join(str(exc).split())
            typer.echo(f"error: {message}", err=True)
            raise typer.Exit(exc.exit_code) from None

    return wrapper


def _outputs(stack: str, outputs_file: Path | None) -> StackOutputs:
    return load_outputs(stack, outputs_file)


def _aws_session(outputs: StackOutputs) -> Any:
    import boto3

    return boto3.session.Session(region_name=outputs.string("region"))


def _gcp_clients() -> dict[str, Any]:
    from google.cloud import run_v2

    from groundwork.ops.gcp import gcp_errors

    with gcp_errors("create Cloud Run clients"):
        return {
            "services": run_v2.ServicesClient(),
            "revisions": run_v2.RevisionsClient(),
            "jobs": run_v2.JobsClient(),
            "executions": run_v2.ExecutionsClient(),
        }


def _emit(as_json: bool, payload: dict[str, Any], line: str) -> None:
    typer.echo(json.dumps(payload, default=str, sort_keys=True) if as_json else line)


@app.command()
@_one_line_errors
def migrate(
    stack: StackOpt,
    outputs_file: OutputsOpt = None,
    image: Annotated[
        str | None,
        typer.Option(help="Run the migration with this image (the release about to deploy)."),
    ] = None,
    timeout: TimeoutOpt = 900.0,
    poll_seconds: PollOpt = 6.0,
) -> None:
    """Run the one-off migrate task (ECS) / job (Cloud Run) and wait for its exit code."""
    outputs = _outputs(stack, outputs_file)
    if outputs.cloud == "aws":
        from groundwork.ops import aws

        ecs = _aws_session(outputs).client("ecs")
        result = aws.run_migrate(
            ecs, outputs, image=image, timeout_seconds=timeout, poll_seconds=poll_seconds
        )
        typer.echo(
            f"migrate task {result.task_arn.rsplit('/', 1)[-1]} succeeded in "
            f"{result.seconds:.0f} s (exit codes {result.exit_codes})"
        )
        return
    from groundwork.ops import gcp

    names = gcp.GcpNames.from_outputs(outputs)
    clients = _gcp_clients()
    execution = gcp.run_migrate_job(
        clients["jobs"],
        clients["executions"],
        names.job(outputs.string("migrate_job_name")),
        image=image,
        timeout_seconds=timeout,
        poll_seconds=poll_seconds,
    )
    typer.echo(
        f"migrate execution {gcp.short_name(execution.name)} succeeded in {execution.seconds:.0f} s"
    )


def _smoke_token(
    outputs: StackOutputs, token: str | None, jwt_secret_name: str, issuer: str, audience: str
) -> str | None:
    from groundwork.ops.smoke import mint_token

    if token:
        return token
    secret = os.environ.get(JWT_SECRET_ENV)
    if not secret and outputs.cloud == "aws":
        from groundwork.ops import aws

        arns = outputs.mapping("secret_arns")
        if jwt_secret_name not in arns:
            raise UserError(
                f"stack {outputs.stack!r} exports no secret_arns[{jwt_secret_name!r}] "
                f"(has: {', '.join(sorted(arns)) or 'none'}); pass --jwt-secret-name or --token"
            )
        secretsmanager = _aws_session(outputs).client("secretsmanager")
        secret = aws.jwt_secret_from_secrets_manager(secretsmanager, arns[jwt_secret_name])
    if not secret:
        return None
    return mint_token(secret, issuer=issuer, audience=audience)


@app.command()
@_one_line_errors
def smoke(
    stack: StackOpt,
    outputs_file: OutputsOpt = None,
    token: Annotated[
        str | None,
        typer.Option(envvar=TOKEN_ENV, help=f"Bearer token for the job round trip ({TOKEN_ENV})."),
    ] = None,
    jwt_secret_name: Annotated[
        str, typer.Option(help="Key of the JWT secret in the secret_arns output (AWS).")
    ] = "jwt-secret",  # noqa: S107 - a key name in the secret_arns output
    issuer: Annotated[
        str | None,
        typer.Option(help="JWT issuer the API expects (default: the jwt_issuer output)."),
    ] = None,
    audience: Annotated[
        str | None,
        typer.Option(help="JWT audience the API expects (default: the jwt_audience output)."),
    ] = None,
    base_url: Annotated[
        str | None, typer.Option(help="Override the api_url output (e.g. a tagged URL).")
    ] = None,
    skip_job: Annotated[
        bool, typer.Option("--skip-job", help="Only check readiness (no job round trip).")
    ] = False,
    timeout: TimeoutOpt = 300.0,
    poll_seconds: PollOpt = 5.0,
) -> None:
    """Load balancer / service readiness, GET /health/ready and a job round trip."""
    from groundwork.ops.smoke import http_smoke

    outputs = _outputs(stack, outputs_file)
    url = base_url or outputs.string("api_url")
    if outputs.cloud == "aws":
        from groundwork.ops import aws

        elbv2 = _aws_session(outputs).client("elbv2")
        states = aws.target_health(
            elbv2,
            # Blue/green alternates the serving group; rolling has only the exported one.
            aws.serving_target_group(elbv2, outputs.string("api_target_group_arn")),
            timeout_seconds=timeout,
            poll_seconds=poll_seconds,
        )
        healthy = sum(1 for s in states if s.state == "healthy")
        typer.echo(f"target group: {healthy}/{len(states)} targets healthy")
    else:
        from groundwork.ops import gcp

        names = gcp.GcpNames.from_outputs(outputs)
        services = _gcp_clients()["services"]
        gcp.service_ready(services, names.service(outputs.string("api_service_name")))
        typer.echo("cloud run: api service ready")
    bearer = None
    if not skip_job:
        # The stacks export what they inject (JWT_ISSUER/JWT_AUDIENCE follow
        # groundwork:service); the fallbacks are the service's own defaults.
        issuer = issuer or str(outputs.values.get("jwt_issuer") or DEFAULT_ISSUER)
        audience = audience or str(outputs.values.get("jwt_audience") or DEFAULT_AUDIENCE)
        bearer = _smoke_token(outputs, token, jwt_secret_name, issuer, audience)
        if bearer is None:
            raise UserError(
                f"no token for the job round trip: pass --token / {TOKEN_ENV}, set "
                f"{JWT_SECRET_ENV}, or --skip-job to check readiness only"
            )
    report = http_smoke(url, bearer, job_timeout_seconds=timeout, poll_seconds=poll_seconds)
    typer.echo(f"smoke test passed against {url}: " + "; ".join(report.checks))


@app.command()
@_one_line_errors
def rollback(
    stack: StackOpt,
    outputs_file: OutputsOpt = None,
    services: Annotated[
        str, typer.Option(help="Comma-separated processes to roll back.")
    ] = "api,worker,relay",
    to_revision: Annotated[
        str | None, typer.Option(help="Cloud Run revision to send 100% to (one service only).")
    ] = None,
    record: Annotated[
        Path | None,
        typer.Option(
            "--record",
            help="Return exactly to this release record (`ops record-release`); services "
            "already serving their recorded revision are left alone.",
        ),
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait/--no-wait", help="ECS: wait until the services are stable.")
    ] = True,
    timeout: TimeoutOpt = 900.0,
    github_output: GithubOutputOpt = None,
) -> None:
    """Return services to what served before a deploy (--record) or one revision back."""
    if record is not None:
        _rollback_to_record(stack, record, wait=wait, timeout=timeout, out=github_output)
        return
    outputs = _outputs(stack, outputs_file)
    wanted = [name.strip() for name in services.split(",") if name.strip()]
    unknown = sorted(set(wanted) - set(SERVICE_NAME_OUTPUT))
    if unknown or not wanted:
        raise UserError(f"--services takes api, worker, relay; got {services!r}")
    service_names = [outputs.string(SERVICE_NAME_OUTPUT[name]) for name in wanted]
    if outputs.cloud == "aws":
        from groundwork.ops import aws

        if to_revision:
            raise UserError("--to-revision is for Cloud Run; ECS rolls back one revision")
        ecs = _aws_session(outputs).client("ecs")
        plans = aws.rollback_services(
            ecs,
            outputs.string("cluster_name"),
            service_names,
            wait=wait,
            timeout_seconds=timeout,
        )
        for plan in plans:
            typer.echo(
                f"{plan.service}: {plan.from_task_definition.rsplit('/', 1)[-1]} -> "
                f"{plan.to_task_definition.rsplit('/', 1)[-1]}"
            )
        return
    from groundwork.ops import gcp

    if to_revision and len(service_names) != 1:
        raise UserError("--to-revision needs exactly one service, e.g. --services api")
    names = gcp.GcpNames.from_outputs(outputs)
    clients = _gcp_clients()
    for name in service_names:
        before, target = gcp.rollback_traffic(
            clients["services"],
            clients["revisions"],
            names.service(name),
            to_revision=to_revision,
            timeout_seconds=timeout,
        )
        was = ", ".join(f"{rev} {pct}%" for rev, pct in before)
        typer.echo(f"{name}: {was} -> {target} 100%")


@app.command("shift-traffic")
@_one_line_errors
def shift_traffic(
    stack: StackOpt,
    outputs_file: OutputsOpt = None,
    steps: Annotated[str, typer.Option(help="Canary percentages, ending at 100.")] = "10,50,100",
    revision: Annotated[
        str | None, typer.Option(help="Revision to promote (default: the newest created).")
    ] = None,
    bake_seconds: Annotated[
        float, typer.Option(help="Seconds to wait at each step before checking.", min=0)
    ] = 60.0,
    checks: Annotated[int, typer.Option(help="Readiness requests per step.", min=1)] = 5,
    max_error_ratio: Annotated[
        float | None,
        typer.Option(
            help="Roll back when the candidate's 5xx ratio (Cloud Monitoring) exceeds this "
            "(default: the api-5xx-ratio alert's threshold); metrics lag up to ~3 min, so "
            "the gate bites with --bake-seconds 180 or more.",
            min=0.0,
            max=1.0,
        ),
    ] = None,
    metric_gate: Annotated[
        bool, typer.Option("--metric-gate/--no-metric-gate", help="Check the 5xx ratio.")
    ] = True,
    timeout: TimeoutOpt = 600.0,
) -> None:
    """Cloud Run: move API traffic to a new revision gradually, rolling back on failure."""
    import httpx

    from groundwork.ops import gcp, gcp_metrics
    from groundwork.ops.smoke import check_ready

    outputs = _outputs(stack, outputs_file)
    names = gcp.GcpNames.from_outputs(outputs)
    parsed = gcp.parse_steps(steps)
    url = outputs.string("api_url")
    clients = _gcp_clients()
    service_name = names.service(outputs.string("api_service_name"))
    if max_error_ratio is None:
        from components.gcp.alarms import Thresholds

        max_error_ratio = Thresholds().error_ratio
    get = gcp_metrics.authorized_getter() if metric_gate else None
    with gcp.gcp_errors("read the API service"):
        candidate = gcp.short_name(
            revision or clients["services"].get_service(name=service_name).latest_created_revision
        )

    def health() -> None:
        with httpx.Client(timeout=httpx.Timeout(10.0)) as client:
            for _ in range(checks):
                check_ready(client, url)
        if get is not None and max_error_ratio is not None:
            measured = gcp_metrics.revision_errors(
                get,
                names.project,
                gcp.short_name(service_name),
                candidate,
                window_seconds=max(int(bake_seconds), 60),
            )
            gcp_metrics.check_error_ratio(measured, max_error_ratio)

    report = gcp.shift_traffic(
        clients["services"],
        clients["revisions"],
        service_name,
        parsed,
        health,
        revision=candidate,
        bake_seconds=bake_seconds,
        timeout_seconds=timeout,
    )
    typer.echo(
        f"{report.candidate} now serves 100% (steps {', '.join(map(str, report.applied_steps))})"
    )


@app.command("restore-drill")
@_one_line_errors
def restore_drill(
    stack: StackOpt,
    outputs_file: OutputsOpt = None,
    keep: Annotated[
        bool, typer.Option("--keep", help="Keep the restored instance and snapshot.")
    ] = False,
    instance_class: Annotated[
        str | None, typer.Option(help="Instance class of the restored copy (default: same).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    timeout: TimeoutOpt = 3600.0,
) -> None:
    """AWS: snapshot the database, restore it to a new instance and report the timings."""
    from groundwork.ops import aws

    outputs = _outputs(stack, outputs_file).expect_cloud("aws")
    rds = _aws_session(outputs).client("rds")
    report = aws.restore_drill(
        rds,
        outputs.string("db_instance_identifier"),
        delete_after=not keep,
        instance_class=instance_class,
        timeout_seconds=timeout,
    )
    payload = {**asdict(report), "total_seconds": report.total_seconds}
    _emit(
        as_json,
        payload,
        f"restore drill: snapshot {report.snapshot_id} in {report.snapshot_seconds:.0f} s, "
        f"restored {report.restored_instance} in {report.restore_seconds:.0f} s "
        f"(total {report.total_seconds:.0f} s)"
        + ("; cleaned up" if report.deleted else f"; kept at {report.endpoint or 'n/a'}"),
    )


@app.command("dlq-depth")
@_one_line_errors
def dlq_depth(
    stack: StackOpt,
    outputs_file: OutputsOpt = None,
    max_depth: Annotated[
        int | None, typer.Option("--max", help="Exit 1 when the DLQ holds more messages.")
    ] = None,
    minutes: Annotated[int, typer.Option(help="Look-back window.", min=1, max=1440)] = 15,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """AWS: messages waiting in the dead-letter queue (SQS: the queue's own counts;
    Amazon MQ: CloudWatch AWS/AmazonMQ)."""
    from groundwork.ops import aws

    outputs = _outputs(stack, outputs_file).expect_cloud("aws")
    session = _aws_session(outputs)
    if outputs.values.get("dlq_url"):
        report = aws.sqs_dlq_depth(session.client("sqs"), outputs.string("dlq_url"))
    else:
        queue = outputs.values.get("dlq_name") or "jobs.dlq"
        report = aws.dlq_depth(
            session.client("cloudwatch"),
            session.client("mq"),
            outputs.string("broker_id"),
            str(queue),
            minutes=minutes,
        )
    shown = "no datapoint" if report.depth is None else str(report.depth)
    _emit(
        as_json,
        asdict(report),
        f"{report.queue} on {report.broker}: {shown} message(s) (last {minutes} min)",
    )
    if max_depth is not None and report.depth is not None and report.depth > max_depth:
        raise OpsError(f"{report.queue} holds {report.depth} messages (> --max {max_depth})")


GithubOutputOpt = Annotated[
    Path | None,
    typer.Option(
        "--github-output",
        help='Also append key=value step outputs to this file (in a workflow: "$GITHUB_OUTPUT").',
    ),
]


def _github_output(values: dict[str, str], path: Path | None = None) -> None:
    """key=value lines (single-line values) on stdout, and into $GITHUB_OUTPUT if given."""
    lines = "".join(f"{key}={value}\n" for key, value in values.items())
    typer.echo(lines, nl=False)
    if path is not None:
        with path.open("a", encoding="utf-8") as handle:
            handle.write(lines)


@app.command("record-release")
@_one_line_errors
def record_release(
    stack: StackOpt,
    out: Annotated[Path, typer.Option("--out", help="Where to write the release record.")],
    outputs_file: OutputsOpt = None,
    github_output: GithubOutputOpt = None,
) -> None:
    """Record what serves now (before a deploy): the rollback returns to exactly this.

    Prints first_deploy=true|false for $GITHUB_OUTPUT; a human summary goes to stderr.
    """
    from groundwork.ops.release import ReleaseRecord, is_first_deploy, service_names

    outputs = _outputs(stack, outputs_file)
    first = is_first_deploy(outputs)
    cloud = str(outputs.values.get("cloud") or "")
    record = ReleaseRecord(
        stack=stack,
        cloud=cloud,
        first_deploy=first,
        region=str(outputs.values.get("region") or ""),
        cluster=str(outputs.values.get("cluster_name") or ""),
    )
    names = [] if first else service_names(outputs)
    if names and cloud == "aws":
        from groundwork.ops import aws

        ecs = _aws_session(outputs).client("ecs")
        record.aws_task_definitions = aws.serving_task_definitions(
            ecs, outputs.string("cluster_name"), names
        )
    elif names and cloud == "gcp":
        from groundwork.ops import gcp

        gcp_names = gcp.GcpNames.from_outputs(outputs)
        record.gcp_traffic = gcp.serving_splits(
            _gcp_clients()["services"], [gcp_names.service(name) for name in names]
        )
    record.write(out)
    serving = record.aws_task_definitions or {
        name: ", ".join(f"{rev} {pct}%" for rev, pct in split)
        for name, split in record.gcp_traffic.items()
    }
    summary = "; ".join(f"{name.rsplit('/', 1)[-1]}: {what}" for name, what in serving.items())
    typer.echo(
        f"{stack}: " + ("first deploy, nothing serves yet" if first else summary or "no services"),
        err=True,
    )
    _github_output({"first_deploy": str(first).lower(), "recorded": "true"}, github_output)


def _rollback_to_record(
    stack: str, path: Path, *, wait: bool, timeout: float, out: Path | None
) -> None:
    from groundwork.ops.release import ReleaseRecord

    record = ReleaseRecord.read(path)
    if record.stack != stack:
        raise UserError(f"release record {path} is for stack {record.stack!r}, not {stack!r}")
    if record.first_deploy or record.empty:
        typer.echo(f"{stack}: nothing served before this deploy; nothing to roll back to")
        _github_output({"restored": "false"}, out)
        return
    if record.cloud == "aws":
        import boto3

        from groundwork.ops import aws

        ecs = boto3.session.Session(region_name=record.region).client("ecs")
        plans, unchanged = aws.restore_task_definitions(
            ecs, record.cluster, record.aws_task_definitions, wait=wait, timeout_seconds=timeout
        )
        for plan in plans:
            typer.echo(
                f"{plan.service}: {plan.from_task_definition.rsplit('/', 1)[-1]} -> "
                f"{plan.to_task_definition.rsplit('/', 1)[-1]}"
            )
        for name in unchanged:
            typer.echo(f"{name}: already serves its pre-deploy revision; unchanged")
        _github_output({"restored": str(bool(plans)).lower()}, out)
        return
    from groundwork.ops import gcp

    changed, kept = gcp.restore_splits(
        _gcp_clients()["services"], record.gcp_traffic, timeout_seconds=timeout
    )
    for name, before, after in changed:
        was = ", ".join(f"{rev} {pct}%" for rev, pct in before)
        now = ", ".join(f"{rev} {pct}%" for rev, pct in after)
        typer.echo(f"{gcp.short_name(name)}: {was} -> {now}")
    for name in kept:
        typer.echo(f"{gcp.short_name(name)}: already serves its pre-deploy split; unchanged")
    _github_output({"restored": str(bool(changed)).lower()}, out)


CloudOpt = Annotated[
    str,
    typer.Option("--cloud", help="aws | gcp (vars.GROUNDWORK_CLOUD; a new stack exports none)."),
]


@app.command()
@_one_line_errors
def registry(
    stack: StackOpt,
    cloud: CloudOpt,
    outputs_file: OutputsOpt = None,
    create: Annotated[
        bool,
        typer.Option(
            "--create",
            help="First deploy: create the registry alone (targeted `pulumi up` of it and "
            "its parent component) when the stack has none.",
        ),
    ] = False,
    github_output: GithubOutputOpt = None,
) -> None:
    """Print repository=<where to push> (and created=true|false) for $GITHUB_OUTPUT."""
    from groundwork.ops.registry import ensure_registry

    outputs = _outputs(stack, outputs_file)
    repository, created = ensure_registry(outputs, cloud, create=create)
    if created:
        typer.echo(f"{stack}: created the image registry {repository}", err=True)
    _github_output({"repository": repository, "created": str(created).lower()}, github_output)


@app.command("existing-image")
@_one_line_errors
def existing_image(
    repository: Annotated[str, typer.Option(help="ECR repository URL (ACCOUNT.dkr.ecr...).")],
    tag: Annotated[str, typer.Option(help="Image tag, e.g. the commit SHA.")],
) -> None:
    """AWS: print repository@sha256:... when the tag was pushed already (else nothing)."""
    import boto3

    from groundwork.ops import aws

    host = repository.split("/", 1)[0].split(".")
    if len(host) < 4 or host[1:3] != ["dkr", "ecr"]:
        raise UserError(f"--repository {repository!r} is not an ECR repository URL")
    ecr = boto3.session.Session(region_name=host[3]).client("ecr")
    found = aws.existing_image(ecr, repository, tag)
    if found:
        typer.echo(found)


@app.command()
@_one_line_errors
def verify(
    stack: StackOpt,
    image: Annotated[str, typer.Option(help="The image this deploy shipped (repo@sha256:...).")],
    outputs_file: OutputsOpt = None,
    timeout: TimeoutOpt = 900.0,
    poll_seconds: PollOpt = 15.0,
    since: Annotated[
        float | None,
        typer.Option(
            help="AWS: when the deploy began (epoch seconds): a deployment alarm that went "
            "to ALARM after it and is OK again still counts."
        ),
    ] = None,
    report: Annotated[
        Path | None,
        typer.Option(help="AWS: write what ECS rolled back and why (JSON) to this file."),
    ] = None,
) -> None:
    """After `pulumi up`: every service runs IMAGE (fails after an ECS rollback by the
    circuit breaker or a deployment alarm) and Cloud Run serves only revisions of IMAGE."""
    outputs = _outputs(stack, outputs_file)
    wanted = [outputs.string(output) for output in SERVICE_NAME_OUTPUT.values()]
    if outputs.cloud == "aws":
        from groundwork.ops import aws

        session = _aws_session(outputs)
        try:
            served = aws.verify_served_image(
                session.client("ecs"),
                outputs.string("cluster_name"),
                wanted,
                image,
                cloudwatch=session.client("cloudwatch"),
                since=since,
                timeout_seconds=timeout,
                poll_seconds=poll_seconds,
            )
        except aws.EcsRolledBackError as exc:
            if report is not None:
                report.parent.mkdir(parents=True, exist_ok=True)
                report.write_text(
                    json.dumps(
                        {
                            "stack": stack,
                            "image": image,
                            "rolled_back": [r.as_dict() for r in exc.rollbacks],
                        },
                        indent=2,
                    )
                )
            raise
        for item in served:
            typer.echo(
                f"{item.service}: {item.task_definition.rsplit('/', 1)[-1]} runs {image} "
                f"({item.rollout_state})"
            )
        return
    from groundwork.ops import gcp

    names = gcp.GcpNames.from_outputs(outputs)
    clients = _gcp_clients()
    for name in wanted:
        served_revisions = gcp.verify_served_image(
            clients["services"], clients["revisions"], names.service(name), image
        )
        typer.echo(f"{name}: {', '.join(served_revisions)} run {image}")


@app.command("dlq-redrive")
@_one_line_errors
def dlq_redrive(
    stack: StackOpt,
    outputs_file: OutputsOpt = None,
    limit: Annotated[
        int | None, typer.Option(help="Move at most this many messages (default all).", min=1)
    ] = None,
    timeout: TimeoutOpt = 900.0,
) -> None:
    """AWS: move dead letters back to the jobs queue, from a one-off worker task.

    The broker is private (no public endpoint) and accepts the app's security groups
    only, so `groundwork-app dlq redrive` runs as a task of the worker service.
    """
    from groundwork.ops import aws

    outputs = _outputs(stack, outputs_file).expect_cloud("aws")
    ecs = _aws_session(outputs).client("ecs")
    command = ["dlq", "redrive", *(["--limit", str(limit)] if limit else [])]
    result = aws.run_service_command(
        ecs,
        outputs.string("cluster_name"),
        outputs.string("worker_service_name"),
        command,
        timeout_seconds=timeout,
    )
    typer.echo(
        f"{' '.join(command)}: task {result.task_arn.rsplit('/', 1)[-1]} succeeded in "
        f"{result.seconds:.0f} s; output: {next(iter(result.log_links.values()), 'n/a')}"
    )


@app.command("service-urns")
@_one_line_errors
def service_urns(
    stack: StackOpt,
    cloud: CloudOpt,
    config: Annotated[
        list[str] | None,
        typer.Option("--config", help="KEY=VALUE passed to the preview (e.g. the image)."),
    ] = None,
) -> None:
    """First deploy: print the api/worker/relay service URNs, one per line, for
    `pulumi up --exclude URN ... --exclude-dependents` before the migration."""
    from groundwork.ops.registry import service_urns as find

    for urn in find(stack, cloud, config=config or ()):
        typer.echo(urn)


@app.command("broker-logs")
@_one_line_errors
def broker_logs(
    stack: StackOpt,
    outputs_file: OutputsOpt = None,
    timeout: TimeoutOpt = 600,
    poll_seconds: PollOpt = 15,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """AWS + Amazon MQ: set the stack's log retention and logs KMS key on the broker's
    general log group, which Amazon MQ creates itself. Idempotent; the deploy workflow
    runs it after `pulumi up`. With SQS (no broker) it does nothing."""
    from groundwork.ops import broker_logs as mq_logs

    outputs = _outputs(stack, outputs_file).expect_cloud("aws")
    if not outputs.values.get("broker_id"):
        _emit(as_json, {"log_group": None, "changed": []}, "no Amazon MQ broker: nothing to do")
        return
    retention = outputs.string("log_retention_days")
    if not retention.isdigit():
        raise UserError(f"output log_retention_days={retention!r} is not a number of days")
    report = mq_logs.secure_broker_logs(
        _aws_session(outputs).client("logs"),
        outputs.string("broker_id"),
        # None with groundwork:cmek off: the group keeps the service's default encryption.
        kms_key_arn=outputs.values.get("logs_kms_key_arn") or None,
        retention_days=int(retention),
        timeout=timeout,
        poll_seconds=poll_seconds,
    )
    done = ", ".join(report.changed) if report.changed else "already set"
    _emit(
        as_json,
        asdict(report),
        f"{report.log_group}: retention {report.retention_days} d, "
        f"key {report.kms_key_arn or 'CloudWatch Logs default'} ({done})",
    )
