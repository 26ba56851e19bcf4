"""The application's RabbitMQ user, created by migrate through the management API, on a
real RabbitMQ with the management plugin (as Amazon MQ runs it).

Amazon MQ for RabbitMQ creates one administrator through its own API; others are made
with the management API (Amazon MQ developer guide, "Amazon MQ for RabbitMQ broker
users"). The processes must get a user that can run the application's topology and
nothing else.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aio_pika
import aiormq
import httpx
import pytest
from groundwork_app.adapters import rabbitmq as rmq
from groundwork_app.adapters.rabbitmq_admin import app_permissions, provision_app_user
from groundwork_app.settings import Settings

from groundwork.devenv.servers import RabbitMQ, ServerUnavailableError

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="module")
def managed_broker() -> Iterator[RabbitMQ]:
    base = Path(tempfile.mkdtemp(prefix="groundwork-mq-admin-"))
    broker = RabbitMQ(base / "rabbitmq", management=True)
    try:
        broker.start()
    except ServerUnavailableError as exc:
        shutil.rmtree(base, ignore_errors=True)
        if IN_CI:
            pytest.fail(f"RabbitMQ unavailable under CI=true: {exc}", pytrace=False)
        pytest.skip(f"RabbitMQ unavailable: {exc}")
    try:
        yield broker
    finally:
        broker.stop()
        broker.kill_epmd()
        shutil.rmtree(base, ignore_errors=True)


def _settings(broker: RabbitMQ, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "rabbitmq_host": "127.0.0.1",
        "rabbitmq_port": broker.port,
        "rabbitmq_user": "groundwork_app",
        "rabbitmq_password": secrets.token_urlsafe(24),
        "rabbitmq_management_url": f"http://127.0.0.1:{broker.management_port}",
        "rabbitmq_admin_user": broker.user,
        "rabbitmq_admin_password": broker.password,
        "queue_name": "jobs",
        "_env_file": None,
    }
    return Settings(**{**values, **overrides})


async def _wait_for_management(broker: RabbitMQ) -> None:
    async with httpx.AsyncClient(timeout=5) as client:
        for _ in range(120):
            try:
                response = await client.get(
                    f"http://127.0.0.1:{broker.management_port}/api/overview",
                    auth=(broker.user, broker.password),
                )
                if response.status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.5)
    pytest.fail("RabbitMQ management API did not come up")


async def test_app_user_runs_the_topology_and_nothing_else(managed_broker: RabbitMQ) -> None:
    await _wait_for_management(managed_broker)
    settings = _settings(managed_broker)
    assert await provision_app_user(settings) is True
    assert await provision_app_user(settings) is True  # every deploy runs it

    conn = await rmq.connect(settings)
    try:
        channel = await conn.channel()
        topology = rmq.Topology.from_settings(settings)
        await rmq.declare_topology(channel, topology)  # jobs, jobs.dlq, jobs.dlx, retries
        await channel.default_exchange.publish(
            aio_pika.Message(b"{}"), routing_key=topology.work_queue
        )
        queue = await channel.get_queue(topology.work_queue)
        message = await queue.get(timeout=5)
        await message.ack()
        other = await conn.channel()
        # Anything outside the application's names is refused (ACCESS_REFUSED, 403).
        with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
            await other.declare_queue("someone-elses-queue", durable=True)
    finally:
        await conn.close()

    # No management tags: the application's password opens no management session.
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.get(
            f"{settings.rabbitmq_management_url}/api/overview",
            auth=(settings.rabbitmq_user, settings.rabbitmq_password.get_secret_value()),
        )
    assert response.status_code == 401

    # Vhost-scoped: the same (correct) credentials open no other virtual host.
    admin = (managed_broker.user, managed_broker.password)
    async with httpx.AsyncClient(timeout=5, auth=admin) as client:
        url = f"{settings.rabbitmq_management_url}/api/vhosts/elsewhere"
        (await client.put(url)).raise_for_status()
    elsewhere = _settings(
        managed_broker, rabbitmq_vhost="elsewhere", rabbitmq_password=settings.rabbitmq_password
    )
    with pytest.raises(aiormq.exceptions.AMQPError, match=r"Connection\.Close"):
        await rmq.connect(elsewhere)


async def test_a_new_password_takes_effect_on_the_next_migrate(managed_broker: RabbitMQ) -> None:
    await _wait_for_management(managed_broker)
    first = _settings(managed_broker, rabbitmq_user="rotating_app")
    await provision_app_user(first)
    await (await rmq.connect(first)).close()
    second = _settings(managed_broker, rabbitmq_user="rotating_app")
    await provision_app_user(second)
    conn = await rmq.connect(second)
    await conn.close()
    with pytest.raises(aiormq.exceptions.ProbableAuthenticationError):
        await rmq.connect(first)


def test_permissions_are_anchored_to_the_queue_name() -> None:
    perms = app_permissions("jobs")
    for name in ("jobs", "jobs.dlq", "jobs.dlx", "jobs.retry.5000ms"):
        assert re.match(perms["configure"], name) and re.match(perms["read"], name)
    for name in ("jobsX", "other", "amq.default", "xjobs"):
        assert not re.match(perms["configure"], name)
    assert re.match(perms["write"], "amq.default")
    assert not re.match(app_permissions("a.b")["configure"], "aXb")


async def test_no_management_url_means_nothing_to_do() -> None:
    assert await provision_app_user(Settings(_env_file=None)) is False
    with pytest.raises(ValueError, match="RABBITMQ_ADMIN_USER"):
        await provision_app_user(
            Settings(rabbitmq_management_url="http://127.0.0.1:1", _env_file=None)
        )
