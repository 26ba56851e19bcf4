"""Stacks: compose the components into a staging or production environment."""

from __future__ import annotations

from collections.abc import Mapping

import pulumi

from stacks.config import Cloud, load_settings


def program() -> None:
    """The whole Pulumi program: settings in, one cloud's environment out."""
    settings = load_settings()
    # Typed per cloud (groundwork.stack_outputs), the names groundwork ops reads back.
    outputs: Mapping[str, object]
    if settings.cloud is Cloud.AWS:
        from stacks import aws

        outputs = aws.build(settings)
    else:
        from stacks import gcp

        outputs = gcp.build(settings)
    for name, value in outputs.items():
        pulumi.export(name, value)
