"""TLS over rudp connections, on any event loop (docs/tls.md).

asyncio's TLS layer is :class:`asyncio.sslproto.SSLProtocol`: a protocol that sits
on a stream transport, runs an :class:`ssl.SSLObject` over two
:class:`ssl.MemoryBIO` buffers, and hands the application a transport of its own.
It is plain Python and needs nothing of its loop but ``call_soon``, ``call_later``,
``create_future`` and the exception handler; from its transport it needs asyncio's
transport contract (``write``, ``pause_reading``/``resume_reading``,
``set_protocol``, ``pause_writing``/``resume_writing`` towards it, ``close``,
``abort``) plus ``_force_close(exc)``, which :class:`~rudp.aio.RudpTransport` has.

``loop.create_connection(ssl=)`` and ``loop.start_tls()`` build that stack on
asyncio's own loop, and accept a rudp transport there (it sets
``_start_tls_compatible``). uvloop has its own copy of the TLS layer (Cython),
whose ``start_tls`` accepts only uvloop's own transports. So rudp builds the stack
itself, the way ``BaseEventLoop.start_tls`` does, with asyncio's ``SSLProtocol``
on whatever loop runs: the same TLS code, errors and behaviour on the default loop
and on uvloop. This module is that glue; nothing here parses or encrypts.

Python 3.10's ``SSLProtocol`` is the older implementation (an ``_SSLPipe``): it
takes no ``ssl_shutdown_timeout`` (a ``close()`` waits for the peer's
close_notify forever) and passes flow control straight to the rudp transport.
:class:`_SSLProtocol310` adds the shutdown timeout, so ``ssl_shutdown_timeout``
means the same on every supported Python.
"""

from __future__ import annotations

import asyncio
import ssl
import sys
from asyncio import constants, sslproto
from dataclasses import dataclass
from typing import Any

from .. import log
from .transport import RudpTransport

#: asyncio's defaults (``asyncio.constants``), in seconds.
SSL_HANDSHAKE_TIMEOUT: float = constants.SSL_HANDSHAKE_TIMEOUT
SSL_SHUTDOWN_TIMEOUT: float = getattr(constants, "SSL_SHUTDOWN_TIMEOUT", 30.0)

#: What ``ssl=`` accepts on the client side: a context, True (a default client
#: context), or None/False (no TLS).
SSLArg = ssl.SSLContext | bool | None


@dataclass(frozen=True, slots=True)
class TLSOptions:
    """Validated TLS settings for one side of a connection."""

    context: ssl.SSLContext
    server_side: bool
    server_hostname: str | None
    handshake_timeout: float | None
    shutdown_timeout: float | None

    def wrap(
        self,
        loop: asyncio.AbstractEventLoop,
        app_protocol: asyncio.BaseProtocol,
        waiter: asyncio.Future[Any],
        *,
        call_connection_made: bool = True,
    ) -> tuple[asyncio.BaseProtocol, asyncio.Transport]:
        """asyncio's TLS protocol around ``app_protocol``, and the transport it gives
        the application. ``waiter`` resolves when the handshake is done (or fails);
        with ``call_connection_made``, ``app_protocol.connection_made`` is called then."""
        kwargs: dict[str, Any] = {
            "server_side": self.server_side,
            "server_hostname": self.server_hostname,
            "call_connection_made": call_connection_made,
            "ssl_handshake_timeout": self.handshake_timeout,
        }
        proto: sslproto.SSLProtocol
        if sys.version_info >= (3, 11):
            kwargs["ssl_shutdown_timeout"] = self.shutdown_timeout
            proto = sslproto.SSLProtocol(loop, app_protocol, self.context, waiter, **kwargs)
        else:
            shutdown = self.shutdown_timeout
            proto = _SSLProtocol310(
                loop,
                app_protocol,
                self.context,
                waiter,
                shutdown_timeout=SSL_SHUTDOWN_TIMEOUT if shutdown is None else shutdown,
                **kwargs,
            )
        # Both implementations create the application's transport in __init__.
        return proto, proto._app_transport


def _check_timeout(name: str, value: float | None, enabled: bool) -> None:
    """asyncio's checks and messages, made before the connection exists."""
    if value is None:
        return
    if not enabled:
        raise ValueError(f"{name} is only meaningful with ssl")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, not {value!r}")
    if not value > 0:
        raise ValueError(f"{name} should be a positive number, got {value}")


