"""Run one job of a workflow file the way GitHub Actions does, with fakes on PATH.

Enough of the runner's behaviour to drive the delivery workflows' real steps: the
``${{ }}`` expression language (contexts, literals, ==, !=, &&, ||, !, status functions;
https://docs.github.com/en/actions/learn-github-actions/expressions), ``if:`` defaulting
to ``success()``, env layering (workflow < job < step), ``$GITHUB_OUTPUT`` /
``$GITHUB_ENV`` / ``$GITHUB_STEP_SUMMARY`` files, ``run:`` under ``bash -e`` (GitHub's
default shell when none is given), job outputs evaluated when the job ends, and
upload/download-artifact as a directory per artifact name. Every other ``uses:`` step
(checkout, setup-uv, credentials) is a no-op.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<op>==|!=|&&|\|\||!|\(|\))|(?P<num>\d+)"
    r"|(?P<name>[A-Za-z_][\w.-]*(?:\(\))?))"
)


class Expr:
    """A recursive-descent evaluator for the subset of expressions the workflows use."""

    def __init__(self, text: str, context: dict[str, Any], status: str) -> None:
        self.tokens = [m for m in TOKEN.finditer(text) if m.group().strip()]
        consumed = "".join(m.group() for m in self.tokens).replace(" ", "")
        assert consumed == text.replace(" ", ""), f"unsupported expression: {text!r}"
        self.pos = 0
        self.context = context
        self.status = status

    def peek(self) -> str | None:
        return self.tokens[self.pos].group().strip() if self.pos < len(self.tokens) else None

    def take(self) -> re.Match[str]:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def evaluate(self) -> Any:
        value = self.or_()
        assert self.peek() is None, f"trailing tokens in expression at {self.peek()!r}"
        return value

    def or_(self) -> Any:
        value = self.and_()
        while self.peek() == "||":
            self.take()
            right = self.and_()
            value = value or right
        return value

    def and_(self) -> Any:
        value = self.compare()
        while self.peek() == "&&":
            self.take()
            right = self.compare()
            value = value and right
        return value

    def compare(self) -> Any:
        value = self.unary()
        while self.peek() in ("==", "!="):
            op = self.take().group().strip()
            right = self.unary()
            # Comparisons of strings are case-insensitive; null/missing compare as ''.
            a, b = (str(v).lower() if v is not None else "" for v in (value, right))
            value = (a == b) if op == "==" else (a != b)
        return value

    def unary(self) -> Any:
        if self.peek() == "!":
            self.take()
            return not self.unary()
        if self.peek() == "(":
            self.take()
            value = self.or_()
            assert self.take().group().strip() == ")"
            return value
        token = self.take()
        if token.group("str") is not None:
            return token.group("str")[1:-1].replace("''", "'")
        if token.group("num") is not None:
            return int(token.group("num"))
        name = token.group("name")
        functions = {
            "success()": self.status == "success",
            "failure()": self.status == "failure",
            "always()": True,
            "cancelled()": False,
        }
        if name in functions:
            return functions[name]
        if name in ("true", "false"):
            return name == "true"
        value: Any = self.context
        for part in name.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        return value


def evaluate(text: str, context: dict[str, Any], status: str = "success") -> Any:
    return Expr(text, context, status).evaluate()


def substitute(value: Any, context: dict[str, Any], status: str = "success") -> str:
    def one(match: re.Match[str]) -> str:
        result = evaluate(match.group(1).strip(), context, status)
        if result is None:
            return ""
        if isinstance(result, bool):
            return str(result).lower()
        return str(result)

    return re.sub(r"\$\{\{(.*?)\}\}", one, str(value))


def condition(raw: Any, context: dict[str, Any], status: str) -> bool:
    if raw is None:
        return status == "success"
    text = str(raw).strip()
    if text.startswith("${{") and text.endswith("}}"):
        text = text[3:-2].strip()
    # A condition without a status function implies success() (GitHub's rule).
    if not re.search(r"\b(success|failure|always|cancelled)\(\)", text):
        return status == "success" and bool(evaluate(text, context, status))
    return bool(evaluate(text, context, status))


@dataclass
class StepResult:
    name: str
    ran: bool
    returncode: int = 0
    outputs: dict[str, str] = field(default_factory=dict)
    log: str = ""


@dataclass
class JobResult:
    status: str
    steps: list[StepResult]
    outputs: dict[str, str]

    def step(self, fragment: str) -> StepResult:
        found = [s for s in self.steps if fragment in s.name]
        assert len(found) == 1, f"{fragment!r} matches {[s.name for s in found]}"
        return found[0]

    @property
    def ran(self) -> list[str]:
        return [s.name for s in self.steps if s.ran]


def _parse_kv_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    if not path.exists():
        return values
    for line in path.read_text().splitlines():
        if not line:
            continue
        assert "=" in line, f"invalid line in {path.name} (GitHub fails the step): {line!r}"
        key, _, value = line.partition("=")
        values[key] = value
    return values


def run_job(
    workflow: Path,
    job_name: str,
    *,
    context: dict[str, Any],
    workdir: Path,
    artifacts: Path,
    path_prefix: list[Path],
    base_env: dict[str, str],
    skip: tuple[str, ...] = (),
) -> JobResult:
    """``skip``: names of steps that only install tools (treated as succeeding)."""
    document = yaml.safe_load(workflow.read_text())
    job = document["jobs"][job_name]
    context = {**context, "steps": {}, "env": {}}
    temp = workdir / "runner-temp"
    temp.mkdir(parents=True, exist_ok=True)
    context.setdefault("runner", {})["temp"] = str(temp)
    env: dict[str, str] = {}
    for layer in (document.get("env") or {}, job.get("env") or {}):
        for key, value in layer.items():
            env[key] = substitute(value, context)
    context["env"] = env
    status = "success"
    results: list[StepResult] = []
    github_env: dict[str, str] = {}
    for index, step in enumerate(job["steps"]):
        name = step.get("name") or step.get("uses") or step.get("run", "")[:40]
        if not condition(step.get("if"), context, status):
            results.append(StepResult(name=name, ran=False))
            continue
        step_id = step.get("id") or f"__step{index}"
        with_ = {k: substitute(v, context, status) for k, v in (step.get("with") or {}).items()}
        result = StepResult(name=name, ran=True)
        if any(fragment in name for fragment in skip):
            pass
        elif "uses" in step:
            action = step["uses"].split("@", 1)[0]
            if action == "actions/upload-artifact":
                target = artifacts / with_["name"]
                source = Path(with_["path"])
                if not source.exists():
                    if with_.get("if-no-files-found", "warn") == "error":
                        result.returncode = 1
                else:
                    target.mkdir(parents=True, exist_ok=True)
                    if source.is_dir():
                        shutil.copytree(source, target, dirs_exist_ok=True)
                    else:
                        shutil.copy2(source, target)
            elif action == "actions/download-artifact":
                source = artifacts / with_["name"]
                if not source.exists():
                    result.returncode = 1
                else:
                    shutil.copytree(source, Path(with_["path"]), dirs_exist_ok=True)
        else:
            step_env = dict(env)
            step_env.update(github_env)
            for key, value in (step.get("env") or {}).items():
                step_env[key] = substitute(value, context, status)
            files = {k: temp / f"{k.lower()}-{index}" for k in ("GITHUB_OUTPUT", "GITHUB_ENV")}
            script = temp / f"step-{index}.sh"
            script.write_text(substitute(step["run"], context, status))
            full_env = {
                **base_env,
                **step_env,
                **{k: str(v) for k, v in files.items()},
                "GITHUB_STEP_SUMMARY": str(temp / "summary.md"),
                "RUNNER_TEMP": str(temp),
                "GITHUB_SHA": context["github"]["sha"],
                "GITHUB_RUN_ID": str(context["github"]["run_id"]),
                "GITHUB_REPOSITORY": context["github"]["repository"],
                "PATH": os.pathsep.join([*map(str, path_prefix), base_env.get("PATH", "")]),
            }
            done = subprocess.run(
                ["bash", "-e", str(script)],
                cwd=workdir,
                env=full_env,
                capture_output=True,
                text=True,
                check=False,
                timeout=300,
            )
            result.returncode = done.returncode
            result.log = done.stdout + done.stderr
            result.outputs = _parse_kv_file(files["GITHUB_OUTPUT"])
            github_env.update(_parse_kv_file(files["GITHUB_ENV"]))
        context["steps"][step_id] = {
            "outputs": result.outputs,
            "outcome": "success" if result.returncode == 0 else "failure",
        }
        if result.returncode != 0:
            status = "failure"
        results.append(result)
    outputs = {k: substitute(v, context, status) for k, v in (job.get("outputs") or {}).items()}
    return JobResult(status=status, steps=results, outputs=outputs)
