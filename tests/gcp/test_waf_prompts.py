"""Both WAFs against the prompts this API legitimately receives, evaluated on the rule
definitions the stacks deploy.

No WAF engine runs offline, so each managed/preconfigured rule set is stood in for by
the signature it is documented to match (OWASP CRS 3.3 for Cloud Armor's
``*-v33-stable`` sets, https://cloud.google.com/armor/docs/waf-rules; the AWS core rule
set, https://docs.aws.amazon.com/waf/latest/developerguide/aws-managed-rule-groups-baseline.html:
SizeRestrictions_BODY above 8 KB, CrossSiteScripting_BODY on HTML script tags, ...).
What is evaluated for real is the stacks' own rule logic: Cloud Armor's CEL expressions,
AWS's overrides, labels and scope statements, in priority order.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import pytest
from groundwork_app.settings import Settings

from components.aws.alb import waf_rules
from components.gcp.edge import OWASP_RULES, waf_expression

SQL_AND_SCRIPT = (
    "Why is this slow? SELECT name, email FROM users WHERE id = '1' OR '1'='1'; "
    "DROP TABLE users; and why does <script>alert(document.cookie)</script> run "
    "in my page? Also see ../../etc/passwd"
)
NON_ASCII_10KB = "日本語の長い質問です。" * 310  # 3,410 characters, 10,230 bytes of UTF-8


def _body(prompt: str) -> bytes:
    return json.dumps({"prompt": prompt, "model": "gpt-4o-mini"}, ensure_ascii=False).encode()


def test_the_prompts_are_ones_the_api_accepts() -> None:
    settings = Settings()
    for prompt in (SQL_AND_SCRIPT, NON_ASCII_10KB):
        assert len(prompt) <= settings.max_prompt_chars
        assert len(_body(prompt)) <= settings.max_request_bytes
    assert len(_body(NON_ASCII_10KB)) > 10_000


# Stand-ins for the signatures each rule set is documented to catch.
SIGNATURES = {
    "sqli": re.compile(r"(?i)\bselect\b.+\bfrom\b|\bdrop\s+table\b|'\s*or\s*'1'\s*=\s*'1"),
    "xss": re.compile(r"(?i)<script\b|javascript:|\bonerror\s*="),
    "lfi": re.compile(r"\.\./|/etc/passwd"),
    "rfi": re.compile(r"(?i)=\s*https?://"),
    "rce": re.compile(r"(?i);\s*(?:cat|wget|curl|nc)\s|\$\(|`"),
}


@dataclass
class Request:
    method: str
    path: str
    query: str = ""
    body: bytes = b""

    @property
    def inspected(self) -> str:
        return self.query + "\n" + self.body.decode()


def _cloud_armor_verdict(request: Request) -> int:
    from components.gcp.edge import Edge, EdgeArgs
    from tests.gcp.helpers import REGION, run

    graph = run(lambda: Edge("edge", EdgeArgs(region=REGION, api_service_name="api")))
    policy = graph.one("gcp:compute/securityPolicy:SecurityPolicy").inputs
    for rule in sorted(policy["rules"], key=lambda r: r["priority"]):
        expr = (rule["match"].get("expr") or {}).get("expression")
        if expr is None:
            continue  # rate limit and default allow: source-IP rules
        if _cel(expr, request):
            return int(rule["action"].removeprefix("deny(").removesuffix(")"))
    return 200


def _cel(expression: str, request: Request) -> bool:
    """The subset of Cloud Armor's rules language the stack uses, as Python."""

    def waf(rule_set: str, _options: dict[str, Any]) -> bool:
        family = rule_set.split("-")[0]
        signature = SIGNATURES.get(family)
        return bool(signature and signature.search(request.inspected))

    python = (
        expression.replace("evaluatePreconfiguredWaf", "waf")
        .replace("&&", " and ")
        .replace("||", " or ")
        .replace("!(", " not (")
    )
    return bool(eval(python, {"waf": waf, "request": request}))  # the stack's own rules, no input


@pytest.mark.parametrize("path", ["/v1/jobs", "/v1/webhooks/jobs"])
@pytest.mark.parametrize("prompt", [SQL_AND_SCRIPT, NON_ASCII_10KB], ids=["sql-script", "10kb"])
def test_cloud_armor_lets_legitimate_prompts_through(path: str, prompt: str) -> None:
    assert _cloud_armor_verdict(Request("POST", path, body=_body(prompt))) == 200


