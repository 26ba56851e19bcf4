"""GCP naming rules: labels from the shared tag set, service-account ids within 30 chars."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping

_INVALID = re.compile(r"[^a-z0-9_-]")
_KEY_START = re.compile(r"^[a-z]")


def gcp_labels(tags: Mapping[str, str]) -> dict[str, str]:
    """Translate ``settings.tags`` into valid GCP labels.

    Values are lowercased and every character GCP refuses becomes ``_`` (so a cost
    centre "Platform Team" is still attributable); keys are not rewritten because a
    silently renamed key would break cost reports and the policy pack, so an invalid
    key is an error naming the key.
    """
    labels: dict[str, str] = {}
    for key, value in tags.items():
        if not _KEY_START.match(key) or _INVALID.search(key) or len(key) > 63:
            raise ValueError(
                f"label key {key!r} is not a valid GCP label key: start with a lowercase "
                "letter, then up to 62 of [a-z0-9_-]"
            )
        labels[key] = _INVALID.sub("_", str(value).lower())[:63]
    return labels


_ACCOUNT_ID = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")


def account_id(prefix: str, role: str) -> str:
    """A service-account id ``{prefix}-{role}`` that fits GCP's 6-30 character limit.

    Long prefixes are shortened with a stable hash so two stacks never collide and a
    re-run always produces the same id.
    """
    candidate = f"{prefix}-{role}"
    if len(candidate) > 30:
        digest = hashlib.sha256(candidate.encode()).hexdigest()[:4]
        keep = 30 - len(role) - len(digest) - 2
        candidate = f"{prefix[:keep].rstrip('-')}-{digest}-{role}"
    if not _ACCOUNT_ID.match(candidate):
        raise ValueError(
            f"service account id {candidate!r} is invalid: 6-30 of [a-z0-9-], starting with "
            "a letter (check groundwork:service)"
        )
    return candidate
