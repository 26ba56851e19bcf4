"""What `pip install groundwork` puts into site-packages: the CLI package only."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _uv() -> str:
    # `uv run` exports its own path as UV; scripts/ensure-uv.sh installs it on PATH.
    found = os.environ.get("UV") or shutil.which("uv")
    if not found:
        if os.environ.get("CI"):
            pytest.fail("uv is not on PATH: CI must build the wheel")
        pytest.skip("uv is not installed")
    return found


def test_the_wheel_installs_only_the_groundwork_package(tmp_path: Path) -> None:
    result = subprocess.run(
        [_uv(), "build", "--wheel", "--out-dir", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    (wheel,) = tmp_path.glob("groundwork-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    top_level = {name.split("/", 1)[0] for name in names}
    assert top_level == {"groundwork", f"{wheel.name.split('-py')[0]}.dist-info"}
    assert "groundwork/cli.py" in names and "groundwork/tier.py" in names
    # The price table and the plan schema are data files the CLI reads at run time.
    assert {"groundwork/plan/prices.yaml", "groundwork/plan/plan.schema.json"} <= set(names)


def test_plan_imports_the_program_from_the_project_root(
    run_python: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    # An installed (non-editable) CLI has no `stacks` of its own: planning must find the
    # program in the checkout it is run from. Drop the checkout from sys.path after the
    # CLI itself is imported, as a console script started elsewhere would have it.
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from groundwork.plan.program import _settings_preflight, load_stack_config\n"
        f"root = {str(ROOT)!r}\n"
        "sys.path[:] = [p for p in sys.path if p not in ('', root)]\n"
        "print(*_settings_preflight(load_stack_config('production', root=Path(root))))\n"
        "print(sys.modules['stacks'].__file__.startswith(root))\n"
    )
    result = run_python(code, cwd="/")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["aws", "production", "True"]


def test_shipped_code_does_not_import_test_tooling() -> None:
    # The wheel installs without the dev group: a pytest import in `groundwork/` (even a
    # lazy one, as postgres_for_test once had) fails at run time; such helpers live in
    # testsupport/, which the wheel leaves out.
    importers = []
    for path in sorted((ROOT / "groundwork").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            if any(n.split(".")[0] in ("pytest", "tests", "testsupport") for n in names):
                importers.append(str(path.relative_to(ROOT)))
    assert importers == []
