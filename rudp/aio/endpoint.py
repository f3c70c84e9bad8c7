"""The asyncio adapter: one UDP socket, one sans-IO engine, many connections.

:class:`Endpoint` owns a UDP socket (through :class:`~rudp.aio.sockio.UdpSocketIO`:
batched receives, GSO sends, the source address each peer reached, ICMP errors from
the error queue) and one :class:`rudp.engine.Endpoint`. On it the application listens
(:meth:`Endpoint.create_server`, :meth:`Endpoint.start_server`) and connects
(:meth:`Endpoint.create_connection`, :meth:`Endpoint.open_connection`), any number of
each, both directions at once — which is what peer-to-peer hole punching needs.

Driving: each batch of datagrams is fed to the engine, then application events are
dispatched and whatever the engine has to send leaves in one batch (ACKs coalesce,
segments to one peer leave as one GSO call). Every engine deadline is served by one
re-armed ``loop.call_at`` timer (as aioquic's adapter does).

Lifetime: :meth:`Endpoint.close` stops listening and closes the connections (FIN);
the socket stays open while any connection needs it — TIME-WAIT included, which
re-ACKs a retransmitted FIN for 2 MSL (RFC 9293 §3.3.2) — but
:meth:`Endpoint.wait_closed` does not wait for TIME-WAIT, as with kernel TCP.
TIME-WAIT cannot outlive the event loop or the process: when the loop stops, the
socket goes and with it the state (docs/endpoints.md).
"""

from __future__ import annotations

import asyncio
import errno
import socket
import struct
from collections.abc import Callable
from ssl import SSLContext
from typing import Any, Final, overload

from .. import log
from ..config import Config
from ..engine import (
    ANY_PORT,
    Connection,
    ConnectionAccepted,
    ConnectionEstablished,
    ConnectionTerminated,
    DataReceived,
    PeerClosed,
    WritingResumed,
)
from ..engine import Endpoint as EngineEndpoint
from ..engine.states import SYN_RECEIVED, SYN_SENT, TIME_WAIT
from ..errors import InvalidStateError
from ..wire.checksum import IMPLEMENTATION
from .capture import Capture, open_capture
from .sockio import DatagramError, ReceivedDatagram, UdpSocketIO
from .tls import SSLArg, client_options, server_options
from .transport import RudpTransport

Address = tuple[Any, ...]
ProtocolFactory = Callable[[], asyncio.BaseProtocol]
AcceptCallback = Callable[[Connection], None]

_PORTS: Final = struct.Struct("!HH")
#: Most peers whose local (destination) address is remembered for replies.
MAX_LOCAL_ADDRESSES: Final = 65536
_OPENING: Final = frozenset({SYN_SENT, SYN_RECEIVED})
#: Reasons the engine drops a datagram (``drop_<reason>`` counters): malformed
#: (rudp.wire: ``short``, ``data_offset``, ``checksum``, ``option_*``), an RST or a
#: non-SYN for a listener, a full backlog, an RST for no connection, an unproven
#: NAT rebinding; with TCP-AO (docs/authentication.md) a missing, malformed or wrong
#: MAC, an unknown KeyID, or a segment for no connection that would have drawn an
#: RST it could not sign. Reasons the engine adds later appear in ``stats()`` too.
DROP_REASONS = (
    "short",
    "data_offset",
    "checksum",
    "option_truncated",
    "option_length",
    "option_overflow",
    "listen_rst",
    "listen_no_syn",
    "backlog_full",
    "closed_rst",
    "migration_rejected",
    "auth_missing",
    "auth_malformed",
    "auth_unknown_key",
    "auth_bad_length",
    "auth_bad_mac",
    "auth_no_connection",
)


def py_source_run(batch: list[ReceivedDatagram], start: int, /) -> tuple[int, list[memoryview]]:
    """``(end, payloads)``: ``batch[start:end]`` came from ``batch[start]``'s source
    to its local address; ``payloads`` are theirs."""
    _payload, src, local = batch[start]
    n = len(batch)
    j = start + 1
    while j < n and batch[j][1] == src and batch[j][2] == local:
        j += 1
    return j, [item[0] for item in batch[start:j]]


