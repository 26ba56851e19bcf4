"""The `groundwork` command: plan, cost-diff, prices and operations sub-commands."""

from __future__ import annotations

import typer

from groundwork.ops.cli import app as ops_app

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


def main() -> None:
    app()
