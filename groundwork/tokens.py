"""The one way to mint a bearer token the service accepts: dev server, bench, smoke, tests.

The service (``groundwork_app.api.auth``) requires ``exp``, ``iss``, ``aud`` and ``sub``
and authorises each route by a scope in ``scope`` (space-separated, RFC 8693): a token
without ``jobs:write`` gets 403 ``insufficient_scope`` on ``POST /v1/jobs``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import jwt

# Everything a client of the job API needs: submit jobs and read them back.
JOB_SCOPES = "jobs:read jobs:write"


def mint_token(
    secret: str,
    *,
    issuer: str,
    audience: str,
    subject: str,
    scopes: str = JOB_SCOPES,
    ttl_seconds: int = 300,
    now: Callable[[], float] = time.time,
    **claims: Any,
) -> str:
    """An HS256 JWT signed with the service's ``JWT_SECRET`` (its first key, the newest,
    while a rotation holds 'NEW OLD').

    Extra ``claims`` are added or override the defaults; a claim given as ``None`` is
    left out (tests use that to build tokens the service must reject).
    """
    issued = int(now())
    payload: dict[str, Any] = {
        "sub": subject,
        "iss": issuer,
        "aud": audience,
        "iat": issued,
        "exp": issued + ttl_seconds,
        "scope": scopes,
    }
    payload.update(claims)
    return jwt.encode(
        {k: v for k, v in payload.items() if v is not None},
        (secret.split() or [""])[0],
        algorithm="HS256",
    )
