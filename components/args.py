"""What every component's ``Args`` raises when it refuses a value, and the VPC range rule.

Cloud rules live in the ``Args`` of the component they constrain (``__post_init__``); the
stacks build those ``Args`` before any resource and turn an ``ArgError`` into a
``ConfigError`` naming the config key that set the field (stacks/arg_keys.py holds that
one table), so a user never sees a component's field name.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from typing import Any, ClassVar, Final, Generic, TypeVar

import pulumi

ArgsT = TypeVar("ArgsT")

FROM_RESOURCE: Final = "<set from another resource's output>"
"""Placeholder for an ``Args`` field that another resource's output fills in.

The stacks build every ``Args`` a config value reaches before any resource exists (so a
bad value stops the program before anything is registered) and ``dataclasses.replace``
the outputs in once the resources exist; ``require_resolved`` makes a component refuse
an ``Args`` whose placeholder was never replaced.
"""


class ArgError(ValueError):
    """``field`` of an Args object is ``value``, which is refused: ``allowed`` says why."""

    def __init__(self, field: str, value: object, allowed: str) -> None:
        super().__init__(f"{field}={value!r}: {allowed}")
        self.field = field
        self.value = value
        self.allowed = allowed


def require_resolved(args: Any) -> None:
    """Refuse ``args`` (a dataclass) if a field still holds ``FROM_RESOURCE``."""
    for field in dataclasses.fields(args):
        if getattr(args, field.name) is FROM_RESOURCE:
            raise ValueError(
                f"{type(args).__name__}.{field.name} was never set from its resource's output"
            )


FARGATE_CPU_ARCHITECTURES = ("X86_64", "ARM64")
"""ECS ``runtimePlatform.cpuArchitecture`` values for Fargate Linux tasks. Both run on
Fargate Spot too ("FARGATE_SPOT supports Linux tasks with the ARM64 architecture on
platform version 1.4.0 or later", ECS API reference, CapacityProviderStrategyItem), so
no Spot/architecture rule exists. The settings model (``cpuArchitecture``, lower case)
and the task definitions check against this one list."""


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


def renamed_from(old_type: str, opts: pulumi.ResourceOptions | None) -> pulumi.ResourceOptions:
    """``opts`` plus an alias to the component's former type token.

    The type token is part of the URN of the component and of every descendant; with
    ``Alias(type_=<old token>)`` on the component alone the engine finds the component
    under its old URN and derives each child's old URN from it (children inherit their
    parent's alias, transitively), so nothing is replaced (tests/test_urn_aliases.py).
    Physical names do not depend on the token.
    """
    return pulumi.ResourceOptions.merge(
        opts, pulumi.ResourceOptions(aliases=[pulumi.Alias(type_=old_type)])
    )


def moved_children(opts: pulumi.ResourceOptions | None) -> list[pulumi.Alias]:
    """Aliases for the children of a small component split out of its composer.

    A child's URN contains its parent's type chain, so a child that moved from the
    composer (``opts.parent``) under the new component would be deleted and re-created;
    ``Alias(parent=<composer>)`` resolves to its old URN and the engine keeps it
    (tests/test_urn_aliases.py proves it for every stack).
    """
    return [pulumi.Alias(parent=opts.parent)] if opts and opts.parent else []


class ComposedPart(pulumi.ComponentResource, Generic[ArgsT]):
    """A small component a composer builds (ContainerService's parts, say).

    Named by the composer, typed ``TYPE``, built by ``build`` from its ``Args``;
    ``child_options`` parents a child here and aliases it to its place directly under the
    composer, where it was before the split (``moved_children``).
    """

    TYPE: ClassVar[str]

    def __init__(self, name: str, args: ArgsT, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(self.TYPE, name, None, opts)
        self._moved = moved_children(opts)
        self.build(name, args)

    def build(self, name: str, args: ArgsT) -> None:
        """Create the children and ``register_outputs``."""
        raise NotImplementedError

    def child_options(self, **options: Any) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self, aliases=self._moved, **options)
