"""The environment tier: the one definition the stacks and the policy pack share.

This module imports nothing but the standard library on purpose. The policy pack runs
in its own virtualenv (``policies/requirements.txt``: pulumi and pulumi-policy only) with
the repository root put on ``sys.path`` by ``policies/__main__.py``, so anything it
imports from outside ``policies/`` must not pull in pydantic, the cloud providers or the
CLI (``groundwork/__init__.py`` is empty for the same reason).
"""

from __future__ import annotations

from enum import StrEnum


class Tier(StrEnum):
    STAGING = "staging"
    PRODUCTION = "production"
