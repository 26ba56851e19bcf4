"""What every component's ``Args`` raises when it refuses a value, and the VPC range rule.

Cloud rules live in the ``Args`` of the component they constrain (``__post_init__``); the
stacks build those ``Args`` before any resource and turn an ``ArgError`` into a
``ConfigError`` naming the config key that set the field (stacks/arg_keys.py holds that
one table), so a user never sees a component's field name.
"""

from __future__ import annotations

import ipaddress


class ArgError(ValueError):
    """``field`` of an Args object is ``value``, which is refused: ``allowed`` says why."""

    def __init__(self, field: str, value: object, allowed: str) -> None:
        super().__init__(f"{field}={value!r}: {allowed}")
        self.field = field
        self.value = value
        self.allowed = allowed


def vpc_block(cidr: str) -> ipaddress.IPv4Network:
    """The range both clouds carve their subnets from: a private IPv4 block, /16 to /20.

    The one owner of that rule: the settings model checks the config value with it, the
    network components check their argument with it.
    """
    try:
        network = ipaddress.IPv4Network(cidr)
    except ValueError:
        raise ValueError(
            "not a CIDR block; must be an IPv4 CIDR block such as 10.40.0.0/16"
        ) from None
    if not network.is_private:
        raise ValueError("must be a private (RFC 1918) range")
    if not 16 <= network.prefixlen <= 20:
        raise ValueError("must be a block from /16 to /20")
    return network
