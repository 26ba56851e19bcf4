"""Load a stack's configuration the way the Pulumi CLI would, and run the real program.

Configuration is layered like ``pulumi preview``: project defaults from
``Pulumi.yaml``, then ``Pulumi.<stack>.yaml``, then ``--set`` overrides. The
program is ``stacks.program`` (what ``__main__.py`` calls), run under the SDK's mock
runtime by :mod:`groundwork.mockrun`: no CLI, backend, credentials or network.

Every user error becomes a :class:`PlanError` carrying one line that says what is
wrong and where; the CLI prints it and exits 2.
"""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml

from groundwork.mockrun import ProgramRun, run_program

NAMESPACE = "groundwork"
# Values Pulumi would decrypt from `secure:` entries; the mock runtime never sees them.
SECRET_PLACEHOLDER = "plan-placeholder-secret"  # noqa: S105 - a visible placeholder
# A project id is required by the GCP provider but changes nothing a plan shows.
GCP_PROJECT_PLACEHOLDER = "groundwork-plan"
DEFAULT_REGIONS = {"aws": "us-east-1", "gcp": "europe-west1"}


class PlanError(Exception):
    """A user error: the message is one line naming what is wrong and where."""


@dataclass
class StackConfig:
    """The resolved configuration of one stack and where each value came from."""

    project: str
    stack: str
    root: Path
    values: dict[str, str]
    sources: dict[str, str]
    notes: list[str] = field(default_factory=list)

    def groundwork(self) -> dict[str, str]:
        prefix = f"{NAMESPACE}:"
        return {k[len(prefix) :]: v for k, v in self.values.items() if k.startswith(prefix)}

    def source_of(self, key: str) -> str:
        return self.sources.get(key if ":" in key else f"{NAMESPACE}:{key}", "")


def find_project_root(start: Path | None = None) -> Path:
    """The directory holding ``Pulumi.yaml``: cwd or a parent, else this checkout."""
    here = (start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        if (directory / "Pulumi.yaml").is_file():
            return directory
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "Pulumi.yaml").is_file():
        return checkout
    raise PlanError(f"no Pulumi.yaml in {here} or its parents: run groundwork from the repository")


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path.name}:{mark.line + 1}" if mark else path.name
        raise PlanError(f"{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(data, dict):
        raise PlanError(f"{path.name}: expected a mapping at the top level")
    return data


def _as_config_string(value: Any) -> str:
    # Pulumi hands every config value to the program as a string; structured
    # values arrive JSON-encoded.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def _full_key(key: str, project: str) -> str:
    return key if ":" in key else f"{project}:{key}"


def parse_overrides(pairs: Sequence[str]) -> dict[str, str]:
    """``key=value`` (groundwork namespace) or ``ns:key=value`` -> full keys."""
    overrides: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise PlanError(f"--set {pair!r}: expected key=value or namespace:key=value")
        if key.count(":") > 1 or key.startswith(":") or key.endswith(":"):
            raise PlanError(f"--set {pair!r}: a key is 'name' or 'namespace:name'")
        overrides[key if ":" in key else f"{NAMESPACE}:{key}"] = value
    return overrides


def load_stack_config(
    stack: str,
    *,
    root: Path | None = None,
    overrides: Mapping[str, str] | None = None,
    cloud: str | None = None,
) -> StackConfig:
    root = root or find_project_root()
    project_file = root / "Pulumi.yaml"
    project_data = _read_yaml(project_file)
    project = str(project_data.get("name") or NAMESPACE)
    stack_file = root / f"Pulumi.{stack}.yaml"
    if not stack_file.is_file():
        known = sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in root.glob("Pulumi.*.yaml"))
        raise PlanError(
            f"unknown stack {stack!r}: no {stack_file.name} in {root} "
            f"(stacks: {', '.join(known) or 'none'})"
        )
    values: dict[str, str] = {}
    sources: dict[str, str] = {}
    notes: list[str] = []

    for key, spec in (project_data.get("config") or {}).items():
        # Project config is either `key: value` or `key: {type, default, ...}`.
        default = spec.get("default") if isinstance(spec, dict) else spec
        if default is not None:
            full = _full_key(str(key), project)
            values[full] = _as_config_string(default)
            sources[full] = "Pulumi.yaml (project default)"

    stack_data = _read_yaml(stack_file)
    for key, value in (stack_data.get("config") or {}).items():
        full = _full_key(str(key), project)
        if isinstance(value, dict) and set(value) == {"secure"}:
            values[full] = SECRET_PLACEHOLDER
            notes.append(f"{full} is encrypted in {stack_file.name}; planned with a placeholder")
        else:
            values[full] = _as_config_string(value)
        sources[full] = stack_file.name

    for full, value in (overrides or {}).items():
        values[full] = value
        sources[full] = f"--set {full}={value}"
    if cloud is not None:
        values[f"{NAMESPACE}:cloud"] = cloud
        sources[f"{NAMESPACE}:cloud"] = f"--cloud {cloud}"

    config = StackConfig(
        project=project, stack=stack, root=root, values=values, sources=sources, notes=notes
    )
    if config.groundwork().get("cloud", "aws") == "gcp":
        gw = config.groundwork()
        if not gw.get("gcpProject") and not values.get("gcp:project"):
            values["gcp:project"] = GCP_PROJECT_PLACEHOLDER
            sources["gcp:project"] = "groundwork plan placeholder"
            notes.append(
                f"gcp:project is not set; planned with placeholder "
                f"{GCP_PROJECT_PLACEHOLDER!r} (set it with `pulumi config set gcp:project`)"
            )
    return config


