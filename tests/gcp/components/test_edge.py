"""Edge (components/gcp/edge.py): WAF, rate limit, certificate, redirect, arguments."""

from __future__ import annotations

import re

import pytest

from components.gcp.edge import OWASP_RULES, Edge, EdgeArgs
from tests.gcp.helpers import REGION, by_name, run


def test_edge_has_owasp_waf_rate_limit_managed_cert_and_redirect() -> None:
    graph = run(
        lambda: Edge("edge", EdgeArgs(region=REGION, api_service_name="api", domain="api.ex.com"))
    )
    policy = graph.one("gcp:compute/securityPolicy:SecurityPolicy").inputs
    rules = sorted(policy["rules"], key=lambda r: r["priority"])
    waf = [r for r in rules if "evaluatePreconfiguredWaf" in str(r["match"])]
    found = {
        re.search(r"evaluatePreconfiguredWaf\('([^']+)'", r["match"]["expr"]["expression"])[1]  # type: ignore[index]
        for r in waf
    }
    assert found == set(OWASP_RULES)
    assert all(r["action"] == "deny(403)" for r in waf)
    rate = next(r for r in rules if r["action"] == "rate_based_ban")
    assert rate["priority"] > max(r["priority"] for r in waf)
    assert rate["rateLimitOptions"]["exceedAction"] == "deny(429)"
    assert rate["rateLimitOptions"]["banDurationSec"] == 300
    assert rules[-1]["priority"] == 2147483647
    backend = graph.one("gcp:compute/backendService:BackendService").inputs
    assert backend["loadBalancingScheme"] == "EXTERNAL_MANAGED"
    assert backend["securityPolicy"]
    assert backend["logConfig"]["enable"] is True
    neg = graph.one("gcp:compute/regionNetworkEndpointGroup:RegionNetworkEndpointGroup").inputs
    assert neg["networkEndpointType"] == "SERVERLESS"
    assert neg["cloudRun"] == {"service": "api"}
    cert = graph.one("gcp:compute/managedSslCertificate:ManagedSslCertificate").inputs
    assert cert["managed"]["domains"] == ["api.ex.com"]
    tls = graph.one("gcp:compute/sSLPolicy:SSLPolicy").inputs
    assert (tls["minTlsVersion"], tls["profile"]) == ("TLS_1_2", "MODERN")
    maps = by_name(graph, "gcp:compute/uRLMap:URLMap")
    assert maps["edge-http-redirect"].inputs["defaultUrlRedirect"]["httpsRedirect"] is True
    rules_by_port = {
        r.inputs["portRange"]: r
        for r in graph.of_type("gcp:compute/globalForwardingRule:GlobalForwardingRule")
    }
    assert set(rules_by_port) == {"443", "80"}


def test_edge_without_domain_falls_back_to_sslip() -> None:
    urls: list[str] = []

    def program() -> None:
        edge = Edge("edge", EdgeArgs(region=REGION, api_service_name="api"))
        edge.url.apply(urls.append)

    graph = run(program)
    cert = graph.one("gcp:compute/managedSslCertificate:ManagedSslCertificate").inputs
    assert cert["managed"]["domains"] == ["203-0-113-10.sslip.io"]
    assert urls == ["https://203-0-113-10.sslip.io"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"domain": "API.Example.com"}, "hostname"),
        ({"rate_limit_per_minute": 100, "ban_threshold_per_minute": 50}, "rate_limit"),
        ({"waf_sensitivity": 0}, "sensitivity"),
    ],
)
def test_edge_arguments_are_validated(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EdgeArgs(region=REGION, api_service_name="api", **kwargs)  # type: ignore[arg-type]
