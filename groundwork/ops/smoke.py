"""Cloud-agnostic HTTP smoke checks: readiness, then one job through the whole system.

A job round trip proves more than a health endpoint: the API wrote the job and its
outbox row, the relay published it, the queue delivered it and a worker finished it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from groundwork import tokens
from groundwork.ops.errors import SmokeTestError, UserError

SUCCEEDED = frozenset({"succeeded", "completed", "done"})
FAILED = frozenset({"failed", "error", "dead_lettered", "cancelled"})
MIN_HS256_SECRET = 32


def mint_token(
    secret: str,
    *,
    issuer: str = "groundwork",
    audience: str = "groundwork-api",
    subject: str = "groundwork-smoke-test",
    ttl_seconds: int = 300,
    now: Callable[[], float] = time.time,
) -> str:
    """A short-lived HS256 JWT for the smoke test, signed with the service's JWT secret.

    It carries the job scopes: the smoke test submits a job and reads it back, and the
    API answers 403 ``insufficient_scope`` to a token without them.
    """
    if len(secret) < MIN_HS256_SECRET:
        raise UserError(
            f"the JWT secret is {len(secret)} characters; the service refuses secrets under "
            f"{MIN_HS256_SECRET}, so a token signed with it would be rejected"
        )
    issued = int(now())
    return tokens.mint_token(
        secret,
        issuer=issuer,
        audience=audience,
        subject=subject,
        ttl_seconds=ttl_seconds,
        now=lambda: issued,
        nbf=issued,
        jti=uuid.uuid4().hex,
    )


@dataclass
class SmokeReport:
    base_url: str
    ready_status: int = 0
    job_id: str = ""
    job_status: str = ""
    job_seconds: float = 0.0
    checks: list[str] = field(default_factory=list)


def _snippet(response: httpx.Response) -> str:
    text = response.text.strip().replace("\n", " ")
    return text[:200] or "<empty body>"


def check_ready(client: httpx.Client, base_url: str) -> int:
    url = f"{base_url.rstrip('/')}/health/ready"
    try:
        response = client.get(url)
    except httpx.HTTPError as exc:
        raise SmokeTestError(f"GET {url} failed: {exc.__class__.__name__}: {exc}") from None
    if response.status_code != httpx.codes.OK:
        raise SmokeTestError(f"GET {url} returned {response.status_code}: {_snippet(response)}")
    return response.status_code


def job_round_trip(
    client: httpx.Client,
    base_url: str,
    token: str,
    *,
    prompt: str = "groundwork smoke test: reply with OK",
    timeout_seconds: float = 120.0,
    poll_seconds: float = 2.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[str, str, float]:
    """POST a job, poll it until it succeeds; returns (id, status, seconds)."""
    base = base_url.rstrip("/")
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": uuid.uuid4().hex}
    started = clock()
    try:
        created = client.post(f"{base}/v1/jobs", json={"prompt": prompt}, headers=headers)
    except httpx.HTTPError as exc:
        raise SmokeTestError(f"POST {base}/v1/jobs failed: {exc}") from None
    if created.status_code in (httpx.codes.UNAUTHORIZED, httpx.codes.FORBIDDEN):
        raise SmokeTestError(
            f"POST {base}/v1/jobs returned {created.status_code}: the smoke token was "
            "rejected (check the JWT secret, issuer and audience)"
        )
    if created.status_code not in (httpx.codes.OK, httpx.codes.CREATED, httpx.codes.ACCEPTED):
        raise SmokeTestError(
            f"POST {base}/v1/jobs returned {created.status_code}: {_snippet(created)}"
        )
    body = created.json()
    job_id = str(body.get("id") or body.get("job_id") or "")
    if not job_id:
        raise SmokeTestError(f"POST {base}/v1/jobs answered without a job id: {_snippet(created)}")
    status = ""
    while True:
        try:
            response = client.get(f"{base}/v1/jobs/{job_id}", headers=headers)
        except httpx.HTTPError as exc:
            raise SmokeTestError(f"GET {base}/v1/jobs/{job_id} failed: {exc}") from None
        if response.status_code != httpx.codes.OK:
            raise SmokeTestError(
                f"GET {base}/v1/jobs/{job_id} returned {response.status_code}: {_snippet(response)}"
            )
        status = str(response.json().get("status", "")).lower()
        if status in SUCCEEDED:
            return job_id, status, clock() - started
        if status in FAILED:
            raise SmokeTestError(
                f"job {job_id} ended {status}: {_snippet(response)}; check the worker logs"
            )
        if clock() - started >= timeout_seconds:
            raise SmokeTestError(
                f"job {job_id} still {status or 'unknown'} after {timeout_seconds:.0f} s; "
                "is the relay or a worker down? (groundwork ops dlq-depth, worker logs)"
            )
        sleep(poll_seconds)


def http_smoke(
    base_url: str,
    token: str | None,
    *,
    client: httpx.Client | None = None,
    job_timeout_seconds: float = 120.0,
    poll_seconds: float = 2.0,
    sleep: Callable[[float], None] = time.sleep,
) -> SmokeReport:
    """Readiness, then (when a token is available) a job round trip."""
    if not base_url.startswith(("https://", "http://")):
        raise UserError(f"api url {base_url!r} must start with https:// or http://")
    own_client = client is None
    http = client or httpx.Client(timeout=httpx.Timeout(10.0), follow_redirects=False)
    report = SmokeReport(base_url=base_url)
    try:
        report.ready_status = check_ready(http, base_url)
        report.checks.append("GET /health/ready 200")
        if token:
            report.job_id, report.job_status, report.job_seconds = job_round_trip(
                http,
                base_url,
                token,
                timeout_seconds=job_timeout_seconds,
                poll_seconds=poll_seconds,
                sleep=sleep,
            )
            report.checks.append(
                f"job {report.job_id} {report.job_status} in {report.job_seconds:.1f} s"
            )
    finally:
        if own_client:
            http.close()
    return report
