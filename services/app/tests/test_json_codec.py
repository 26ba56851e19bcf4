"""The prebuilt encoders write exactly what the json.dumps calls they replace wrote
(stored request hashes depend on the canonical form staying the same)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from groundwork_app import json_codec

DOCUMENTS: list[Any] = [
    {
        "prompt": 'Résumé — 日本語 \u2028 "quoted" \\ back',
        "model": None,
        "metadata": {"b": 1, "a": [1.5, True]},
    },
    {"z": {"y": {"x": []}}, "a": ""},
    ["\x00\x1f", "emoji 🎉", 10**20, -0.0],
]


@pytest.mark.parametrize("doc", DOCUMENTS)
def test_encoders_match_the_json_dumps_calls_they_replace(doc: Any):
    assert json_codec.canonical(doc) == json.dumps(
        doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    assert json_codec.compact(doc) == json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
    assert json_codec.compact_ascii(doc) == json.dumps(doc, separators=(",", ":"))
    assert json_codec.compact_ascii(doc).isascii()
