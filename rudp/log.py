"""Structured logging for rudp (structlog).

rudp is quiet by default: it logs only warnings. One switch shows everything:
``rudp.log.set_level("debug")`` or the environment variable ``RUDP_LOG=debug``.
Messages go through structlog's pipeline, so an application's own structlog
configuration (JSON renderer, stdlib bridge …) applies to them too. Every event
carries ``conn`` (a short connection identifier) where one applies.
"""

from __future__ import annotations

import os
from typing import Any

import structlog

_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}

logger: Any = structlog.get_logger("rudp")

#: Fast flags checked on hot paths before building a log event.
debug_enabled = False
info_enabled = False
_level = 30


def set_level(level: str | int) -> None:
    """Log rudp events at ``level`` and above ("debug", "info", "warning" …)."""
    global debug_enabled, info_enabled, _level
    if isinstance(level, str):
        try:
            level = _LEVELS[level.lower()]
        except KeyError:
            raise ValueError(f"unknown log level {level!r}; use one of {list(_LEVELS)}") from None
    _level = level
    debug_enabled = level <= 10
    info_enabled = level <= 20


def warning(event: str, **kw: Any) -> None:
    """Log a warning (always on unless the level is above warning)."""
    if _level <= 30:
        logger.warning(event, **kw)


set_level(os.environ.get("RUDP_LOG", "warning"))
