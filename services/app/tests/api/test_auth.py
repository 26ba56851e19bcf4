"""Bearer JWT: HS256 and RS256 through a JWKS served on loopback; 401 vs 403."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from groundwork_app.api.auth import bearer_token

from .conftest import JOB, ApiHarness, running_api


def _error(response: Any) -> dict[str, Any]:
    return response.json()["error"]


async def test_missing_token_is_401_with_challenge(api: ApiHarness):
    response = await api.client.post("/v1/jobs", json=JOB)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="groundwork"'
    assert _error(response)["code"] == "unauthorized"
    basic = await api.client.get(
        "/v1/jobs/0b8e5c1e-8f1d-4a61-9b3c-2d1c1f7f6a10",
        headers={"Authorization": "Basic dXNlcjpwYXNz"},
    )
    assert basic.status_code == 401


@pytest.mark.parametrize(
    ("header", "token"),
    [
        (None, None),
        ("", None),
        ("Bearer", None),
        ("Bearer    ", None),
        ("Basic dXNlcjpwYXNz", None),
        ("Token abc", None),
        ("Bearer abc.def.ghi", "abc.def.ghi"),
        ("bearer abc", "abc"),  # the scheme is case-insensitive (RFC 9110)
        ("BEARER  abc ", "abc"),
    ],
)
def test_bearer_token_is_read_like_fastapis_httpbearer(header: str | None, token: str | None):
    assert bearer_token(header) == token


async def test_lowercase_bearer_scheme_is_accepted(api: ApiHarness):
    response = await api.client.post(
        "/v1/jobs", json=JOB, headers={"Authorization": f"bearer {api.token()}"}
    )
    assert response.status_code == 202


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        ({"exp": int(time.time()) - 120}, "expired"),
        ({"aud": "someone-else"}, "audience"),
        ({"iss": "evil"}, "issuer"),
        ({"exp": None}, "'exp'"),
        ({"sub": None}, "'sub'"),
        ({"sub": "system:webhook"}, "reserved"),
        ({"scope": 42}, "scope"),
    ],
)
async def test_invalid_claims_are_401(api: ApiHarness, claims: dict[str, Any], message: str):
    token = api.token(**claims)
    response = await api.client.post(
        "/v1/jobs", json=JOB, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 401
    error = _error(response)
    assert error["code"] == "invalid_token"
    assert message in error["message"]
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


async def test_wrong_key_and_garbage_and_alg_none_are_401(api: ApiHarness):
    wrong_key = api.token(secret="x" * 40)
    unsigned = jwt.encode(
        {
            "sub": "a",
            "iss": api.settings.jwt_issuer,
            "aud": api.settings.jwt_audience,
            "exp": int(time.time()) + 60,
            "scope": "jobs:write",
        },
        None,  # type: ignore[arg-type]
        algorithm="none",
    )
    for token in (wrong_key, "not.a.jwt", unsigned, "é" * 10):
        header = f"Bearer {token}".encode()  # raw bytes: non-ASCII must not break anything
        response = await api.client.post("/v1/jobs", json=JOB, headers=[(b"Authorization", header)])
        assert response.status_code == 401, token
        assert _error(response)["code"] == "invalid_token"


async def test_small_clock_skew_is_tolerated(api: ApiHarness):
    token = api.token(exp=int(time.time()) - 5)
    response = await api.client.post(
        "/v1/jobs", json=JOB, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 202


async def test_missing_scope_is_403(api: ApiHarness):
    read_only = api.auth(scopes="jobs:read")
    response = await api.client.post("/v1/jobs", json=JOB, headers=read_only)
    assert response.status_code == 403
    assert _error(response)["code"] == "insufficient_scope"
    assert 'scope="jobs:write"' in response.headers["www-authenticate"]
    write_only = api.auth(scopes="jobs:write")
    response = await api.client.get(
        "/v1/jobs/0b8e5c1e-8f1d-4a61-9b3c-2d1c1f7f6a10", headers=write_only
    )
    assert response.status_code == 403
    scp_list = api.token(scope=None, scp=["jobs:write"])
    response = await api.client.post(
        "/v1/jobs", json=JOB, headers={"Authorization": f"Bearer {scp_list}"}
    )
    assert response.status_code == 202


class _Jwks:
    def __init__(self) -> None:
        self.documents: dict[str, Any] = {"keys": []}
        self.requests = 0


@pytest.fixture
def jwks_server() -> Iterator[tuple[str, _Jwks]]:
    state = _Jwks()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.requests += 1
            body = json.dumps(state.documents).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json", state
    finally:
        server.shutdown()
        server.server_close()


def _rsa_jwk(kid: str) -> tuple[Any, dict[str, Any]]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update(kid=kid, use="sig", alg="RS256")
    return key, jwk


async def test_rs256_with_jwks(
    settings_factory: Callable[..., Any], clean_db: None, jwks_server: tuple[str, _Jwks]
):
    url, jwks = jwks_server
    key, jwk = _rsa_jwk("k1")
    other_key, other_jwk = _rsa_jwk("k2")
    jwks.documents = {"keys": [jwk]}
    settings = settings_factory(jwt_algorithm="RS256", jwt_jwks_url=url)

    def token(private: Any, kid: str, **claims: Any) -> str:
        payload = {
            "sub": "rsa-client",
            "iss": settings.jwt_issuer,
            "aud": settings.jwt_audience,
            "exp": int(time.time()) + 60,
            "scope": "jobs:write jobs:read",
            **claims,
        }
        return jwt.encode(payload, private, algorithm="RS256", headers={"kid": kid})

    async with running_api(settings) as api:
        ok = await api.client.post(
            "/v1/jobs", json=JOB, headers={"Authorization": f"Bearer {token(key, 'k1')}"}
        )
        assert ok.status_code == 202, ok.text
        # Signed by a key the JWKS does not publish (claiming a published kid): refused.
        forged = await api.client.post(
            "/v1/jobs", json=JOB, headers={"Authorization": f"Bearer {token(other_key, 'k1')}"}
        )
        assert forged.status_code == 401
        # HS256 token signed with the public key's bytes (algorithm confusion): refused.
        hs = api.token(secret="x" * 40)
        assert (
            await api.client.post("/v1/jobs", json=JOB, headers={"Authorization": f"Bearer {hs}"})
        ).status_code == 401
        # Key rotation: a new kid makes the API refetch the JWKS once.
        fetches = jwks.requests
        jwks.documents = {"keys": [jwk, other_jwk]}
        api.app.state.services.verifier._jwks._fetched_at -= 60  # past the refetch floor
        rotated = await api.client.post(
            "/v1/jobs", json=JOB, headers={"Authorization": f"Bearer {token(other_key, 'k2')}"}
        )
        assert rotated.status_code == 202, rotated.text
        assert jwks.requests == fetches + 1
        # Unknown kids do not hammer the JWKS endpoint.
        for _ in range(3):
            unknown = await api.client.post(
                "/v1/jobs",
                json=JOB,
                headers={"Authorization": f"Bearer {token(key, 'nope', sub='x')}"},
            )
            assert unknown.status_code == 401
            assert "unknown signing key" in unknown.json()["error"]["message"]
        assert jwks.requests == fetches + 1