def client_options(
    ssl_arg: SSLArg,
    host: str | None,
    server_hostname: str | None,
    ssl_handshake_timeout: float | None,
    ssl_shutdown_timeout: float | None,
) -> TLSOptions | None:
    """The client's TLS settings from ``create_connection``'s arguments, checked as
    ``loop.create_connection`` checks them; None without TLS."""
    if ssl_arg is not None and not isinstance(ssl_arg, (bool, ssl.SSLContext)):
        raise TypeError(f"ssl must be an ssl.SSLContext, True or None, not {ssl_arg!r}")
    enabled = bool(ssl_arg)
    if server_hostname is not None and not enabled:
        raise ValueError("server_hostname is only meaningful with ssl")
    _check_timeout("ssl_handshake_timeout", ssl_handshake_timeout, enabled)
    _check_timeout("ssl_shutdown_timeout", ssl_shutdown_timeout, enabled)
    if not enabled:
        return None
    if server_hostname is None:
        # As asyncio: the host connected to names the server. An empty
        # server_hostname turns the name check off.
        if not host:
            raise ValueError("You must set server_hostname when using ssl without a host")
        server_hostname = host
    if isinstance(ssl_arg, ssl.SSLContext):
        context = ssl_arg
    else:  # ssl=True: asyncio's default client context
        context = ssl.create_default_context()
        if not server_hostname:
            context.check_hostname = False
    return _checked(
        TLSOptions(
            context,
            server_side=False,
            server_hostname=server_hostname or None,
            handshake_timeout=ssl_handshake_timeout,
            shutdown_timeout=ssl_shutdown_timeout,
        )
    )


def server_options(
    ssl_arg: ssl.SSLContext | None,
    ssl_handshake_timeout: float | None,
    ssl_shutdown_timeout: float | None,
) -> TLSOptions | None:
    """A server's TLS settings, checked as ``loop.create_server`` checks them."""
    if isinstance(ssl_arg, bool):
        raise TypeError("ssl argument must be an SSLContext or None")
    if ssl_arg is not None and not isinstance(ssl_arg, ssl.SSLContext):
        raise TypeError(f"ssl must be an ssl.SSLContext or None, not {ssl_arg!r}")
    _check_timeout("ssl_handshake_timeout", ssl_handshake_timeout, ssl_arg is not None)
    _check_timeout("ssl_shutdown_timeout", ssl_shutdown_timeout, ssl_arg is not None)
    if ssl_arg is None:
        return None
    return _checked(
        TLSOptions(
            ssl_arg,
            server_side=True,
            server_hostname=None,
            handshake_timeout=ssl_handshake_timeout,
            shutdown_timeout=ssl_shutdown_timeout,
        )
    )


def _checked(tls: TLSOptions) -> TLSOptions:
    """Raise now what the TLS layer would raise once the connection exists (e.g.
    ``check_hostname`` without a name, a client-only context on a server): one
    throwaway :class:`ssl.SSLObject`, no I/O."""
    tls.context.wrap_bio(
        ssl.MemoryBIO(),
        ssl.MemoryBIO(),
        server_side=tls.server_side,
        server_hostname=tls.server_hostname,
    )
    return tls


async def start_tls(
    stream: asyncio.StreamWriter | asyncio.BaseTransport,
    sslcontext: ssl.SSLContext,
    *,
    server_side: bool | None = None,
    server_hostname: str | None = None,
    ssl_handshake_timeout: float | None = None,
    ssl_shutdown_timeout: float | None = None,
) -> asyncio.Transport:
    """Upgrade an open rudp connection to TLS (STARTTLS), on any event loop.

    ``stream`` is a ``StreamWriter`` (as ``writer.start_tls()``: it is drained
    first, then the writer and its reader carry TLS; ``server_side`` defaults to
    whether it came from a server) or a rudp transport (as ``loop.start_tls()``:
    its current protocol is moved on top of TLS; ``server_side`` defaults to
    False). Returns the TLS transport. The peer must upgrade at the same point of
    the byte stream. Errors as asyncio's: ``TypeError`` for a non-context or a
    transport that is not rudp's, the handshake's ``ssl.SSLError`` (e.g.
    ``ssl.SSLCertVerificationError``), ``ConnectionAbortedError`` after
    ``ssl_handshake_timeout``; on any error the connection is closed.
    """
    if not isinstance(sslcontext, ssl.SSLContext):
        raise TypeError(
            f"sslcontext is expected to be an instance of ssl.SSLContext, got {sslcontext!r}"
        )
    writer = stream if isinstance(stream, asyncio.StreamWriter) else None
    transport = writer.transport if writer is not None else stream
    if not isinstance(transport, RudpTransport):
        raise TypeError(
            f"transport {transport!r} is not supported by rudp.start_tls() "
            "(it upgrades rudp connections; use loop.start_tls() for others)"
        )
    if transport.is_closing():
        raise BrokenPipeError("cannot start TLS: the connection is closing")
    protocol = transport.get_protocol()
    if server_side is None:
        # asyncio's StreamWriter.start_tls: a server's streams have a callback.
        server_side = getattr(protocol, "_client_connected_cb", None) is not None
    if server_hostname is not None and server_side:
        raise ValueError("server_hostname is only meaningful on the client side")
    _check_timeout("ssl_handshake_timeout", ssl_handshake_timeout, True)
    _check_timeout("ssl_shutdown_timeout", ssl_shutdown_timeout, True)
    tls = _checked(
        TLSOptions(
            sslcontext,
            server_side=server_side,
            server_hostname=server_hostname or None,
            handshake_timeout=ssl_handshake_timeout,
            shutdown_timeout=ssl_shutdown_timeout,
        )
    )
    if writer is not None:
        await writer.drain()
        if transport.is_closing():
            raise BrokenPipeError("cannot start TLS: the connection is closing")
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[None] = loop.create_future()
    ssl_protocol, app_transport = tls.wrap(loop, protocol, waiter, call_connection_made=False)
    # As BaseEventLoop.start_tls: no data may reach the TLS protocol before its
    # connection_made(), so reading pauses until both are scheduled in order.
    transport.pause_reading()
    transport.set_protocol(ssl_protocol)
    if sys.version_info >= (3, 11) and transport._protocol_paused:
        # 3.11+ keeps its own write-side state (3.10 passes it to the application's
        # protocol, which is paused already): it must learn it starts paused.
        ssl_protocol.pause_writing()
    made = loop.call_soon(ssl_protocol.connection_made, transport)
    resume = loop.call_soon(transport.resume_reading)
    try:
        await waiter
    except BaseException:
        transport.close()
        made.cancel()
        resume.cancel()
        raise
    if writer is not None:
        _rebind_streams(writer, protocol, app_transport)
    return app_transport


