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
        return self._urn_under(self.qualified_type(parent), type_, name)

    def _urn_under(self, prefix: str, type_: str, name: str) -> str:
        qualified = f"{prefix}${type_}" if prefix else type_
        return f"urn:pulumi:{self.run.stack}::{self.run.project}::{qualified}::{name}"

    def urn(self, resource: RecordedResource) -> str:
        return self._urn(self.by_mock_urn.get(resource.parent or ""), resource.type, resource.name)

    def aliases(
        self, resource: RecordedResource, matched: dict[str, list[str]] | None = None
    ) -> list[str]:
        """The alias URNs the engine generates (step_generator.go, ``generateAliases``).

        ``matched`` maps a parent's mock URN to the old URNs the engine may find it under
        through an alias (a stored file holds every earlier version's URNs; a live
        stack's state holds one of them): an alias naming that parent uses its old URN
        (``collapseAliasToUrn``), and every child inherits an alias under it ("Now
        multiply out any aliases our parent had", ``inheritedChildAlias``), so a child of
        a moved component keeps its resource without an alias of its own.
        """
        matched = matched or {}
        found = []
        for spec in resource.alias_specs:
            type_, name = spec["type"] or resource.type, spec["name"] or resource.name
            if spec["noParent"]:
                found.append(self._urn_under("", type_, name))
            elif spec["parentUrn"] in matched:
                found += [
                    self._urn_under(_qualified(old), type_, name)
                    for old in matched[spec["parentUrn"]]
                ]
            elif spec["parentUrn"]:
                found.append(self._urn(self.by_mock_urn[spec["parentUrn"]], type_, name))
            else:
                found.append(self._urn(self.by_mock_urn.get(resource.parent or ""), type_, name))
        own = [(resource.type, resource.name), *((_type(a), a.split("::")[-1]) for a in found)]
        for parent_alias in matched.get(resource.parent or "", []):
            parent_name = self.by_mock_urn[resource.parent or ""].name
            for type_, name in own:
                # A child named "<parent>-x" follows its parent's old name.
                if name.startswith(parent_name):
                    name = parent_alias.split("::")[-1] + name[len(parent_name) :]
                found.append(self._urn_under(_qualified(parent_alias), type_, name))
        return found


def _qualified(urn: str) -> str:
    return urn.split("::")[2]


def _type(urn: str) -> str:
    return urn.split("::")[2].split("$")[-1]


def uncovered(old: set[str], run: ProgramRun) -> list[str]:
    """Old URNs the program no longer has, by URN or by a same-type, same-name alias."""
    engine = EngineUrns(run)
    present: set[str] = set()
    aliased: dict[str, RecordedResource] = {}
    # mock URN -> the old URNs the engine may keep it under (a stored file is the union of
    # every earlier version's URNs, e.g. before and after a type rename)
    matched: dict[str, list[str]] = {}
    # Registration order, parents first, as the engine sees them.
    for resource in run.resources:
        if resource.type == ROOT_STACK_TYPE:
            continue
        urn = engine.urn(resource)
        present.add(urn)
        aliases = engine.aliases(resource, matched)
        aliased.update(dict.fromkeys(aliases, resource))
        hits = [a for a in aliases if a in old]
        if hits:
            matched[resource.urn] = hits
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


def test_a_child_follows_its_moved_parent_as_the_engine_multiplies_parent_aliases() -> None:
    """A component moved under a new one (an aliased parent) keeps its own children too:
    the engine gives each child an alias under the URN its parent was matched by
    (pulumi/pulumi pkg/resource/deploy/step_generator.go, ``generateAliases``)."""
    composer = _resource("a", "my:Old", "app", parent="s", custom=False)
    part = _resource("b", "my:Part", "app", parent="a", custom=False)
    old = {
        "urn:pulumi:staging::p::my:Old::app",
        "urn:pulumi:staging::p::my:Old$my:Key::app-kms",
        "urn:pulumi:staging::p::my:Old$my:Key$aws:kms/key:Key::app-kms-key",
    }
    spec = {"name": "", "type": "", "project": "", "stack": "", "noParent": False}
    key = _resource(
        "c", "my:Key", "app-kms", parent="b", custom=False, alias_specs=[{**spec, "parentUrn": "a"}]
    )
    child = _resource("d", "aws:kms/key:Key", "app-kms-key", parent="c")
    assert uncovered(old, _run(composer, part, key, child)) == []
    unaliased = _resource("c", "my:Key", "app-kms", parent="b", custom=False)
    assert uncovered(old, _run(composer, part, unaliased, child)) == [
        "gone (would be deleted, and re-created if renamed): "
        "urn:pulumi:staging::p::my:Old$my:Key$aws:kms/key:Key::app-kms-key",
        "gone (would be deleted, and re-created if renamed): "
        "urn:pulumi:staging::p::my:Old$my:Key::app-kms",
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
    old = {
        "urn:pulumi:staging::p::my:New::old",
        "urn:pulumi:staging::p::my:New$aws:s3/bucket:Bucket::old-logs",
    }
    assert uncovered(old, _run(renamed, child)) == []


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
