"""Edge: the internet-facing ALB in front of the API, with optional WAF.

It composes AccessLogBucket (components/aws/access_logs.py) and, when it validates its own
certificate, DnsCertificate (components/aws/certificate.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import pulumi
import pulumi_aws as aws
import pulumi_random as random

from components.args import renamed_from
from components.aws.access_logs import AccessLogBucket, AccessLogBucketArgs
from components.aws.certificate import DnsCertificate, DnsCertificateArgs
from components.aws.container_service import BlueGreenTraffic, DeploymentStrategy

ALLOW: Any = {"allow": {}}
# Load balancer and target group names: at most 32 letters, digits and hyphens. Pulumi's
# auto-name (logical name + 8 characters) overflows that for any stack prefix longer
# than 24 characters, so both get explicit names.
ELB_NAME_LIMIT = 32
TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"
INSECURE_HTTP_WARNING = (
    "INSECURE: no domain/certificate configured, so the API load balancer serves plain "
    "HTTP on port 80 (tokens and payloads travel unencrypted). Set groundwork:domain and "
    "groundwork:certificateArn (or groundwork:hostedZoneId) before real traffic."
)


@dataclass
class EdgeArgs:
    vpc_id: pulumi.Input[str]
    subnet_ids: Sequence[pulumi.Input[str]]
    """Public subnets, one per AZ."""
    security_group_id: pulumi.Input[str]
    container_port: int = 8000
    health_check_path: str = "/health/live"
    """The process only: ECS replaces tasks that fail the target group check, so a Redis or
    database blip on /health/ready would cycle every healthy task (readiness is for the
    smoke test and alarms)."""
    domain: str | None = None
    certificate_arn: str | None = None
    """An issued ACM certificate in this region for ``domain``."""
    hosted_zone_id: str | None = None
    """Route 53 zone of ``domain``: DNS-validated certificate and alias record are created."""
    deletion_protection: bool = False
    """The load balancer's deletion protection, and Pulumi ``protect`` + ``retain_on_delete``
    on the access-log bucket and the WAF log group (they hold the audit trail)."""
    waf: bool = False
    waf_rate_limit: int = 2000
    """Requests per 5 minutes per client IP before WAF blocks it."""
    waf_log_retention_days: int = 30
    waf_log_kms_key_arn: pulumi.Input[str] | None = None
    """WAF request logs go to ``aws-waf-logs-<name>`` (the prefix WAF requires), encrypted
    with this key, with the Authorization header redacted."""
    access_log_retention_days: int = 90
    deregistration_delay_seconds: int = 30
    """Short: the API drains in-flight requests within its 25 s shutdown timeout."""
    idle_timeout_seconds: int = 60
    api_deployment: DeploymentStrategy = DeploymentStrategy.ROLLING
    """BLUE_GREEN adds the alternate target group and the production listener rule
    that ECS swaps between the two (see ContainerService)."""

    def __post_init__(self) -> None:
        self.api_deployment = DeploymentStrategy(self.api_deployment)
        if (self.certificate_arn or self.hosted_zone_id) and not self.domain:
            raise ValueError("certificate_arn / hosted_zone_id need domain")
        if self.domain and not (self.certificate_arn or self.hosted_zone_id):
            raise ValueError(
                f"domain={self.domain!r} needs certificate_arn (an issued ACM certificate) or "
                "hosted_zone_id (to create and DNS-validate one)"
            )
        if not 100 <= self.waf_rate_limit <= 2_000_000_000:
            raise ValueError(f"waf_rate_limit={self.waf_rate_limit}: WAF accepts 100 or more")
        if not 0 <= self.deregistration_delay_seconds <= 3600:
            raise ValueError("deregistration_delay_seconds must be 0 to 3600")

    @property
    def https(self) -> bool:
        return self.domain is not None


class Edge(pulumi.ComponentResource):
    load_balancer_arn: pulumi.Output[str]
    arn_suffix: pulumi.Output[str]
    dns_name: pulumi.Output[str]
    target_group_arn: pulumi.Output[str]
    target_group_arn_suffix: pulumi.Output[str]
    url: pulumi.Output[str]
    access_log_bucket: pulumi.Output[str]
    https: bool
    listener_arn: pulumi.Output[str]
    """The listener that forwards to the API (HTTPS when enabled)."""
    web_acl_arn: pulumi.Output[str] | None
    blue_green: BlueGreenTraffic | None
    """BLUE_GREEN only: alternate target group and production listener rule for ECS."""

    def __init__(
        self, name: str, args: EdgeArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(
            "groundwork:aws:Edge",
            name,
            None,
            renamed_from("groundwork:aws:PublicLoadBalancer", opts),
        )
        child = pulumi.ResourceOptions(parent=self)
        self.https = args.https
        logs = AccessLogBucket(
            f"{name}-access-logs",
            AccessLogBucketArgs(
                retention_days=args.access_log_retention_days,
                deletion_protection=args.deletion_protection,
            ),
            opts=child,
        )
        bucket, policy = logs.bucket, logs.policy
        alb = aws.lb.LoadBalancer(
            f"{name}-alb",
            name=bounded_name(name, "alb"),
            load_balancer_type="application",
            internal=False,
            security_groups=[args.security_group_id],
            subnets=list(args.subnet_ids),
            drop_invalid_header_fields=True,
            enable_deletion_protection=args.deletion_protection,
            idle_timeout=args.idle_timeout_seconds,
            access_logs={"bucket": bucket.bucket, "enabled": True, "prefix": "alb"},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[policy]),
        )
        # A target group is replaced (not updated) when its port, protocol, type or VPC
        # changes; the new one is created while the old one is still in use, so its
        # name takes a random part that changes exactly then.
        tg_suffix = random.RandomId(
            f"{name}-api-tg-suffix",
            byte_length=3,
            keepers={
                "port": str(args.container_port),
                "protocol": "HTTP",
                "target_type": "ip",
                "vpc_id": args.vpc_id,
            },
            opts=child,
        )

        def api_target_group(resource: str, role: str) -> aws.lb.TargetGroup:
            return aws.lb.TargetGroup(
                resource,
                name=tg_suffix.hex.apply(
                    lambda suffix: bounded_name(name, f"{role}-{suffix}", suffix_is_unique=True)
                ),
                port=args.container_port,
                protocol="HTTP",
                target_type="ip",
                vpc_id=args.vpc_id,
                deregistration_delay=args.deregistration_delay_seconds,
                health_check=cast(
                    Any,
                    {
                        "enabled": True,
                        "path": args.health_check_path,
                        "protocol": "HTTP",
                        "matcher": "200",
                        "interval": 15,
                        "timeout": 5,
                        "healthy_threshold": 2,
                        "unhealthy_threshold": 3,
                    },
                ),
                opts=child,
            )

        target_group = api_target_group(f"{name}-api-tg", "api")
        forward: list[Any] = [{"type": "forward", "target_group_arn": target_group.arn}]
        if args.https:
            certificate = args.certificate_arn or (
                DnsCertificate(
                    f"{name}-cert",
                    DnsCertificateArgs(
                        domain=str(args.domain), hosted_zone_id=str(args.hosted_zone_id)
                    ),
                    opts=child,
                ).certificate_arn
            )
            listener = aws.lb.Listener(
                f"{name}-https",
                load_balancer_arn=alb.arn,
                port=443,
                protocol="HTTPS",
                ssl_policy=TLS_POLICY,
                certificate_arn=certificate,
                default_actions=forward,
                opts=child,
            )
            aws.lb.Listener(
                f"{name}-http-redirect",
                load_balancer_arn=alb.arn,
                port=80,
                protocol="HTTP",
                default_actions=[
                    {
                        "type": "redirect",
                        "redirect": {"port": "443", "protocol": "HTTPS", "status_code": "HTTP_301"},
                    }
                ],
                opts=child,
            )
            if args.hosted_zone_id:
                aws.route53.Record(
                    f"{name}-alias",
                    zone_id=args.hosted_zone_id,
                    name=args.domain,
                    type="A",
                    aliases=[
                        {
                            "name": alb.dns_name,
                            "zone_id": alb.zone_id,
                            "evaluate_target_health": True,
                        }
                    ],
                    opts=child,
                )
            self.url = pulumi.Output.from_input(f"https://{args.domain}")
        else:
            pulumi.log.warn(INSECURE_HTTP_WARNING, resource=self)
            listener = aws.lb.Listener(
                f"{name}-http",
                load_balancer_arn=alb.arn,
                port=80,
                protocol="HTTP",
                default_actions=forward,
                opts=child,
            )
            self.url = alb.dns_name.apply(lambda dns: f"http://{dns}")

        self.blue_green = None
        if args.api_deployment is DeploymentStrategy.BLUE_GREEN:
            alternate = api_target_group(f"{name}-api-tg-alt", "alt")
            rule = aws.lb.ListenerRule(
                f"{name}-api-rule",
                listener_arn=listener.arn,
                priority=1,
                conditions=[{"path_pattern": {"values": ["/*"]}}],
                # Forward only (ECS refuses rules that mix forward with other actions),
                # weighted so ECS can swing traffic between the groups.
                actions=[
                    {
                        "type": "forward",
                        "forward": {
                            "target_groups": [
                                {"arn": target_group.arn, "weight": 100},
                                {"arn": alternate.arn, "weight": 0},
                            ]
                        },
                    }
                ],
                opts=pulumi.ResourceOptions(
                    parent=self,
                    # ECS owns the weights after the first deployment; resetting them
                    # would send traffic to a group without tasks.
                    ignore_changes=["actions"],
                ),
            )
            self.blue_green = BlueGreenTraffic(
                alternate_target_group_arn=alternate.arn,
                alternate_target_group_arn_suffix=alternate.arn_suffix,
                production_listener_rule_arn=rule.arn,
            )

        self.web_acl_arn = None
        if args.waf:
            acl = aws.wafv2.WebAcl(
                f"{name}-waf",
                scope="REGIONAL",
                description=f"{name}: AWS managed rules and a per-IP rate limit",
                default_action=ALLOW,
                rules=waf_rules(name, args.waf_rate_limit),
                visibility_config=_visibility(f"{name}-waf"),
                opts=child,
            )
            aws.wafv2.WebAclAssociation(
                f"{name}-waf-association",
                resource_arn=alb.arn,
                web_acl_arn=acl.arn,
                opts=child,
            )
            # WAF delivers to CloudWatch Logs only into groups named aws-waf-logs-*
            # (logging-cw-logs.html); bearer tokens must not land in the logs.
            waf_logs = aws.cloudwatch.LogGroup(
                f"{name}-waf-logs",
                name=f"{WAF_LOG_PREFIX}{name}",
                retention_in_days=args.waf_log_retention_days,
                kms_key_id=args.waf_log_kms_key_arn,
                opts=pulumi.ResourceOptions(
                    parent=self,
                    protect=args.deletion_protection,
                    retain_on_delete=args.deletion_protection,
                ),
            )
            aws.wafv2.WebAclLoggingConfiguration(
                f"{name}-waf-logging",
                resource_arn=acl.arn,
                log_destination_configs=[waf_logs.arn],
                redacted_fields=[{"single_header": {"name": h}} for h in WAF_REDACTED_HEADERS],
                opts=child,
            )
            self.web_acl_arn = acl.arn

        self.load_balancer_arn = alb.arn
        self.arn_suffix = alb.arn_suffix
        self.dns_name = alb.dns_name
        self.target_group_arn = target_group.arn
        self.target_group_arn_suffix = target_group.arn_suffix
        self.access_log_bucket = bucket.bucket
        self.listener_arn = listener.arn
        self.register_outputs(
            {
                "load_balancer_arn": self.load_balancer_arn,
                "target_group_arn": self.target_group_arn,
                "url": self.url,
            }
        )


WAF_LOG_PREFIX = "aws-waf-logs-"
WAF_REDACTED_HEADERS = ("authorization", "cookie")


def bounded_name(
    base: str, suffix: str, limit: int = ELB_NAME_LIMIT, *, suffix_is_unique: bool = False
) -> str:
    """``{base}-{suffix}`` in at most ``limit`` characters, valid as an ELB name.

    When it is too long, ``base`` is cut; unless ``suffix`` is itself unique (random), a
    short hash of the whole base keeps names of different stacks apart (their prefixes
    may differ only past the cut).
    """
    full = f"{base}-{suffix}"
    if len(full) <= limit:
        return full
    tail = (
        suffix if suffix_is_unique else f"{hashlib.sha256(base.encode()).hexdigest()[:6]}-{suffix}"
    )
    keep = limit - len(tail) - 1
    if keep < 1:
        raise ValueError(f"suffix {suffix!r} leaves no room for a name within {limit} characters")
    return f"{base[:keep].rstrip('-')}-{tail}"


def _visibility(metric: str) -> Any:
    return {
        "cloudwatch_metrics_enabled": True,
        "metric_name": metric.replace("-", "_")[:128],
        "sampled_requests_enabled": True,
    }


MANAGED_RULE_GROUPS = (
    "AWSManagedRulesAmazonIpReputationList",
    "AWSManagedRulesCommonRuleSet",
    "AWSManagedRulesKnownBadInputsRuleSet",
)


# Core rule set rules that read the body. The job routes carry a free-text prompt of up
# to 8,000 characters (64 KB bodies): SizeRestrictions_BODY blocks bodies over 8 KB and
# CrossSiteScripting_BODY / GenericLFI_BODY / GenericRFI_BODY block prompts quoting HTML
# or paths. AWS's documented tuning: override them to Count (they still add their label)
# and block on the label everywhere except the prompt routes
# (https://docs.aws.amazon.com/waf/latest/developerguide/aws-managed-rule-groups-baseline.html,
# "label match" in https://docs.aws.amazon.com/waf/latest/developerguide/waf-rule-label-match-examples.html).
# An ALB hands WAF only the first 8 KB of a body anyway; the API enforces its own 64 KB.
SCOPED_BODY_RULES = (
    "SizeRestrictions_BODY",
    "CrossSiteScripting_BODY",
    "GenericLFI_BODY",
    "GenericRFI_BODY",
)
PROMPT_ROUTES = ("/v1/jobs", "/v1/webhooks/jobs")


def _core_label(rule: str) -> str:
    # The rule SizeRestrictions_BODY labels requests ...:SizeRestrictions_Body.
    return f"awswaf:managed:aws:core-rule-set:{rule.removesuffix('_BODY')}_Body"


def _body_rules_outside_prompt_routes(name: str, priority: int) -> Any:
    return {
        "name": "core-body-rules-outside-prompt-routes",
        "priority": priority,
        "action": {"block": {}},
        "statement": {
            "and_statement": {
                "statements": [
                    {
                        "or_statement": {
                            "statements": [
                                {"label_match_statement": {"scope": "LABEL", "key": _core_label(r)}}
                                for r in SCOPED_BODY_RULES
                            ]
                        }
                    },
                    {
                        "not_statement": {
                            "statement": {
                                "or_statement": {
                                    "statements": [
                                        {
                                            "byte_match_statement": {
                                                "field_to_match": {"uri_path": {}},
                                                "positional_constraint": "EXACTLY",
                                                "search_string": route,
                                                "text_transformations": [
                                                    {"priority": 0, "type": "NONE"}
                                                ],
                                            }
                                        }
                                        for route in PROMPT_ROUTES
                                    ]
                                }
                            }
                        }
                    },
                ]
            }
        },
        "visibility_config": _visibility(f"{name}-core-body-rules"),
    }


def waf_rules(name: str, rate_limit: int) -> list[Any]:
    """A per-IP rate rule first, then AWS managed rule groups in their own action."""
    rules: list[Any] = [
        {
            "name": "rate-limit-per-ip",
            "priority": 0,
            "action": {"block": {}},
            "statement": {
                "rate_based_statement": {"limit": rate_limit, "aggregate_key_type": "IP"}
            },
            "visibility_config": _visibility(f"{name}-rate-limit"),
        }
    ]
    for priority, group in enumerate(MANAGED_RULE_GROUPS, start=1):
        statement: dict[str, Any] = {"name": group, "vendor_name": "AWS"}
        if group == "AWSManagedRulesCommonRuleSet":
            statement["rule_action_overrides"] = [
                {"name": rule, "action_to_use": {"count": {}}} for rule in SCOPED_BODY_RULES
            ]
        rules.append(
            {
                "name": group,
                "priority": priority,
                "override_action": {"none": {}},
                "statement": {"managed_rule_group_statement": statement},
                "visibility_config": _visibility(f"{name}-{group}"),
            }
        )
    rules.append(_body_rules_outside_prompt_routes(name, len(MANAGED_RULE_GROUPS) + 1))
    return rules
