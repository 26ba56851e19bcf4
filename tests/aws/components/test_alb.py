"""Edge (components/aws/alb.py): TLS, WAF, names, plain HTTP."""

from __future__ import annotations

import json
from functools import partial
from typing import Any

import pytest

from components.aws import Edge, EdgeArgs
from components.aws.alb import INSECURE_HTTP_WARNING, TLS_POLICY, bounded_name
from tests.aws.components.common import SUBNETS


def _alb(**kwargs: Any) -> EdgeArgs:
    return EdgeArgs(vpc_id="vpc-1", subnet_ids=SUBNETS, security_group_id="sg-alb", **kwargs)


def test_alb_http_only_is_loud(helpers: Any, caplog: pytest.LogCaptureFixture) -> None:
    run = helpers.run_component(lambda: Edge("edge", _alb()))
    (listener,) = run.of_type("aws:lb/listener:Listener")
    assert listener.inputs["port"] == 80 and listener.inputs["defaultActions"][0]["type"] == (
        "forward"
    )
    assert INSECURE_HTTP_WARNING.startswith("INSECURE")
    lb = run.one("aws:lb/loadBalancer:LoadBalancer").inputs
    assert lb["dropInvalidHeaderFields"] is True and lb["internal"] is False
    assert lb["accessLogs"]["enabled"] is True
    tg = run.one("aws:lb/targetGroup:TargetGroup").inputs
    # Process only: ECS replaces tasks failing it; a Redis blip must not cycle them all.
    assert tg["healthCheck"]["path"] == "/health/live" and tg["deregistrationDelay"] == 30
    assert tg["targetType"] == "ip"
    pab = run.one("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock").inputs
    assert all(
        pab[k]
        for k in (
            "blockPublicAcls",
            "blockPublicPolicy",
            "ignorePublicAcls",
            "restrictPublicBuckets",
        )
    )
    sse = run.one(
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
    ).inputs
    assert sse["rules"][0]["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "AES256"
    policy = json.loads(run.one("aws:s3/bucketPolicy:BucketPolicy").inputs["policy"])
    sids = {s["Sid"]: s for s in policy["Statement"]}
    assert sids["ElbAccountDelivers"]["Principal"] == {"AWS": "arn:aws:iam::127311923021:root"}
    assert sids["DenyInsecureTransport"]["Effect"] == "Deny"
    assert run.of_type("aws:wafv2/webAcl:WebAcl") == []


def test_alb_https_with_certificate_and_waf(helpers: Any) -> None:
    run = helpers.run_component(
        lambda: Edge(
            "edge",
            _alb(
                domain="api.example.com",
                certificate_arn="arn:aws:acm:us-east-1:1:certificate/x",
                waf=True,
                deletion_protection=True,
            ),
        )
    )
    listeners = {r.inputs["port"]: r.inputs for r in run.of_type("aws:lb/listener:Listener")}
    assert listeners[443]["sslPolicy"] == TLS_POLICY == "ELBSecurityPolicy-TLS13-1-2-2021-06"
    assert listeners[443]["certificateArn"].endswith("certificate/x")
    assert listeners[80]["defaultActions"][0]["redirect"]["protocol"] == "HTTPS"
    assert run.one("aws:lb/loadBalancer:LoadBalancer").inputs["enableDeletionProtection"]
    acl = run.one("aws:wafv2/webAcl:WebAcl").inputs
    rules = {r["name"]: r for r in acl["rules"]}
    assert rules["rate-limit-per-ip"]["statement"]["rateBasedStatement"]["limit"] == 2000
    assert "AWSManagedRulesCommonRuleSet" in rules
    assert run.one("aws:wafv2/webAclAssociation:WebAclAssociation")
    assert run.of_type("aws:acm/certificate:Certificate") == []


def test_alb_certificate_from_hosted_zone(helpers: Any) -> None:
    run = helpers.run_component(
        lambda: Edge("edge", _alb(domain="api.example.com", hosted_zone_id="Z123"))
    )
    assert run.one("aws:acm/certificate:Certificate").inputs["validationMethod"] == "DNS"
    assert run.one("aws:acm/certificateValidation:CertificateValidation")
    alias = next(r for r in run.of_type("aws:route53/record:Record") if r.name == "edge-alias")
    assert alias.inputs["type"] == "A" and alias.inputs["name"] == "api.example.com"


def test_alb_and_target_group_names_fit_32_characters(helpers: Any) -> None:
    long_name = "a-very-long-service-name-production-edge"
    runs = [
        helpers.run_component(partial(Edge, long_name, _alb(container_port=port)))
        for port in (8000, 9000)
    ]
    names = []
    for run in runs:
        alb = run.one("aws:lb/loadBalancer:LoadBalancer").inputs["name"]
        tg = run.one("aws:lb/targetGroup:TargetGroup").inputs["name"]
        assert len(alb) <= 32 and len(tg) <= 32
        assert not alb.endswith("-") and not tg.endswith("-")
        names.append((alb, tg))
    # The ALB keeps its name; a target group that must be replaced (new port) gets a new
    # one, or creating the replacement would collide with the one still in use.
    assert names[0][0] == names[1][0] and names[0][1] != names[1][1]
    keepers = runs[0].one("random:index/randomId:RandomId").inputs["keepers"]
    assert keepers["port"] == "8000" and keepers["vpc_id"] == "vpc-1"


def test_bounded_name_keeps_cut_names_apart() -> None:
    assert bounded_name("short", "alb") == "short-alb"
    first = bounded_name("service-one-production-edge-xx", "alb")
    second = bounded_name("service-one-production-edge-yy", "alb")
    assert first != second and len(first) == len(second) == 32
    assert bounded_name("x" * 40, "api-abcdef", suffix_is_unique=True) == "x" * 21 + "-api-abcdef"


def test_alb_rejects_domain_without_certificate() -> None:
    with pytest.raises(ValueError, match="certificate_arn"):
        _alb(domain="api.example.com")