def test_cloud_armor_rules_stay_on_everywhere_else() -> None:
    attack = Request("GET", "/v1/jobs/123", query="q=<script>alert(1)</script>")
    assert _cloud_armor_verdict(attack) == 403
    assert _cloud_armor_verdict(Request("POST", "/v1/other", body=_body(SQL_AND_SCRIPT))) == 403
    # A GET of the prompt route is not exempt either (only POST carries a prompt).
    assert _cloud_armor_verdict(Request("GET", "/v1/jobs", query="id=1' OR '1'='1")) == 403


def test_only_body_signature_sets_are_scoped() -> None:
    for rule_set in OWASP_RULES:
        scoped = "request.path" in waf_expression(rule_set, 1)
        assert scoped == (rule_set.split("-")[0] in SIGNATURES), rule_set


# --- AWS WAF (production ALB) ---------------------------------------------------------

# The core rule set's body rules, as AWS documents them: rule -> (matches, label).
CORE_BODY_RULES = {
    "SizeRestrictions_BODY": lambda r: len(r.body) > 8 * 1024,
    "CrossSiteScripting_BODY": lambda r: bool(SIGNATURES["xss"].search(r.body.decode())),
    "GenericLFI_BODY": lambda r: bool(SIGNATURES["lfi"].search(r.body.decode())),
    "GenericRFI_BODY": lambda r: bool(SIGNATURES["rfi"].search(r.body.decode())),
}


def _label(rule: str) -> str:
    return f"awswaf:managed:aws:core-rule-set:{rule.removesuffix('_BODY')}_Body"


def _statement(statement: dict[str, Any], request: Request, labels: set[str]) -> bool:
    if "and_statement" in statement:
        return all(_statement(s, request, labels) for s in statement["and_statement"]["statements"])
    if "or_statement" in statement:
        return any(_statement(s, request, labels) for s in statement["or_statement"]["statements"])
    if "not_statement" in statement:
        return not _statement(statement["not_statement"]["statement"], request, labels)
    if "label_match_statement" in statement:
        match = statement["label_match_statement"]
        assert match["scope"] == "LABEL"
        return match["key"] in labels
    if "byte_match_statement" in statement:
        match = statement["byte_match_statement"]
        assert match["field_to_match"] == {"uri_path": {}}
        assert match["positional_constraint"] == "EXACTLY"
        return request.path == match["search_string"]
    raise AssertionError(f"statement not modelled: {statement}")


def _aws_waf_verdict(request: Request) -> int:
    labels: set[str] = set()
    for rule in sorted(waf_rules("acl", 2000), key=lambda r: r["priority"]):
        statement = rule["statement"]
        if "rate_based_statement" in statement:
            continue
        managed = statement.get("managed_rule_group_statement")
        if managed is not None:
            if managed["name"] != "AWSManagedRulesCommonRuleSet":
                continue  # IP reputation, known bad inputs: nothing in these prompts
            counted = {o["name"] for o in managed.get("rule_action_overrides", [])}
            for name, matches in CORE_BODY_RULES.items():
                if matches(request):
                    labels.add(_label(name))
                    if name not in counted:
                        return 403
            continue
        if _statement(statement, request, labels) and "block" in rule["action"]:
            return 403
    return 200


@pytest.mark.parametrize("path", ["/v1/jobs", "/v1/webhooks/jobs"])
@pytest.mark.parametrize("prompt", [SQL_AND_SCRIPT, NON_ASCII_10KB], ids=["sql-script", "10kb"])
def test_aws_waf_lets_legitimate_prompts_through(path: str, prompt: str) -> None:
    assert _aws_waf_verdict(Request("POST", path, body=_body(prompt))) == 200


def test_aws_waf_body_rules_stay_on_everywhere_else() -> None:
    assert _aws_waf_verdict(Request("POST", "/v1/other", body=_body(SQL_AND_SCRIPT))) == 403
    assert _aws_waf_verdict(Request("POST", "/v1/other", body=_body(NON_ASCII_10KB))) == 403
