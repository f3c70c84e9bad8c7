"""Public asyncio API, mirroring asyncio's names and semantics.

``open_connection``/``start_server`` (streams) and ``create_connection``/
``create_server`` (protocols) behave like their asyncio namesakes, over UDP.

Ports: a rudp server listens on TCP port = its UDP port; a client connection's
local TCP port is its UDP socket's port. Each client connection has its own UDP
socket (``connect()``-ed to the server, so an ICMP "port unreachable" fails the
open at once); a server's connections all share the server's socket(s).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from .. import log
from ..config import Config
from ..engine import Connection
from .endpoint import ProtocolFactory, UdpEndpoint
from .transport import RudpTransport

ClientConnectedCallback = Callable[
    [asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None] | None
]

_DEFAULT_LIMIT = 2**16  # asyncio.streams._DEFAULT_LIMIT
_DEFAULT_CONFIG = Config()  # frozen, so one instance serves every connection
#: UDP socket buffer size requested (the kernel may cap it at net.core.rmem_max).
SOCKET_BUFFER = 4 * 1024 * 1024


def _factory_of(ep: UdpEndpoint) -> Callable[[], UdpEndpoint]:
    return lambda: ep


def _tune(sock: socket.socket) -> None:
    """Large socket buffers (best effort): bursts of a full window must not overflow."""
    for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        with contextlib.suppress(OSError):  # platform limits
            sock.setsockopt(socket.SOL_SOCKET, opt, SOCKET_BUFFER)


async def _resolve(
    loop: asyncio.AbstractEventLoop, host: str | None, port: int, family: int, passive: bool
) -> list[tuple[int, tuple[Any, ...]]]:
    if host and not passive and family == 0:
        # A numeric address needs no resolver round trip (the executor thread
        # behind getaddrinfo costs more than a whole rudp handshake on loopback).
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            pass
        else:
            if ip.version == 4:
                return [(int(socket.AF_INET), (str(ip), port))]
            if "%" not in host:
                return [(int(socket.AF_INET6), (str(ip), port, 0, 0))]
    infos = await loop.getaddrinfo(
        host,
        port,
        family=family,
        type=socket.SOCK_DGRAM,
        proto=socket.IPPROTO_UDP,
        flags=socket.AI_PASSIVE if passive else 0,
    )
    seen: list[tuple[int, tuple[Any, ...]]] = []
    for fam, _type, _proto, _canon, sockaddr in infos:
        if int(fam) not in (int(socket.AF_INET), int(socket.AF_INET6)):
            continue  # e.g. AF_UNSPEC oddities; rudp speaks IPv4 and IPv6
        item = (int(fam), tuple(sockaddr))
        if item not in seen:
            seen.append(item)
    if not seen:
        raise OSError(f"getaddrinfo({host!r}, {port!r}) returned no IPv4/IPv6 address")
    return seen


async def create_connection(
    protocol_factory: ProtocolFactory,
    host: str,
    port: int,
    *,
    config: Config | None = None,
    local_addr: tuple[str, int] | None = None,
    family: int = 0,
    timeout: float | None = None,
) -> tuple[RudpTransport, asyncio.BaseProtocol]:
    """Open a rudp connection to ``host``:``port`` (UDP); like ``loop.create_connection``.

    Raises ``ConnectionRefusedError`` (RST, or nothing listening on the UDP port),
    ``TimeoutError`` (no answer within ``config.syn_retries`` SYN retransmissions,
    or ``timeout`` seconds if given), ``OSError`` for resolution/socket errors.
    """
    loop = asyncio.get_running_loop()
    cfg = config if config is not None else _DEFAULT_CONFIG
    errors: list[BaseException] = []
    for fam, sockaddr in await _resolve(loop, host, port, family, passive=False):
        sock = socket.socket(fam, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            _tune(sock)
            if local_addr is not None:
                sock.bind(local_addr)
            elif fam == socket.AF_INET6:
                sock.bind(("::", 0))
            else:
                sock.bind(("0.0.0.0", 0))
            sock.connect(sockaddr)
        except OSError as exc:
            sock.close()
            errors.append(exc)
            continue
        ep = UdpEndpoint(loop, cfg, sock, connected=True)
        _transport, _ = await loop.create_datagram_endpoint(_factory_of(ep), sock=sock)
        # The peer address as recvfrom() reports it, so engine identities match.
        peer = sock.getpeername()
        local_port = sock.getsockname()[1]
        protocol: asyncio.BaseProtocol | None = None

        def factory() -> asyncio.BaseProtocol:
            nonlocal protocol
            protocol = protocol_factory()
            return protocol

        fut = ep.open(tuple(peer), sockaddr[1], factory, local_port)
        ep.on_idle = ep.close
        try:
            if timeout is not None:
                tr = await asyncio.wait_for(asyncio.shield(fut), timeout)
            else:
                tr = await asyncio.shield(fut)
        except BaseException as exc:
            ep.cancel_open(fut)
            ep.close()
            if isinstance(exc, asyncio.TimeoutError) and not isinstance(exc, TimeoutError):
                raise TimeoutError(f"connect to {host}:{port} timed out") from None
            if isinstance(exc, (ConnectionRefusedError, TimeoutError, ConnectionError)):
                errors.append(exc)
                if isinstance(exc, TimeoutError):
                    raise
                continue
            raise
        assert protocol is not None
        if log.debug_enabled:
            log.logger.debug("connected", conn=tr._conn.name, host=host, port=port)
        return tr, protocol
    if len(errors) == 1 or all(type(e) is type(errors[0]) for e in errors):
        raise errors[0]
    raise OSError(f"multiple errors connecting to {host}:{port}: {errors}")


async def open_connection(
    host: str,
    port: int,
    *,
    config: Config | None = None,
    limit: int = _DEFAULT_LIMIT,
    local_addr: tuple[str, int] | None = None,
    family: int = 0,
    timeout: float | None = None,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Open a connection and return asyncio's ``(StreamReader, StreamWriter)``."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=limit, loop=loop)
    protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
    transport, _ = await create_connection(
        lambda: protocol,
        host,
        port,
        config=config,
        local_addr=local_addr,
        family=family,
        timeout=timeout,
    )
    writer = asyncio.StreamWriter(transport, protocol, reader, loop)
    return reader, writer


class Server:
    """A rudp server: one UDP socket per bound address, like ``asyncio.Server``.

    ``close()`` stops accepting (existing connections continue, as in asyncio);
    ``close_clients()``/``abort_clients()`` end them; ``wait_closed()`` returns
    once the server is closed and every connection has finished.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        endpoints: list[UdpEndpoint],
        protocol_factory: ProtocolFactory,
        backlog: int,
    ) -> None:
        self._loop = loop
        self._endpoints = endpoints
        self._factory = protocol_factory
        self._backlog = backlog
        self._serving = False
        self._closed = False
        self._serving_forever: asyncio.Future[None] | None = None
        self._closed_fut: asyncio.Future[None] = loop.create_future()

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        """The bound UDP sockets."""
        return tuple(ep.sock for ep in self._endpoints if ep.sock is not None)

    @property
    def addresses(self) -> list[tuple[Any, ...]]:
        """The bound (host, port[, …]) addresses."""
        return [s.getsockname() for s in self.sockets]

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def is_serving(self) -> bool:
        return self._serving

    async def start_serving(self) -> None:
        if self._closed:
            raise RuntimeError("server is closed")
        if self._serving:
            return
        self._serving = True
        for ep in self._endpoints:
            assert ep.sock is not None
            port = ep.sock.getsockname()[1]
            ep.listen(port, self._backlog, functools.partial(self._accept, ep))

    def _accept(self, ep: UdpEndpoint, conn: Connection) -> None:
        try:
            protocol = self._factory()
        except Exception as exc:
            conn.abort(self._loop.time())
            self._loop.call_exception_handler(
                {"message": "rudp server protocol factory failed", "exception": exc}
            )
            return
        ep.attach(conn, protocol)

    def close(self) -> None:
        """Stop accepting new connections; established ones continue."""
        if self._closed:
            return
        self._closed = True
        self._serving = False
        self._closed_fut.set_result(None)
        for ep in self._endpoints:
            assert ep.sock is not None
            ep.stop_listening(ep.sock.getsockname()[1])
            ep.on_idle = ep.close
            ep._schedule()
        if self._serving_forever is not None and not self._serving_forever.done():
            self._serving_forever.cancel()

    def close_clients(self) -> None:
        """Close (FIN) every connection of this server."""
        for ep in self._endpoints:
            for tr in ep.connections:
                tr.close()

    def abort_clients(self) -> None:
        """Reset (RST) every connection of this server."""
        for ep in self._endpoints:
            for tr in ep.connections:
                tr.abort()

    async def wait_closed(self) -> None:
        """Wait until the server is closed and all its connections are done."""
        # Like asyncio: waiting on an open server waits for close() first.
        await asyncio.shield(self._closed_fut)
        for ep in self._endpoints:
            await ep.wait_closed()

    async def serve_forever(self) -> None:
        if self._serving_forever is not None:
            raise RuntimeError("serve_forever() is already running")
        if self._closed:
            raise RuntimeError("server is closed")
        await self.start_serving()
        self._serving_forever = self._loop.create_future()
        try:
            await self._serving_forever
        except asyncio.CancelledError:
            try:
                self.close()
                await self.wait_closed()
            finally:
                raise
        finally:
            self._serving_forever = None

    async def __aenter__(self) -> Server:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
        await self.wait_closed()

    def __repr__(self) -> str:
        return f"<rudp.Server {self.addresses}>"


