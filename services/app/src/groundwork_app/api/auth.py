"""Bearer JWT authentication and scope checks.

HS256 with ``JWT_SECRET`` or RS256 with keys from ``JWT_JWKS_URL``. The algorithm is
pinned by settings (a token cannot choose it), and ``iss``, ``aud``, ``exp`` and
``sub`` are required. The client id used for idempotency scoping and rate limiting
is the token's ``sub``. Scopes come from ``scope`` (space-separated, RFC 8693) or
``scp`` (a list, as some identity providers issue).

Missing, invalid or expired token -> 401 with ``WWW-Authenticate: Bearer ...``;
valid token without the route's scope -> 403 (``error="insufficient_scope"``).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import jwt
from fastapi import Request
from fastapi.security import HTTPBearer

from groundwork_app.api.errors import ApiError
from groundwork_app.observability.logging import bind_log_context, get_logger
from groundwork_app.settings import Settings

log = get_logger(__name__)

LEEWAY_SECONDS = 30
MAX_SUBJECT_LENGTH = 200
# Subjects the service uses for its own callers (the signed webhook): a token may not
# claim them and read or replay those jobs.
RESERVED_SUBJECT_PREFIX = "system:"
_TOKEN_CACHE_SIZE = 4096

_INSUFFICIENT_SCOPE = 'Bearer realm="groundwork", error="insufficient_scope", scope="{scope}"'

# Declared in the OpenAPI document only (api.app._openapi, BEARER_SECURITY): the dependency reads
# the header itself, because a nested FastAPI sub-dependency costs a second round of
# dependency resolution on every request.
bearer_scheme = HTTPBearer(
    auto_error=False,
    description="JWT access token (HS256 or RS256) with `jobs:read` / `jobs:write` scopes.",
)
# The operation-level reference to it, for the ``openapi_extra`` of guarded routes.
BEARER_SECURITY: dict[str, Any] = {"security": [{bearer_scheme.scheme_name: []}]}


@dataclass(frozen=True)
class Principal:
    subject: str
    scopes: frozenset[str]


class InvalidTokenError(Exception):
    pass


class JwksKeys:
    """Signing keys from a JWKS URL, fetched off the event loop and cached.

    A token naming an unknown ``kid`` triggers at most one refetch per
    ``min_refresh_seconds`` (so random kids cannot turn the API into a JWKS
    amplifier); when a refetch fails the last good keys stay in use.
    """

    def __init__(
        self,
        url: str,
        ttl_seconds: float = 300.0,
        min_refresh_seconds: float = 30.0,
        timeout: float = 2.0,
    ) -> None:
        self._client = jwt.PyJWKClient(
            url, cache_jwk_set=True, lifespan=int(ttl_seconds), timeout=int(max(1, timeout))
        )
        self._ttl = ttl_seconds
        self._min_refresh = min_refresh_seconds
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = float("-inf")
        self._lock = asyncio.Lock()

    async def key(self, kid: str) -> jwt.PyJWK:
        now = time.monotonic()
        if kid in self._keys and now - self._fetched_at < self._ttl:
            return self._keys[kid]
        async with self._lock:
            now = time.monotonic()
            stale = now - self._fetched_at >= self._ttl
            unknown = kid not in self._keys
            if stale or (unknown and now - self._fetched_at >= self._min_refresh):
                await self._refresh()
        try:
            return self._keys[kid]
        except KeyError:
            raise InvalidTokenError("unknown signing key") from None

    async def _refresh(self) -> None:
        try:
            jwk_set = await asyncio.to_thread(self._client.get_jwk_set, True)
        except jwt.PyJWKClientError as exc:
            log.warning("jwks.fetch_failed", error=str(exc)[:200], cached_keys=len(self._keys))
            self._fetched_at = time.monotonic() - self._ttl + self._min_refresh
            return
        self._keys = {k.key_id: k for k in jwk_set.keys if k.key_id}
        self._fetched_at = time.monotonic()


class TokenVerifier:
    def __init__(self, settings: Settings) -> None:
        self._algorithm = settings.jwt_algorithm
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        # Newest first; during a rotation the previous key still verifies.
        self._secrets = settings.jwt_keys
        self._jwks = JwksKeys(settings.jwt_jwks_url) if settings.jwt_algorithm == "RS256" else None
        if self._jwks is None and not self._secrets:
            raise ValueError("JWT_SECRET must be set when JWT_ALGORITHM=HS256")
        # Verified tokens until they expire: a client reusing its token skips the
        # signature check. Only successfully verified tokens ever get in.
        self._cache: dict[str, tuple[Principal, float]] = {}

    async def verify(self, token: str) -> Principal:
        cached = self._cache.get(token)
        if cached is not None:
            principal, expires = cached
            if time.time() < expires:
                return principal
            del self._cache[token]
        claims = await self._decode(token)
        principal = _principal(claims)
        if len(self._cache) >= _TOKEN_CACHE_SIZE:
            self._cache.clear()
        self._cache[token] = (principal, float(claims["exp"]) + LEEWAY_SECONDS)
        return principal

    async def _decode(self, token: str) -> dict[str, Any]:
        keys: list[Any] = list(self._secrets)
        try:
            if self._jwks is not None:
                kid = jwt.get_unverified_header(token).get("kid")
                if not isinstance(kid, str) or not kid:
                    raise InvalidTokenError("token header has no key id (kid)")
                keys = [(await self._jwks.key(kid)).key]
            for key in keys[:-1]:
                try:
                    return self._decode_with(token, key)
                except jwt.InvalidSignatureError:
                    continue  # signed with an older key of the rotation
            return self._decode_with(token, keys[-1])
        except jwt.ExpiredSignatureError:
            raise InvalidTokenError("token expired") from None
        except jwt.InvalidAudienceError:
            raise InvalidTokenError("token audience is not accepted") from None
        except jwt.InvalidIssuerError:
            raise InvalidTokenError("token issuer is not accepted") from None
        except jwt.MissingRequiredClaimError as exc:
            raise InvalidTokenError(f"token lacks the {exc.claim!r} claim") from None
        except jwt.InvalidTokenError:
            raise InvalidTokenError("token is malformed or its signature is invalid") from None

    def _decode_with(self, token: str, key: Any) -> dict[str, Any]:
        decoded: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[self._algorithm],
            audience=self._audience,
            issuer=self._issuer,
            leeway=LEEWAY_SECONDS,
            options={"require": ["exp", "iss", "aud", "sub"]},
        )
        return decoded


def _principal(claims: dict[str, Any]) -> Principal:
    subject = claims.get("sub")
    if not isinstance(subject, str) or not 0 < len(subject) <= MAX_SUBJECT_LENGTH:
        raise InvalidTokenError(f"'sub' must be a string of 1..{MAX_SUBJECT_LENGTH} chars")
    if subject.startswith(RESERVED_SUBJECT_PREFIX):
        raise InvalidTokenError("'sub' uses a reserved prefix")
    raw = claims.get("scope", claims.get("scp", ""))
    if isinstance(raw, str):
        scopes = frozenset(raw.split())
    elif isinstance(raw, list) and all(isinstance(item, str) for item in raw):
        scopes = frozenset(raw)
    else:
        raise InvalidTokenError("'scope' must be a space-separated string or 'scp' a list")
    return Principal(subject=subject, scopes=scopes)


def _unauthorized(message: str, *, invalid: bool) -> ApiError:
    challenge = 'Bearer realm="groundwork"'
    if invalid:
        challenge += f', error="invalid_token", error_description="{message}"'
    return ApiError(
        401,
        "invalid_token" if invalid else "unauthorized",
        message,
        headers={"WWW-Authenticate": challenge},
    )


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` value, read as FastAPI's
    HTTPBearer reads it (case-insensitive scheme); None when absent or another scheme."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if not token or scheme.lower() != "bearer":
        return None
    return token


async def authorize(request: Request, scope: str) -> Principal:
    """The authenticated, rate-limited caller, who must hold ``scope``."""
    token = bearer_token(request.headers.get("authorization"))
    if token is None:
        raise _unauthorized(
            "A bearer token is required (Authorization: Bearer <jwt>).", invalid=False
        )
    services = request.app.state.services
    try:
        principal = await services.verifier.verify(token)
    except InvalidTokenError as exc:
        raise _unauthorized(str(exc), invalid=True) from None
    if scope not in principal.scopes:
        raise ApiError(
            403,
            "insufficient_scope",
            f"The token lacks the {scope!r} scope.",
            headers={"WWW-Authenticate": _INSUFFICIENT_SCOPE.format(scope=scope)},
        )
    bind_log_context(client_id=principal.subject)
    await services.limiter.check(principal.subject)
    return principal
