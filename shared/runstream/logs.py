"""structlog, configured once per process: JSON lines when not on a TTY, console on a TTY.

Standard-library loggers (faststream, asyncio, redis) go through the same processors via
structlog's ProcessorFormatter, so every line of a process has one format. Every string
value is scrubbed of URL passwords before it is rendered.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any

import structlog

from runstream.redis_url import scrub

_configured = False
# Libraries that install their own handlers (faststream: colour codes, on stderr).
_OWN_HANDLERS = ("faststream",)


class _Redact:
    """Mask URL passwords (and the configured ones) in every string value of a log line."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self.secrets = tuple(s for s in secrets if s)

    def __call__(
        self, _logger: Any, _name: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        for key, value in event.items():
            if isinstance(value, str) and ("://" in value or self.secrets):
                event[key] = scrub(value, self.secrets)
        return event


def configure(fmt: str = "auto", level: int = logging.INFO, secrets: Iterable[str] = ()) -> None:
    global _configured
    if _configured:
        return
    _configured = True
    json_out = fmt == "json" or (fmt == "auto" and not sys.stdout.isatty())
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if json_out
        else structlog.dev.ConsoleRenderer(colors=sys.stdout.isatty())
    )
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    redact = _Redact(secrets)
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, redact, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=True,
    )
    # Standard-library records: same fields, same renderer, same stream.
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                *shared,
                structlog.stdlib.add_logger_name,
                structlog.stdlib.ExtraAdder(),
            ],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                redact,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    for name in _OWN_HANDLERS:
        own = logging.getLogger(name)
        own.handlers.clear()
        own.propagate = True


def stdlib_logger(name: str, level: int = logging.INFO) -> logging.Logger:
    """A standard-library logger that renders like structlog's (for libraries that take
    a ``logger=``, such as faststream's broker)."""
    logger = logging.getLogger(name)
    logger.setLevel(level)
    return logger
