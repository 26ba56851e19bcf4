"""Run a Pulumi program under mocks that must fail, and keep the next run unaffected."""

from __future__ import annotations

from collections.abc import Callable

from pulumi.runtime import settings as pulumi_settings


def failure_of(run: Callable[[], object]) -> BaseException:
    """Call ``run`` expecting it to raise; return the exception.

    A program that raises leaves its pending output tasks in the SDK's global
    ``SETTINGS.outputs``, bound to the closed event loop of that run; the next run would
    wait on them forever. Drop them so later runs in this process are unaffected.
    """
    try:
        run()
    except BaseException as exc:
        return exc
    finally:
        with pulumi_settings.SETTINGS.lock:
            pulumi_settings.SETTINGS.outputs.clear()
    raise AssertionError("the program did not fail")
