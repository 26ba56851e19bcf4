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
Regenerate after a change that passed: ``GROUNDWORK_UPDATE_INVENTORIES=1 uv run pytest
tests/test_urn_aliases.py`` (the check runs against the old file first; new URNs are
added, old ones kept, since a stack deployed before still has them: a resource removed on
purpose is removed from the file by hand, in review).
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
    """URNs of a mock run as the engine forms them, and the old URNs it matches.

    The mock monitor prefixes only the parent's last type; the engine prefixes the
    parent's whole qualified type and leaves the root stack out
    (pulumi/pkg/resource/deploy/source_eval.go, ``parentType = parent.QualifiedType()``
    unless it is the root stack type).

    Aliases follow the engine's step generator (pkg/resource/deploy/step_generator.go,
    ``generateAliases``, ``collapseAliasToUrn``, ``inheritedChildAlias``; the Python SDK
    only sends the specs, .venv/.../pulumi/runtime/resource.py ``prepare_aliases``):

    - an alias spec without a parent resolves under the resource's current parent; one
      naming a parent resolves under that parent's *old* URN when the parent itself was
      matched through an alias;
    - a resource whose parent was matched through an alias also inherits
      ``<parent's old qualified type>$<type>::<name>`` for its own type and name and for
      each of its aliases' (a name that starts with the parent's name takes the old
      parent's name instead), so a renamed component's type token carries every
      descendant, transitively.

    A stack's old state comes from one earlier version of the program, so the old URNs
    of a resource are computed against every old URN its parent may have had.
    """

    def __init__(self, run: ProgramRun) -> None:
        self.run = run
        self.by_mock_urn = {r.urn: r for r in run.resources}
        self._possible: dict[str, frozenset[str]] = {}

    def _parent(self, resource: RecordedResource) -> RecordedResource | None:
        parent = self.by_mock_urn.get(resource.parent or "")
        return None if parent is None or parent.type == ROOT_STACK_TYPE else parent

    def qualified_type(self, resource: RecordedResource | None) -> str:
        chain: list[str] = []
        while resource is not None and resource.type != ROOT_STACK_TYPE:
            chain.append(resource.type)
            resource = self.by_mock_urn.get(resource.parent or "")
        return "$".join(reversed(chain))

    def _under(self, parent_urn: str | None, type_: str, name: str) -> str:
        """``resource.NewURN``: the parent's qualified type (none for the root), ``$``."""
        prefix = parent_urn.split("::")[2] + "$" if parent_urn else ""
        return f"urn:pulumi:{self.run.stack}::{self.run.project}::{prefix}{type_}::{name}"

    def urn(self, resource: RecordedResource) -> str:
        parent = self._parent(resource)
        return self._under(self.urn(parent) if parent else None, resource.type, resource.name)

    def possible(self, resource: RecordedResource) -> frozenset[str]:
        """Every URN under which the engine may find ``resource`` in an old state."""
        key = resource.urn
        if key not in self._possible:
            self._possible[key] = frozenset({self.urn(resource), *self.aliases(resource)})
        return self._possible[key]

    def aliases(self, resource: RecordedResource) -> list[str]:
        parent = self._parent(resource)
        current_parent = self.urn(parent) if parent else None
        found: list[str] = []
        for spec in resource.alias_specs:
            type_, name = spec["type"] or resource.type, spec["name"] or resource.name
            named = self.by_mock_urn.get(spec["parentUrn"]) if spec["parentUrn"] else None
            if spec["noParent"] or (named is not None and named.type == ROOT_STACK_TYPE):
                parents: list[str | None] = [None]
            elif named is not None:
                parents = sorted(self.possible(named))
            else:
                parents = [current_parent]
            found += [self._under(p, type_, name) for p in parents]
        if parent is not None:
            assert current_parent is not None
            own = [(resource.type, resource.name), *((_type(u), _name(u)) for u in found)]
            for old_parent in sorted(self.possible(parent) - {current_parent}):
                for type_, name in own:
                    if name.startswith(parent.name):
                        name = _name(old_parent) + name.removeprefix(parent.name)
                    found.append(self._under(old_parent, type_, name))
        return list(dict.fromkeys(found))


def _type(urn: str) -> str:
    return urn.split("::")[2].split("$")[-1]


