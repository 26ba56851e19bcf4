"""The image ships third-party code as bytecode only (services/app/Dockerfile).

That is safe only while no dependency needs its own source at run time. This test
reads the sources of every package in services/app/requirements.lock (installed in
the workspace venv from the same uv.lock) and fails on a call that reads Python
source which is not in the reviewed list below, so a new or upgraded dependency that
starts doing so gets looked at before it ships without its source.
"""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

from packaging.requirements import Requirement

APP = Path(__file__).resolve().parents[2] / "services/app"

SOURCE_READS = re.compile(
    r"\b(?:getsource|getsourcelines|getsourcefile|findsource|get_source)\s*\("
    r"|\blinecache\.(?:getline|getlines|updatecache)\s*\("
)

# (distribution, file) -> calls found there, and why bytecode-only is fine.
REVIEWED: dict[tuple[str, str], tuple[int, str]] = {
    ("anyio", "anyio/_lazyimport.py"): (
        1,
        "parses its own __init__ for lazy imports; on OSError falls back to eager imports",
    ),
    ("fastapi", "fastapi/routing.py"): (
        2,
        "endpoint file/line for error context, inside try/except; endpoints are the "
        "service's own code, which keeps its sources",
    ),
    ("mako", "mako/template.py"): (
        2,
        "get_source of Mako's own generated template modules, not of installed files",
    ),
    ("pydantic", "pydantic/_internal/_docs_extraction.py"): (
        3,
        "only with use_attribute_docstrings, on the model's module; catches OSError",
    ),
    ("wrapt", "wrapt/decorators.py"): (1, "in a comment"),
}


def _image_distributions() -> list[str]:
    names = []
    for raw in (APP / "requirements.lock").read_text().splitlines():
        line = raw.strip().rstrip("\\").strip()
        if not line or line.startswith(("#", "--")):
            continue
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate():
            names.append(requirement.name)
    return names


def test_no_dependency_needs_its_own_source_at_run_time() -> None:
    found: dict[tuple[str, str], int] = {}
    names = _image_distributions()
    assert len(names) > 50, names
    for name in names:
        dist = importlib.metadata.distribution(name)
        for file in dist.files or []:
            if file.suffix != ".py":
                continue
            hits = len(SOURCE_READS.findall(Path(str(file.locate())).read_text(errors="replace")))
            if hits:
                found[(name, str(file))] = hits
    expected = {key: count for key, (count, _) in REVIEWED.items()}
    assert found == expected, (
        "a dependency reads Python source at run time, which the image does not ship "
        "for third-party code: review it and update REVIEWED (or keep its sources in "
        f"services/app/Dockerfile). found={found}"
    )
