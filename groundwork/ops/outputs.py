"""Stack outputs: what a deployed stack exports, read once and validated on access.

The workflows call ``pulumi stack output --json --stack STACK``; an operator without
the Pulumi CLI (or a test) passes ``--outputs-file`` with the same JSON. Secret outputs
are never requested (no ``--show-secrets``): the stacks export none.
"""

from __future__ import annotations

import json
import shutil
import subprocess  # nosec B404 - runs the pulumi CLI with a fixed argument list
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from groundwork.ops.errors import MissingOutputError, UserError, WrongCloudError
from groundwork.stack_outputs import OutputName

Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]


def _run(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - argv is built here, never from a shell string
        list(argv), capture_output=True, text=True, check=False, timeout=120
    )


@dataclass(frozen=True)
class StackOutputs:
    """A stack's exports plus where they came from (for error messages).

    Read by name: an :data:`~groundwork.stack_outputs.OutputName`, the names the stacks'
    ``build()`` is typed to return, so mypy rejects a name no stack exports.
    """

    stack: str
    values: Mapping[str, Any]
    source: str

    @property
    def cloud(self) -> str:
        return self.string("cloud")

    def expect_cloud(self, cloud: str) -> StackOutputs:
        if self.cloud != cloud:
            raise WrongCloudError(
                f"stack {self.stack!r} is deployed to {self.cloud}, this command needs {cloud}"
            )
        return self

    def _missing(self, key: OutputName, kind: str) -> MissingOutputError:
        known = ", ".join(sorted(self.values)) or "none"
        return MissingOutputError(
            f"stack {self.stack!r} has no {kind} output {key!r} (from {self.source}; "
            f"exported: {known}); run `pulumi up` for this stack or pass the right --stack"
        )

    def string(self, key: OutputName) -> str:
        value = self.values.get(key)
        if not isinstance(value, str) or not value:
            raise self._missing(key, "string")
        return value

    def strings(self, key: OutputName) -> list[str]:
        value = self.values.get(key)
        if (
            not isinstance(value, list)
            or not value
            or not all(isinstance(item, str) and item for item in value)
        ):
            raise self._missing(key, "non-empty list")
        return list(value)

    def mapping(self, key: OutputName) -> dict[str, str]:
        value = self.values.get(key)
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise self._missing(key, "mapping")
        return dict(value)


def _parse(text: str, stack: str, source: str) -> StackOutputs:
    try:
        values = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"stack outputs from {source} are not JSON: {exc.msg}") from None
    if not isinstance(values, dict):
        raise UserError(f"stack outputs from {source} must be a JSON object of name -> value")
    return StackOutputs(stack=stack, values=values, source=source)


def load_outputs(
    stack: str, outputs_file: Path | None = None, *, runner: Runner = _run
) -> StackOutputs:
    """Read ``stack``'s outputs from ``outputs_file`` or the Pulumi CLI."""
    if not stack:
        raise UserError("--stack is required (e.g. staging or production)")
    if outputs_file is not None:
        try:
            text = outputs_file.read_text(encoding="utf-8")
        except OSError as exc:
            raise UserError(f"cannot read --outputs-file {outputs_file}: {exc.strerror}") from None
        return _parse(text, stack, f"file {outputs_file}")
    if shutil.which("pulumi") is None:
        raise UserError(
            "the pulumi CLI is not on PATH; install it or pass --outputs-file with the JSON "
            "of `pulumi stack output --json`"
        )
    argv = ["pulumi", "stack", "output", "--json", "--stack", stack]
    try:
        done = runner(argv)
    except subprocess.TimeoutExpired:
        raise UserError(f"`{' '.join(argv)}` did not answer within 120 s") from None
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        reason = detail[-1] if detail else f"exit code {done.returncode}"
        raise UserError(f"`{' '.join(argv)}` failed: {reason}")
    return _parse(done.stdout, stack, f"`{' '.join(argv)}`")