async def create_server(
    protocol_factory: ProtocolFactory,
    host: str | Iterable[str] | None = None,
    port: int = 0,
    *,
    config: Config | None = None,
    backlog: int = 128,
    family: int = 0,
    reuse_port: bool = False,
    start_serving: bool = True,
) -> Server:
    """Listen on ``host``:``port`` (UDP); like ``loop.create_server``.

    ``host=None`` binds all IPv4 and IPv6 addresses. ``port=0`` picks a free port
    (the same one for every bound address where possible).
    """
    loop = asyncio.get_running_loop()
    cfg = config if config is not None else _DEFAULT_CONFIG
    hosts: list[str | None]
    hosts = [host or None] if host is None or isinstance(host, str) else list(host)
    endpoints: list[UdpEndpoint] = []
    try:
        for h in hosts:
            for fam, sockaddr in await _resolve(loop, h, port, family, passive=True):
                sock = socket.socket(fam, socket.SOCK_DGRAM)
                try:
                    sock.setblocking(False)
                    _tune(sock)
                    if reuse_port:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                    if fam == socket.AF_INET6:
                        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                    if port == 0 and endpoints:
                        # Same port on every address, as asyncio does for TCP.
                        bound = endpoints[0].sock
                        assert bound is not None
                        sockaddr = (sockaddr[0], bound.getsockname()[1], *sockaddr[2:])
                    sock.bind(sockaddr)
                except OSError:
                    sock.close()
                    raise
                ep = UdpEndpoint(loop, cfg, sock)
                await loop.create_datagram_endpoint(_factory_of(ep), sock=sock)
                endpoints.append(ep)
    except BaseException:
        for ep in endpoints:
            ep.close()
        raise
    server = Server(loop, endpoints, protocol_factory, backlog)
    if start_serving:
        await server.start_serving()
    return server


async def start_server(
    client_connected_cb: ClientConnectedCallback,
    host: str | Iterable[str] | None = None,
    port: int = 0,
    *,
    config: Config | None = None,
    limit: int = _DEFAULT_LIMIT,
    backlog: int = 128,
    family: int = 0,
    reuse_port: bool = False,
    start_serving: bool = True,
) -> Server:
    """Start a stream server; ``client_connected_cb(reader, writer)`` per connection."""
    loop = asyncio.get_running_loop()

    def factory() -> asyncio.BaseProtocol:
        reader = asyncio.StreamReader(limit=limit, loop=loop)
        return asyncio.StreamReaderProtocol(reader, client_connected_cb, loop=loop)

    return await create_server(
        factory,
        host,
        port,
        config=config,
        backlog=backlog,
        family=family,
        reuse_port=reuse_port,
        start_serving=start_serving,
    )
