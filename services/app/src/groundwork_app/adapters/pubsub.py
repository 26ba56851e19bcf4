"""Google Cloud Pub/Sub adapter: the relay's publisher, push-envelope parsing, push auth.

Publishing uses ``google.cloud.pubsub_v1.PublisherClient`` (no ordering: the worker
is idempotent and order-insensitive). Pub/Sub assigns its own ``messageId`` per
publish, so the outbox ``message_id`` travels as the ``message_id`` attribute and is
the idempotency key on the receiving side; a relay re-publish after a crash gets a new
Pub/Sub id but the same attribute.

Push deliveries carry an ``Authorization: Bearer`` OIDC token of the push identity;
``aud`` must equal PUBSUB_PUSH_AUDIENCE and ``email`` PUBSUB_PUSH_SERVICE_ACCOUNT. Who
checks the signature depends on PUBSUB_PUSH_AUTH:

- ``verify-signature`` (default): the app verifies Google's signature itself (a push
  endpoint that no platform authenticates, e.g. the emulator or a plain server).
- ``cloud-run-iam`` (what the GCP stack sets): the worker keeps Cloud Run's IAM invoker
  check, so Cloud Run validates the token (signature, expiry, audience incl. custom
  audiences, ``run.invoker`` of the caller) before the request reaches the container,
  and then hands the container the token with its signature replaced by
  ``SIGNATURE_REMOVED_BY_GOOGLE`` ("Cloud Run ... removes the signature", see
  https://cloud.google.com/run/docs/authenticating/service-to-service and
  https://cloud.google.com/run/docs/troubleshooting). Re-verifying that signature
  can only fail, so in this mode the app checks the claims (issuer, expiry, audience,
  push identity) of a token whose signature Google removed, and still verifies a token
  that does carry a signature. Only the push identity holds ``run.invoker`` on the
  worker, so the identity check is defence in depth, not the only gate.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import google.auth.transport.requests
from google.auth import exceptions as google_auth_exceptions
from google.auth import jwt as google_jwt
from google.oauth2 import id_token

from groundwork_app.ports import OutboundMessage, PublishError
from groundwork_app.settings import Settings

GOOGLE_CERTS_URL = "https://www.googleapis.com/oauth2/v1/certs"
GOOGLE_ISSUERS = ("accounts.google.com", "https://accounts.google.com")
SIGNATURE_REMOVED = "SIGNATURE_REMOVED_BY_GOOGLE"
"""What Cloud Run leaves in the signature segment of a token its IAM check validated."""
MESSAGE_ID_ATTRIBUTE = "message_id"
PUBLISH_TIMEOUT_SECONDS = 30.0
MAX_ATTRIBUTE_CHARS = 1024  # Pub/Sub's limit per attribute value


class PubSubPublisher:
    """Publishes outbox rows to the topic; ``publish`` returns once Pub/Sub accepted it.

    The emulator/test path is the client's own: PUBSUB_EMULATOR_HOST switches it to an
    insecure channel with anonymous credentials.
    """

    def __init__(self, settings: Settings, client: Any = None):
        if not settings.pubsub_project_id:
            raise ValueError("PUBSUB_PROJECT_ID must be set when QUEUE_BACKEND=pubsub")
        if client is None:
            import google.cloud.pubsub_v1 as pubsub_v1

            client = pubsub_v1.PublisherClient()
        self._client = client
        self.topic_path = client.topic_path(settings.pubsub_project_id, settings.queue_name)

    async def publish(self, message: OutboundMessage) -> None:
        attributes = {k: v[:MAX_ATTRIBUTE_CHARS] for k, v in message.headers.items()}
        attributes[MESSAGE_ID_ATTRIBUTE] = message.message_id
        try:
            future = self._client.publish(self.topic_path, message.body, **attributes)
            await asyncio.wait_for(asyncio.wrap_future(future), PUBLISH_TIMEOUT_SECONDS)
        except Exception as exc:
            raise PublishError(f"Pub/Sub did not accept {message.message_id}: {exc!r}") from exc

    async def close(self) -> None:
        await asyncio.to_thread(self._client.stop)


class MalformedEnvelopeError(ValueError):
    """The push body is not a Pub/Sub push envelope."""


@dataclass(frozen=True)
class PushMessage:
    message_id: str  # the outbox message id (idempotency key)
    pubsub_message_id: str
    data: bytes
    attributes: dict[str, str] = field(default_factory=dict)
    delivery_attempt: int = 1
    subscription: str = ""


def parse_push_envelope(body: bytes) -> PushMessage:
    """Parse ``{"message": {"data", "attributes", "messageId"}, "subscription", ...}``."""
    try:
        envelope = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedEnvelopeError(f"push body is not JSON: {exc}") from exc
    if not isinstance(envelope, dict) or not isinstance(envelope.get("message"), dict):
        raise MalformedEnvelopeError("push body has no 'message' object")
    message = envelope["message"]
    pubsub_id = message.get("messageId") or message.get("message_id")
    if not isinstance(pubsub_id, str) or not pubsub_id:
        raise MalformedEnvelopeError("push message has no messageId")
    attributes = message.get("attributes") or {}
    if not isinstance(attributes, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in attributes.items()
    ):
        raise MalformedEnvelopeError("push message attributes must map strings to strings")
    raw = message.get("data", "")
    if not isinstance(raw, str):
        raise MalformedEnvelopeError("push message data must be a base64 string")
    try:
        data = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MalformedEnvelopeError("push message data is not valid base64") from exc
    attempt = envelope.get("deliveryAttempt", 1)
    if not isinstance(attempt, int) or attempt < 1:
        attempt = 1  # only present when the subscription has a dead-letter policy
    return PushMessage(
        message_id=attributes.get(MESSAGE_ID_ATTRIBUTE) or pubsub_id,
        pubsub_message_id=pubsub_id,
        data=data,
        attributes=attributes,
        delivery_attempt=attempt,
        subscription=str(envelope.get("subscription", "")),
    )


class PushAuthError(Exception):
    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status = status
        self.detail = detail


class _CachingRequest(google.auth.transport.Request):
    """A google-auth transport Request that caches certificate responses.

    Google rotates its signing keys daily and serves them with a max-age; fetching them
    on every push would add a round trip (and an outage dependency) per message.
    """

    def __init__(self, ttl_seconds: float = 3600.0):
        self._inner = google.auth.transport.requests.Request()
        self._ttl = ttl_seconds
        self._cache: dict[str, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def __call__(
        self,
        url: str,
        method: str = "GET",
        body: Any = None,
        headers: Any = None,
        timeout: Any = None,
        **kwargs: Any,
    ) -> Any:
        kwargs.update(body=body, headers=headers, timeout=timeout)
        if method != "GET":
            return self._inner(url, method=method, **kwargs)
        with self._lock:
            hit = self._cache.get(url)
            if hit is not None and hit[0] > time.monotonic():
                return hit[1]
        response = self._inner(url, method=method, **kwargs)
        if response.status == 200:
            with self._lock:
                self._cache[url] = (time.monotonic() + self._ttl, response)
        return response


class PushTokenVerifier:
    """Verifies the push request's OIDC token (``google.oauth2.id_token``)."""

    def __init__(
        self,
        audience: str,
        service_account: str = "",
        *,
        certs_url: str = GOOGLE_CERTS_URL,
        clock_skew_seconds: int = 10,
        platform_verified: bool = False,
    ):
        self.audience = audience
        self.service_account = service_account
        self.platform_verified = platform_verified
        """True: Cloud Run's IAM check validated the signature before the request got here."""
        self._certs_url = certs_url
        self._skew = clock_skew_seconds
        self._request = _CachingRequest()

    def verify(self, authorization: str | None) -> Mapping[str, Any]:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise PushAuthError(401, "missing bearer token")
        if token.count(".") == 2 and token.rsplit(".", 1)[1] == SIGNATURE_REMOVED:
            claims = self._platform_verified_claims(token)
        else:
            try:
                # Audience is compared below so a wrong audience is a 403, not a 401.
                claims = id_token.verify_token(
                    token,
                    self._request,
                    audience=None,
                    certs_url=self._certs_url,
                    clock_skew_in_seconds=self._skew,
                )
            except (ValueError, google_auth_exceptions.GoogleAuthError) as exc:
                raise PushAuthError(401, f"invalid push token: {exc}") from exc
        if claims.get("iss") not in GOOGLE_ISSUERS:
            raise PushAuthError(401, "push token not issued by Google")
        if claims.get("aud") != self.audience:
            raise PushAuthError(403, "push token audience mismatch")
        if self.service_account and (
            claims.get("email") != self.service_account or not claims.get("email_verified")
        ):
            raise PushAuthError(403, "push token is not from the expected service account")
        return claims

    def _platform_verified_claims(self, token: str) -> Mapping[str, Any]:
        if not self.platform_verified:
            # Anyone can write this marker: only trusted when the platform is configured
            # to have checked the token (PUBSUB_PUSH_AUTH=cloud-run-iam).
            raise PushAuthError(
                401,
                "push token has no signature (SIGNATURE_REMOVED_BY_GOOGLE: Cloud Run's IAM "
                "check validated it); set PUBSUB_PUSH_AUTH=cloud-run-iam when the worker "
                "keeps Cloud Run's invoker check",
            )
        try:
            claims = google_jwt.decode(token, verify=False)
        except (ValueError, google_auth_exceptions.GoogleAuthError) as exc:
            raise PushAuthError(401, f"invalid push token: {exc}") from exc
        now = time.time()
        exp, iat = claims.get("exp"), claims.get("iat")
        if not isinstance(exp, int | float) or not isinstance(iat, int | float):
            raise PushAuthError(401, "invalid push token: no exp/iat claim")
        if exp < now - self._skew:
            raise PushAuthError(401, "invalid push token: expired")
        if iat > now + self._skew:
            raise PushAuthError(401, "invalid push token: issued in the future")
        return claims

    async def verify_async(self, authorization: str | None) -> Mapping[str, Any]:
        # Blocking on a certificate fetch (first call / rotation): keep it off the loop.
        return await asyncio.to_thread(self.verify, authorization)
