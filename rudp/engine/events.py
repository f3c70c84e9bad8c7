"""Application events returned by :meth:`rudp.engine.Endpoint.next_event`.

Small frozen dataclasses; each carries the :class:`~rudp.engine.Connection` it
concerns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .connection import Connection


@dataclass(frozen=True, slots=True)
class Event:
    """Base class of every engine event."""

    conn: Connection


@dataclass(frozen=True, slots=True)
class ConnectionEstablished(Event):
    """An active open completed: the handshake's final ACK has been sent."""


@dataclass(frozen=True, slots=True)
class ConnectionAccepted(Event):
    """A listener's connection reached ESTABLISHED (passive open complete).

    Until this event is taken from the queue it occupies a slot of the
    listener's accept queue (bounded by ``backlog``).
    """

    port: int


@dataclass(frozen=True, slots=True)
class DataReceived(Event):
    """In-order data became readable with :meth:`Connection.read` (edge-triggered:
    raised when the receive buffer goes from empty to non-empty)."""


@dataclass(frozen=True, slots=True)
class PeerClosed(Event):
    """The peer sent FIN: after the buffered data, the stream is at EOF."""


@dataclass(frozen=True, slots=True)
class WritingResumed(Event):
    """Buffered send data fell to the low-water mark after exceeding the high mark."""


@dataclass(frozen=True, slots=True)
class ConnectionTerminated(Event):
    """The connection is finished for the application.

    ``error`` is None after an orderly close, or the exception describing an
    abort: ``ConnectionResetError`` (RST), ``ConnectionRefusedError`` (RST to our
    SYN), or a ``TimeoutError`` subclass (handshake, user timeout, keepalive).
    The engine may still hold the identity in TIME-WAIT afterwards.
    """

    error: BaseException | None
