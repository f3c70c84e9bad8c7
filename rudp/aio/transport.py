"""``asyncio.Transport`` for one rudp connection.

It behaves like asyncio's socket transports so ``asyncio.Protocol``,
``asyncio.BufferedProtocol`` and asyncio's own ``StreamReaderProtocol`` work
unchanged on top of it:

* a ``write()`` (or ``close()``, ``write_eof()``) that answers the peer -- the
  peer spoke last -- is sent at once when nothing is in flight, as asyncio's socket
  transports hand a write to the kernel; other writes leave together with the
  endpoint's next transmit (an ACK-clocked stream sends in bursts), and writes from
  a protocol callback leave with the rest of that dispatch's output;
* ``write()`` never blocks; data waits in the connection's send buffer, and the
  protocol's ``pause_writing()``/``resume_writing()`` follow that buffer's
  high/low water marks (``set_write_buffer_limits``; default high = ``Config.snd_buf``,
  low = 2/3 of high, since that buffer also holds unacknowledged data, as a kernel
  socket buffer does), so ``StreamWriter.drain()`` really blocks;
* ``pause_reading()`` stops taking data from the connection: its receive buffer
  fills, the advertised window closes and the sender stalls, so memory stays
  bounded and nothing is dropped;
* ``write_eof()`` sends FIN and keeps receiving (half-close);
* ``get_extra_info("rudp_stats")`` returns live statistics (see :data:`STATS_KEY`);
* TLS runs over it (``_start_tls_compatible``): asyncio's ``loop.start_tls()`` and
  ``StreamWriter.start_tls()`` accept it where the loop allows it (the default loop),
  and :mod:`rudp.aio.tls` wraps it on any loop (docs/tls.md).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from .. import log
from ..engine import Connection
from ..engine.connection import default_write_low

if TYPE_CHECKING:
    from collections.abc import Callable

    from .endpoint import Endpoint

#: ``get_extra_info`` key of the live per-connection statistics dictionary.
STATS_KEY = "rudp_stats"
#: ``_extra`` of every transport (asyncio.BaseTransport's): the keys are answered
#: by get_extra_info itself, so no transport needs a dictionary of its own.
_NO_EXTRA: dict[str, Any] = {}


class RudpTransport(asyncio.Transport):
    """The transport of one rudp connection (see the module docstring)."""

    # Slots, not a __dict__: an idle connection's transport is ~150 bytes, not ~600.
    __slots__ = (
        "__weakref__",
        "_buffered",
        "_closing",
        "_conn",
        "_endpoint",
        "_eof_delivered",
        "_eof_pending",
        "_force_error",
        "_loop",
        "_lost",
        "_lost_callbacks",
        "_protocol",
        "_protocol_paused",
        "_reading",
        "_replying",
    )

    #: asyncio's ``loop.start_tls()`` refuses transports without this flag. rudp's
    #: transport keeps the contract asyncio's TLS layer (``asyncio.sslproto``) relies
    #: on: ``set_protocol``, pause/resume in both directions, ``_force_close``.
    _start_tls_compatible = True

    def __init__(self, endpoint: Endpoint, conn: Connection, protocol: asyncio.BaseProtocol):
        super().__init__(_NO_EXTRA)
        self._endpoint = endpoint
        self._loop = endpoint.loop
        self._conn = conn
        self._protocol = protocol
        self._reading = True
        self._closing = False
        self._lost = False
        self._eof_pending = False  # FIN arrived while reading was paused
        self._eof_delivered = False
        self._protocol_paused = False
        self._force_error: BaseException | None = None  # _force_close()'s error
        self._buffered = isinstance(protocol, asyncio.BufferedProtocol)
        self._lost_callbacks: list[Callable[[RudpTransport], None]] | None = None
        #: The peer spoke last (its data or FIN): what the application writes now
        #: answers it, and is sent at once (:meth:`_queued`). Not after the
        #: handshake, whose last word is an ACK: a connection's first write waits for
        #: the next transmit like a stream's.
        self._replying = False

    # ----------------------------------------------------------- BaseTransport
    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == STATS_KEY:
            return self._conn.stats(self._loop.time())
        if name == "peername":
            return self._conn.addr  # current: it follows a NAT rebinding
        if name == "sockname":
            return self._endpoint.local_address
        if name == "socket":
            return self._endpoint.socket
        if name == "rudp_connection":
            return self._conn
        if name == "rudp_endpoint":
            return self._endpoint
        return default

    def add_lost_callback(self, callback: Callable[[RudpTransport], None]) -> None:
        """Call ``callback(transport)`` when the connection is lost (used by servers)."""
        if self._lost_callbacks is None:
            self._lost_callbacks = []
        self._lost_callbacks.append(callback)

    def is_closing(self) -> bool:
        return self._closing or self._lost

    def close(self) -> None:
        """Send FIN after the buffered data; connection_lost follows once closed."""
        if self._closing or self._lost:
            return
        self._closing = True
        conn = self._conn
        conn.close(self._loop.time())
        self._queued()

    def _force_close(self, exc: BaseException | None) -> None:
        """Abort (RST) and report ``exc`` to ``connection_lost``. asyncio's TLS layer
        calls this on a fatal TLS error or a handshake/shutdown timeout (as it does
        on asyncio's socket transports), so the error reaches the application."""
        if self._lost:
            return
        if self._force_error is None:
            self._force_error = exc
        self.abort()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol
        self._buffered = isinstance(protocol, asyncio.BufferedProtocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol

    # ----------------------------------------------------------- ReadTransport
    def is_reading(self) -> bool:
        return self._reading and not self._lost

    @property
    def _paused(self) -> bool:
        """Reading is paused (Python 3.10's ``asyncio.sslproto`` reads this attribute
        of asyncio's socket transports to resume a transport a TLS write waits on)."""
        return not self._reading

    def pause_reading(self) -> None:
        self._reading = False

    def resume_reading(self) -> None:
        if self._reading or self._lost:
            return
        self._reading = True
        self._loop.call_soon(self._resume_delivery)

    def _resume_delivery(self) -> None:
        if self._lost:
            return
        self._deliver()
        if self._eof_pending:
            self._peer_closed()
        self._endpoint.wake()  # reading may have opened the window

    # ---------------------------------------------------------- WriteTransport
    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Queue ``data``; raises ``BrokenPipeError`` after close()/write_eof(),
        or the connection's error (e.g. ``ConnectionResetError``) once it failed."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data must be bytes-like, not {type(data).__name__}")
        if self._lost and self._conn.error is None:
            raise BrokenPipeError("connection is closed")
        if self._closing and self._conn.error is None:
            raise BrokenPipeError("write() after close()")
        if not data:
            return
        paused = self._conn.send(data, self._loop.time())
        self._queued()
        if paused and not self._protocol_paused:
            self._protocol_paused = True
            try:
                self._protocol.pause_writing()
            except Exception as exc:  # as asyncio does: report, don't break write()
                self._loop.call_exception_handler(
                    {"message": "protocol.pause_writing() failed", "exception": exc}
                )

    def _queued(self) -> None:
        """The application queued data or a FIN. If it answers the peer (the peer
        spoke last), the endpoint sends it now when nothing else is in flight, as
        asyncio's socket transports hand a write to the kernel at once: the peer is
        waiting for it (a response, a request after a response, the close that
        answers the peer's). The rest -- what the application
        writes after that without hearing from the peer, a one-way stream -- leaves
        with the endpoint's next transmit, with whatever else is written until then:
        the ACK clock paces such a sender, and its writes leave in bursts. (Sending
        every write at once when nothing was in flight put the bulk benchmark in
        glibc's heap-trimming state in every repetition: docs/performance.md, "When
        a write leaves".)"""
        if self._replying:
            self._replying = False
            self._endpoint.send_now(self._conn)
        else:
            self._endpoint.wake()

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"".join(list_of_data))

    def write_eof(self) -> None:
        """Half-close: send FIN after the buffered data; keep receiving."""
        if self._lost:
            raise BrokenPipeError("connection is closed")
        self._conn.shutdown(self._loop.time())
        self._queued()

    def can_write_eof(self) -> bool:
        return True

    def abort(self) -> None:
        """Send RST and close at once; connection_lost(None) follows soon."""
        if self._lost:
            return
        self._closing = True
        self._conn.abort(self._loop.time())
        self._endpoint.wake()

    def get_write_buffer_size(self) -> int:
        return self._conn.send_buffered

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return (self._conn.write_low, self._conn.write_high)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        if high is None:
            high = self._conn.config.snd_buf if low is None else max(low, 3 * low // 2)
        if low is None:
            low = default_write_low(high)
        paused = self._conn.set_write_buffer_limits(high, low)
        if paused and not self._protocol_paused:
            self._protocol_paused = True
            self._protocol.pause_writing()
        elif not paused and self._protocol_paused:
            self._resume_writing()

    # ------------------------------------------------------------ from engine
    def _deliver(self, force: bool = False) -> None:
        """Hand readable data to the protocol while reading is not paused."""
        conn = self._conn
        protocol = self._protocol
        try:
            while (self._reading or force) and conn.readable and not self._lost:
                self._replying = True
                if self._buffered:
                    assert isinstance(protocol, asyncio.BufferedProtocol)
                    buf = memoryview(protocol.get_buffer(conn.readable)).cast("B")
                    if len(buf) == 0:
                        raise RuntimeError("get_buffer() returned an empty buffer")
                    n = conn.read_into(buf)  # one copy, into the protocol's buffer
                    buf.release()
                    protocol.buffer_updated(n)
                else:
                    assert isinstance(protocol, asyncio.Protocol)
                    protocol.data_received(conn.read())
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            what = "buffer_updated" if self._buffered else "data_received"
            self._fatal_error(exc, f"protocol.{what}() call failed")

    def _fatal_error(self, exc: BaseException, message: str) -> None:
        """The protocol raised: as asyncio's transports, report it (OSErrors only
        at DEBUG) and abort this connection with that error; the exception never
        reaches the endpoint's receive path, shared by other connections."""
        if isinstance(exc, OSError):
            if log.debug_enabled:
                log.logger.debug("protocol_error", conn=self._conn.name, error=repr(exc))
        else:
            self._loop.call_exception_handler(
                {
                    "message": message,
                    "exception": exc,
                    "transport": self,
                    "protocol": self._protocol,
                }
            )
        self._force_close(exc)

    def _peer_closed(self) -> None:
        if self._eof_delivered or self._lost:
            return
        if not self._reading or self._conn.readable:
            self._eof_pending = True
            return
        self._eof_pending = False
        self._eof_delivered = True
        self._replying = True
        assert isinstance(self._protocol, (asyncio.Protocol, asyncio.BufferedProtocol))
        try:
            keep_open = self._protocol.eof_received()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "protocol.eof_received() call failed")
            return
        if not keep_open:
            self.close()

    def _resume_writing(self) -> None:
        if self._protocol_paused:
            self._protocol_paused = False
            try:
                self._protocol.resume_writing()
            except Exception as exc:
                self._loop.call_exception_handler(
                    {"message": "protocol.resume_writing() failed", "exception": exc}
                )

    def _connection_lost(self, error: BaseException | None) -> None:
        if self._lost:
            return
        # Data that arrived before an orderly end is still the application's, even
        # if it paused reading: hand it over (bounded by the receive buffer).
        if error is None:
            self._deliver(force=True)
            if self._conn.at_eof and not self._eof_delivered:
                self._reading = True
                self._peer_closed()
        self._lost = True
        if self._protocol_paused:
            self._resume_writing()
        if isinstance(error, ConnectionAbortedError) and self._closing:
            error = None  # our own abort(): asyncio reports connection_lost(None)
        if self._force_error is not None:
            error = self._force_error  # _force_close(exc): the TLS layer's reason
        exc = error if isinstance(error, Exception) else None
        self._loop.call_soon(self._protocol.connection_lost, exc)
        for callback in self._lost_callbacks or ():
            self._loop.call_soon(callback, self)
