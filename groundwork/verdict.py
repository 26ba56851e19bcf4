"""A policy verdict: the one type the policy runner returns and ``groundwork plan`` prints.

A leaf module (standard library only) so the plan can import the type without importing
the pack: a broken pack then degrades to "verdicts unavailable" instead of no plan.
"""

from __future__ import annotations

from dataclasses import dataclass

# Order of the plan's verdict list: blocking first, then the worst severity.
ENFORCEMENT_ORDER = {"mandatory": 0, "remediate": 1, "advisory": 2, "disabled": 3}
SEVERITY_ORDER = {"critical": 0, "high": 1, "medium": 2, "low": 3}


@dataclass(frozen=True)
class Verdict:
    """One violation: which rule, how binding, how bad, on what, and how to fix it.

    ``urn`` is empty for a stack policy that reported on no resource. ``remediation`` is
    the rule's fix when the message does not already carry it (a rule's own message
    ends with ``Remediation: ...``; the engine's "can't run during preview" note does not).
    """

    rule: str
    enforcement: str
    severity: str
    urn: str
    resource_type: str
    resource_name: str
    message: str
    remediation: str = ""

    @property
    def mandatory(self) -> bool:
        return self.enforcement == "mandatory"

    @property
    def resource(self) -> str:
        """The URN, or ``(stack)`` when the verdict is about the stack as a whole."""
        return self.urn or "(stack)"

    def sort_key(self) -> tuple[int, int, str, str, str]:
        return (
            ENFORCEMENT_ORDER.get(self.enforcement, 9),
            SEVERITY_ORDER.get(self.severity, 9),
            self.rule,
            self.resource,
            self.message,
        )

    def __str__(self) -> str:
        where = f"{self.resource_type} {self.resource_name}" if self.urn else "stack"
        return (
            f"{self.enforcement.upper()} {self.rule} ({self.severity}) on {where}: {self.message}"
        )
