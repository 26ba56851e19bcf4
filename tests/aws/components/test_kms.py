"""EncryptionKey (components/aws/kms.py): rotation and the key policy."""

from __future__ import annotations

import json
from typing import Any

import pytest

from components.aws import EncryptionKey, EncryptionKeyArgs


def test_key_rotates_and_scopes_log_service(helpers: Any) -> None:
    run = helpers.run_component(
        lambda: EncryptionKey(
            "k",
            EncryptionKeyArgs(description="d", service_principals=["logs.us-east-1.amazonaws.com"]),
        )
    )
    key = run.one("aws:kms/key:Key").inputs
    assert key["enableKeyRotation"] is True and key["deletionWindowInDays"] == 30
    statements = json.loads(key["policy"])["Statement"]
    logs = next(
        s for s in statements if s["Principal"] == {"Service": "logs.us-east-1.amazonaws.com"}
    )
    assert logs["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"] == (
        "arn:aws:logs:us-east-1:123456789012:*"
    )
    assert run.one("aws:kms/alias:Alias").inputs["name"] == "alias/k"
    with pytest.raises(ValueError, match="7 to 30"):
        EncryptionKeyArgs(description="d", deletion_window_days=3)
