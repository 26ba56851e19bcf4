"""structlog configuration: one JSON object per line, request id bound per request.

Standard-library records (uvicorn, SQLAlchemy, aio-pika) go through the same
processors, so every line a process writes has the same shape. The per-request
fields (request id, client, job) live in one contextvar holding a small dict that is
copied on write: each asyncio task (one per request) sees its own, and a request
pays one dict copy per bind instead of structlog.contextvars' scan of every
contextvar in the context on each bind, clear and log call (a measurable share of
the API's per-request CPU, see docs/performance.md).

Never log secrets, tokens or full prompts: callers log sizes and hashes instead
(``prompt_chars``, ``request_hash``).
"""

from __future__ import annotations

import logging
import re
import sys
import uuid
from contextvars import ContextVar
from typing import Any, TextIO

import structlog

from groundwork_app.settings import Settings

# Echoed into response headers, logs and the outbox row: bounded and printable so a
# client cannot inject log lines or header CRLFs through it.
_REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
_current_request_id: ContextVar[str] = ContextVar("request_id", default="")
_log_context: ContextVar[dict[str, Any]] = ContextVar("log_context", default={})  # noqa: B039 - never mutated


def valid_request_id(value: str | None) -> str:
    """``value`` when it is an acceptable request id, otherwise a fresh one."""
    if value and _REQUEST_ID_RE.fullmatch(value):
        return value
    return uuid.uuid4().hex


def bind_request_id(request_id: str) -> None:
    """Start a fresh log context for one request (or message) carrying its id."""
    _log_context.set({"request_id": request_id})
    _current_request_id.set(request_id)


def current_request_id() -> str:
    return _current_request_id.get()


def bind_log_context(**values: Any) -> None:
    """Add fields to every later log line of the current request."""
    _log_context.set({**_log_context.get(), **values})


def unbind_log_context(*keys: str) -> None:
    context = _log_context.get()
    _log_context.set({k: v for k, v in context.items() if k not in keys})


def clear_request_context() -> None:
    _log_context.set({})
    _current_request_id.set("")


def log_context() -> dict[str, Any]:
    return dict(_log_context.get())


def _merge_log_context(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    context = _log_context.get()
    return {**context, **event_dict} if context else event_dict


def _shared_processors() -> list[Any]:
    return [
        _merge_log_context,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def configure_logging(settings: Settings, stream: TextIO | None = None) -> None:
    """Configure structlog and route stdlib logging through it; idempotent."""
    out = stream if stream is not None else sys.stdout
    level = logging.getLevelName(settings.log_level)
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if settings.log_json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            *_shared_processors(),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        # A process configures once and then logs on every request, so its loggers are
        # built once; tests pass their own stream and reconfigure, so theirs are not.
        cache_logger_on_first_use=stream is None,
    )

    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*_shared_processors(), structlog.stdlib.add_logger_name],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # uvicorn installs its own handlers when given a log config; we pass none and
    # keep its error logger, while access lines come from our middleware.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    logging.getLogger("uvicorn.access").disabled = True
    # httpx logs every request at INFO ("HTTP Request: POST ... 200 OK", httpx docs,
    # Logging): a second JSON line per LLM call next to the worker's own "message
    # handled", formatted on the worker's only core. Its warnings and errors still
    # come through.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(max(level, logging.WARNING))


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
