"""The application's own RabbitMQ user, created by migrate through the management API.

Amazon MQ for RabbitMQ creates exactly one user through its API, with the
``administrator`` tag; every other user must be created "via the RabbitMQ management
API or the RabbitMQ web console" (Amazon MQ developer guide, "Amazon MQ for RabbitMQ
broker users": ``PUT /api/users/<name>`` with ``password`` and ``tags``, then
``PUT /api/permissions/<vhost>/<name>`` with ``configure``, ``write`` and ``read``).
So api, worker and relay never hold the administrator's password: they connect as a
user with no management tags and permissions on one virtual host, limited to the
queue and exchange names the application declares.
"""

from __future__ import annotations

import re
from urllib.parse import quote

import httpx

from groundwork_app.settings import Settings

TIMEOUT_SECONDS = 15.0


def app_permissions(queue_name: str) -> dict[str, str]:
    """Permissions covering exactly the topology ``declare_topology`` creates.

    Every name starts with the work queue's (``jobs``, ``jobs.dlq``, ``jobs.dlx``,
    ``jobs.retry.<n>ms``); publishing goes through the default exchange, which
    RabbitMQ authorises as ``amq.default`` (rabbitmq.com/docs/access-control).
    """
    own = rf"{re.escape(queue_name)}(\..+)?"
    return {
        "configure": rf"^{own}$",
        "write": rf"^(amq\.default|{own})$",
        "read": rf"^{own}$",
    }


async def provision_app_user(settings: Settings) -> bool:
    """Create or update RABBITMQ_USER (password, permissions); True when it did.

    Idempotent, and the way the app password rotates: put a new value in the secret,
    run migrate (it sets it here), then roll the services (they read it at start).
    """
    url = settings.rabbitmq_management_url.rstrip("/")
    if not url:
        return False
    admin = settings.rabbitmq_admin_user
    user = settings.rabbitmq_user
    if not admin or admin == user:
        raise ValueError(
            "RABBITMQ_MANAGEMENT_URL is set but RABBITMQ_ADMIN_USER is empty or equals "
            "RABBITMQ_USER: the application user is created by a different, administrator user"
        )
    vhost = quote(settings.rabbitmq_vhost, safe="")
    name = quote(user, safe="")
    async with httpx.AsyncClient(
        base_url=url,
        auth=(admin, settings.rabbitmq_admin_password.get_secret_value()),
        timeout=TIMEOUT_SECONDS,
    ) as client:
        # No tags: the user cannot log in to the management UI/API at all.
        response = await client.put(
            f"/api/users/{name}",
            json={"password": settings.rabbitmq_password.get_secret_value(), "tags": ""},
        )
        response.raise_for_status()
        response = await client.put(
            f"/api/permissions/{vhost}/{name}", json=app_permissions(settings.queue_name)
        )
        response.raise_for_status()
    return True
