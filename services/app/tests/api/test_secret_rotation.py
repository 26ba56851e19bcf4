"""JWT and webhook keys rotate with an overlap: 'NEW OLD' verifies both, signs with NEW.

Without it a rotation logs out every client at once and rejects every webhook a sender
signed a second before switching keys.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import pytest
from groundwork_app.api.auth import InvalidTokenError, TokenVerifier
from groundwork_app.api.errors import ApiError
from groundwork_app.api.routes.webhooks import sign, verify_signature
from groundwork_app.settings import Settings

from groundwork.tokens import mint_token

OLD = secrets.token_urlsafe(40)
NEW = secrets.token_urlsafe(40)


def _settings(jwt_secret: str, **extra: Any) -> Settings:
    return Settings(
        jwt_secret=jwt_secret, jwt_issuer="iss", jwt_audience="aud", _env_file=None, **extra
    )


def _token(secret: str) -> str:
    return mint_token(secret, issuer="iss", audience="aud", subject="user-1")


async def test_tokens_of_both_keys_verify_during_the_overlap() -> None:
    before = _token(OLD)  # issued before the rotation
    verifier = TokenVerifier(_settings(f"{NEW} {OLD}"))
    assert (await verifier.verify(before)).subject == "user-1"
    after = _token(f"{NEW} {OLD}")  # the service's own signer picks NEW
    assert (await TokenVerifier(_settings(NEW)).verify(after)).subject == "user-1"
    assert (await verifier.verify(after)).subject == "user-1"


async def test_the_old_key_stops_verifying_once_dropped() -> None:
    with pytest.raises(InvalidTokenError, match="signature"):
        await TokenVerifier(_settings(NEW)).verify(_token(OLD))
    with pytest.raises(InvalidTokenError, match="signature"):
        await TokenVerifier(_settings(f"{NEW} {OLD}")).verify(_token(secrets.token_urlsafe(40)))


async def test_other_errors_are_not_masked_by_the_key_loop() -> None:
    expired = mint_token(OLD, issuer="iss", audience="aud", subject="u", ttl_seconds=-3600)
    with pytest.raises(InvalidTokenError, match="expired"):
        await TokenVerifier(_settings(f"{NEW} {OLD}")).verify(expired)


def test_webhook_signatures_of_either_key_match() -> None:
    body, now = b'{"prompt":"x"}', time.time()
    for key in (OLD, NEW):
        header = f"t={int(now)},v1={sign(key, int(now), body)}"
        assert verify_signature(header, body, [NEW, OLD], 300, now=now)
    header = f"t={int(now)},v1={sign(OLD, int(now), body)}"
    with pytest.raises(ApiError):
        verify_signature(header, body, [NEW], 300, now=now)


def test_deployed_settings_check_every_key() -> None:
    common: dict[str, Any] = {
        "app_env": "production",
        "webhook_secret": f"{NEW} {OLD}",
        "db_password": "p" * 40,
        "redis_password": "r" * 40,
        "rabbitmq_password": "q" * 40,
        "_env_file": None,
    }
    assert Settings(jwt_secret=f"{NEW} {OLD}", **common).jwt_keys == [NEW, OLD]
    with pytest.raises(ValueError, match="JWT_SECRET must be at least 32"):
        Settings(jwt_secret=f"{NEW} short", **common)
    with pytest.raises(ValueError, match="at most"):
        Settings(jwt_secret=f"{NEW} {OLD} {OLD}", **common)
