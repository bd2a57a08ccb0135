"""structlog set-up: JSON lines in production, readable console in development."""

from __future__ import annotations

import logging
import sys

import structlog

from controller.config import LogSettings


def configure_logging(settings: LogSettings, *, cache: bool = True) -> None:
    """Configure structlog once per process. ``cache=False`` keeps loggers re-reading the
    configuration (tests run commands in-process and then capture logs)."""
    level = getattr(logging, settings.level.upper(), logging.INFO)
    renderer: structlog.types.Processor = (
        structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
        if settings.format == "console"
        else structlog.processors.JSONRenderer(ensure_ascii=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        # one write per line (print() writes the newline apart): workers share stderr,
        # and two lines written at once must not run together into one unparsable line
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=cache,
    )
