"""structlog set-up: JSON or logfmt on stderr, secrets masked in every field."""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from exporter.redact import Redactor

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def _masking(redact: Redactor) -> structlog.types.Processor:
    def mask(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        for key, value in event.items():
            if isinstance(value, str):
                event[key] = redact(value)
            elif not isinstance(value, int | float | bool | type(None)):
                event[key] = redact(str(value))
        return event

    return mask


def default_format() -> str:
    # Logs go to stderr (stdout carries `once`'s exposition); a terminal gets logfmt.
    return "logfmt" if sys.stderr.isatty() else "json"


def configure(level: str, fmt: str | None, redact: Redactor) -> None:
    renderer: structlog.types.Processor
    if (fmt or default_format()) == "json":
        renderer = structlog.processors.JSONRenderer(ensure_ascii=False)
    else:
        renderer = structlog.processors.LogfmtRenderer(
            key_order=["timestamp", "level", "event", "collector"], drop_missing=True
        )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _masking(redact),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
