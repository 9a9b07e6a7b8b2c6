"""Logging set-up, done once at start: JSON lines off a terminal, readable lines on one.

kfp's, urllib3's and tenacity's stdlib loggers go through the same processors, so every line on
stderr has one format. They stay at WARNING unless LOG_LEVEL=DEBUG.
"""

from __future__ import annotations

import logging
import os
import sys

import structlog

_SHARED = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    structlog.processors.StackInfoRenderer(),
]


def configure(log_format: str = "auto", level: str = "INFO", stream=None) -> None:
    stream = stream or sys.stderr
    as_json = log_format == "json" or (log_format == "auto" and not stream.isatty())
    renderer = (
        structlog.processors.JSONRenderer()
        if as_json
        else structlog.dev.ConsoleRenderer(colors=_colors(stream))
    )
    final = [structlog.processors.dict_tracebacks, renderer] if as_json else [renderer]
    structlog.configure(
        processors=[*_SHARED, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=_SHARED,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *final],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("kfp", "kfp_server_api", "kfp_tekton", "urllib3", "tenacity", "absl"):
        logging.getLogger(noisy).setLevel(level if level == "DEBUG" else "WARNING")


def _colors(stream) -> bool:
    return stream.isatty() and "NO_COLOR" not in os.environ
