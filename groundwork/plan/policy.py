"""Policy verdicts for a planned run, from the CrossGuard pack via groundwork.policyrun.

The pack and its runner belong to the policy work (``policies/``,
``groundwork/policyrun.py``); this module only adapts what the runner returns into a
:class:`Verdict` the plan can sort, print and serialise. It is imported lazily so a
broken or missing pack degrades to "verdicts unavailable" instead of no plan.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from groundwork.mockrun import ProgramRun

ENFORCEMENT_ORDER = {"mandatory": 0, "remediate": 1, "advisory": 2, "disabled": 3}
SEVERITY_ORDER = {"critical": 0, "high": 1, "medium": 2, "low": 3}


@dataclass(frozen=True)
class Verdict:
    """One policy violation: which rule, how enforced, on what, and how to fix it."""

    rule: str
    enforcement: str
    severity: str
    resource: str
    message: str
    remediation: str = ""

    @property
    def blocking(self) -> bool:
        return self.enforcement == "mandatory"

    def sort_key(self) -> tuple[int, int, str, str, str]:
        return (
            ENFORCEMENT_ORDER.get(self.enforcement, 9),
            SEVERITY_ORDER.get(self.severity, 9),
            self.rule,
            self.resource,
            self.message,
        )


@dataclass
class PolicyOutcome:
    available: bool
    verdicts: list[Verdict]
    error: str = ""

    @property
    def mandatory_failures(self) -> int:
        return sum(1 for v in self.verdicts if v.blocking)


PolicyRunner = Callable[[ProgramRun, str], Iterable[Any]]

_RUNNER_NAMES = ("run_policies", "run_pack", "evaluate", "check", "run")


def _text(value: Any) -> str:
    if value is None:
        return ""
    # Enums (EnforcementLevel.MANDATORY, Severity.HIGH) -> "mandatory", "high".
    raw = getattr(value, "value", value)
    return str(raw).strip()


def _field(raw: Any, *names: str) -> Any:
    for name in names:
        if isinstance(raw, dict) and name in raw:
            return raw[name]
        if hasattr(raw, name):
            return getattr(raw, name)
    return None


def to_verdict(raw: Any) -> Verdict | None:
    """Normalise one runner result; passing results (``passed``/``ok`` true) give None."""
    if isinstance(raw, Verdict):
        return raw
    passed = _field(raw, "passed", "ok")
    if passed is True:
        return None
    # The URN identifies the resource uniquely; the name is its last segment.
    resource = _field(raw, "resource", "urn", "resource_urn", "resource_name", "name")
    if resource is not None and not isinstance(resource, str):
        resource = _field(resource, "urn", "name") or resource
    return Verdict(
        rule=_text(_field(raw, "rule", "rule_name", "policy_name", "policy")),
        enforcement=_text(_field(raw, "enforcement", "enforcement_level", "level")).lower()
        or "advisory",
        severity=_text(_field(raw, "severity")).lower() or "unknown",
        resource=_text(resource) or "(stack)",
        message=" ".join(_text(_field(raw, "message", "reason")).split()),
        remediation=" ".join(_text(_field(raw, "remediation", "fix", "hint")).split()),
    )


def default_runner() -> PolicyRunner:
    """The runner from ``groundwork.policyrun``; ImportError when it is not there."""
    module = importlib.import_module("groundwork.policyrun")
    for name in _RUNNER_NAMES:
        fn = getattr(module, name, None)
        if callable(fn):
            return _bind_environment(fn)
    raise ImportError(f"groundwork.policyrun has none of {', '.join(_RUNNER_NAMES)}")


def _bind_environment(fn: Callable[..., Iterable[Any]]) -> PolicyRunner:
    """Pass the environment tier if the runner takes one (strict production config)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        params = {}  # type: ignore[assignment]
    for name in ("environment", "tier", "env", "stack"):
        if name in params:
            return lambda run, environment: fn(run, **{name: environment})
    return lambda run, environment: fn(run)


def _rule_remediations() -> dict[str, str]:
    """Each rule's remediation from the pack's registry, when the pack exposes it."""
    try:
        pack = importlib.import_module("policies.pack")
    except ImportError:
        return {}
    rules = getattr(pack, "RULES_BY_NAME", {}) or {}
    return {name: str(getattr(rule, "remediation", "") or "") for name, rule in rules.items()}


def evaluate(
    run: ProgramRun, environment: str, runner: PolicyRunner | None = None
) -> PolicyOutcome:
    try:
        runner = runner or default_runner()
    except ImportError as exc:
        return PolicyOutcome(
            available=False, verdicts=[], error=f"policy runner unavailable: {exc}"
        )
    results = runner(run, environment)
    if hasattr(results, "verdicts"):
        results = results.verdicts
    remediations = _rule_remediations()
    verdicts = []
    for raw in results:
        verdict = to_verdict(raw)
        if verdict is None:
            continue
        hint = remediations.get(verdict.rule, "")
        if not verdict.remediation and hint and hint not in verdict.message:
            verdict = dataclasses.replace(verdict, remediation=" ".join(hint.split()))
        verdicts.append(verdict)
    verdicts.sort(key=Verdict.sort_key)
    return PolicyOutcome(available=True, verdicts=verdicts)