def _rebind_streams(
    writer: asyncio.StreamWriter, protocol: asyncio.BaseProtocol, transport: asyncio.Transport
) -> None:
    """Point a writer and its StreamReaderProtocol at the TLS transport, as that
    Python's own ``StreamWriter.start_tls()`` does (its helper's name changed)."""
    writer._transport = transport  # type: ignore[attr-defined]
    if (replace := getattr(protocol, "_replace_transport", None)) is not None:  # 3.13+
        replace(transport)
    elif (replace := getattr(protocol, "_replace_writer", None)) is not None:  # 3.11, 3.12
        replace(writer)
    else:  # 3.10 has no StreamWriter.start_tls(): what 3.11's helper does
        protocol._stream_writer = writer  # type: ignore[attr-defined]
        protocol._transport = transport  # type: ignore[attr-defined]
        protocol._over_ssl = True  # type: ignore[attr-defined]


def handshake_done(app_transport: asyncio.Transport, waiter: asyncio.Future[Any]) -> None:
    """A server's handshake ended: on failure close the transport (the TLS layer has
    aborted the connection already) and log at DEBUG, as asyncio's servers do."""
    if waiter.cancelled():
        return
    exc = waiter.exception()
    if exc is None:
        return
    app_transport.close()
    if log.debug_enabled:
        peer = app_transport.get_extra_info("peername")
        log.logger.debug("tls_handshake_failed", peer=peer, error=repr(exc))


if sys.version_info < (3, 11):

    class _SSLProtocol310(sslproto.SSLProtocol):
        """Python 3.10's TLS protocol with 3.11's shutdown timeout.

        On ``close()`` TLS sends close_notify and waits for the peer's; 3.10 waits
        forever, 3.11+ aborts the connection with ``TimeoutError`` after
        ``ssl_shutdown_timeout`` (default 30 s). This does the same.
        """

        def __init__(self, *args: Any, shutdown_timeout: float, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._rudp_shutdown_timeout = shutdown_timeout
            self._rudp_shutdown_timer: asyncio.TimerHandle | None = None

        def _start_shutdown(self) -> None:
            if (
                not self._in_shutdown
                and not self._in_handshake
                and self._transport is not None
                and self._rudp_shutdown_timer is None
            ):
                self._rudp_shutdown_timer = self._loop.call_later(
                    self._rudp_shutdown_timeout, self._rudp_shutdown_expired
                )
            super()._start_shutdown()

        def _rudp_shutdown_expired(self) -> None:
            self._rudp_shutdown_timer = None
            transport = self._transport
            if isinstance(transport, RudpTransport):
                transport._force_close(TimeoutError("SSL shutdown timed out"))

        def _rudp_cancel_shutdown_timer(self) -> None:
            if self._rudp_shutdown_timer is not None:
                self._rudp_shutdown_timer.cancel()
                self._rudp_shutdown_timer = None

        def _finalize(self) -> None:
            # The TLS shutdown is complete (or abandoned): no timeout any more.
            self._rudp_cancel_shutdown_timer()
            # 3.10 closes the transport from inside the shutdown, *before* it
            # writes the close_notify that completed it; asyncio's socket
            # transports still send that, rudp's refuse writes after close().
            # Close on the next iteration instead, as 3.11+ does.
            self._sslpipe = None
            transport = self._transport
            if transport is not None:
                self._loop.call_soon(transport.close)

        def connection_lost(self, exc: BaseException | None) -> None:
            self._rudp_cancel_shutdown_timer()
            super().connection_lost(exc)
