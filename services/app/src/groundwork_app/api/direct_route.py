"""``DirectRoute``: an APIRoute whose endpoint takes the Request and returns the Response.

FastAPI documents it like any route (summary, responses, and the parameters and
security listed in ``openapi_extra``), but at run time the endpoint is called
directly: no dependency solving, parameter validation or response-model pass. The
busiest routes (``/v1/jobs``) use it because that machinery was a measurable share of
their per-request CPU (docs/performance.md); they parse their few parameters
themselves with the helpers below, which raise the same RequestValidationError as
FastAPI would, so clients see identical 422 bodies.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute


class DirectRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        return self.endpoint


def header_param(
    name: str, *, pattern: re.Pattern[str], description: str, examples: list[str]
) -> dict[str, Any]:
    """The OpenAPI entry of an optional string header matching ``pattern``."""
    return {
        "name": name,
        "in": "header",
        "required": False,
        "description": description,
        "schema": {
            "type": "string",
            "pattern": f"^{pattern.pattern}$",
            "examples": examples,
            "title": name,
        },
    }


def uuid_path_param(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string", "format": "uuid", "title": name.replace("_", " ").title()},
    }


def optional_header(request: Request, name: str, pattern: re.Pattern[str]) -> str | None:
    """The header's value, None when absent; a 422 naming it when it does not match."""
    value = request.headers.get(name)
    if value is None or pattern.fullmatch(value):
        return value
    raise RequestValidationError(
        [
            {
                "loc": ("header", name),
                "msg": f"String should match pattern '^{pattern.pattern}$'",
                "type": "string_pattern_mismatch",
            }
        ]
    )


def uuid_path(request: Request, name: str) -> uuid.UUID:
    raw = request.path_params[name]
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise RequestValidationError(
            [
                {
                    "loc": ("path", name),
                    "msg": "Input should be a valid UUID",
                    "type": "uuid_parsing",
                }
            ]
        ) from None
