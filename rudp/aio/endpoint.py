"""The asyncio adapter: one UDP socket, one sans-IO :class:`~rudp.engine.Endpoint`.

:class:`UdpEndpoint` is the ``asyncio.DatagramProtocol`` of a UDP socket. It feeds
datagrams to the engine, turns engine events into protocol callbacks on each
connection's :class:`~rudp.aio.transport.RudpTransport`, sends what the engine
produces, and drives every engine deadline with a single re-armed ``call_at``
timer (as aioquic's adapter does).

Batching: datagrams that arrive in one loop iteration are processed together in
one ``call_soon`` callback, so ACKs are coalesced and writes made in one
iteration leave as full segments. On the default loop, where the selector
transport reads one datagram per readiness event, the endpoint drains the
socket itself with ``recvfrom`` until it would block; uvloop already batches
receives inside libuv.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any, cast

from .. import log
from ..config import Config
from ..engine import (
    Connection,
    ConnectionAccepted,
    ConnectionEstablished,
    ConnectionTerminated,
    DataReceived,
    Endpoint,
    PeerClosed,
    State,
    WritingResumed,
)
from .transport import RudpTransport

Address = tuple[Any, ...]
ProtocolFactory = Callable[[], asyncio.BaseProtocol]

#: Most extra datagrams read per wakeup when draining the socket ourselves.
DRAIN_BUDGET = 256


class UdpEndpoint(asyncio.DatagramProtocol):
    """Owns one UDP socket and every rudp connection and listener on it."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        config: Config,
        sock: socket.socket,
        *,
        connected: bool = False,
    ) -> None:
        self.loop = loop
        self.config = config
        self.engine = Endpoint(config)
        self.transport: asyncio.DatagramTransport | None = None
        self.sock: socket.socket | None = sock
        self._connected = connected  # the UDP socket is connect()ed to one peer
        self._drain = False
        self._transports: dict[Connection, RudpTransport] = {}
        self._opening: dict[Connection, asyncio.Future[RudpTransport]] = {}
        self._opening_factories: dict[Connection, ProtocolFactory] = {}
        self._accept: dict[int, Callable[[Connection], None]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._process_scheduled = False
        self._paused = False
        self._closed = False
        self._closing = False
        self._lost: asyncio.Future[None] = loop.create_future()
        #: Called when no connection or listener remains (used to close sockets).
        self.on_idle: Callable[[], None] | None = None

    # ------------------------------------------------- DatagramProtocol API
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)
        # The selector loop reads one datagram per wakeup; drain the rest here.
        # (uvloop reads in libuv's loop already.)
        self._drain = type(transport).__module__.startswith("asyncio.")

    def datagram_received(self, data: bytes, addr: Address) -> None:
        now = self.loop.time()
        engine = self.engine
        engine.receive_datagram(data, addr, now)
        if self._drain:
            self._drain_socket(now)
        if not self._process_scheduled:
            self._process_scheduled = True
            self.loop.call_soon(self._process)

    def _drain_socket(self, now: float) -> None:
        sock = self.sock
        assert sock is not None
        engine = self.engine
        try:
            for _ in range(DRAIN_BUDGET):
                data, addr = sock.recvfrom(65536)
                engine.receive_datagram(data, addr, now)
        except (BlockingIOError, InterruptedError):
            pass
        except OSError as exc:  # e.g. ICMP errors on a connected socket
            self.error_received(exc)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable on a connected socket: RFC 1122 §4.2.3.9 makes it a
        # hard error only while opening (Linux does the same): fail the open now.
        if isinstance(exc, ConnectionRefusedError):
            for conn, fut in list(self._opening.items()):
                if not fut.done():
                    conn.abort(self.loop.time())
                    fut.set_exception(
                        ConnectionRefusedError(f"connection to {conn.addr} refused (ICMP)")
                    )
                    self._opening.pop(conn, None)
                    self._opening_factories.pop(conn, None)
            self._schedule()
        elif log.info_enabled:
            log.logger.info("udp_error", error=repr(exc))

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        now = self.loop.time()
        err = exc or ConnectionAbortedError("UDP socket closed")
        for fut in list(self._opening.values()):
            if not fut.done():
                fut.set_exception(err)
        self._opening.clear()
        for conn in list(self.engine.connections.values()):
            conn.abort(now)
        self._process_events()
        for tr in list(self._transports.values()):
            tr._connection_lost(err)
        self._transports.clear()
        if not self._lost.done():
            self._lost.set_result(None)

    def pause_writing(self) -> None:
        # The UDP transport's buffer is full: stop producing datagrams; the engine
        # keeps the data (and its timers) until resume_writing.
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._schedule()

    # ------------------------------------------------------------- driving
    def _schedule(self) -> None:
        if not self._process_scheduled and not self._closed:
            self._process_scheduled = True
            self.loop.call_soon(self._process)

    def _process(self) -> None:
        self._process_scheduled = False
        if self._closed:
            return
        self._process_events()
        self._transmit()

    def _transmit(self) -> None:
        if self._paused or self._closed or self.transport is None:
            return
        now = self.loop.time()
        out = self.engine.datagrams_to_send(now)
        if out:
            sendto = self.transport.sendto
            if self._connected:
                for data, _addr in out:
                    sendto(data)
            else:
                for data, addr in out:
                    sendto(data, addr)
        self._rearm()

    def _rearm(self) -> None:
        t = self.engine.get_timer()
        if t == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = t
        if t is not None:
            self._timer = self.loop.call_at(t, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        t = self._timer_at
        self._timer_at = None
        if self._closed:
            return
        now = self.loop.time()
        if t is not None and t > now:
            now = t  # the loop may fire a hair early; never run a timer before it is due
        self.engine.handle_timer(now)
        self._process_events()
        self._transmit()

    def _process_events(self) -> None:
        engine = self.engine
        transports = self._transports
        while (ev := engine.next_event()) is not None:
            conn = ev.conn
            tp = type(ev)
            if tp is DataReceived:
                tr = transports.get(conn)
                if tr is not None:
                    tr._deliver()
            elif tp is WritingResumed:
                tr = transports.get(conn)
                if tr is not None:
                    tr._resume_writing()
            elif tp is PeerClosed:
                tr = transports.get(conn)
                if tr is not None:
                    tr._peer_closed()
            elif tp is ConnectionEstablished:
                self._established(conn)
            elif tp is ConnectionAccepted:
                assert isinstance(ev, ConnectionAccepted)
                cb = self._accept.get(ev.port)
                if cb is None:
                    conn.abort(self.loop.time())
                else:
                    cb(conn)
            elif tp is ConnectionTerminated:
                assert isinstance(ev, ConnectionTerminated)
                self._terminated(conn, ev.error)
        if (
            self.on_idle is not None
            and not transports
            and not self._opening
            and not self._accept
            and self._lingering_done()
        ):
            self.on_idle()

    def _lingering_done(self) -> bool:
        """True when no connection still needs this socket.

        Connections the application has closed keep the socket open until their
        FIN exchange completes (or the FIN-WAIT-2 timeout); TIME-WAIT alone does
        not hold it (closing the socket then drops the TIME-WAIT state).
        """
        return all(c.state is State.TIME_WAIT for c in self.engine.connections.values())

    # ------------------------------------------------------- connections
    def open(
        self, addr: Address, remote_port: int, factory: ProtocolFactory, local_port: int | None
    ) -> asyncio.Future[RudpTransport]:
        """Start an active open; the future resolves to the connection's transport."""
        conn = self.engine.connect(addr, remote_port, self.loop.time(), local_port=local_port)
        fut: asyncio.Future[RudpTransport] = self.loop.create_future()
        self._opening[conn] = fut
        self._opening_factories[conn] = factory
        self._transmit()
        return fut

    def cancel_open(self, fut: asyncio.Future[RudpTransport]) -> None:
        for conn, f in list(self._opening.items()):
            if f is fut:
                del self._opening[conn]
                self._opening_factories.pop(conn, None)
                conn.abort(self.loop.time())
                self._schedule()

    def _established(self, conn: Connection) -> None:
        fut = self._opening.pop(conn, None)
        factory = self._opening_factories.pop(conn, None)
        if fut is None or factory is None or fut.done():
            conn.abort(self.loop.time())
            return
        tr = self.attach(conn, factory())
        fut.set_result(tr)

    def attach(self, conn: Connection, protocol: asyncio.BaseProtocol) -> RudpTransport:
        """Create the transport of an established connection and call connection_made."""
        tr = RudpTransport(self, conn, protocol)
        self._transports[conn] = tr
        protocol.connection_made(tr)
        if conn.readable:
            tr._deliver()
        return tr

    def _terminated(self, conn: Connection, error: BaseException | None) -> None:
        fut = self._opening.pop(conn, None)
        self._opening_factories.pop(conn, None)
        if fut is not None and not fut.done():
            fut.set_exception(error or ConnectionAbortedError("connection closed while opening"))
        tr = self._transports.pop(conn, None)
        if tr is not None:
            tr._connection_lost(error)

    def listen(self, port: int, backlog: int, on_accept: Callable[[Connection], None]) -> None:
        self.engine.listen(port, backlog)
        self._accept[port] = on_accept

    def stop_listening(self, port: int) -> None:
        self.engine.stop_listening(port)
        self._accept.pop(port, None)
        self._schedule()

    @property
    def connections(self) -> list[RudpTransport]:
        """Transports of the live connections on this socket."""
        return list(self._transports.values())

    def close(self) -> None:
        """Close the UDP socket; connections still open are reset (RST) first."""
        if self.transport is None or self._closed or self._closing:
            return
        self._closing = True
        self.on_idle = None
        now = self.loop.time()
        for conn in list(self.engine.connections.values()):
            if conn.state is not State.TIME_WAIT:
                conn.abort(now)
        self._process_events()
        self._paused = False
        self._transmit()
        self.transport.close()

    async def wait_closed(self) -> None:
        await asyncio.shield(self._lost)