@dataclass
class PlannedRun:
    config: StackConfig
    run: ProgramRun
    cloud: str
    region: str
    environment: str


def _locate_config_error(message: str, config: StackConfig) -> str:
    """Append where the offending key was set (stack file, --set or code default)."""
    for full in sorted(config.values, key=len, reverse=True):
        if full in message:
            source = config.sources.get(full)
            if source:
                return f"{message} (from {source})"
    if f"{NAMESPACE}:" in message:
        return f"{message} (a default in stacks/config.py ENVIRONMENT_DEFAULTS)"
    return message


def _program_location(exc: BaseException, root: Path) -> str:
    """The innermost frame of the traceback inside the project, as path:line in function."""
    frames = traceback.extract_tb(exc.__traceback__)
    inside = [
        f
        for f in frames
        if _relative(f.filename, root) is not None
        and "/.venv/" not in f.filename
        and "/site-packages/" not in f.filename
    ]
    candidates = inside or list(frames)
    if not candidates:
        return "unknown location"
    frame = candidates[-1]
    rel = _relative(frame.filename, root) or frame.filename
    return f"{rel}:{frame.lineno} in {frame.name}"


def _relative(filename: str, root: Path) -> str | None:
    try:
        return str(Path(filename).resolve().relative_to(root))
    except ValueError:
        return None


def _importable(root: Path) -> None:
    """The program's packages (stacks, components, policies) come from the checkout.

    The groundwork wheel ships only the CLI (generic top-level names such as ``stacks``
    would collide in a shared site-packages), so the project being planned is imported
    from its own directory, as ``pulumi`` runs ``__main__.py`` from there.
    """
    if str(root) not in sys.path:
        sys.path.append(str(root))


def _settings_preflight(config: StackConfig) -> tuple[str, str]:
    """Validate the groundwork keys with the program's own model; return cloud, tier."""
    _importable(config.root)
    from stacks.config import build_settings

    settings = build_settings(config.stack, config.groundwork())
    return settings.cloud.value, settings.tier.value


def resolve_region(config: StackConfig, cloud: str, outputs: Mapping[str, Any]) -> str:
    gw = config.groundwork()
    exported = outputs.get("region")
    if isinstance(exported, str) and exported:
        return exported
    return (
        gw.get("region") or config.values.get(f"{cloud}:region") or DEFAULT_REGIONS.get(cloud, "")
    )


def plan_program(config: StackConfig, program: Callable[[], None] | None = None) -> PlannedRun:
    """Run ``program`` (default ``stacks.program``) with ``config``; user errors -> PlanError."""
    try:
        cloud, tier = _settings_preflight(config)
        if program is None:
            from stacks import program as stack_program

            program = stack_program
        run = run_program(program, stack=config.stack, config=config.values, project=config.project)
    except PlanError:
        raise
    except pulumi.RunError as exc:
        message = " ".join(str(exc).split())
        raise PlanError(
            f"stack {config.stack!r}: invalid configuration: "
            f"{_locate_config_error(message, config)}"
        ) from None
    except Exception as exc:
        where = _program_location(exc, config.root)
        detail = " ".join(str(exc).split()) or "(no message)"
        raise PlanError(
            f"stack {config.stack!r}: the program failed at {where}: {type(exc).__name__}: {detail}"
        ) from None
    region = resolve_region(config, cloud, run.outputs)
    return PlannedRun(config=config, run=run, cloud=cloud, region=region, environment=tier)
