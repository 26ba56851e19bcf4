"""The service image's source fingerprint, shared by the AWS and GCP image builds."""

from __future__ import annotations

import hashlib
from pathlib import Path

SERVICE_CONTEXT = Path(__file__).resolve().parents[1] / "services" / "app"


def source_fingerprint(context: str | Path) -> str:
    """A content hash of the build context: same sources, same immutable tag."""
    root = Path(context)
    digest = hashlib.sha256()
    skip = {".venv", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", "tests"}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = path.relative_to(root)
        if skip & set(relative.parts) or path.suffix == ".pyc":
            continue
        digest.update(str(relative).encode())
        digest.update(path.read_bytes())
    return f"src-{digest.hexdigest()[:16]}"
