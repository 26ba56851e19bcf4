"""The policy list and its per-environment configuration.

Importing this module builds every policy object and nothing else: the gRPC server
that CrossGuard talks to is only started by ``policies/__main__.py``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pulumi_policy import Policy

from policies import aws_rules, gcp_rules, protection_rules, stack_rules
from policies.registry import Rule, Tier

PACK_NAME = "groundwork"
PACK_DESCRIPTION = (
    "Guards every groundwork stack on AWS and GCP: encryption, network exposure, secrets "
    "handling, IAM, logging, alarms, tags and (in production) high availability."
)
CONFIG_DIR = Path(__file__).resolve().parent / "config"

RULES: list[Rule] = [
    *aws_rules.RULES,
    *gcp_rules.RULES,
    *stack_rules.RULES,
    *protection_rules.RULES,
]
RULES_BY_NAME: dict[str, Rule] = {rule.name: rule for rule in RULES}
if len(RULES_BY_NAME) != len(RULES):
    raise RuntimeError("duplicate policy names in the groundwork pack")

POLICIES: list[Policy] = [rule.to_policy() for rule in RULES]


def pack_config(tier: Tier | str) -> dict[str, dict[str, Any]]:
    """What ``--policy-pack-config`` should say for ``tier`` (the files in config/)."""
    tier = Tier(tier)
    return {
        rule.name: {
            "enforcementLevel": rule.enforcement_for(tier).value,
            "environment": tier.value,
            **rule.defaults.get(tier, {}),
        }
        for rule in RULES
    }


def config_path(tier: Tier | str) -> Path:
    return CONFIG_DIR / f"{Tier(tier).value}.json"


def render_config(tier: Tier | str) -> str:
    return json.dumps(pack_config(tier), indent=2, sort_keys=True) + "\n"


def write_config_files() -> list[Path]:
    """Regenerate config/<tier>.json: ``uv run python -m policies.pack``."""
    written = []
    for tier in Tier:
        path = config_path(tier)
        path.write_text(render_config(tier))
        written.append(path)
    return written


if __name__ == "__main__":
    for written_path in write_config_files():
        print(f"wrote {written_path}")
