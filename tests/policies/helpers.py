"""Helpers: record real pulumi resources under mocks and drive single policies with them."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pulumi_policy import ResourceValidationPolicy
from pulumi_policy.policy import _NotApplicableError

from groundwork.mockrun import ProgramRun, RecordedResource, run_program
from groundwork.policyrun import resource_args
from policies.pack import POLICIES

POLICY_BY_NAME: dict[str, ResourceValidationPolicy] = {
    p.name: p for p in POLICIES if isinstance(p, ResourceValidationPolicy)
}
PRODUCTION = {"environment": "production"}
TAGS = {
    "environment": "production",
    "service": "groundwork",
    "managed-by": "pulumi",
    "cost-center": "platform",
}


class NotApplicable(Exception):
    pass


def violations(
    rule: str, resource: RecordedResource, config: Mapping[str, Any] | None = PRODUCTION
) -> list[str]:
    """Messages ``rule`` reports for ``resource`` through the real pulumi_policy object."""
    found: list[str] = []

    def report(message: str, urn: str | None = None) -> None:
        found.append(message)

    try:
        POLICY_BY_NAME[rule].validate(resource_args(resource, config), report)
    except _NotApplicableError as exc:
        raise NotApplicable(exc.reason) from exc
    return found


def record(program: Callable[[], None], stack: str = "production") -> ProgramRun:
    return run_program(
        program,
        stack=stack,
        config={
            "aws:region": "us-east-1",
            "gcp:project": "groundwork-test",
            "gcp:region": "europe-west1",
        },
    )


def resource_builder(
    resource_type: Callable[..., Any], defaults: dict[str, Any]
) -> Callable[..., Any]:
    """Build ``resource_type`` as the stack would, passing every rule; the keyword
    arguments a test gives replace the defaults (each test breaks one setting)."""

    def build(resource_name: str, /, **overrides: Any) -> Any:
        # Positional-only: some resources take an argument called ``name`` of their own.
        return resource_type(resource_name, **{**defaults, **overrides})

    return build


Case = tuple[str, str, dict[str, Any]]


def rule_cases(table: list[Case]) -> dict[str, Any]:
    """``pytest.mark.parametrize`` arguments for a table of (rule, builder, overrides)
    rows: each row with its index (the resource's name), shown as ``rule:builder``."""
    return {
        "argnames": ("index", "case"),
        "argvalues": list(enumerate(table)),
        "ids": [f"{rule}:{builder}" for rule, builder, _ in table],
    }


def assert_rejected(rule: str, resource: RecordedResource) -> None:
    found = violations(rule, resource)
    assert found, f"{rule} accepted a resource it must reject"
    assert all("Remediation:" in message for message in found)


def assert_passes_every_rule(cloud: str, rules: list[str], resource: RecordedResource) -> None:
    assert rules, f"no {cloud} rule covers {resource.type}"
    for rule in rules:
        assert violations(rule, resource) == [], rule
