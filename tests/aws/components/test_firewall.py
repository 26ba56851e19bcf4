"""ServiceFirewall (components/aws/firewall.py): only the load balancer is exposed."""

from __future__ import annotations

from typing import Any

import pytest

from components.aws import ServiceFirewall, ServiceFirewallArgs


def test_firewall_exposes_only_alb(helpers: Any) -> None:
    run = helpers.run_component(
        lambda: ServiceFirewall("fw", ServiceFirewallArgs(vpc_id="vpc-1", vpc_cidr="10.40.0.0/16"))
    )
    groups = helpers.ids_by_name(run, "aws:ec2/securityGroup:SecurityGroup")
    ingress = run.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
    by_group: dict[str, list[dict[str, Any]]] = {}
    for rule in ingress:
        by_group.setdefault(groups[rule.inputs["securityGroupId"]], []).append(rule.inputs)
    assert set(by_group) == {"fw-alb", "fw-api"}  # worker, relay, migrate: no ingress
    assert sorted(
        (r["fromPort"], r.get("cidrIpv4") or r.get("cidrIpv6")) for r in by_group["fw-alb"]
    ) == [(80, "0.0.0.0/0"), (80, "::/0"), (443, "0.0.0.0/0"), (443, "::/0")]
    (api,) = by_group["fw-api"]
    assert groups[api["referencedSecurityGroupId"]] == "fw-alb" and api["fromPort"] == 8000
    with pytest.raises(ValueError, match="only 80 and 443"):
        ServiceFirewallArgs(vpc_id="v", vpc_cidr="10.0.0.0/16", public_ports=(22,))
