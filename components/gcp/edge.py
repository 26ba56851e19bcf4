"""Edge: global external HTTPS load balancer with Cloud Armor in front of the API.

Serverless NEG -> backend service (Cloud Armor: OWASP preconfigured WAF rules and a
per-client rate limit with temporary bans) -> URL map -> HTTPS proxy with a
Google-managed certificate and a modern TLS policy; port 80 only redirects to HTTPS.
The API's ingress is then ``INTERNAL_LOAD_BALANCER``, so Cloud Armor cannot be bypassed
through the run.app URL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pulumi
import pulumi_gcp as gcp

from components.args import ArgError, require_resolved

# Preconfigured WAF rule sets (ModSecurity CRS 3.3), sensitivity 1: the lowest
# false-positive level, blocking the well-known attack signatures.
OWASP_RULES: tuple[str, ...] = (
    "sqli-v33-stable",
    "xss-v33-stable",
    "lfi-v33-stable",
    "rfi-v33-stable",
    "rce-v33-stable",
    "methodenforcement-v33-stable",
    "scannerdetection-v33-stable",
    "protocolattack-v33-stable",
    "sessionfixation-v33-stable",
)
# Rule sets that inspect the request body for attack signatures. The job routes carry
# a free-text prompt (up to MAX_PROMPT_CHARS) that users legitimately fill with SQL,
# HTML or shell snippets ("explain this query"); with JSON parsing these rules read it
# and answer 403. Cloud Armor exclusions cover headers, cookies, query parameters and
# the URI only, not body fields (https://cloud.google.com/armor/docs/rule-tuning), so
# these sets skip the prompt routes; every other route keeps them, and the prompt
# routes keep the protocol, method, scanner and rate rules. The prompt is only ever
# stored through bound parameters and sent to the LLM, never interpolated or rendered.
BODY_SIGNATURE_RULES = frozenset(
    {"sqli-v33-stable", "xss-v33-stable", "lfi-v33-stable", "rfi-v33-stable", "rce-v33-stable"}
)
PROMPT_ROUTES: tuple[str, ...] = ("/v1/jobs", "/v1/webhooks/jobs")
"""POST routes whose JSON body carries a prompt (services/app api/routes)."""
WAF_PRIORITY_BASE = 1000
RATE_LIMIT_PRIORITY = 2000
DEFAULT_RULE_PRIORITY = 2147483647
_HOSTNAME = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")


@dataclass
class EdgeArgs:
    region: str
    api_service_name: pulumi.Input[str]
    domain: str | None = None
    """API hostname. Without one, ``<ip>.sslip.io`` is used so the managed certificate can
    still be issued (a third-party wildcard DNS: fine to try, not for production)."""
    waf_rules: tuple[str, ...] = OWASP_RULES
    waf_sensitivity: int = 1
    rate_limit_per_minute: int = 600
    """Requests per client IP per minute before 429s."""
    ban_threshold_per_minute: int = 1200
    """Requests per client IP per minute that earn a ban of ``ban_seconds``."""
    ban_seconds: int = 300
    log_sample_rate: float = 1.0
    labels: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.domain is not None and not _HOSTNAME.match(self.domain):
            raise ArgError("domain", self.domain, "is not a lowercase DNS hostname")
        if not 1 <= self.waf_sensitivity <= 4:
            raise ValueError(f"waf_sensitivity={self.waf_sensitivity}: use 1-4")
        if not 1 <= self.rate_limit_per_minute <= self.ban_threshold_per_minute:
            raise ValueError("need 1 <= rate_limit_per_minute <= ban_threshold_per_minute")
        if not 60 <= self.ban_seconds <= 86400:
            raise ValueError(f"ban_seconds={self.ban_seconds}: use 60-86400")
        if not 0.0 <= self.log_sample_rate <= 1.0:
            raise ValueError(f"log_sample_rate={self.log_sample_rate}: use 0-1")


def _sslip_host(ip: str | None) -> str:
    # The address is computed by GCP; the mock runtime leaves it empty.
    return f"{(ip or '0.0.0.0').replace('.', '-')}.sslip.io"  # noqa: S104


def waf_expression(
    rule_set: str, sensitivity: int, prompt_routes: tuple[str, ...] = PROMPT_ROUTES
) -> str:
    waf = f"evaluatePreconfiguredWaf('{rule_set}', {{'sensitivity': {sensitivity}}})"
    if rule_set not in BODY_SIGNATURE_RULES or not prompt_routes:
        return waf
    routes = " || ".join(f"request.path == '{route}'" for route in prompt_routes)
    return f"!(request.method == 'POST' && ({routes})) && {waf}"


class Edge(pulumi.ComponentResource):
    """External HTTPS load balancer + Cloud Armor for the API service."""

    ip_address: pulumi.Output[str]
    hostname: pulumi.Output[str]
    url: pulumi.Output[str]
    security_policy: gcp.compute.SecurityPolicy
    backend_service_name: pulumi.Output[str]
    forwarding_rule_name: pulumi.Output[str]

    def __init__(
        self, name: str, args: EdgeArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        require_resolved(args)
        super().__init__("groundwork:gcp:Edge", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        address = gcp.compute.GlobalAddress(
            f"{name}-ip",
            description="Anycast IP of the API load balancer",
            address_type="EXTERNAL",
            ip_version="IPV4",
            labels=args.labels,
            opts=child,
        )
        if args.domain:
            hostname: pulumi.Output[str] = pulumi.Output.from_input(args.domain)
        else:
            pulumi.log.warn(
                f"{name}: groundwork:domain is not set; serving on <ip>.sslip.io. Set "
                "`pulumi config set groundwork:domain api.example.com` for production."
            )
            hostname = address.address.apply(_sslip_host)

        neg = gcp.compute.RegionNetworkEndpointGroup(
            f"{name}-neg",
            description="Serverless NEG for the API Cloud Run service",
            network_endpoint_type="SERVERLESS",
            region=args.region,
            cloud_run=gcp.compute.RegionNetworkEndpointGroupCloudRunArgs(
                service=args.api_service_name
            ),
            opts=child,
        )

        rules = [
            gcp.compute.SecurityPolicyRuleArgs(
                priority=WAF_PRIORITY_BASE + index,
                action="deny(403)",
                description=f"OWASP CRS: {rule_set}",
                match=gcp.compute.SecurityPolicyRuleMatchArgs(
                    expr=gcp.compute.SecurityPolicyRuleMatchExprArgs(
                        expression=waf_expression(rule_set, args.waf_sensitivity)
                    )
                ),
            )
            for index, rule_set in enumerate(args.waf_rules)
        ]
        # After the WAF rules: a rate-based rule's conform action ends evaluation, so
        # anything placed after it would never run for conforming clients.
        rules.append(
            gcp.compute.SecurityPolicyRuleArgs(
                priority=RATE_LIMIT_PRIORITY,
                action="rate_based_ban",
                description="Per-IP throttle (429) and temporary ban for floods",
                match=_every_source_ip(),
                rate_limit_options=gcp.compute.SecurityPolicyRuleRateLimitOptionsArgs(
                    conform_action="allow",
                    exceed_action="deny(429)",
                    enforce_on_key="IP",
                    rate_limit_threshold=gcp.compute.SecurityPolicyRuleRateLimitOptionsRateLimitThresholdArgs(
                        count=args.rate_limit_per_minute, interval_sec=60
                    ),
                    ban_threshold=gcp.compute.SecurityPolicyRuleRateLimitOptionsBanThresholdArgs(
                        count=args.ban_threshold_per_minute, interval_sec=60
                    ),
                    ban_duration_sec=args.ban_seconds,
                ),
            )
        )
        rules.append(
            gcp.compute.SecurityPolicyRuleArgs(
                priority=DEFAULT_RULE_PRIORITY,
                action="allow",
                description="Default: allow what no rule above refused",
                match=_every_source_ip(),
            )
        )
        self.security_policy = gcp.compute.SecurityPolicy(
            f"{name}-armor",
            description="OWASP WAF rules and per-IP rate limiting for the API",
            type="CLOUD_ARMOR",
            advanced_options_config=gcp.compute.SecurityPolicyAdvancedOptionsConfigArgs(
                # The API speaks JSON: parse bodies so the WAF inspects fields, not a blob.
                json_parsing="STANDARD",
                log_level="NORMAL",
            ),
            rules=rules,
            labels=args.labels,
            opts=child,
        )
        backend = gcp.compute.BackendService(
            f"{name}-backend",
            description="API Cloud Run service behind Cloud Armor",
            load_balancing_scheme="EXTERNAL_MANAGED",
            protocol="HTTPS",
            backends=[gcp.compute.BackendServiceBackendArgs(group=neg.id)],
            security_policy=self.security_policy.id,
            log_config=gcp.compute.BackendServiceLogConfigArgs(
                enable=True, sample_rate=args.log_sample_rate
            ),
            opts=child,
        )
        url_map = gcp.compute.URLMap(
            f"{name}-urlmap",
            description="All hosts and paths to the API",
            default_service=backend.id,
            opts=child,
        )
        certificate = gcp.compute.ManagedSslCertificate(
            f"{name}-cert",
            description="Google-managed certificate for the API hostname",
            managed=gcp.compute.ManagedSslCertificateManagedArgs(
                domains=[hostname.apply(lambda h: h.rstrip("."))]
            ),
            # A new certificate must exist before the proxy lets go of the old one.
            opts=pulumi.ResourceOptions(parent=self, delete_before_replace=False),
        )
        ssl_policy = gcp.compute.SSLPolicy(
            f"{name}-tls",
            description="TLS 1.2+ with modern cipher suites only",
            profile="MODERN",
            min_tls_version="TLS_1_2",
            opts=child,
        )
        https_proxy = gcp.compute.TargetHttpsProxy(
            f"{name}-https-proxy",
            description="Terminates TLS for the API",
            url_map=url_map.id,
            ssl_certificates=[certificate.id],
            ssl_policy=ssl_policy.id,
            opts=child,
        )
        https_rule = _listener(
            f"{name}-https", "HTTPS listener of the API", "443", https_proxy, address, args, child
        )
        redirect_map = gcp.compute.URLMap(
            f"{name}-http-redirect",
            description="Plain HTTP only redirects to HTTPS",
            default_url_redirect=gcp.compute.URLMapDefaultUrlRedirectArgs(
                https_redirect=True,
                strip_query=False,
                redirect_response_code="MOVED_PERMANENTLY_DEFAULT",
            ),
            opts=child,
        )
        http_proxy = gcp.compute.TargetHttpProxy(
            f"{name}-http-proxy",
            description="Redirects HTTP to HTTPS",
            url_map=redirect_map.id,
            opts=child,
        )
        _listener(
            f"{name}-http", "HTTP listener: redirect only", "80", http_proxy, address, args, child
        )

        self.ip_address = address.address
        self.hostname = hostname
        self.url = hostname.apply(lambda h: f"https://{h}")
        self.backend_service_name = backend.name
        self.forwarding_rule_name = https_rule.name
        self.register_outputs(
            {"ip_address": self.ip_address, "url": self.url, "hostname": self.hostname}
        )


def _listener(
    resource_name: str,
    description: str,
    port: str,
    proxy: gcp.compute.TargetHttpsProxy | gcp.compute.TargetHttpProxy,
    address: gcp.compute.GlobalAddress,
    args: EdgeArgs,
    child: pulumi.ResourceOptions,
) -> gcp.compute.GlobalForwardingRule:
    """A forwarding rule of the load balancer's one address: HTTPS and the HTTP redirect
    differ only in port and proxy."""
    return gcp.compute.GlobalForwardingRule(
        resource_name,
        description=description,
        load_balancing_scheme="EXTERNAL_MANAGED",
        ip_protocol="TCP",
        ip_address=address.id,
        port_range=port,
        target=proxy.id,
        labels=args.labels,
        opts=child,
    )


def _every_source_ip() -> gcp.compute.SecurityPolicyRuleMatchArgs:
    """The match of the rules that apply to every client: the rate limit and the default."""
    return gcp.compute.SecurityPolicyRuleMatchArgs(
        versioned_expr="SRC_IPS_V1",
        config=gcp.compute.SecurityPolicyRuleMatchConfigArgs(src_ip_ranges=["*"]),
    )
