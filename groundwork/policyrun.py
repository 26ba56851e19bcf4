"""Run the CrossGuard pack over a mocked stack, the way ``pulumi preview`` would.

``run_policies(program_run)`` feeds every recorded resource to each resource policy's
``validate`` as a ``ResourceValidationArgs`` built from the recorded inputs, then
each stack policy with ``StackValidationArgs`` built from the recorded outputs, and
returns one ``Verdict`` per reported violation, with the fix the rule carries.
Enforcement follows the engine's rules: the policy's own level unless the pack config
(``policies/config/<env>.json`` by default, as CI passes it) overrides it; ``disabled``
policies do not run.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    Policy,
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.policy import _NotApplicableError
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, UnknownValueError, unknown_checking_proxy

from groundwork.mockrun import ProgramRun, RecordedResource
from groundwork.tier import Tier
from groundwork.verdict import Verdict
from policies.pack import POLICIES, config_path

__all__ = [
    "Verdict",
    "engine_props",
    "format_verdicts",
    "load_pack_config",
    "mandatory_violations",
    "resource_args",
    "run_policies",
    "stack_args",
]

PackConfig = Mapping[str, Any]


def load_pack_config(environment: Tier | str | Path) -> dict[str, Any]:
    """The config file CI passes for ``environment`` (or an explicit path)."""
    path = environment if isinstance(environment, Path) else config_path(_tier(environment))
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(
            f"policy pack config {path} is missing; regenerate it with "
            "`uv run python -m policies.pack`"
        ) from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object of policy name -> config")
    return data


def _tier(environment: Tier | str) -> Tier:
    try:
        return Tier(environment)
    except ValueError:
        raise ValueError(
            f"unknown environment {environment!r}; expected staging or production"
        ) from None


def _split(entry: Any) -> tuple[EnforcementLevel | None, dict[str, Any]]:
    """A config entry is either a level string or an object with enforcementLevel."""
    if isinstance(entry, str):
        return EnforcementLevel(entry), {}
    if isinstance(entry, Mapping):
        level = entry.get("enforcementLevel")
        props = {k: v for k, v in entry.items() if k != "enforcementLevel"}
        return (EnforcementLevel(level) if level else None), props
    return None, {}


def _options(resource: RecordedResource) -> PolicyResourceOptions:
    options = PolicyResourceOptions(
        protect=resource.protect,
        ignore_changes=list(resource.ignore_changes),
        delete_before_replace=resource.delete_before_replace,
        aliases=list(resource.aliases),
        custom_timeouts=PolicyCustomTimeouts(0, 0, 0),
        additional_secret_outputs=[],
        parent=resource.parent or None,
    )
    # The engine does not hand retainOnDelete to policies; offline we know it, and
    # policies/protection_rules.py accepts it as protection.
    options.retain_on_delete = resource.retain_on_delete  # type: ignore[attr-defined]
    return options


def resource_args(
    resource: RecordedResource,
    config: Mapping[str, Any] | None = None,
    stack_tags: Mapping[str, str] | None = None,
) -> ResourceValidationArgs:
    """What the engine hands a resource policy for ``resource``: its recorded inputs.

    Like the engine, the inputs are wrapped in the SDK's read-only proxy, and values that
    were still unknown when the program registered the resource raise
    ``UnknownValueError`` when a policy reads them.
    """
    return ResourceValidationArgs(
        resource.type,
        engine_props(resource.inputs),
        resource.urn,
        resource.name,
        _options(resource),
        None,
        dict(config or {}),
        dict(stack_tags or {}),
    )


def engine_props(values: Mapping[str, Any]) -> Any:
    """Recorded values as the engine presents them to policies.

    The SDK never sends a ``None`` input, so a ``None`` in a recorded graph is an output
    that was unknown at registration (a random password, an id): it becomes the engine's
    unknown sentinel.
    """
    return unknown_checking_proxy(_mark_unknowns(dict(values)))


def _mark_unknowns(value: Any) -> Any:
    if value is None:
        return UNKNOWN_STRING_VALUE
    if isinstance(value, Mapping):
        return {k: _mark_unknowns(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_mark_unknowns(v) for v in value]
    return value


def stack_args(
    run: ProgramRun,
    config: Mapping[str, Any] | None = None,
    stack_tags: Mapping[str, str] | None = None,
) -> StackValidationArgs:
    """What the engine hands a stack policy: every resource with its outputs and links."""
    return StackValidationArgs(_stack_resources(run), dict(config or {}), dict(stack_tags or {}))


def _stack_resources(run: ProgramRun) -> list[PolicyResource]:
    """PolicyResources with parents, dependencies and value-derived property deps."""
    policy_resources = {
        r.urn: PolicyResource(
            r.type,
            engine_props(r.state or r.inputs),
            r.urn,
            r.name,
            _options(r),
            None,
            None,
            [],
            {},
        )
        for r in run.resources
    }
    owners: dict[str, str] = {}
    for r in run.resources:
        for key in ("id", "arn", "selfLink", "email"):
            value = (r.state or {}).get(key)
            if isinstance(value, str) and value:
                owners.setdefault(value, r.urn)
    for r in run.resources:
        resource = policy_resources[r.urn]
        resource.parent = policy_resources.get(r.parent)
        resource.dependencies = [policy_resources[d] for d in r.depends_on if d in policy_resources]
        # mockrun records dependencies but not which property each came from; the
        # engine does, and the stack rules use it, so recover it from the values.
        for key, value in r.inputs.items():
            deps = {owners[text] for text in _strings(value) if owners.get(text, r.urn) != r.urn}
            if deps:
                resource.property_dependencies[key] = [policy_resources[u] for u in sorted(deps)]
    return list(policy_resources.values())


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def run_policies(
    run: ProgramRun,
    *,
    environment: Tier | str | None = None,
    config: PackConfig | None = None,
    policies: Sequence[Policy] | None = None,
    stack_tags: Mapping[str, str] | None = None,
) -> list[Verdict]:
    """Every violation the pack reports for ``run``.

    ``config`` is a parsed ``--policy-pack-config`` file; when omitted the file for
    ``environment`` is used, and ``environment`` defaults to the stack name when that
    is staging or production. With neither, policies run unconfigured (levels as
    declared, environment read from each resource's tag/label).
    """
    if config is None:
        if environment is None and run.stack in (Tier.STAGING.value, Tier.PRODUCTION.value):
            environment = run.stack
        config = load_pack_config(environment) if environment is not None else {}
    policies = list(POLICIES if policies is None else policies)
    unknown = sorted(set(config) - {p.name for p in policies} - {"all"})
    if unknown:
        raise ValueError(f"pack config names unknown policies: {', '.join(unknown)}")
    tags = dict(stack_tags or {})
    verdicts: list[Verdict] = []
    by_urn = run.by_urn()
    stack_resources: list[PolicyResource] | None = None

    for policy in policies:
        level, props = _split(config.get(policy.name))
        level = level or policy.enforcement_level or EnforcementLevel.ADVISORY
        if level is EnforcementLevel.DISABLED:
            continue
        if level is EnforcementLevel.REMEDIATE:
            level = EnforcementLevel.MANDATORY
        severity = _severity(policy)
        remediation = policy.remediation_steps or ""

        def report(
            message: str,
            urn: str | None = None,
            *,
            _policy: Policy = policy,
            _level: EnforcementLevel = level,
            _severity: str = severity,
            _remediation: str = remediation,
            _default_urn: str = "",
        ) -> None:
            target = urn or _default_urn
            resource = by_urn.get(target)
            verdicts.append(
                Verdict(
                    rule=_policy.name,
                    enforcement=_level.value,
                    severity=_severity,
                    urn=target,
                    resource_type=resource.type if resource else "",
                    resource_name=resource.name if resource else "",
                    message=message,
                    remediation=_unless_said(_remediation, message),
                )
            )

        if isinstance(policy, ResourceValidationPolicy):
            for resource in run.resources:
                args = resource_args(resource, props, tags)

                def report_resource(
                    message: str,
                    urn: str | None = None,
                    _urn: str = resource.urn,
                    _report: Any = report,
                ) -> None:
                    # Like the engine: a resource policy always reports on its resource.
                    _report(message, None, _default_urn=_urn)

                try:
                    policy.validate(args, report_resource)
                except _NotApplicableError:
                    continue
                except UnknownValueError as exc:
                    verdicts.append(_cannot_run(policy, severity, resource, exc))
        elif isinstance(policy, StackValidationPolicy):
            if stack_resources is None:
                stack_resources = _stack_resources(run)
            try:
                policy.validate(StackValidationArgs(stack_resources, dict(props), tags), report)
            except _NotApplicableError:
                continue
            except UnknownValueError as exc:
                verdicts.append(_cannot_run(policy, severity, None, exc))
    return verdicts


def _cannot_run(
    policy: Policy, severity: str, resource: RecordedResource | None, exc: UnknownValueError
) -> Verdict:
    """The engine's answer when a policy reads a value only ``pulumi up`` will know."""
    message = (
        f"can't run policy '{policy.name}' during preview: {exc.message}; it runs "
        "again with the real value during `pulumi up`"
    )
    return Verdict(
        rule=policy.name,
        enforcement=EnforcementLevel.ADVISORY.value,
        severity=severity,
        urn=resource.urn if resource else "",
        resource_type=resource.type if resource else "",
        resource_name=resource.name if resource else "",
        message=message,
        remediation=_unless_said(policy.remediation_steps or "", message),
    )


def _unless_said(remediation: str, message: str) -> str:
    # A rule's own message already ends with "Remediation: ..." (the engine shows only
    # the message); repeating it would print the fix twice.
    return "" if remediation in message else remediation


def _severity(policy: Policy) -> str:
    # Rule.to_policy() sets the policy's severity from the rule's.
    return policy.severity.value if policy.severity is not None else "unspecified"


def mandatory_violations(verdicts: Iterable[Verdict]) -> list[Verdict]:
    return [v for v in verdicts if v.mandatory]


def format_verdicts(verdicts: Iterable[Verdict]) -> str:
    return "\n".join(str(v) for v in verdicts) or "no violations"
