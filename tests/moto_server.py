"""moto's standalone server on loopback: real HTTP, as boto3 and the AWS CLI talk to AWS.

One owner for what every AWS-facing infrastructure test needs: credentials moto accepts
(and no way to reach a real account) and a fresh server the SDKs reach through
``AWS_ENDPOINT_URL``.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from moto.moto_server.threaded_moto_server import ThreadedMotoServer


def use_test_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Credentials moto accepts, and no chance of reaching a real account."""
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@contextmanager
def moto_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A started server's URL, set as ``AWS_ENDPOINT_URL``; stopped on exit."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", url)
    # The server's backends are process-wide: start from an empty account.
    urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", method="POST"))
    try:
        yield url
    finally:
        server.stop()
