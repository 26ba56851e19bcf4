"""The rule model shared by every rule module: one ``Rule`` becomes one CrossGuard policy.

A rule is plain data plus a check function that returns the problems it found, so the
same object serves ``pulumi preview --policy-pack policies`` (through ``to_policy``),
``groundwork.policyrun`` (which drives ``to_policy().validate`` over a mocked graph)
and the rule table in docs/policies.md. Severity, the control a rule implements and
how its enforcement changes per environment live here because CrossGuard's config
file can only override an enforcement level, not explain it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    Policy,
    PolicyComplianceFramework,
    PolicyConfigSchema,
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy import Severity as PolicySeverity
from pulumi_policy.proxy import UnknownValueError

# The pack's own virtualenv imports this from the repository root (see __main__.py).
from groundwork.tier import Tier

REQUIRED_TAGS: tuple[str, ...] = ("environment", "service", "managed-by", "cost-center")


class Severity(StrEnum):
    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


class TierSource(StrEnum):
    CONFIG = "config"
    TAG = "tag"
    DEFAULT = "default"


def _environment_label(props: Mapping[str, Any]) -> str | None:
    """The ``environment`` tag (AWS) or label (GCP) a resource carries, if any."""
    for path in ("tags", "labels", "userLabels", "settings.userLabels"):
        try:
            value = get(props, f"{path}.environment")
        except UnknownValueError:  # tags computed from outputs are unknown in a preview
            continue
        if isinstance(value, str) and value:
            return value
    return None


def resolve_tier(config: Mapping[str, Any], props: Mapping[str, Any]) -> tuple[Tier, TierSource]:
    """Policy config wins, then the resource's own environment tag, then strict production."""
    configured = config.get("environment")
    if configured in (Tier.STAGING.value, Tier.PRODUCTION.value):
        return Tier(configured), TierSource.CONFIG
    tagged = _environment_label(props)
    if tagged in (Tier.STAGING.value, Tier.PRODUCTION.value):
        return Tier(tagged), TierSource.TAG
    return Tier.PRODUCTION, TierSource.DEFAULT


@dataclass(frozen=True)
class Subject:
    """What a resource check sees: the inputs plus the resolved environment and config."""

    type: str
    name: str
    urn: str
    props: Mapping[str, Any]
    tier: Tier
    config: Mapping[str, Any]

    @property
    def production(self) -> bool:
        return self.tier is Tier.PRODUCTION


@dataclass(frozen=True)
class StackSubject:
    resources: list[PolicyResource]
    tier: Tier
    config: Mapping[str, Any]

    def of_type(self, *types: str) -> list[PolicyResource]:
        return [r for r in self.resources if r.resource_type in types]


ResourceCheck = Callable[[Subject], Iterable[str]]
StackCheck = Callable[[StackSubject], Iterable[tuple[str, str | None]]]

CONFIG_ENVIRONMENT_SCHEMA: dict[str, Any] = {
    "type": "string",
    "enum": [Tier.STAGING.value, Tier.PRODUCTION.value],
    "description": "The environment the stack deploys; unset means: read the resource's "
    "environment tag/label, else production.",
}


