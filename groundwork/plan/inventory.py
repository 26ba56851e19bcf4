"""The recorded resource graph as a tree of components.

Cost and counts are reported per *top-level* component (a ComponentResource whose
parent is the stack): the unit a reader recognises in ``stacks/`` ("network",
"database", ...). Resources registered directly on the stack go to ``(stack)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from groundwork.mockrun import ProgramRun, RecordedResource

STACK_GROUP = "(stack)"
_STACK_TYPE = "pulumi:pulumi:Stack"


@dataclass
class Node:
    """A component (with children) or a custom resource (a leaf)."""

    resource: RecordedResource
    children: list[Node] = field(default_factory=list)

    @property
    def urn(self) -> str:
        return self.resource.urn

    def walk(self) -> list[RecordedResource]:
        found = [self.resource]
        for child in self.children:
            found.extend(child.walk())
        return found

    def custom_count(self) -> int:
        return sum(1 for r in self.walk() if r.custom)


@dataclass
class Inventory:
    """Top-level nodes, and for every resource the top-level component it belongs to."""

    roots: list[Node]
    component_of: dict[str, str]

    @property
    def resources(self) -> list[RecordedResource]:
        found: list[RecordedResource] = []
        for root in self.roots:
            found.extend(root.walk())
        return found

    def counts_by_component(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for resource in self.resources:
            if resource.custom:
                group = self.component_of[resource.urn]
                counts[group] = counts.get(group, 0) + 1
        return dict(sorted(counts.items()))

    def counts_by_type(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for resource in self.resources:
            if resource.custom:
                counts[resource.type] = counts.get(resource.type, 0) + 1
        return dict(sorted(counts.items()))


def _is_stack(urn: str) -> bool:
    return not urn or f"::{_STACK_TYPE}::" in urn or urn.endswith(f"::{_STACK_TYPE}")


def _grouping_level(roots: list[Node]) -> list[Node]:
    """The nodes costs are grouped by: the top-level components, except that a single
    component wrapping the whole environment is looked through to its children."""
    level = roots
    while True:
        components = [n for n in level if n.resource.is_component]
        if len(components) != 1:
            return level
        inner = [c for c in components[0].children if c.resource.is_component]
        if not inner:
            return level
        level = [n for n in level if n is not components[0]] + inner


def _labels(nodes: list[Node]) -> dict[str, str]:
    """Component names, qualified with the type when two share a name."""
    names = [n.resource.name for n in nodes]
    labels = {}
    for node in nodes:
        name = node.resource.name
        if names.count(name) > 1:
            name = f"{name} ({node.resource.type.rsplit(':', 1)[-1]})"
        labels[node.urn] = name
    return labels


def build_inventory(run: ProgramRun) -> Inventory:
    nodes = {r.urn: Node(r) for r in run.resources}
    roots: list[Node] = []
    for resource in run.resources:
        parent = nodes.get(resource.parent)
        if parent is None or _is_stack(resource.parent):
            roots.append(nodes[resource.urn])
        else:
            parent.children.append(nodes[resource.urn])
    groups = _grouping_level(roots)
    labels = _labels([g for g in groups if g.resource.is_component])
    component_of: dict[str, str] = {}

    def assign(node: Node, label: str) -> None:
        if node.urn in labels:
            label = labels[node.urn]
        elif node.resource.is_component and label == STACK_GROUP:
            # A wrapper looked through by _grouping_level keeps its own resources.
            label = node.resource.name
        component_of[node.urn] = label
        for child in node.children:
            assign(child, label)

    for root in roots:
        assign(root, STACK_GROUP)
    # Components first, then loose resources; each level sorted for stable output.
    roots.sort(key=lambda n: (not n.resource.is_component, n.resource.name, n.resource.type))
    for node in nodes.values():
        node.children.sort(
            key=lambda n: (not n.resource.is_component, n.resource.type, n.resource.name)
        )
    return Inventory(roots=roots, component_of=component_of)
