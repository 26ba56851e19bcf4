"""How the service authenticates to PostgreSQL: a fixed password or an IAM token per connection.

With ``DB_IAM_AUTH=true`` (the AWS stacks) no database password exists for the api,
worker and relay: every new connection presents a fresh RDS IAM authentication token,
signed locally with the task role's credentials. A token is valid for 15 minutes and
only for opening a connection, so pools must ask for one per connection, never cache
it: asyncpg calls a callable ``password`` "each time a new connection is established"
(asyncpg ``connect()`` docs). That is what makes credential rotation a non-event:
the RDS-managed master secret can rotate every 7 days without touching these
processes (https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/UsingWithRDS.IAMDBAuth.html).

Kept free of SQLAlchemy, like db.tls: the API's hot path imports it.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from groundwork_app.settings import Settings

# RDS instance and RDS Proxy endpoints end in <region>.rds.amazonaws.com (.cn in China).
_RDS_HOST = re.compile(r"\.(?P<region>[a-z]{2}(?:-[a-z]+)+-\d+)\.rds\.amazonaws\.com(?:\.cn)?$")


def region_of(host: str) -> str | None:
    """The AWS region in an RDS or RDS Proxy endpoint name, else None."""
    match = _RDS_HOST.search(host)
    return match["region"] if match else None


class IamAuthToken:
    """A callable returning a new RDS IAM auth token for one (host, port, user).

    The botocore client is created once (it caches and refreshes the task role's
    credentials from the ECS credentials endpoint); each call only signs, offline.
    """

    def __init__(self, host: str, port: int, user: str, region: str | None = None) -> None:
        self.host = host
        self.port = port
        self.user = user
        self.region = (
            region
            or region_of(host)
            or os.environ.get("AWS_REGION")
            or os.environ.get("AWS_DEFAULT_REGION")
        )
        if not self.region:
            raise ValueError(
                f"DB_IAM_AUTH=true but no AWS region: {host!r} is not an RDS endpoint and "
                "AWS_REGION is unset"
            )
        self._client: Any = None
        self._lock = threading.Lock()
        self.calls = 0

    def _rds(self) -> Any:
        with self._lock:
            if self._client is None:
                import boto3  # only when IAM auth is on: its import costs ~0.3 s

                self._client = boto3.session.Session().client("rds", region_name=self.region)
            return self._client

    def __call__(self) -> str:
        self.calls += 1
        token: str = self._rds().generate_db_auth_token(
            DBHostname=self.host, Port=self.port, DBUsername=self.user, Region=self.region
        )
        return token


def db_password(
    settings: Settings, host: str | None = None, port: int | None = None
) -> str | Callable[[], str] | None:
    """What to pass as asyncpg's ``password``: a token factory under IAM auth."""
    if settings.db_iam_auth:
        return token_factory(host or settings.db_host, port or settings.db_port, settings.db_user)
    return settings.db_password.get_secret_value() or None


@lru_cache(maxsize=8)
def token_factory(host: str, port: int, user: str) -> IamAuthToken:
    """One factory (one botocore client) per endpoint: /health/ready connects often."""
    return IamAuthToken(host, port, user)
