"""No supported config change silently destroys data (issue 18, point 3).

Every ``groundwork:*`` key is walked through its values on both clouds and both
environments (and the staging stack's move to production sizing), each graph is built
under mocks and diffed against the environment's base through the replacement model.
A change fails the test when it replaces or deletes a data-holding resource, or
replaces a resource whose fixed physical name makes `pulumi up` collide, unless:

- it is refused: the program raises a ConfigError naming the key; or
- every such resource is guarded (``protect`` / ``retainOnDelete``: `pulumi up`
  refuses to delete it); or
- groundwork/plan/destructive.yaml documents the key as destructive for that resource
  type, with how it survives, documented in docs/plan-diff.md: a migration (and a name
  that lets create-before-delete work unless the entry says collisions are expected),
  or delete-before-replace (the resource must carry deleteBeforeReplace).

Known defects the offline walk cannot clear are strict xfails: when their fix lands the
case passes, XPASS fails the run, and the entry below goes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from groundwork.plan.replacement import Change
from stacks.config import KNOWN_KEYS
from tests.plan import guard

ROOT = Path(__file__).resolve().parents[2]
DESTRUCTIVE_PATH = ROOT / "groundwork" / "plan" / "destructive.yaml"
PLAN_DIFF_DOC = ROOT / "docs" / "plan-diff.md"

_SECRETS = (
    "issue 15: Secret Manager replication is immutable and secret_id is fixed; the stack's "
    "refusal reads the live secret, which the offline walk cannot see, so here every "
    "secret's replacement still collides on its id (in production protect also makes "
    "`pulumi up` refuse it)"
)
_CMEK = (
    "issue 15: CMEK is immutable on Cloud SQL, Memorystore, Artifact Registry and Secret "
    "Manager; the stack refuses the toggle after reading the live repository "
    "(stacks/gcp.py refuse_cmek_change, proven in tests/gcp/test_gcp_cmek.py), which the "
    "offline walk cannot see, so here the stores are still replaced"
)
_AWS_CMEK = (
    "issue 21: RDS and ElastiCache kms_key_id and ECR encryption_configurations force new "
    "resources; the stack refuses the toggle after reading the live database's key "
    "(stacks/aws.py refuse_cmek_change, proven in tests/aws/test_aws_cmek.py), which the "
    "offline walk cannot see, so here the stores are still replaced"
)
# (cloud, environment, key) -> the defect on main; each is listed in the issue-18 report.
KNOWN_DEFECTS: dict[tuple[str, str, str], str] = {
    ("gcp", "production", "secretReplication"): _SECRETS,
    ("gcp", "staging", "secretReplication"): _SECRETS,
    ("gcp", "production", "cmek"): _CMEK,
    ("gcp", "staging", "cmek"): _CMEK,
    ("aws", "production", "cmek"): _AWS_CMEK,
    ("aws", "staging", "cmek"): _AWS_CMEK,
    ("aws", "staging", "queue"): "issue 21: switching the queue backend deletes the other "
    "backend's store (the Amazon MQ broker, or the SQS queues and their KMS key) with any "
    "message still in it; drain first (docs/deploy-aws.md)",
}


def _destructive() -> dict[str, list[dict[str, Any]]]:
    data = yaml.safe_load(DESTRUCTIVE_PATH.read_text())
    return {key: list(entries) for key, entries in (data.get("keys") or {}).items()}


def _anchors(markdown: str) -> set[str]:
    anchors = set()
    for line in markdown.splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            slug = "".join(ch for ch in title if ch.isalnum() or ch in " -_").replace(" ", "-")
            anchors.add(slug)
    return anchors


def _entries_for(key: str, cloud: str, environment: str) -> list[dict[str, Any]]:
    return [
        e
        for e in _destructive().get(key, [])
        if cloud in e.get("clouds", guard.CLOUDS)
        and environment in e.get("environments", guard.ENVIRONMENTS)
    ]


def _unexplained(change: Change, entries: list[dict[str, Any]]) -> str | None:
    """Why ``change`` is not acceptable, or None when it is."""
    collides = any("is fixed" in w for w in change.warnings)
    if change.guards and not collides:
        # protect / retainOnDelete / deletion protection: the data survives. A fixed-name
        # collision still makes the change impossible to apply: it needs an entry.
        return None
    for entry in entries:
        if entry.get("resources", "*") != "*" and change.type not in entry["resources"]:
            continue
        if collides and not entry.get("collisions_expected", False):
            continue
        deletes_first = any(w.startswith("deleteBeforeReplace") for w in change.warnings)
        if entry["survives"] == "delete-before-replace" and not deletes_first:
            continue  # the entry promises deleteBeforeReplace; the resource lacks it
        return None
    what = f"{change.action.value} {change.type} {change.name}"
    if change.destroys_data:
        what += f" (loses {change.loses}; {'; '.join(change.reasons) or 'deleted'})"
    if collides:
        what += " — " + next(w for w in change.warnings if "is fixed" in w)
    return what


def _cases() -> list[Any]:
    cases = []
    for cloud, environment in guard.BASES:
        keys = sorted(KNOWN_KEYS) + ([guard.TIER_MOVE] if environment == "staging" else [])
        for key in keys:
            reason = KNOWN_DEFECTS.get((cloud, environment, key))
            marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
            cases.append(
                pytest.param(
                    cloud, environment, key, marks=marks, id=f"{cloud}-{environment}-{key}"
                )
            )
    return cases


def test_every_config_key_has_values_to_walk() -> None:
    assert sorted(set(KNOWN_KEYS) ^ set(guard.VALUES)) == []
    for key in guard.VALUES:
        for cloud in guard.CLOUDS:
            for environment in guard.ENVIRONMENTS:
                assert guard.values_for(key, cloud, environment), (key, cloud, environment)


def test_destructive_table_is_well_formed_and_documented() -> None:
    anchors = _anchors(PLAN_DIFF_DOC.read_text())
    for key, entries in _destructive().items():
        assert key in KNOWN_KEYS or key == guard.TIER_MOVE, key
        for entry in entries:
            assert entry["survives"] in {"migration", "delete-before-replace"}, (key, entry)
            assert entry.get("why"), key
            doc = entry["doc"]
            assert doc.startswith("docs/plan-diff.md#"), key
            assert doc.split("#", 1)[1] in anchors, f"{key}: no section {doc}"


@pytest.mark.parametrize(("cloud", "environment", "key"), _cases())
def test_config_change_destroys_no_data_silently(cloud: str, environment: str, key: str) -> None:
    results = guard.walk(cloud, environment)
    entries = _entries_for(key, cloud, environment)
    failures = []
    walked = [(value, outcome) for (k, value), outcome in results.items() if k == key]
    for value, outcome in walked:
        change = f"{cloud}/{environment} groundwork:{key}={value}"
        if outcome.crashed:
            failures.append(
                f"{change}: the program crashed instead of a ConfigError: {outcome.crashed}"
            )
            continue
        if outcome.refused:
            named = f"groundwork:{key}" in outcome.refused or f"{key}=" in outcome.refused
            if key != guard.TIER_MOVE and not named:
                failures.append(f"{change}: refused without naming the key: {outcome.refused}")
            continue
        for problem in outcome.problems:
            why = _unexplained(problem, entries)
            if why is not None:
                failures.append(f"{change}: {why}")
    assert failures == [], "\n".join(failures)
