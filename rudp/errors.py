"""Typed errors raised by rudp.

Errors caused by the peer or the network surface as the standard exceptions that
asyncio users already handle (``ConnectionResetError``, ``ConnectionRefusedError``,
``TimeoutError``, ``BrokenPipeError``). Misuse of the API raises :class:`RudpError`
subclasses below.
"""

from __future__ import annotations


class RudpError(Exception):
    """Base class for errors caused by misuse of the rudp API."""


class ConfigError(RudpError, ValueError):
    """A :class:`rudp.Config` field has an invalid value."""


class InvalidStateError(RudpError):
    """The operation is not allowed in the connection's current state."""


class AddressInUseError(RudpError, OSError):
    """The connection identity is in use (for example held by TIME-WAIT)."""


class KeepaliveTimeoutError(TimeoutError):
    """The peer did not answer ``keepalive_count`` keepalive probes."""


class UserTimeoutError(TimeoutError):
    """Sent data stayed unacknowledged longer than ``Config.user_timeout``."""


class ConnectTimeoutError(TimeoutError):
    """The opening handshake did not complete: no answer within ``syn_retries``
    retransmissions, or within the caller's ``timeout`` (then :attr:`timeout`)."""

    def __init__(self, *args: object, timeout: float | None = None) -> None:
        super().__init__(*args)
        #: The ``timeout=`` argument that expired, or None (SYN retries exhausted).
        self.timeout = timeout
