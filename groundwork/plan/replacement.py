"""What a change replaces or destroys: two resource graphs compared through the model.

``replacement.yaml`` beside this file says, per resource type, which inputs force a
replacement (from the providers' schemas: the Terraform AWS provider's ``ForceNew``
attributes, magic-modules' ``immutable`` fields) and what a data-holding type loses.
:func:`diff` compares a base and a head graph (each a list of :class:`Snapshot`, from a
mock run or from ``groundwork plan --json``) the way the engine would pair them: by URN
(or alias), then per property. It is a model of the providers, not the engine; the
limits are in docs/plan-diff.md.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from groundwork.mockrun import ProgramRun, RecordedResource

MODEL_PATH = Path(__file__).with_name("replacement.yaml")

# Tags and labels are metadata every provider updates in place.
ALWAYS_UPDATABLE = frozenset({"tags", "tagsAll", "labels", "effectiveLabels", "pulumiLabels"})
# Inputs whose values must never reach a plan file or a pull-request comment.
_SECRET_KEY = re.compile(
    r"(password|token|authstring|privatekey|secretstring|secretdata|secretbinary)$", re.IGNORECASE
)
# State values by which other resources refer to a resource (cascading replacements).
_COMPUTED_REF_KEYS = ("id", "arn", "selfLink", "hex")
# Also identifiers when the provider computes them (an echo of an input names another
# resource: an IAM member's `member` and `secretId` are its grantee and its secret).
_NAME_REF_KEYS = ("name", "email", "member")


class ModelError(Exception):
    """replacement.yaml is malformed: the message names the entry."""


@dataclass(frozen=True)
class TypeModel:
    type: str
    source: str
    checked: str
    replace_on: frozenset[str] | None
    """None means every input except ``updatable`` (resources without an update API)."""
    updatable: frozenset[str]
    name_property: str | None
    ignored_after_create: Mapping[str, str]
    holds: str | None
    deletion_protection: Mapping[str, Any] | None
    provider: bool

    @property
    def holds_data(self) -> bool:
        return self.holds is not None

    def forces_replacement(self, prop: str) -> bool:
        top = prop.split(".", 1)[0]
        if top in ALWAYS_UPDATABLE and prop not in (self.replace_on or ()):
            return False
        if self.replace_on is None:
            return top not in self.updatable
        return prop in self.replace_on or top in self.replace_on


@dataclass(frozen=True)
class ReplacementModel:
    types: Mapping[str, TypeModel]
    sources: Mapping[str, Any]

    def of(self, type_token: str) -> TypeModel | None:
        return self.types.get(type_token)

    def data_holding_types(self) -> set[str]:
        return {t for t, m in self.types.items() if m.holds_data}


def _strings(value: Any, where: str) -> frozenset[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ModelError(f"{where}: expected a list of property names")
    return frozenset(value)


@cache
def load_model(path: Path = MODEL_PATH) -> ReplacementModel:
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict) or data.get("version") != 1:
        raise ModelError(f"{path.name}: expected `version: 1` at the top")
    types: dict[str, TypeModel] = {}
    for token, entry in (data.get("resources") or {}).items():
        where = f"{path.name}: {token}"
        if not isinstance(entry, dict) or not entry.get("source") or not entry.get("checked"):
            raise ModelError(f"{where}: every entry needs `source` and `checked`")
        raw = entry.get("replace_on")
        replace_on = None if raw == "*" else _strings(raw, f"{where}.replace_on")
        types[token] = TypeModel(
            type=token,
            source=str(entry["source"]),
            checked=str(entry["checked"]),
            replace_on=replace_on,
            updatable=_strings(entry.get("updatable", []), f"{where}.updatable"),
            name_property=entry.get("name"),
            ignored_after_create=dict(entry.get("ignored_after_create") or {}),
            holds=entry.get("holds"),
            deletion_protection=entry.get("deletion_protection"),
            provider=bool(entry.get("provider", False)),
        )
    return ReplacementModel(types=types, sources=dict(data.get("sources") or {}))


# -- snapshots -------------------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    """One custom resource as a diff needs it: identity, inputs, options, references."""

    urn: str
    type: str
    name: str
    inputs: Mapping[str, Any]
    refs: tuple[str, ...] = ()
    provider: str = ""
    protect: bool = False
    retain_on_delete: bool = False
    delete_before_replace: bool = False
    replace_on_changes: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "urn": self.urn,
            "type": self.type,
            "name": self.name,
            "inputs": dict(self.inputs),
            "refs": list(self.refs),
            "provider": self.provider,
            "protect": self.protect,
            "retain_on_delete": self.retain_on_delete,
            "delete_before_replace": self.delete_before_replace,
            "replace_on_changes": list(self.replace_on_changes),
            "aliases": list(self.aliases),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Snapshot:
        return cls(
            urn=str(data["urn"]),
            type=str(data["type"]),
            name=str(data["name"]),
            inputs=dict(data.get("inputs") or {}),
            refs=tuple(data.get("refs") or ()),
            provider=str(data.get("provider") or ""),
            protect=bool(data.get("protect")),
            retain_on_delete=bool(data.get("retain_on_delete")),
            delete_before_replace=bool(data.get("delete_before_replace")),
            replace_on_changes=tuple(data.get("replace_on_changes") or ()),
            aliases=tuple(data.get("aliases") or ()),
        )


def redact(value: Any, key: str = "") -> Any:
    """Secret-looking inputs become a digest: comparable, never readable."""
    if isinstance(value, Mapping):
        return {str(k): redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, key) for v in value]
    if key and _SECRET_KEY.search(key) and value not in (None, "", True, False):
        digest = hashlib.sha256(repr(value).encode()).hexdigest()[:12]
        return f"<redacted sha256:{digest}>"
    return value


def _provider_urn(ref: str) -> str:
    # The engine's provider reference is "<provider urn>::<provider id>".
    return ref.rsplit("::", 1)[0] if ref.count("::") > 3 else ref


def _refs(resource: RecordedResource, model: ReplacementModel) -> list[str]:
    type_model = model.of(resource.type)
    own_name = type_model.name_property if type_model else None
    keys = [*_COMPUTED_REF_KEYS, *_NAME_REF_KEYS, *([own_name] if own_name else [])]
    refs: list[str] = []
    for key in keys:
        value = (resource.state or {}).get(key)
        echo = key in resource.inputs and key != own_name and key not in _COMPUTED_REF_KEYS
        if isinstance(value, str) and len(value) >= 8 and not echo and value not in refs:
            refs.append(value)
    return refs


def snapshot(resource: RecordedResource, model: ReplacementModel | None = None) -> Snapshot:
    refs = _refs(resource, model or load_model())
    return Snapshot(
        urn=resource.urn,
        type=resource.type,
        name=resource.name,
        inputs=redact(resource.inputs),
        refs=tuple(refs),
        provider=_provider_urn(resource.provider),
        protect=resource.protect,
        retain_on_delete=resource.retain_on_delete,
        delete_before_replace=resource.delete_before_replace,
        replace_on_changes=tuple(resource.replace_on_changes),
        aliases=tuple(resource.aliases),
    )


def snapshots(run: ProgramRun) -> list[Snapshot]:
    return sorted((snapshot(r) for r in run.resources if r.custom), key=lambda s: s.urn)


# -- the diff --------------------------------------------------------------------------


class Action(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    REPLACE = "replace"
    DELETE = "delete"


@dataclass
class Change:
    action: Action
    urn: str
    type: str
    name: str
    properties: list[str] = field(default_factory=list)
    """Inputs that differ (top level, or the model's nested path)."""
    reasons: list[str] = field(default_factory=list)
    """For a replace: each property that forces it and why."""
    loses: str = ""
    """For a replace/delete of a data-holding type: what is lost."""
    guards: list[str] = field(default_factory=list)
    """What stops the loss (protect, retainOnDelete, the provider's deletion protection)."""
    warnings: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    """Changed inputs the provider ignores after create: they are never applied."""
    modelled: bool = True
    renewed: set[str] = field(default_factory=set)
    """Inputs that take a new value because what they refer to is replaced."""

    @property
    def destroys_data(self) -> bool:
        return bool(self.loses) and self.action in (Action.REPLACE, Action.DELETE)

    @property
    def unguarded_data_loss(self) -> bool:
        return self.destroys_data and not self.guards

    def to_json(self) -> dict[str, Any]:
        return {
            "action": self.action.value,
            "urn": self.urn,
            "type": self.type,
            "name": self.name,
            "properties": list(self.properties),
            "reasons": list(self.reasons),
            "loses": self.loses,
            "guards": list(self.guards),
            "warnings": list(self.warnings),
            "dropped": list(self.dropped),
            "modelled": self.modelled,
        }


@dataclass
class PlanDiff:
    changes: list[Change]

    @property
    def data_loss(self) -> list[Change]:
        return [c for c in self.changes if c.destroys_data]

    def counts(self) -> dict[str, int]:
        counts = {a.value: 0 for a in Action}
        for change in self.changes:
            counts[change.action.value] += 1
        return counts

    def to_json(self) -> dict[str, Any]:
        return {
            "summary": {**self.counts(), "data_loss": len(self.data_loss)},
            "changes": [c.to_json() for c in self.changes],
        }


def get_path(values: Any, path: str) -> Any:
    """``a.b`` of nested inputs; a list on the way yields the list of each element's."""
    current: Any = values
    for part in path.split("."):
        if isinstance(current, list):
            current = [get_path(item, part) for item in current]
        elif isinstance(current, Mapping):
            current = current.get(part)
        else:
            return None
    return current


def _leaves(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _leaves(item)
    elif isinstance(value, list):
        for item in value:
            yield from _leaves(item)


# An id/ARN, or a random hex suffix (RandomId.hex) embedded in a generated name.
_DISTINCT = re.compile(r":|-[0-9a-f]{17}$|^[0-9a-f]{8,}$")


def _refers(value: Any, refs: Sequence[str]) -> bool:
    """An exact reference, or an id/ARN embedded in a longer value (a policy, a URL);
    a bare name embedded in another is not a reference (api vs api-scaling)."""
    for leaf in _leaves(value):
        for ref in refs:
            if leaf == ref or (_DISTINCT.search(ref) and ref in leaf):
                return True
    return False


def _changed_properties(base: Snapshot, head: Snapshot, model: TypeModel | None) -> list[str]:
    keys = set(base.inputs) | set(head.inputs)
    changed = {k for k in keys if base.inputs.get(k) != head.inputs.get(k)}
    nested = [p for p in (model.replace_on or ()) if "." in p] if model else []
    for path in nested:
        if get_path(base.inputs, path) != get_path(head.inputs, path):
            changed.add(path)
    return sorted(changed)


def _describe(value: Any) -> str:
    text = repr(value) if not isinstance(value, str) else value
    return text if len(text) <= 60 else text[:57] + "..."


def _guards(snap: Snapshot, model: TypeModel | None, action: Action) -> list[str]:
    guards = []
    if snap.protect:
        guards.append("protect: `pulumi up` refuses to delete or replace it")
    if snap.retain_on_delete:
        guards.append("retainOnDelete: the cloud resource is kept when Pulumi deletes it")
    # A replacement deletes the old resource too: the provider refuses that delete
    # (after the new one exists), so the data survives and `pulumi up` stops.
    if model and model.deletion_protection:
        prop = str(model.deletion_protection["property"])
        if get_path(snap.inputs, prop) == model.deletion_protection["value"]:
            guards.append(f"{prop}: the provider refuses to delete the {action.value}d one")
    return guards


def diff(
    base: Iterable[Snapshot], head: Iterable[Snapshot], model: ReplacementModel | None = None
) -> PlanDiff:
    """The changes that turn ``base`` into ``head``, data loss first."""
    model = model or load_model()
    base_by_urn = {s.urn: s for s in base}
    head_list = list(head)
    pairs: dict[str, tuple[Snapshot, Snapshot]] = {}
    created: list[Snapshot] = []
    for snap in head_list:
        old = base_by_urn.get(snap.urn) or next(
            (base_by_urn[a] for a in snap.aliases if a in base_by_urn), None
        )
        if old is None:
            created.append(snap)
        else:
            pairs[snap.urn] = (old, snap)
    matched = {old.urn for old, _ in pairs.values()}

    changes: dict[str, Change] = {}
    for urn, (old, new) in pairs.items():
        type_model = model.of(new.type)
        props = _changed_properties(old, new, type_model)
        change = Change(Action.UPDATE, urn, new.type, new.name, modelled=type_model is not None)
        for prop in props:
            if type_model and prop in type_model.ignored_after_create:
                change.dropped.append(f"{prop}: {type_model.ignored_after_create[prop]}")
                continue
            change.properties.append(prop)
            by_option = prop in new.replace_on_changes or "*" in new.replace_on_changes
            if by_option or (type_model and type_model.forces_replacement(prop)):
                why = "replaceOnChanges option" if by_option else f"{type_model.source}"  # type: ignore[union-attr]
                change.reasons.append(
                    f"{prop} {_describe(get_path(old.inputs, prop))} -> "
                    f"{_describe(get_path(new.inputs, prop))} forces replacement ({why})"
                )
        if old.provider != new.provider and old.provider and new.provider:
            change.reasons.append(f"provider {old.provider} -> {new.provider}")
        if change.reasons:
            change.action = Action.REPLACE
        if change.properties or change.dropped or change.reasons:
            changes[urn] = change

    _cascade(pairs, changes, model)

    for snap in created:
        changes[snap.urn] = Change(
            Action.CREATE, snap.urn, snap.type, snap.name, modelled=model.of(snap.type) is not None
        )
    for urn, snap in base_by_urn.items():
        if urn not in matched:
            changes[urn] = Change(
                Action.DELETE, urn, snap.type, snap.name, modelled=model.of(snap.type) is not None
            )

    heads = {s.urn: s for s in head_list}
    for urn, change in changes.items():
        _annotate(
            change, base_by_urn.get(urn) or pairs.get(urn, (None, None))[0], heads.get(urn), model
        )
    order = {Action.REPLACE: 1, Action.DELETE: 2, Action.CREATE: 3, Action.UPDATE: 4}
    ranked = sorted(
        changes.values(),
        key=lambda c: (0 if c.destroys_data else order[c.action], c.type, c.name, c.urn),
    )
    return PlanDiff(ranked)


def _cascade(
    pairs: Mapping[str, tuple[Snapshot, Snapshot]],
    changes: dict[str, Change],
    model: ReplacementModel,
) -> None:
    """A replaced resource gets a new id/ARN (and a new auto-name): whatever refers to it
    through a property that forces replacement is replaced too, like a real preview."""
    done: set[str] = set()
    while True:
        replaced = [
            u
            for u, c in changes.items()
            if c.action is Action.REPLACE and u not in done and u in pairs
        ]
        if not replaced:
            return
        for urn in replaced:
            done.add(urn)
            old, _ = pairs[urn]
            type_model = model.of(old.type)
            for other_urn, (other_old, other_new) in pairs.items():
                if other_urn == urn:
                    continue
                other_model = model.of(other_new.type)
                reasons = []
                if type_model and type_model.provider and other_new.provider == urn:
                    reasons.append(f"its provider {old.name} is replaced")
                renewed: set[str] = set()
                for prop, value in other_old.inputs.items():
                    if not old.refs or not _refers(value, old.refs):
                        continue
                    renewed.add(prop)
                    by_option = prop in other_new.replace_on_changes
                    if by_option or (other_model and other_model.forces_replacement(prop)):
                        reasons.append(f"{prop} refers to {old.name}, which is replaced")
                if not reasons:
                    continue
                change = changes.get(other_urn) or Change(
                    Action.UPDATE, other_urn, other_new.type, other_new.name
                )
                change.renewed |= renewed
                change.action = Action.REPLACE
                change.reasons.extend(r for r in reasons if r not in change.reasons)
                changes[other_urn] = change


def _annotate(
    change: Change, old: Snapshot | None, new: Snapshot | None, model: ReplacementModel
) -> None:
    type_model = model.of(change.type)
    if type_model is None:
        if change.action is Action.UPDATE:
            change.warnings.append("type not in the replacement model: may be a replacement")
        return
    if change.action not in (Action.REPLACE, Action.DELETE):
        return
    current = old or new
    if type_model.holds_data:
        change.loses = type_model.holds or ""
    if current is not None:
        change.guards = _guards(current, type_model, change.action)
    if change.action is Action.REPLACE and new is not None:
        prop = type_model.name_property or ""
        fixed = get_path(new.inputs, prop) if prop else None
        # Only the same name collides: a name renewed with the replacement (a random
        # suffix kept by the forcing inputs) lets create-before-delete work.
        if fixed and old is not None and get_path(old.inputs, prop) != fixed:
            fixed = None
        if prop in change.renewed:
            fixed = None
        if fixed and not new.delete_before_replace:
            change.warnings.append(
                f"{type_model.name_property} is fixed ({_describe(fixed)}): create-before-delete "
                "makes a second one with the same name first; the cloud refuses it and "
                "`pulumi up` fails (set deleteBeforeReplace, or change the name)"
            )
        elif new.delete_before_replace:
            change.warnings.append(
                "deleteBeforeReplace: the old one is deleted before the new one exists"
            )
