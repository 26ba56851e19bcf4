"""Reading JSON request bodies: media type and size checked before any parsing.

The routes read the raw bytes themselves (the webhook must HMAC exactly those bytes)
and validate with ``model_validate_json``: one pass of pydantic-core's JSON parser
instead of ``json.loads`` plus model validation.
"""

from __future__ import annotations

from typing import TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from groundwork_app.api.errors import ApiError

M = TypeVar("M", bound=BaseModel)


def _media_type_ok(content_type: str) -> bool:
    media, _, params = content_type.partition(";")
    media = media.strip().lower()
    if media != "application/json" and not (
        media.startswith("application/") and media.endswith("+json")
    ):
        return False
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in (
            "utf-8",
            "utf8",
        ):
            return False
    return True


async def read_body(request: Request, max_bytes: int) -> bytes:
    if not _media_type_ok(request.headers.get("content-type", "")):
        raise ApiError(
            415, "unsupported_media_type", "Content-Type must be application/json (UTF-8)."
        )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise ApiError(413, "payload_too_large", f"Request body exceeds {max_bytes} bytes.")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:  # chunked or lying Content-Length
            raise ApiError(413, "payload_too_large", f"Request body exceeds {max_bytes} bytes.")
    return bytes(body)


def parse_body(model: type[M], body: bytes, context: dict[str, object] | None = None) -> M:
    try:
        return model.model_validate_json(body, context=context)
    except ValidationError as exc:
        errors = exc.errors(include_input=False, include_url=False, include_context=False)
        for error in errors:
            error["loc"] = ("body", *error["loc"])
        raise RequestValidationError(errors) from None
