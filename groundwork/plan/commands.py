"""The ``plan``, ``cost-diff`` and ``prices`` commands of the ``groundwork`` CLI.

Exit codes: 0 plan passed, 1 a mandatory policy failed, 2 a user error (unknown
stack, bad config, program exception, unreadable file), printed as one line on
stderr without a traceback.
"""

from __future__ import annotations

import json
import logging
import warnings
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from groundwork.plan.policy import PolicyRunner
from groundwork.plan.pricing import PRICES_PATH, PriceTableError

EXIT_POLICY_FAILED = 1
EXIT_USER_ERROR = 2


class CloudChoice(StrEnum):
    AWS = "aws"
    GCP = "gcp"


def _quiet_mock_runtime() -> None:
    """A program that raises leaves the mock runtime's RPC tasks pending; asyncio then
    logs "Task was destroyed" and warns about never-awaited coroutines at exit. That
    noise would bury the one-line error, and says nothing about the user's stack."""
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    warnings.filterwarnings(
        "ignore", message=r"coroutine .* was never awaited", category=RuntimeWarning
    )


def _cloud(value: str | None) -> str | None:
    # Validated here rather than by click so a typo is one line like every other error.
    from groundwork.plan.program import PlanError

    if value is not None and value not in {c.value for c in CloudChoice}:
        raise PlanError(f"--cloud {value!r}: expected one of aws, gcp")
    return value


def fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(EXIT_USER_ERROR)


# Tests swap this for a runner that injects verdicts; None means groundwork.policyrun.
POLICY_RUNNER: PolicyRunner | None = None

prices_app = typer.Typer(help="Inspect and refresh the bundled price table.", no_args_is_help=True)


def plan(
    stack: Annotated[str, typer.Argument(help="Stack name: Pulumi.STACK.yaml must exist.")],
    cloud: Annotated[
        str | None,
        typer.Option("--cloud", metavar="aws|gcp", help="Override groundwork:cloud for this plan."),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            metavar="KEY=VALUE",
            help="Override a config value: key=value (groundwork namespace) or ns:key=value. "
            "Repeatable.",
        ),
    ] = None,
    json_output: Annotated[
        bool,
        typer.Option(
            "--json", help="Print the plan as JSON (schema: groundwork/plan/plan.schema.json)."
        ),
    ] = False,
    against: Annotated[
        Path | None,
        typer.Option(
            "--against",
            metavar="BASE.json",
            help="An earlier `groundwork plan --json`: show what this plan creates, updates, "
            "replaces (and why) or deletes relative to it, data loss first (docs/plan-diff.md).",
        ),
    ] = None,
    markdown: Annotated[
        bool,
        typer.Option("--markdown", help="With --against: print only the diff, as Markdown."),
    ] = False,
) -> None:
    """Show what STACK creates, whether it passes policy and what it costs: offline."""
    from groundwork.plan.plandiff import compare, diff_json, diff_markdown, load_base, render_diff
    from groundwork.plan.program import PlanError, load_stack_config, parse_overrides, plan_program
    from groundwork.plan.render import render
    from groundwork.plan.replacement import snapshots
    from groundwork.plan.report import build_report, to_json_dict

    _quiet_mock_runtime()
    try:
        if markdown and against is None:
            raise PlanError("--markdown needs --against BASE.json")
        if markdown and json_output:
            raise PlanError("--markdown and --json are exclusive")
        base = load_base(against) if against is not None else None
        config = load_stack_config(
            stack, overrides=parse_overrides(set_ or []), cloud=_cloud(cloud)
        )
        report = build_report(plan_program(config), policy_runner=POLICY_RUNNER)
    except (PlanError, PriceTableError) as exc:
        raise fail(str(exc)) from None
    result = compare(base, snapshots(report.planned.run)) if base is not None else None
    if markdown and base is not None and result is not None:
        typer.echo(diff_markdown(base, result), nl=False)
    elif json_output:
        data = to_json_dict(report)
        if base is not None and result is not None:
            data["diff"] = diff_json(base, result)
        typer.echo(json.dumps(data, indent=2, sort_keys=True))
    else:
        console = Console(highlight=False)
        if base is not None and result is not None:
            console.print(render_diff(base, result))
        render(report, console)
    if report.exit_code:
        raise typer.Exit(EXIT_POLICY_FAILED)


def cost_diff(
    base: Annotated[Path, typer.Argument(help="`groundwork plan --json` of the base branch.")],
    head: Annotated[Path, typer.Argument(help="`groundwork plan --json` of the change.")],
) -> None:
    """Markdown table of the monthly cost change per component, for a PR comment."""
    from groundwork.plan.costdiff import cost_diff_markdown, load_plan_costs
    from groundwork.plan.program import PlanError

    try:
        markdown = cost_diff_markdown(load_plan_costs(base), load_plan_costs(head))
    except PlanError as exc:
        raise fail(str(exc)) from None
    typer.echo(markdown, nl=False)


@prices_app.command("refresh")
def prices_refresh(
    region: Annotated[str, typer.Option(help="AWS region whose prices to refresh.")] = "us-east-1",
    output: Annotated[
        Path | None,
        typer.Option(help="Write the refreshed table here instead of updating the bundled one."),
    ] = None,
) -> None:
    """Update the AWS prices from the AWS Price List API (needs AWS credentials)."""
    from groundwork.plan.program import PlanError
    from groundwork.plan.refresh import refresh_aws_prices

    try:
        result = refresh_aws_prices(region=region, output=output)
    except PlanError as exc:
        raise fail(str(exc)) from None
    for key, (old, new) in sorted(result.updated.items()):
        typer.echo(f"updated   {key}: {old:g} -> {new:g}")
    typer.echo(
        f"{len(result.updated)} updated, {len(result.unchanged)} unchanged, "
        f"{len(result.missing)} not found (kept): {output or PRICES_PATH}"
    )
    for key in result.missing:
        typer.echo(f"not found {key}", err=True)


@prices_app.command("show")
def prices_show() -> None:
    """Print the table's regions, sources and dates."""
    from groundwork.plan.pricing import load_price_table

    try:
        table = load_price_table()
    except PriceTableError as exc:
        raise fail(str(exc)) from None
    for cloud in ("aws", "gcp"):
        for region in table.regions(cloud):
            data = table.region(cloud, region)
            typer.echo(f"{cloud} {region}: as of {data.get('as_of')}; {data.get('source')}")
    typer.echo(f"table: {table.path}")


def register(app: typer.Typer) -> None:
    app.command("plan")(plan)
    app.command("cost-diff")(cost_diff)
    app.add_typer(prices_app, name="prices")
