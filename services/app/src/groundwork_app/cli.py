"""``groundwork-app``: the one entry point of the service image.

Commands: ``api``, ``worker``, ``relay``, ``migrate``, ``dlq list|redrive``,
``healthcheck api|worker|relay`` (exit 0 when healthy; the image has no curl).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import urllib.error
import urllib.request
from collections.abc import Coroutine
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="groundwork service: API, queue worker, outbox relay, migrations.",
)
dlq_app = typer.Typer(no_args_is_help=True, help="Inspect and redrive the dead-letter queue.")
app.add_typer(dlq_app, name="dlq")


if TYPE_CHECKING:
    from groundwork_app.settings import Settings

DEFAULT_API_PORT = 8000
HEALTHCHECK_TIMEOUT_SECONDS = 2.0


class HealthTarget(StrEnum):
    API = "api"
    WORKER = "worker"
    RELAY = "relay"


def _load_settings() -> Settings:
    """Settings, or exit 2 with the validation message (it names the variable)."""
    from pydantic import ValidationError

    from groundwork_app.settings import get_settings

    try:
        return get_settings()
    except ValidationError as exc:
        typer.echo(f"invalid configuration: {exc}", err=True)
        raise typer.Exit(2) from None


def api_port() -> int:
    raw = os.environ.get("PORT", "")
    if not raw:
        return DEFAULT_API_PORT
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        typer.echo(f"PORT must be a TCP port number (1-65535), got {raw!r}", err=True)
        raise typer.Exit(2)
    return int(raw)


def _in_container() -> bool:
    return (
        Path("/.dockerenv").exists()
        or Path("/run/.containerenv").exists()
        or "KUBERNETES_SERVICE_HOST" in os.environ
        or "ECS_CONTAINER_METADATA_URI_V4" in os.environ
        or "K_SERVICE" in os.environ  # Cloud Run
    )


def default_bind_host(settings: Settings) -> str:
    """0.0.0.0 where a load balancer or port mapping must reach us, loopback on a laptop."""
    return "0.0.0.0" if settings.is_deployed or _in_container() else "127.0.0.1"  # noqa: S104


@app.command()
def api() -> None:
    """Serve the HTTP API on $PORT (default 8000) with uvicorn.

    SIGTERM stops accepting connections, lets in-flight requests finish (up to
    SHUTDOWN_TIMEOUT_SECONDS), then closes the database and Redis pools.
    """
    import uvicorn

    from groundwork_app.api.app import create_app

    settings = _load_settings()
    application = create_app(settings)
    config = uvicorn.Config(
        application,
        host=settings.api_bind_host or default_bind_host(settings),
        port=api_port(),
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
        server_header=False,
        date_header=True,
        access_log=False,  # one structured line per request comes from our middleware
        log_config=None,  # keep the structlog configuration create_app installed
        timeout_graceful_shutdown=int(settings.shutdown_timeout_seconds),
        # Longer than the load balancers' idle timeouts (ALB 60 s), so the balancer,
        # not us, closes idle connections and never reuses one we just closed (502s).
        timeout_keep_alive=75,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    # uvicorn re-raises the signal it drained on, once its own handlers are removed, so
    # the process would die "killed by SIGTERM". A drained shutdown is a clean one:
    # these handlers absorb that re-raise and the process exits 0.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    server.run()
    if not server.started:
        sys.exit(1)


@app.command()
def migrate() -> None:
    """Apply database migrations up to the latest revision, then exit."""
    from groundwork_app import migrate as migrations
    from groundwork_app.db.roles import grant_app_role
    from groundwork_app.observability.logging import configure_logging, get_logger

    settings = _load_settings()
    configure_logging(settings)
    migrations.upgrade()
    log = get_logger("groundwork_app.migrate")
    log.info("migrate.done", revision="head")
    if asyncio.run(grant_app_role(settings)):
        log.info("migrate.app_role_granted", role=settings.db_app_user)
    from groundwork_app.adapters.rabbitmq_admin import provision_app_user

    if asyncio.run(provision_app_user(settings)):
        log.info("migrate.broker_user_provisioned", user=settings.rabbitmq_user)


def api_healthcheck(port: int, timeout: float = HEALTHCHECK_TIMEOUT_SECONDS) -> tuple[bool, str]:
    url = f"http://127.0.0.1:{port}/health/live"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status == 200, f"{url}: HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        return False, f"{url}: HTTP {exc.code}"
    except (OSError, ValueError) as exc:
        return False, f"{url}: {exc}"


def _run_service(main: Coroutine[Any, Any, None]) -> None:
    """Run a long-lived service on uvloop, as uvicorn's "auto" loop does for the api.

    The worker and relay spend most of their CPU in socket I/O (AMQP frames, database
    and Redis round trips); the stock selector loop's Python transports cost them about
    a third of it in profiles (docs/performance.md).
    """
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on CPython/Linux
        asyncio.run(main)
        return
    uvloop.run(main)


@app.command()
def worker() -> None:
    """Consume jobs (RabbitMQ) or serve Pub/Sub pushes on $PORT (QUEUE_BACKEND=pubsub)."""
    from groundwork_app.settings import QueueBackend
    from groundwork_app.worker.runner import run_worker

    settings = _load_settings()
    if settings.queue_backend is QueueBackend.PUBSUB:
        api_port()  # the push receiver listens on $PORT: exit 2 naming a bad value
    _run_service(run_worker(settings))


@app.command()
def relay() -> None:
    """Publish committed outbox rows to the broker (safe to run several)."""
    from groundwork_app.relay.runner import relay_health_port, run_relay

    settings = _load_settings()
    try:
        relay_health_port(settings)
    except ValueError as exc:
        typer.echo(f"invalid configuration: {exc}", err=True)
        raise typer.Exit(2) from None
    _run_service(run_relay(settings))


def _queue_with_dlq() -> None:
    from groundwork_app.settings import QueueBackend, get_settings

    if get_settings().queue_backend is QueueBackend.PUBSUB:
        typer.echo(
            "dlq commands manage the RabbitMQ and SQS dead-letter queues. With "
            "QUEUE_BACKEND=pubsub the dead letters are in the dead-letter subscription: "
            "inspect them with `gcloud pubsub subscriptions pull <dead_letter_subscription>` "
            "and republish to the topic.",
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

    _queue_with_dlq()
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

    _queue_with_dlq()
    moved = asyncio.run(redrive(get_settings(), limit))
    for letter in moved:
        typer.echo(f"redriven {letter.message_id} job={letter.job_id}")
    typer.echo(f"{len(moved)} message(s) redriven", err=True)


@app.command()
def healthcheck(target: HealthTarget) -> None:
    """Exit 0 when TARGET is healthy (api: GET /health/live; worker/relay: fresh heartbeat)."""
    if target is HealthTarget.API:
        ok, detail = api_healthcheck(api_port())
        typer.echo(detail, err=not ok)
        raise typer.Exit(0 if ok else 1)
    from groundwork_app.settings import get_settings
    from groundwork_app.worker.health import check_heartbeat, heartbeat_path

    ok, detail = check_heartbeat(heartbeat_path(get_settings(), target.value))
    typer.echo(detail, err=not ok)
    raise typer.Exit(0 if ok else 1)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
