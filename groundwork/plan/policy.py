"""Policy verdicts for a planned run: ``groundwork.policyrun.run_policies``, sorted.

The runner returns :class:`~groundwork.verdict.Verdict` objects, the type the plan
prints and serialises. It is imported lazily so a broken or missing pack degrades to
"verdicts unavailable" instead of no plan.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from groundwork.mockrun import ProgramRun
from groundwork.verdict import Verdict

__all__ = ["PolicyOutcome", "PolicyRunner", "Verdict", "default_runner", "evaluate"]


@dataclass
class PolicyOutcome:
    available: bool
    verdicts: list[Verdict]
    error: str = ""

    @property
    def mandatory_failures(self) -> int:
        return sum(1 for v in self.verdicts if v.mandatory)


# (run, environment tier) -> verdicts; tests swap in one that returns fixed verdicts.
PolicyRunner = Callable[[ProgramRun, str], Iterable[Verdict]]


def default_runner() -> PolicyRunner:
    """``run_policies`` with the pack config of the tier; ImportError when the pack is broken."""
    from groundwork.policyrun import run_policies

    return lambda run, environment: run_policies(run, environment=environment)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def evaluate(
    run: ProgramRun, environment: str, runner: PolicyRunner | None = None
) -> PolicyOutcome:
    try:
        runner = runner or default_runner()
    except ImportError as exc:
        return PolicyOutcome(
            available=False, verdicts=[], error=f"policy runner unavailable: {exc}"
        )
    # The plan prints each verdict on its own line(s): fold the messages' white space.
    verdicts = [
        dataclasses.replace(v, message=_one_line(v.message), remediation=_one_line(v.remediation))
        for v in runner(run, environment)
    ]
    verdicts.sort(key=Verdict.sort_key)
    return PolicyOutcome(available=True, verdicts=verdicts)
