"""``groundwork-app``: the one entry point of the service image.

Commands: ``api``, ``worker``, ``relay``, ``migrate``, ``dlq list|redrive``,
``healthcheck api|worker|relay`` (exit 0 when healthy; the image has no curl).
"""

from __future__ import annotations

import asyncio
import json
from enum import StrEnum

import typer

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="groundwork service: API, queue worker, outbox relay, migrations.",
)
dlq_app = typer.Typer(no_args_is_help=True, help="Inspect and redrive the dead-letter queue.")
app.add_typer(dlq_app, name="dlq")


class HealthTarget(StrEnum):
    WORKER = "worker"
    RELAY = "relay"


@app.command()
def worker() -> None:
    """Consume jobs (RabbitMQ) or serve Pub/Sub pushes on $PORT (QUEUE_BACKEND=pubsub)."""
    from groundwork_app.settings import get_settings
    from groundwork_app.worker.runner import run_worker

    asyncio.run(run_worker(get_settings()))


@app.command()
def relay() -> None:
    """Publish committed outbox rows to the broker (safe to run several)."""
    from groundwork_app.settings import get_settings
    from groundwork_app.worker.runner import run_relay

    asyncio.run(run_relay(get_settings()))


def _rabbitmq_only() -> None:
    from groundwork_app.settings import QueueBackend, get_settings

    if get_settings().queue_backend is not QueueBackend.RABBITMQ:
        typer.echo(
            "dlq commands manage the RabbitMQ dead-letter queue. With QUEUE_BACKEND=pubsub the "
            "dead letters are in the dead-letter subscription: inspect them with `gcloud pubsub "
            "subscriptions pull <dead_letter_subscription>` and republish to the topic.",
            err=True,
        )
        raise typer.Exit(2)


@dlq_app.command("list")
def dlq_list(
    limit: int = typer.Option(100, min=1, max=10_000, help="Show at most this many."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line."),
) -> None:
    """Show dead-lettered messages (message id, job id, reason, attempts); nothing is consumed."""
    from groundwork_app.settings import get_settings
    from groundwork_app.worker.dlq import list_dead_letters

    _rabbitmq_only()
    letters = asyncio.run(list_dead_letters(get_settings(), limit))
    for letter in letters:
        if as_json:
            typer.echo(json.dumps(letter.as_dict()))
        else:
            typer.echo(
                f"{letter.message_id}  job={letter.job_id}  attempts={letter.attempts}  "
                f"redrives={letter.redrives}  reason={letter.reason}"
            )
    if not as_json:
        typer.echo(f"{len(letters)} dead-lettered message(s) shown", err=True)


@dlq_app.command("redrive")
def dlq_redrive(
    limit: int | None = typer.Option(None, min=1, help="Move at most this many (default all)."),
) -> None:
    """Move dead-lettered messages back to the work queue with the attempt counter reset."""
    from groundwork_app.settings import get_settings
    from groundwork_app.worker.dlq import redrive

    _rabbitmq_only()
    moved = asyncio.run(redrive(get_settings(), limit))
    for letter in moved:
        typer.echo(f"redriven {letter.message_id} job={letter.job_id}")
    typer.echo(f"{len(moved)} message(s) redriven", err=True)


@app.command()
def healthcheck(target: HealthTarget) -> None:
    """Exit 0 when TARGET is healthy (worker/relay: fresh heartbeat file)."""
    from groundwork_app.settings import get_settings
    from groundwork_app.worker.health import check_heartbeat, heartbeat_path

    ok, detail = check_heartbeat(heartbeat_path(get_settings(), target.value))
    typer.echo(detail, err=not ok)
    raise typer.Exit(0 if ok else 1)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