def _name(urn: str) -> str:
    return urn.split("::", 3)[3]


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
    old: set[str] = set()
    if path.is_file():
        old = set(path.read_text().split())
        problems = uncovered(old, run)
        assert not problems, (
            "\n".join(problems[:40])
            + "\nAdd pulumi.Alias(...) to the moved resource; if the resource is meant to go, "
            f"delete its line from {path.relative_to(ROOT)} (a reviewed removal)."
        )
    elif os.environ.get(UPDATE_FLAG) != "1":
        pytest.fail(f"{path.relative_to(ROOT)} is missing: run {UPDATE_FLAG}=1 uv run pytest")
    if os.environ.get(UPDATE_FLAG) == "1":
        if os.environ.get("CI"):
            pytest.fail(f"{UPDATE_FLAG}=1 in CI: URN inventories are regenerated locally")
        # Old URNs stay (each is covered by an alias now): a stack deployed before the
        # move still has them, so dropping the alias later must fail this test.
        path.write_text("\n".join(sorted(set(current) | old)) + "\n")
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


def test_a_renamed_component_type_carries_its_descendants_only_with_its_alias() -> None:
    """``Alias(type_=<old token>)`` on a component alone keeps its children and their
    children (the engine's inherited child aliases); without it all of them are gone."""
    spec = {"name": "", "type": "", "project": "", "stack": "", "parentUrn": "", "noParent": False}
    old = {
        "urn:pulumi:staging::p::my:Alerts::app",
        "urn:pulumi:staging::p::my:Alerts$my:Part::app-part",
        "urn:pulumi:staging::p::my:Alerts$my:Part$gcp:monitoring/alertPolicy:AlertPolicy::app-x",
        # Before the part existed: a child moved under it with Alias(parent=<composer>).
        "urn:pulumi:staging::p::my:Alerts$gcp:monitoring/alertPolicy:AlertPolicy::app-x",
    }

    def program(aliased: bool) -> ProgramRun:
        renamed = _resource(
            "a",
            "my:Alarms",
            "app",
            parent="s",
            custom=False,
            alias_specs=[{**spec, "type": "my:Alerts"}] if aliased else [],
        )
        part = _resource("b", "my:Part", "app-part", parent="a", custom=False)
        policy = _resource(
            "c",
            "gcp:monitoring/alertPolicy:AlertPolicy",
            "app-x",
            parent="b",
            alias_specs=[{**spec, "parentUrn": "a"}],
        )
        return _run(renamed, part, policy)

    assert uncovered(old, program(aliased=True)) == []
    assert len(uncovered(old, program(aliased=False))) == len(old)


def test_a_child_named_after_its_parent_follows_the_parents_old_name() -> None:
    spec = {"name": "", "type": "", "project": "", "stack": "", "parentUrn": "", "noParent": False}
    renamed = _resource(
        "a", "my:New", "new", parent="s", custom=False, alias_specs=[{**spec, "name": "old"}]
    )
    child = _resource("b", "aws:s3/bucket:Bucket", "new-logs", parent="a")
    assert (
        uncovered(
            {"urn:pulumi:staging::p::my:New$aws:s3/bucket:Bucket::old-logs"}, _run(renamed, child)
        )
        == []
    )


# Component type tokens renamed for one name per role (issue 19, item 8): new -> old.
RENAMED_TYPES = {
    "groundwork:gcp:Alarms": "groundwork:gcp:Alerts",
    "groundwork:gcp:ContainerService": "groundwork:gcp:CloudRunApp",
    "groundwork:aws:SecretStore": "groundwork:aws:AppSecrets",
    "groundwork:aws:Edge": "groundwork:aws:PublicLoadBalancer",
    "groundwork:aws:RabbitMqJobQueue": "groundwork:aws:Broker",
    "groundwork:aws:SqsJobQueue": "groundwork:aws:JobQueue",
}


def test_the_sqs_queue_keeps_its_urns_across_its_rename() -> None:
    """The stored stacks run RabbitMQ; a stack with groundwork:queue=sqs deployed before
    the rename has the same URNs under the old token, which the alias must cover."""
    from tests.aws.conftest import run_stack

    run = run_stack("staging", queue="sqs")
    engine = EngineUrns(run)
    current = {engine.urn(r) for r in run.resources if r.type != ROOT_STACK_TYPE}
    old = set()
    for urn in current:
        for new, previous in RENAMED_TYPES.items():
            urn = urn.replace(f"::{new}$", f"::{previous}$").replace(
                f"::{new}::", f"::{previous}::"
            )
            urn = urn.replace(f"${new}$", f"${previous}$").replace(f"${new}::", f"${previous}::")
        old.add(urn)
    assert any("groundwork:aws:JobQueue" in urn for urn in old)
    assert uncovered(old, run) == []
