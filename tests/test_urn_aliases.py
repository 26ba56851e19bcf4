"""No resource of a live stack is replaced by a restructuring (issue 19, item 3).

A resource's URN is ``urn:pulumi:<stack>::<project>::<parent types>$<type>::<name>``:
the type chain of every ancestor component is part of it ("The URN is made up of ...
the parent resource's type, the resource type, and the resource name", Pulumi docs,
Concepts > Resources > Resource names / URNs). Moving a child under a new intermediate
ComponentResource, or renaming a component's type token, therefore gives every
descendant a new URN, and the engine deletes the old resource and creates a new one,
unless the new resource carries an alias that resolves to the old URN
("aliases ... the old URN will be used ... no replacement", Pulumi docs, Resource
options > aliases).

``tests/inventories/<cloud>-<stack>.urns`` stores the URNs of every stack as the
engine computes them (full type chain, the root stack type left out). Each test run
resolves the program's URNs and alias specs the same way and asserts that every stored
URN is still there or is the alias of a resource; a custom resource aliased across a
change of its type is refused too (the provider diffs a different resource type: a
replacement). A logical-name change with ``Alias(name=...)`` keeps the resource.
Regenerate after a move that passed: ``GROUNDWORK_UPDATE_INVENTORIES=1 uv run pytest
tests/test_urn_aliases.py`` (the check runs against the old file first).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from groundwork.mockrun import ProgramRun, RecordedResource
from groundwork.plan.program import load_stack_config, plan_program

ROOT = Path(__file__).resolve().parents[1]
INVENTORIES = ROOT / "tests" / "inventories"
UPDATE_FLAG = "GROUNDWORK_UPDATE_INVENTORIES"
STACKS = [("aws", "staging"), ("aws", "production"), ("gcp", "staging"), ("gcp", "production")]
ROOT_STACK_TYPE = "pulumi:pulumi:Stack"


class EngineUrns:
    """URNs of a mock run as the engine forms them.

    The mock monitor prefixes only the parent's last type; the engine prefixes the
    parent's whole qualified type and leaves the root stack out
    (pulumi/pkg/resource/deploy/source_eval.go, ``parentType = parent.QualifiedType()``
    unless it is the root stack type).
    """

    def __init__(self, run: ProgramRun) -> None:
        self.run = run
        self.by_mock_urn = {r.urn: r for r in run.resources}

    def qualified_type(self, resource: RecordedResource | None) -> str:
        chain: list[str] = []
        while resource is not None and resource.type != ROOT_STACK_TYPE:
            chain.append(resource.type)
            resource = self.by_mock_urn.get(resource.parent or "")
        return "$".join(reversed(chain))

    def _urn(self, parent: RecordedResource | None, type_: str, name: str) -> str:
        prefix = self.qualified_type(parent)
        qualified = f"{prefix}${type_}" if prefix else type_
        return f"urn:pulumi:{self.run.stack}::{self.run.project}::{qualified}::{name}"

    def urn(self, resource: RecordedResource) -> str:
        return self._urn(self.by_mock_urn.get(resource.parent or ""), resource.type, resource.name)

    def aliases(self, resource: RecordedResource) -> list[str]:
        found = []
        for spec in resource.alias_specs:
            if spec["noParent"]:
                parent = None
            elif spec["parentUrn"]:
                parent = self.by_mock_urn[spec["parentUrn"]]
            else:
                parent = self.by_mock_urn.get(resource.parent or "")
            found.append(
                self._urn(parent, spec["type"] or resource.type, spec["name"] or resource.name)
            )
        return found


def _type(urn: str) -> str:
    return urn.split("::")[2].split("$")[-1]


def uncovered(old: set[str], run: ProgramRun) -> list[str]:
    """Old URNs the program no longer has, by URN or by a same-type, same-name alias."""
    engine = EngineUrns(run)
    present = {engine.urn(r) for r in run.resources if r.type != ROOT_STACK_TYPE}
    aliased = {alias: r for r in run.resources for alias in engine.aliases(r)}
    problems = []
    for urn in sorted(old - present):
        resource = aliased.get(urn)
        if resource is None:
            problems.append(f"gone (would be deleted, and re-created if renamed): {urn}")
        elif resource.custom and _type(urn) != resource.type:
            problems.append(f"aliased across a type change (replaced): {urn}")
    return problems


@pytest.fixture(scope="module", params=STACKS, ids=lambda s: f"{s[0]}-{s[1]}")
def planned(request: pytest.FixtureRequest) -> tuple[Path, ProgramRun]:
    cloud, stack = request.param
    run = plan_program(load_stack_config(stack, root=ROOT, cloud=cloud)).run
    return INVENTORIES / f"{cloud}-{stack}.urns", run


def test_every_stored_urn_survives_or_is_aliased(planned: tuple[Path, ProgramRun]) -> None:
    path, run = planned
    engine = EngineUrns(run)
    current = sorted(engine.urn(r) for r in run.resources if r.type != ROOT_STACK_TYPE)
    if path.is_file():
        old = set(path.read_text().split())
        problems = uncovered(old, run)
        assert not problems, "\n".join(problems[:40])
    elif os.environ.get(UPDATE_FLAG) != "1":
        pytest.fail(f"{path.relative_to(ROOT)} is missing: run {UPDATE_FLAG}=1 uv run pytest")
    if os.environ.get(UPDATE_FLAG) == "1":
        if os.environ.get("CI"):
            pytest.fail(f"{UPDATE_FLAG}=1 in CI: URN inventories are regenerated locally")
        path.write_text("\n".join(current) + "\n")
    # Two resources with one URN would fail the real deployment.
    assert len(current) == len(set(current))


def _resource(urn: str, type_: str, name: str, parent: str = "", **kw: object) -> RecordedResource:
    return RecordedResource(
        urn=urn,
        type=type_,
        name=name,
        inputs={},
        state={},
        custom=kw.pop("custom", True),
        parent=parent,
        **kw,  # type: ignore[arg-type]
    )


def _run(*resources: RecordedResource) -> ProgramRun:
    stack = _resource("s", ROOT_STACK_TYPE, "p-staging", custom=False)
    return ProgramRun(project="p", stack="staging", resources=[stack, *resources], outputs={})


def test_the_check_catches_a_move_without_an_alias_and_accepts_one_with() -> None:
    old_parent = _resource("a", "my:Old", "app", parent="s", custom=False)
    new_parent = _resource("b", "my:Child", "app-logs", parent="a", custom=False)
    old = {
        "urn:pulumi:staging::p::my:Old::app",
        "urn:pulumi:staging::p::my:Old$aws:s3/bucket:Bucket::app-logs",
    }
    moved = _resource("c", "aws:s3/bucket:Bucket", "app-logs", parent="b")
    assert uncovered(old, _run(old_parent, new_parent, moved)) == [
        "gone (would be deleted, and re-created if renamed): "
        "urn:pulumi:staging::p::my:Old$aws:s3/bucket:Bucket::app-logs"
    ]
    spec = {"name": "", "type": "", "project": "", "stack": "", "noParent": False}
    aliased = _resource(
        "c",
        "aws:s3/bucket:Bucket",
        "app-logs",
        parent="b",
        alias_specs=[{**spec, "parentUrn": "a"}],
    )
    assert uncovered(old, _run(old_parent, new_parent, aliased)) == []
    renamed = _resource(
        "c",
        "aws:s3/bucket:Bucket",
        "app-logs-v2",
        parent="b",
        alias_specs=[{**spec, "parentUrn": "a", "name": "app-logs"}],
    )
    assert uncovered(old, _run(old_parent, new_parent, renamed)) == []
    retyped = _resource(
        "c",
        "aws:s3/bucketV2:BucketV2",
        "app-logs",
        parent="b",
        alias_specs=[{**spec, "parentUrn": "a", "type": "aws:s3/bucket:Bucket"}],
    )
    assert uncovered(old, _run(old_parent, new_parent, retyped)) == [
        "aliased across a type change (replaced): "
        "urn:pulumi:staging::p::my:Old$aws:s3/bucket:Bucket::app-logs"
    ]
