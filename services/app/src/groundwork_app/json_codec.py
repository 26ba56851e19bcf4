"""Prebuilt JSON encoders for the hot paths.

``json.dumps`` with any non-default option (separators, sort_keys, ensure_ascii) builds a
new ``JSONEncoder`` on every call; a job submission serializes four documents, so the
API reuses these instead. The output is byte-for-byte what the equivalent
``json.dumps`` call produces.
"""

from __future__ import annotations

import json

# Compact, non-ASCII kept as UTF-8: stored documents and response bodies.
compact = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
# Compact and ASCII-only: values that travel as message headers.
compact_ascii = json.JSONEncoder(separators=(",", ":")).encode
# Canonical: sorted keys, so equal documents always give equal text (hashing).
canonical = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode
