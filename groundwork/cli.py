"""The `groundwork` command: plan, cost-diff, prices and operations sub-commands."""

from __future__ import annotations

import os

# gRPC (Cloud Run client) logs an INFO line on every fork otherwise; `groundwork dev`
# forks the service processes.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

import typer

from groundwork.devenv.command import dev
from groundwork.ops.cli import app as ops_app
from groundwork.plan.commands import register as register_plan_commands

app = typer.Typer(
    name="groundwork",
    help="Plan, check and operate groundwork stacks.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """groundwork: see what a stack creates, whether it passes policy and what it costs."""


app.add_typer(ops_app, name="ops")
app.command("dev")(dev)
register_plan_commands(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
