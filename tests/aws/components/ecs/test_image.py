"""ImageRepository (components/aws/ecs/image.py): the build tag and a prebuilt image."""

from __future__ import annotations

from pathlib import Path

import pytest

from components.aws.ecs.image import PrebuiltImage
from components.source import source_fingerprint


def test_source_fingerprint_follows_content(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("print(1)")
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "x.pyc").write_bytes(b"junk")
    first = source_fingerprint(tmp_path)
    (tmp_path / "__pycache__" / "y.pyc").write_bytes(b"more junk")
    assert source_fingerprint(tmp_path) == first
    (tmp_path / "app.py").write_text("print(2)")
    assert source_fingerprint(tmp_path) != first
    assert first.startswith("src-") and len(first) == 20


def test_prebuilt_image_is_validated_in_the_component_too() -> None:
    with pytest.raises(ValueError, match="pinned by digest"):
        PrebuiltImage("repo/app:latest")


# --- rollout strategy ------------------------------------------------------------------
