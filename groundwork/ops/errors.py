"""Errors the ``groundwork ops`` commands turn into one line and an exit code."""

from __future__ import annotations


class OpsError(Exception):
    """An operation ran and failed (a task exited non-zero, a smoke check failed)."""

    exit_code = 1


class UserError(OpsError):
    """The caller must fix something before retrying: arguments, credentials, outputs."""

    exit_code = 2


class MissingCredentialsError(UserError):
    """No usable cloud credentials in the environment."""


class MissingOutputError(UserError):
    """The stack does not export a value the command needs."""


class WrongCloudError(UserError):
    """The stack is deployed to the other cloud."""


class TaskFailedError(OpsError):
    """An ECS task or Cloud Run job execution stopped unsuccessfully."""


class RevisionNotReadyError(OpsError):
    """A Cloud Run revision is not Ready, so it must not take traffic."""


class SmokeTestError(OpsError):
    """A post-deploy check failed."""


class RolledBackError(OpsError):
    """A gradual rollout failed its health check and traffic was returned."""


class OpsTimeoutError(OpsError):
    """Something did not reach the expected state in time."""
