"""rudp's logging: the standard :mod:`logging` module, logger ``"rudp"``.

rudp is a library, so it follows the library etiquette of the logging HOWTO: it
logs through ``logging.getLogger("rudp")``, adds only a ``NullHandler``, sets no
level (the application's configuration decides, and an unconfigured program
shows nothing), never writes to stdout and never touches the root logger or
structlog's global configuration. To see rudp's events, configure logging as
usual::

    logging.basicConfig(stream=sys.stderr)
    logging.getLogger("rudp").setLevel(logging.DEBUG)   # or rudp.log.set_level("debug")

Levels: WARNING for internal errors (a bug in rudp), INFO for retransmission
timeouts, retransmissions, aborts and UDP socket errors, DEBUG for state
transitions, accepted connections and dropped datagrams.

Each record's message reads ``"<event> key=value …"``, the fields rendered as
logfmt by structlog's ``LogfmtRenderer`` (values with spaces or quotes are quoted).
Rendering is lazy: the message is an object that renders itself when a handler
formats the record, so a record nobody handles costs no formatting, and structlog
(whose import also pulls in rich when that is installed, ~0.1 s) is imported only
when the first record is actually formatted -- never by ``import rudp``. rudp uses
structlog's renderer as a plain function: it never calls ``structlog.configure``
nor touches structlog's global configuration, so an application's own structlog
setup is left alone. The same data is attached to the record as
``record.rudp_event`` (``"state"``, ``"rto"`` …) and ``record.rudp_fields`` (a dict:
``conn``, ``old``, ``new`` …) for structured handlers, e.g. structlog's
``ProcessorFormatter`` with ``ExtraAdder``, or a JSON formatter.

``RUDP_LOG=debug`` (or ``info`` …) in the environment sets the ``"rudp"`` level
at import and, while the application has not configured logging itself (the root
logger has no handler), prints rudp's records to stderr.

Hot paths test :data:`debug_enabled` / :data:`info_enabled` before building an
event. Both always equal ``logging.getLogger("rudp").isEnabledFor(level)``: they
follow ``setLevel`` on the ``"rudp"`` logger or any ancestor, ``logging.disable``
and ``dictConfig``, with no hook into :mod:`logging` internals. A check costs
about 0.07 µs (a plain module global: 0.02 µs). Read them as attributes of the
module (``log.debug_enabled``); ``from rudp.log import debug_enabled`` would copy
the value once.
"""

from __future__ import annotations

import logging
import os
import sys
import types
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

__all__ = ["LOGGER_NAME", "debug_enabled", "info_enabled", "logger", "set_level", "warning"]

#: Name of rudp's logger (children are not used: one logger, events say what they are).
LOGGER_NAME = "rudp"

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}

_stdlib = logging.getLogger(LOGGER_NAME)
_stdlib.addHandler(logging.NullHandler())
_is_enabled_for = _stdlib.isEnabledFor


class _Message:
    """A record's message: ``event key=value …``, rendered only when formatted.

    ``logging.LogRecord.getMessage`` calls ``str(record.msg)``; that is the first
    time anything is rendered (and structlog imported).
    """

    __slots__ = ("event", "fields")

    def __init__(self, event: str, fields: dict[str, Any]) -> None:
        self.event = event
        self.fields = fields

    def __str__(self) -> str:
        if not self.fields:
            return self.event
        return f"{self.event} {_render(self.fields)}"

    def __repr__(self) -> str:
        return repr(str(self))


_renderer: Callable[[Any, str, dict[str, Any]], Any] | None = None


def _render(fields: dict[str, Any]) -> str:
    """``key=value …`` in logfmt, by structlog's renderer (imported on first use)."""
    global _renderer
    if _renderer is None:
        try:
            from structlog.processors import LogfmtRenderer
        except ImportError:  # pragma: no cover - structlog is a dependency
            _renderer = _plain_renderer
        else:
            # True/False as words (not logfmt's bare-flag form), fields in call order.
            _renderer = LogfmtRenderer(bool_as_flag=False)
    try:
        return str(_renderer(None, "", dict(fields)))
    except Exception:  # pragma: no cover - logging must never raise
        return str(_plain_renderer(None, "", fields))


def _plain_renderer(_logger: Any, _name: str, fields: dict[str, Any]) -> str:
    return " ".join(f"{key}={value}" for key, value in fields.items())


class EventLogger:
    """``logger.debug("event", key=value, …)`` on top of the stdlib ``"rudp"`` logger."""

    __slots__ = ("_logger",)

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger

    def _log(self, level: int, event: str, fields: dict[str, Any]) -> None:
        logger = self._logger
        if not logger.isEnabledFor(level):
            return
        logger.log(
            level,
            _Message(event, fields),
            extra={"rudp_event": event, "rudp_fields": fields},
            stacklevel=3,  # the caller of debug()/info()…, not this module
        )

    def debug(self, event: str, **fields: Any) -> None:
        self._log(logging.DEBUG, event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._log(logging.INFO, event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._log(logging.WARNING, event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._log(logging.ERROR, event, fields)


#: rudp's event logger: ``log.logger.info("rto", conn=…, rto=…)``.
logger = EventLogger(_stdlib)


def warning(event: str, **fields: Any) -> None:
    """Log a warning event (shown wherever the application shows warnings)."""
    logger._log(logging.WARNING, event, fields)


def set_level(level: str | int) -> None:
    """Set the ``"rudp"`` logger's level: ``"debug"``, ``"info"``, ``"warning"`` … or an int.

    Equivalent to ``logging.getLogger("rudp").setLevel(...)``; where records go is
    the application's logging configuration (handlers), as for any library.
    """
    if isinstance(level, str):
        try:
            level = _LEVELS[level.strip().lower()]
        except KeyError:
            raise ValueError(f"unknown log level {level!r}; use one of {list(_LEVELS)}") from None
    _stdlib.setLevel(level)


class _StderrFallback(logging.Handler):
    """Prints to the current ``sys.stderr`` only while the root logger has no handler.

    Installed by ``RUDP_LOG``: an environment variable has to show something in a
    program that never configured logging, but must not duplicate lines once the
    program does (``basicConfig``, ``dictConfig`` …).
    """

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        if logging.getLogger().handlers and _stdlib.propagate:
            return  # the application's handlers get it
        try:
            stream: TextIO = sys.stderr
            stream.write(self.format(record) + "\n")
            stream.flush()
        except Exception:
            self.handleError(record)


def _from_environment() -> None:
    value = os.environ.get("RUDP_LOG", "").strip()
    if not value:
        return
    try:
        set_level(value)
    except ValueError as exc:
        warnings.warn(f"RUDP_LOG ignored: {exc}", RuntimeWarning, stacklevel=2)
        return
    if not any(isinstance(h, _StderrFallback) for h in _stdlib.handlers):
        _stdlib.addHandler(_StderrFallback())


class _LogModule(types.ModuleType):
    """Gives this module two read-only properties that ask the logger on every read."""

    @property
    def debug_enabled(self) -> bool:
        return _is_enabled_for(logging.DEBUG)

    @property
    def info_enabled(self) -> bool:
        return _is_enabled_for(logging.INFO)


if TYPE_CHECKING:
    #: True when a DEBUG record of the "rudp" logger would be processed.
    debug_enabled: bool
    #: True when an INFO record of the "rudp" logger would be processed.
    info_enabled: bool

sys.modules[__name__].__class__ = _LogModule
_from_environment()