@dataclass(frozen=True)
class Rule:
    """One policy: name, scope, severity, control, remediation and the check itself."""

    name: str
    description: str
    resource_types: tuple[str, ...]
    severity: Severity
    remediation: str
    control: str = "-"
    check: ResourceCheck | None = None
    stack_check: StackCheck | None = None
    enforcement: EnforcementLevel = EnforcementLevel.MANDATORY
    # High-availability / retention rules that are worth a warning but not a blocked
    # deploy in staging, where the defaults are deliberately single-AZ and cheap.
    relax_in_staging: bool = False
    # Per-rule config: JSON schema of each property, and its default per environment.
    config_schema: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    defaults: Mapping[Tier, Mapping[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (self.check is None) == (self.stack_check is None):
            raise TypeError(f"rule {self.name}: give exactly one of check or stack_check")
        if not re.fullmatch(r"(aws|gcp)-[a-z0-9]+-[a-z0-9]+-[a-z0-9-]+", self.name):
            raise TypeError(f"rule {self.name}: name must be <cloud>-<service>-<resource>-<verb>")
        if not self.resource_types:
            raise TypeError(f"rule {self.name}: resource_types is empty")

    @property
    def cloud(self) -> str:
        return self.name.split("-", 1)[0]

    @property
    def is_stack_rule(self) -> bool:
        return self.stack_check is not None

    def enforcement_for(self, tier: Tier) -> EnforcementLevel:
        if self.relax_in_staging and tier is Tier.STAGING:
            return EnforcementLevel.ADVISORY
        return self.enforcement

    @property
    def full_description(self) -> str:
        return f"{self.description} [severity: {self.severity}; control: {self.control}]"

    def settings(self, config: Mapping[str, Any], tier: Tier) -> dict[str, Any]:
        merged = dict(self.defaults.get(tier, {}))
        merged.update({k: v for k, v in config.items() if k != "enforcementLevel"})
        return merged

    def message(self, problem: str) -> str:
        return f"[{self.severity}] {problem} Remediation: {self.remediation}"

    # -- CrossGuard -------------------------------------------------------------------

    def validate_resource(self, args: ResourceValidationArgs, report: ReportViolation) -> None:
        if args.resource_type not in self.resource_types or self.check is None:
            return
        given = args.get_config() or {}
        tier, source = resolve_tier(given, args.props)
        if self.relax_in_staging and tier is Tier.STAGING and source is TierSource.TAG:
            # The engine's enforcement level is fixed per run, so a staging resource seen
            # without the staging config would be blocked by a production-only rule.
            args.not_applicable(
                f"{self.name} is advisory in staging; run with "
                "--policy-pack-config policies/config/staging.json to see it as a warning"
            )
        subject = Subject(
            type=args.resource_type,
            name=args.name,
            urn=args.urn,
            props=args.props,
            tier=tier,
            config=self.settings(given, tier),
        )
        for problem in self.check(subject):
            report(self.message(problem), None)

    def validate_stack(self, args: StackValidationArgs, report: ReportViolation) -> None:
        if self.stack_check is None:
            return
        given = args.get_config() or {}
        tier = stack_tier(given, args.resources)
        subject = StackSubject(
            resources=list(args.resources), tier=tier, config=self.settings(given, tier)
        )
        for problem, urn in self.stack_check(subject):
            report(self.message(problem), urn)

    def to_policy(self) -> Policy:
        schema = PolicyConfigSchema(
            properties={
                "environment": CONFIG_ENVIRONMENT_SCHEMA,
                **{key: dict(value) for key, value in self.config_schema.items()},
            }
        )
        common: dict[str, Any] = {
            "name": self.name,
            "description": self.full_description,
            "enforcement_level": self.enforcement,
            "config_schema": schema,
            "severity": PolicySeverity(self.severity.value),
            "remediation_steps": self.remediation,
            "tags": [self.cloud],
        }
        if self.control != "-":
            common["framework"] = PolicyComplianceFramework(
                name="AWS FSBP"
                if self.cloud == "aws" and not self.control.startswith("CIS")
                else "CIS",
                reference=self.control,
            )
        if self.is_stack_rule:
            return StackValidationPolicy(validate=self.validate_stack, **common)
        return ResourceValidationPolicy(validate=self.validate_resource, **common)


class RuleList(list[Rule]):
    """A module's rules, each registered by the decorator on its own check function, so
    a rule's name, scope, severity, remediation and check are read in one place."""

    def register(
        self,
        name: str,
        description: str,
        resource_types: tuple[str, ...],
        severity: Severity,
        remediation: str,
        **metadata: Any,
    ) -> Callable[[ResourceCheck], ResourceCheck]:
        def add(check: ResourceCheck) -> ResourceCheck:
            self.append(
                Rule(
                    name,
                    description,
                    resource_types,
                    severity,
                    remediation,
                    check=check,
                    **metadata,
                )
            )
            return check

        return add


def flag_check(path: str, problem: str, *, wanted: bool = True) -> ResourceCheck:
    """The check of a rule that is one boolean input (``path``, dotted as for :func:`get`)
    being ``wanted``; ``problem`` names the resource as ``{name}``."""

    def check(s: Subject) -> Iterator[str]:
        if is_true(get(s.props, path)) is not wanted:
            yield problem.format(name=s.name)

    return check


def stack_tier(config: Mapping[str, Any], resources: Iterable[PolicyResource]) -> Tier:
    configured = config.get("environment")
    if configured in (Tier.STAGING.value, Tier.PRODUCTION.value):
        return Tier(configured)
    seen = {_environment_label(safe_props(r)) for r in resources} - {None}
    # Any production resource makes the stack production: strict wins on a mix.
    if seen == {Tier.STAGING.value}:
        return Tier.STAGING
    return Tier.PRODUCTION


# -- helpers the rule modules share ---------------------------------------------------


def safe_props(resource: PolicyResource) -> Mapping[str, Any]:
    """The resource's properties that are known (a preview cannot read the others yet)."""
    known: dict[str, Any] = {}
    for key in list(resource.props):
        try:
            known[key] = resource.props[key]
        except UnknownValueError:
            continue
    return known


def _is_list(value: Any) -> bool:
    # The engine hands policies read-only proxies: Sequence/Mapping, not list/dict.
    return isinstance(value, Sequence) and not isinstance(value, str | bytes)


def get(props: Mapping[str, Any] | None, path: str, default: Any = None) -> Any:
    """``get(props, "settings.ipConfiguration.sslMode")``; lists index to their first item."""
    current: Any = props
    for part in path.split("."):
        if _is_list(current):
            current = current[0] if current else None
        if not isinstance(current, Mapping):
            return default
        current = current.get(part)
        if current is None:
            return default
    return current


def is_true(value: Any) -> bool:
    """A boolean input as the provider reads it: ``True`` or the string ``"true"``."""
    return value is True or (isinstance(value, str) and value.lower() == "true")


def is_set(props: Mapping[str, Any], key: str) -> bool:
    """``key`` has a value, even one a preview cannot read yet (an unknown is still set)."""
    if key not in list(props):  # iterating keys never touches the (maybe unknown) values
        return False
    try:
        return bool(props[key])
    except UnknownValueError:
        return True


def as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if _is_list(value):
        return list(value)
    return [value]


def parse_json(value: Any) -> Any:
    """Policy documents and container definitions arrive as JSON strings or as objects."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return value


def walk_strings(value: Any) -> Iterator[str]:
    """Every known string inside ``value`` (unknown parts of a preview are skipped)."""
    if isinstance(value, str):
        yield value
        return
    if isinstance(value, Mapping):
        keys: Iterable[Any] = list(value)
    elif _is_list(value):
        keys = range(len(value))
    else:
        return
    for key in keys:
        try:
            item = value[key]
        except UnknownValueError:
            continue
        yield from walk_strings(item)


# Names that carry credentials by convention. They must come from a secret store.
SECRET_NAME = re.compile(
    r"(PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|PRIVATE_KEY|ACCESS_KEY|CREDENTIAL|AUTH_STRING"
    r"|CONNECTION_STRING|DATABASE_URL|_DSN$)",
    re.IGNORECASE,
)
# Values that are credentials whatever they are called.
SECRET_VALUE = re.compile(
    r"(AKIA[0-9A-Z]{16}|-----BEGIN [A-Z ]*PRIVATE KEY-----|://[^/\s:@]+:[^/\s@]+@)"
)


def plaintext_secret_problems(env: Iterable[tuple[str, Any]], where: str) -> list[str]:
    problems = []
    for name, value in env:
        if SECRET_NAME.search(name or ""):
            problems.append(
                f"{where}: environment variable {name} looks like a credential but is set "
                "as plain text."
            )
        elif isinstance(value, str) and SECRET_VALUE.search(value):
            problems.append(
                f"{where}: environment variable {name} holds a credential-shaped value "
                "(access key, private key or URL with a password) in plain text."
            )
    return problems


def world_cidr(cidr: Any) -> bool:
    return cidr in ("0.0.0.0/0", "::/0")


def missing_labels(labels: Any, required: Iterable[str] = REQUIRED_TAGS) -> list[str]:
    present = labels if isinstance(labels, Mapping) else {}
    return [key for key in required if not present.get(key)]


def references(resource: PolicyResource, target: PolicyResource, *props: str) -> bool:
    """Does ``resource`` refer to ``target``, through ``props`` (any property if none)?

    Property dependencies are what the engine knows even when ids are unknown during a
    preview; the value comparison covers graphs recorded without them.
    """
    deps = resource.property_dependencies or {}
    keys = props or tuple(deps)
    if any(target in deps.get(key, []) for key in keys):
        return True
    if not props and target in (resource.dependencies or []):
        return True
    target_ids = identifiers(target)
    if not target_ids:
        return False
    values = safe_props(resource)
    scope = [values.get(p) for p in props] if props else list(values.values())
    for value in scope:
        for text in walk_strings(value):
            if text in target_ids or any(_mentions(text, ident) for ident in target_ids):
                return True
    return False


_IDENTIFIER_KEYS = (
    "id",
    "arn",
    "name",
    "identifier",
    "replicationGroupId",
    "brokerName",
    "selfLink",
    "email",
)


def identifiers(resource: PolicyResource) -> set[str]:
    props = safe_props(resource)
    found = set()
    for key in _IDENTIFIER_KEYS:
        value = props.get(key)
        # Short names ("db", "api") would match unrelated text.
        if isinstance(value, str) and len(value) >= 6:
            found.add(value)
    return found


def _mentions(text: str, ident: str) -> bool:
    """``ident`` appears in ``text`` as a whole token (filters, ARNs, resource paths).

    A numeric suffix still counts: ElastiCache names member nodes ``<group id>-001``.
    """
    if ident not in text:
        return False
    pattern = rf"(^|[^A-Za-z0-9_-]){re.escape(ident)}(-\d+)?($|[^A-Za-z0-9_-])"
    return re.search(pattern, text) is not None
