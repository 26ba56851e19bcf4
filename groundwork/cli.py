"""The `groundwork` command: plan, cost-diff, prices and operations sub-commands."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="groundwork",
    help="Plan, check and operate groundwork stacks.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """groundwork: see what a stack creates, whether it passes policy and what it costs."""


def main() -> None:
    app()