source_run = py_source_run
if IMPLEMENTATION == "c":
    from .. import _accel

    source_run = _accel.source_run


class Endpoint:
    """One UDP socket and every rudp connection and listener on it.

    Create one with :func:`rudp.create_endpoint`. Use it with ``async with``, or
    call :meth:`close` then ``await`` :meth:`wait_closed`.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        config: Config,
        *,
        close_when_idle: bool = False,
    ) -> None:
        self.loop = loop
        self.config = config
        #: The pcap file this endpoint records to (``Config.pcap``), or None.
        self._pcap: Capture | None = None
        if config.pcap is not None:
            try:
                self._pcap = open_capture(config.pcap)
            except BaseException:
                sock.close()
                raise
        #: The sans-IO engine (``rudp.engine.Endpoint``) behind this socket.
        self.engine = EngineEndpoint(config)
        self._sock = sock
        self._family = sock.family
        self._dual_stack = sock.family == socket.AF_INET6 and not sock.getsockopt(
            socket.IPPROTO_IPV6, socket.IPV6_V6ONLY
        )
        self._sockname: Address = sock.getsockname()
        self._io = UdpSocketIO(
            loop,
            sock,
            self._on_datagrams,
            on_error=self._on_udp_error,
            on_writable=self._on_writable,
        )
        #: Peer UDP address -> the local address it sent to (PKTINFO), to reply from it.
        self._local_for: dict[Address, Address] = {}
        self._transports: dict[Connection, RudpTransport] = {}
        self._opening: dict[Connection, tuple[asyncio.Future[RudpTransport], ProtocolFactory]] = {}
        self._accept: dict[int, AcceptCallback] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._process_scheduled = False
        self._dispatching = False  # in _process_events(): protocol callbacks may run
        self._paused = False
        self._closing = False  # close(): no new connections; socket closes when idle
        self._closed = False  # the socket is closed
        self._idle_close = close_when_idle
        self._done: asyncio.Future[None] = loop.create_future()  # all but TIME-WAIT done
        self._lost: asyncio.Future[None] = loop.create_future()  # the socket is closed
        #: Soft errors (ICMP for established connections), counted.
        self.soft_errors = 0
        #: For a loop's shared client endpoint: the task that closes it with the loop.
        self.keeper: asyncio.Task[None] | None = None

    # -------------------------------------------------------------- public API
    @property
    def local_address(self) -> Address:
        """The UDP address the socket is bound to."""
        return self._sockname

    @property
    def socket(self) -> socket.socket:
        """The UDP socket (owned by the endpoint: do not read from or close it)."""
        return self._sock

    @property
    def connections(self) -> list[RudpTransport]:
        """Transports of the connections the application holds on this endpoint."""
        return list(self._transports.values())

    def is_closing(self) -> bool:
        return self._closing or self._closed

    def stats(self) -> dict[str, Any]:
        """A snapshot of this endpoint's counters (docs/stats.md, "An endpoint").

        Flat keys (monotonic counters unless said otherwise): the engine's
        ``datagrams_received``, ``datagrams_sent``, ``dropped`` (every datagram
        dropped, whatever the reason), ``rst_sent``, ``syn_dropped``,
        ``internal_errors``, ``migrations``, ``time_wait_reused``, its ``drop_<reason>``
        counters; ``connections`` and ``state_<STATE>`` (gauges: connections held
        now, TIME-WAIT included); ``listeners`` (gauge); ``soft_errors`` (ICMP errors
        for established connections).

        Sections: ``drops`` -- dropped datagrams by reason, every known reason
        present (0 when none); ``suppressed`` -- segments that called for a reply the
        endpoint did not send; ``socket`` -- the UDP socket layer's counters
        (:mod:`rudp.aio.sockio`); ``features`` -- what the socket layer uses;
        ``pcap`` -- the capture file and the packets written to it (None if off).
        """
        out: dict[str, Any] = dict(self.engine.stats())
        drops = dict.fromkeys(DROP_REASONS, 0)
        for key, value in out.items():
            if key.startswith("drop_"):
                drops[key[5:]] = value
        out["drops"] = drops
        sockio = self._io.stats
        out["suppressed"] = {
            # RFC 9293 §3.10.7.1/§3.10.7.2: an RST is never answered.
            "rst_to_rst": drops["closed_rst"] + drops["listen_rst"],
            # docs/migration.md: an unproven segment from a new address gets no RST,
            # which could reset the real connection through the NAT.
            "rst_to_unproven_migration": drops["migration_rejected"],
            # docs/authentication.md: with TCP-AO an RST for no connection could not
            # be signed, so it is not sent.
            "rst_unsignable": drops["auth_no_connection"],
            # Datagrams the socket layer could not send (queue full or send error).
            "udp_queue_full": sockio.dropped_queue_full,
            "udp_send_errors": sockio.send_errors,
        }
        out["listeners"] = len(self._accept)
        out["socket"] = sockio.as_dict()
        out["features"] = {
            name: getattr(self._io.features, name) for name in ("gso", "gro", "pktinfo", "recverr")
        }
        out["soft_errors"] = self.soft_errors
        pcap = self._pcap
        out["pcap"] = None if pcap is None else {"file": pcap.key, "packets": pcap.writer.packets}
        return out

    @overload
    async def create_connection(
        self,
        protocol_factory: ProtocolFactory,
        host: str,
        port: int,
        *,
        tcp_port: int | None = ...,
        local_tcp_port: int | None = ...,
        timeout: float | None = ...,
        ssl: None = ...,
        server_hostname: str | None = ...,
        ssl_handshake_timeout: float | None = ...,
        ssl_shutdown_timeout: float | None = ...,
    ) -> tuple[RudpTransport, asyncio.BaseProtocol]: ...

    @overload
    async def create_connection(
        self,
        protocol_factory: ProtocolFactory,
        host: str,
        port: int,
        *,
        tcp_port: int | None = ...,
        local_tcp_port: int | None = ...,
        timeout: float | None = ...,
        ssl: SSLContext | bool,
        server_hostname: str | None = ...,
        ssl_handshake_timeout: float | None = ...,
        ssl_shutdown_timeout: float | None = ...,
    ) -> tuple[asyncio.Transport, asyncio.BaseProtocol]: ...

    async def create_connection(
        self,
        protocol_factory: ProtocolFactory,
        host: str,
        port: int,
        *,
        tcp_port: int | None = None,
        local_tcp_port: int | None = None,
        timeout: float | None = None,
        ssl: SSLArg = None,
        server_hostname: str | None = None,
        ssl_handshake_timeout: float | None = None,
        ssl_shutdown_timeout: float | None = None,
    ) -> tuple[asyncio.Transport, asyncio.BaseProtocol]:
        """Open a connection to ``host``:``port`` (UDP) from this endpoint.

        ``tcp_port``: the destination TCP port (default: ``port``; a server accepts
        any, see docs/wire.md); ``local_tcp_port``: ours (default: an unused
        ephemeral one). ``ssl`` and the rest, and errors, as
        :func:`rudp.create_connection`.
        """
        from .api import connect_to  # the shared resolve-and-try loop

        tls = client_options(
            ssl, host, server_hostname, ssl_handshake_timeout, ssl_shutdown_timeout
        )
        return await connect_to(
            self, protocol_factory, host, port, tcp_port, local_tcp_port, timeout, tls=tls
        )

    async def open_connection(
        self,
        host: str,
        port: int,
        *,
        limit: int = 2**16,
        tcp_port: int | None = None,
        local_tcp_port: int | None = None,
        timeout: float | None = None,
        ssl: SSLArg = None,
        server_hostname: str | None = None,
        ssl_handshake_timeout: float | None = None,
        ssl_shutdown_timeout: float | None = None,
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """:meth:`create_connection` returning asyncio's ``(StreamReader, StreamWriter)``."""
        loop = self.loop
        reader = asyncio.StreamReader(limit=limit, loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        transport, _ = await self.create_connection(
            lambda: protocol,
            host,
            port,
            tcp_port=tcp_port,
            local_tcp_port=local_tcp_port,
            timeout=timeout,
            ssl=ssl,
            server_hostname=server_hostname,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout,
        )
        return reader, asyncio.StreamWriter(transport, protocol, reader, loop)

    async def create_server(
        self,
        protocol_factory: ProtocolFactory,
        *,
        tcp_port: int | None = None,
        backlog: int = 128,
        start_serving: bool = True,
        ssl: SSLContext | None = None,
        ssl_handshake_timeout: float | None = None,
        ssl_shutdown_timeout: float | None = None,
    ) -> Any:
        """Listen on this endpoint: for SYNs to TCP ``tcp_port``, or to any TCP port
        no other listener here has (the default: port mappings are transparent).
        ``ssl`` and the rest as :func:`rudp.create_server`."""
        from .server import Server

        tls = server_options(ssl, ssl_handshake_timeout, ssl_shutdown_timeout)
        server = Server(
            self.loop, [(self, tcp_port)], protocol_factory, backlog, owned=False, tls=tls
        )
        if start_serving:
            await server.start_serving()
        return server

    async def start_server(
        self,
        client_connected_cb: Any,
        *,
        tcp_port: int | None = None,
        limit: int = 2**16,
        backlog: int = 128,
        start_serving: bool = True,
        ssl: SSLContext | None = None,
        ssl_handshake_timeout: float | None = None,
        ssl_shutdown_timeout: float | None = None,
    ) -> Any:
        """:meth:`create_server` with asyncio's streams (``cb(reader, writer)``)."""
        from .server import stream_factory

        return await self.create_server(
            stream_factory(self.loop, client_connected_cb, limit),
            tcp_port=tcp_port,
            backlog=backlog,
            start_serving=start_serving,
            ssl=ssl,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout,
        )

    def close(self) -> None:
        """Stop listening and close every connection (FIN after its data). The socket
        closes once no connection needs it; :meth:`wait_closed` returns before
        TIME-WAIT ends (it lasts 2 MSL in the background)."""
        if self._closing or self._closed:
            return
        self._closing = True
        for port in list(self._accept):
            self.stop_listening(port)
        for tr in list(self._transports.values()):
            tr.close()
        now = self.loop.time()
        for conn in list(self._opening):
            self._fail_open(conn, ConnectionAbortedError("endpoint closed while opening"))
            conn.abort(now)
        self._schedule()
        self._check_idle()

    def close_when_idle(self) -> None:
        """Close the socket once nothing needs it (used by servers that own it)."""
        self._idle_close = True
        self._check_idle()

    def abort(self) -> None:
        """Reset every connection (RST) and close the socket now (TIME-WAIT is lost)."""
        if self._closed:
            return
        self._closing = True
        now = self.loop.time()
        for conn in list(self.engine.connections.values()):
            conn.abort(now)
        self._process_events()
        if not self._paused:
            self._send(self._out_items(now))
        self._close_socket(ConnectionAbortedError("endpoint aborted"))

    async def wait_closed(self) -> None:
        """Wait until :meth:`close` is done: every connection but TIME-WAIT finished."""
        await asyncio.shield(self._done)

    async def __aenter__(self) -> Endpoint:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
        await self.wait_closed()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "closing" if self._closing else "open"
        return f"<rudp.Endpoint {self._sockname} {state} connections={len(self._transports)}>"

    # ------------------------------------------------------ used by servers/api
    def listen(self, tcp_port: int | None, backlog: int, on_accept: AcceptCallback) -> None:
        if self.is_closing():
            raise InvalidStateError("endpoint is closed")
        port = ANY_PORT if tcp_port is None else tcp_port
        self.engine.listen(port, backlog)
        self._accept[port] = on_accept

    def stop_listening(self, tcp_port: int | None) -> None:
        port = ANY_PORT if tcp_port is None else tcp_port
        self.engine.stop_listening(port)
        self._accept.pop(port, None)
        self._schedule()
        self._check_idle()

    def open(
        self,
        addr: Address,
        tcp_port: int,
        factory: ProtocolFactory,
        local_tcp_port: int | None,
    ) -> asyncio.Future[RudpTransport]:
        """Start an active open; the future resolves to the connection's transport."""
        if self.is_closing():
            raise InvalidStateError("endpoint is closed")
        conn = self.engine.connect(addr, tcp_port, self.loop.time(), local_port=local_tcp_port)
        fut: asyncio.Future[RudpTransport] = self.loop.create_future()
        self._opening[conn] = (fut, factory)
        self._transmit()
        return fut

    def cancel_open(self, fut: asyncio.Future[RudpTransport]) -> None:
        for conn, (f, _factory) in list(self._opening.items()):
            if f is fut:
                del self._opening[conn]
                conn.abort(self.loop.time())
                self._schedule()

    def attach(self, conn: Connection, protocol: asyncio.BaseProtocol) -> RudpTransport:
        """Create the transport of an established connection and call connection_made."""
        tr = RudpTransport(self, conn, protocol)
        self._transports[conn] = tr
        protocol.connection_made(tr)
        if conn.readable:
            tr._deliver()
        return tr

    def peer_address(self, host_addr: Address) -> Address:
        """An address from getaddrinfo in this socket's format (IPv4 on a dual-stack
        IPv6 socket becomes IPv4-mapped)."""
        if self._dual_stack and len(host_addr) == 2:
            return (f"::ffff:{host_addr[0]}", host_addr[1], 0, 0)
        return tuple(host_addr)

    # ------------------------------------------------------------ socket I/O
    def _on_datagrams(self, batch: list[ReceivedDatagram]) -> None:
        now = self.loop.time()
        engine = self.engine
        receive = engine.receive_datagram
        local_for = self._local_for
        if self._pcap is not None:
            self._pcap.received(batch, self._sockname)
        n = len(batch)
        i = 0
        while i < n:
            payload, src, local = batch[i]
            if local is not None and local_for.get(src) != local:
                if len(local_for) >= MAX_LOCAL_ADDRESSES:
                    local_for.clear()
                local_for[src] = local
            # Consecutive datagrams from one source (a GRO super-datagram, or one
            # peer's burst) go to the engine together: it coalesces in-order data.
            if i + 1 < n:
                j, payloads = source_run(batch, i)
                if j - i > 1:
                    engine.receive_datagrams(payloads, src, now)
                    i = j
                    continue
            receive(payload, src, now)
            i += 1
        self._process()

    def _on_udp_error(self, err: DatagramError) -> None:
        """An ICMP error for a datagram we sent (from the error queue). RFC 1122
        §4.2.3.9: port unreachable is a hard error while opening; Linux also fails
        an opening connection on host/network unreachable. For established
        connections these are soft errors: counted, never fatal."""
        dest = err.dest
        now = self.loop.time()
        matched = False
        if dest is not None:
            key_ports: tuple[int, int] | None = None
            if len(err.payload) >= 4:
                key_ports = _PORTS.unpack_from(err.payload)
            for conn in list(self._opening):
                if conn.addr != tuple(dest):
                    continue
                if key_ports is not None and key_ports != (conn.local_port, conn.remote_port):
                    continue
                matched = True
                exc = _error_for(err, conn)
                self._fail_open(conn, exc)
                conn.abort(now)
        if not matched:
            self.soft_errors += 1
            if log.info_enabled:
                log.logger.info("udp_error", dest=dest, errno=err.errno, origin=int(err.origin))
        self._schedule()

    def _on_writable(self) -> None:
        self._paused = False
        self._schedule()

    # ------------------------------------------------------------- driving
    def wake(self) -> None:
        """Process events and send what is due, soon (transports call this)."""
        self._schedule()

    def send_now(self, conn: Connection) -> None:
        """Send what ``conn``'s application just queued now if nothing of ``conn``'s
        is in flight (the transport's rule for a write that answers the peer), else
        with the next transmit. In a protocol callback (the endpoint dispatching
        events) the dispatch's own transmit sends it, with the rest."""
        if not self._dispatching and not self._closed and conn.snd_una == conn.snd_max:
            self._transmit()
        self._schedule()

    def _schedule(self) -> None:
        if not self._process_scheduled and not self._closed:
            self._process_scheduled = True
            self.loop.call_soon(self._process_soon)

    def _process_soon(self) -> None:
        self._process_scheduled = False
        self._process()

    def _process(self) -> None:
        if self._closed:
            return
        self._dispatching = True
        try:
            self._process_events()
        finally:
            self._dispatching = False
        self._transmit()

    def _out_items(self, now: float) -> list[tuple[bytes, Address, Address | None]]:
        out = self.engine.datagrams_to_send(now)
        local_for = self._local_for
        if not local_for:
            return [(data, addr, None) for data, addr in out]
        return [(data, addr, local_for.get(addr)) for data, addr in out]

    def _transmit(self) -> None:
        if self._closed:
            return
        if not self._paused:
            items = self._out_items(self.loop.time())
            if items and not self._send(items):
                self._paused = True  # the socket is full: the engine keeps the rest
        self._rearm()
        self._check_idle()

    def _send(self, items: list[tuple[bytes, Address, Address | None]]) -> bool:
        """Hand datagrams to the socket layer (and the pcap file, if any)."""
        if self._pcap is not None and items:
            self._pcap.sent(items, self._sockname)
        return self._io.send(items)

    def _rearm(self) -> None:
        t = self.engine.get_timer()
        at = self._timer_at
        if t == at or (at is not None and (t is None or t > at)):
            # Unchanged, or later than (or none after) the armed timer: that one
            # fires first and re-arms (handle_timer() runs nothing early), which
            # saves a cancel and a call_at whenever an ACK pushes a deadline back.
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
        self._process()

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

    def _established(self, conn: Connection) -> None:
        entry = self._opening.pop(conn, None)
        if entry is None or entry[0].done():
            conn.abort(self.loop.time())
            return
        fut, factory = entry
        fut.set_result(self.attach(conn, factory()))

    def _fail_open(self, conn: Connection, exc: BaseException) -> None:
        entry = self._opening.pop(conn, None)
        if entry is not None and not entry[0].done():
            entry[0].set_exception(exc)

    def _terminated(self, conn: Connection, error: BaseException | None) -> None:
        self._fail_open(conn, error or ConnectionAbortedError("connection closed while opening"))
        tr = self._transports.pop(conn, None)
        if tr is not None:
            tr._connection_lost(error)

    # ------------------------------------------------------------- lifetime
    def _busy(self) -> bool:
        """Something other than TIME-WAIT needs this endpoint."""
        if self._transports or self._opening or self._accept:
            return True
        return any(c.state is not TIME_WAIT for c in self.engine.connections.values())

    def _check_idle(self) -> None:
        if not (self._closing or self._idle_close) or self._closed:
            return
        if self._busy():
            return
        if not self._done.done():
            self._done.set_result(None)
        if not self.engine.connections:
            # Nothing left, not even TIME-WAIT: the socket can go.
            self._close_socket(None)

    def _close_socket(self, exc: BaseException | None) -> None:
        if self._closed:
            return
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._io.close()
        if self._pcap is not None:
            self._pcap.release()
            self._pcap = None
        err = exc or ConnectionAbortedError("endpoint closed")
        for conn in list(self._opening):
            self._fail_open(conn, err)
        for tr in list(self._transports.values()):
            tr._connection_lost(err if exc is not None else None)
        self._transports.clear()
        if not self._done.done():
            self._done.set_result(None)
        if not self._lost.done():
            self._lost.set_result(None)

    async def wait_socket_closed(self) -> None:
        """Wait until the socket itself is closed (after TIME-WAIT, if any)."""
        await asyncio.shield(self._lost)


def _error_for(err: DatagramError, conn: Connection) -> OSError:
    where = f"{conn.addr[0]} port {conn.addr[1]}"
    if err.errno == errno.ECONNREFUSED:
        return ConnectionRefusedError(errno.ECONNREFUSED, f"connection to {where} refused (ICMP)")
    return OSError(err.errno, f"connect to {where}: {errno.errorcode.get(err.errno, err.errno)}")
