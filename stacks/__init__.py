"""Stacks: compose the components into a staging or production environment."""

from __future__ import annotations

import pulumi

from stacks.config import Cloud, load_settings


def program() -> None:
    """The whole Pulumi program: settings in, one cloud's environment out."""
    settings = load_settings()
    if settings.cloud is Cloud.AWS:
        from stacks.aws import build
    else:
        from stacks.gcp import build
    for name, value in build(settings).items():
        pulumi.export(name, value)
