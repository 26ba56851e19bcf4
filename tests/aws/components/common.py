"""What the AWS component tests share: fake subnets and client groups, the data stores'
common arguments and a role policy's document."""

from __future__ import annotations

import json
from typing import Any

from groundwork.mockrun import ProgramRun

CLIENTS = {"api": "sg-api", "worker": "sg-worker"}
SUBNETS = ["subnet-a", "subnet-b", "subnet-c"]
SECRETS_KEY = "arn:aws:kms:us-east-1:1:key/s"


def data_store_args(args_type: Any, *, secrets_key: bool = True, **kwargs: Any) -> Any:
    """``args_type`` in the fake VPC, reachable from CLIENTS (and its secrets' key)."""
    base: dict[str, Any] = {
        "vpc_id": "vpc-1",
        "subnet_ids": SUBNETS,
        "client_security_group_ids": CLIENTS,
    }
    if secrets_key:
        base["secrets_kms_key_arn"] = SECRETS_KEY
    return args_type(**{**base, **kwargs})


def role_policy(run: ProgramRun, suffix: str) -> dict[str, Any]:
    """The document of the one inline role policy whose name ends with ``suffix``."""
    resource = next(
        r for r in run.of_type("aws:iam/rolePolicy:RolePolicy") if r.name.endswith(suffix)
    )
    return json.loads(resource.inputs["policy"])
