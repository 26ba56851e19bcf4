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


def build_inventory(run: ProgramRun) -> Inventory:
    nodes = {r.urn: Node(r) for r in run.resources}
    roots: list[Node] = []
    for resource in run.resources:
        parent = nodes.get(resource.parent)
        if parent is None or _is_stack(resource.parent):
            roots.append(nodes[resource.urn])
        else:
            parent.children.append(nodes[resource.urn])
    component_of: dict[str, str] = {}
    for root in roots:
        group = root.resource.name if root.resource.is_component else STACK_GROUP
        for resource in root.walk():
            component_of[resource.urn] = group
    # Components first, then loose resources; each level sorted for stable output.
    roots.sort(key=lambda n: (not n.resource.is_component, n.resource.name, n.resource.type))
    for node in nodes.values():
        node.children.sort(key=lambda n: (not n.resource.is_component, n.resource.type,
                                          n.resource.name))
    return Inventory(roots=roots, component_of=component_of)
