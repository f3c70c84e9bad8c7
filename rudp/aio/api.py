"""Public asyncio API, mirroring asyncio's names and semantics.

* :func:`create_endpoint` — one UDP socket on which to listen and connect, any number
  of times, in both directions (docs/endpoints.md);
* :func:`open_connection`/:func:`start_server` (streams) and
  :func:`create_connection`/:func:`create_server` (protocols), like their asyncio
  namesakes, over UDP, built on endpoints; ``ssl=`` runs TLS over the connection
  on any event loop (:mod:`rudp.aio.tls`, docs/tls.md).

Client connections opened without ``local_addr`` share one endpoint per event loop and
address family (one UDP socket for all of them, distinct TCP ports), so TIME-WAIT and
connection churn cost no file descriptors. A server listens on TCP port "any" by
default: a SYN's ports are mirrored, so port mappings between the two ends are
transparent (docs/wire.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import socket
import ssl as _ssl
import weakref
from collections.abc import Coroutine, Iterable
from typing import Any, overload

from .. import log
from ..config import Config
from ..engine.congestion import lookup as lookup_congestion_control
from ..errors import ConnectTimeoutError
from .endpoint import Endpoint, ProtocolFactory
from .server import ClientConnectedCallback, Server, stream_factory
from .tls import SSLArg, TLSOptions, client_options, server_options
from .transport import RudpTransport

_DEFAULT_LIMIT = 2**16  # asyncio.streams._DEFAULT_LIMIT
_DEFAULT_CONFIG = Config()  # frozen, so one instance serves every connection
#: UDP socket buffer size requested (the kernel may cap it at net.core.rmem_max).
SOCKET_BUFFER = 4 * 1024 * 1024

#: Per event loop: the shared client endpoint of each (address family, config).
_shared: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[tuple[int, Config], Endpoint]
] = weakref.WeakKeyDictionary()


def _tune(sock: socket.socket) -> None:
    """Large socket buffers (best effort): bursts of a full window must not overflow."""
    for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        with contextlib.suppress(OSError):  # platform limits
            sock.setsockopt(socket.SOL_SOCKET, opt, SOCKET_BUFFER)


@functools.lru_cache(maxsize=256)
def _numeric_host(host: str) -> tuple[int, str] | None:
    """(family, canonical text) of a numeric IPv4 or unscoped IPv6 address; None
    for anything else (a name, a scoped address: for getaddrinfo). Cached: a
    client connecting again and again to one address parses it once."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    if ip.version == 4:
        return int(socket.AF_INET), str(ip)
    if "%" in host:
        return None
    return int(socket.AF_INET6), str(ip)


def _resolved(host: str | None, port: int, family: int) -> list[tuple[int, tuple[Any, ...]]] | None:
    """``host``:``port`` as :func:`_resolve` returns it, when that needs no resolver
    (a numeric address); None otherwise. Checks ``port``."""
    if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 0xFFFF:
        raise ValueError(f"port must be an int in 0..65535, not {port!r}")
    if host and family == 0:
        # A numeric address needs no resolver round trip (the executor thread
        # behind getaddrinfo costs more than a whole rudp handshake on loopback).
        numeric = _numeric_host(host)
        if numeric is not None:
            fam, text = numeric
            if fam == socket.AF_INET:
                return [(fam, (text, port))]
            return [(fam, (text, port, 0, 0))]
    return None


async def _resolve(
    loop: asyncio.AbstractEventLoop, host: str | None, port: int, family: int, passive: bool
) -> list[tuple[int, tuple[Any, ...]]]:
    addresses = _resolved(host, port, family)
    if addresses is not None:
        return addresses
    return await _lookup(loop, host, port, family, passive)


async def _lookup(
    loop: asyncio.AbstractEventLoop, host: str | None, port: int, family: int, passive: bool
) -> list[tuple[int, tuple[Any, ...]]]:
    """The resolver's addresses for ``host``:``port`` (:func:`_resolve` without
    the numeric fast path, which its caller tried)."""
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


def _bind(
    family: int, addr: tuple[Any, ...], *, reuse_port: bool = False, dual_stack: bool = False
) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        _tune(sock)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0 if dual_stack else 1)
        sock.bind(addr)
    except BaseException:
        sock.close()
        raise
    return sock


async def create_endpoint(
    local_addr: tuple[str, int] | None = None,
    *,
    config: Config | None = None,
    family: int = 0,
    reuse_port: bool = False,
    sock: socket.socket | None = None,
) -> Endpoint:
    """Bind a UDP socket and return the :class:`Endpoint` that owns it.

    ``local_addr`` defaults to all IPv4 addresses and an ephemeral port; an IPv6
    wildcard (``("::", port)``) gives a dual-stack socket that also serves IPv4 (as
    IPv4-mapped addresses). Or pass ``sock``, an already bound UDP socket — e.g. one
    used for a rendezvous and hole punching (examples/p2p.py) — that the endpoint
    takes over (and closes). On the endpoint, ``create_server``/``start_server`` and
    ``create_connection``/``open_connection`` may be used any number of times.
    """
    loop = asyncio.get_running_loop()
    cfg = config if config is not None else _DEFAULT_CONFIG
    lookup_congestion_control(cfg.congestion_control)  # ConfigError now
    if sock is not None:
        if local_addr is not None:
            raise ValueError("pass local_addr or sock, not both")
        if sock.type != socket.SOCK_DGRAM or sock.family not in (
            socket.AF_INET,
            socket.AF_INET6,
        ):
            raise ValueError("sock must be an IPv4 or IPv6 SOCK_DGRAM socket")
        sock.setblocking(False)
        _tune(sock)
        return Endpoint(loop, sock, cfg)
    host, port = local_addr if local_addr is not None else ("0.0.0.0", 0)
    fam, addr = (await _resolve(loop, host, port, family, passive=True))[0]
    dual = fam == socket.AF_INET6 and addr[0] in ("::", "")
    sock = _bind(fam, addr, reuse_port=reuse_port, dual_stack=dual)
    return Endpoint(loop, sock, cfg)


def _shared_endpoint(loop: asyncio.AbstractEventLoop, family: int, config: Config) -> Endpoint:
    """The loop's shared client endpoint for ``family`` (created on first use).

    It lives as long as the loop: a keeper task closes it when the loop's tasks are
    cancelled (``asyncio.run`` does that on exit), so TIME-WAIT lasts at most as long
    as the program (docs/endpoints.md).
    """
    per_loop = _shared.setdefault(loop, {})
    ep = per_loop.get((family, config))
    if ep is not None and not ep.is_closing():
        return ep
    wildcard = ("0.0.0.0", 0) if family == socket.AF_INET else ("::", 0, 0, 0)
    ep = Endpoint(loop, _bind(family, wildcard), config)
    per_loop[(family, config)] = ep

    async def keeper() -> None:
        try:
            await asyncio.Future()
        finally:
            ep.abort()

    ep.keeper = loop.create_task(keeper(), name=f"rudp shared endpoint {ep.local_address}")
    return ep


def shared_endpoints() -> list[Endpoint]:
    """The running loop's shared client endpoints (one per address family in use),
    e.g. for their ``stats()``."""
    per_loop = _shared.get(asyncio.get_running_loop(), {})
    return [ep for ep in per_loop.values() if not ep.is_closing()]


def connect_to(
    ep: Endpoint,
    protocol_factory: ProtocolFactory,
    host: str,
    port: int,
    tcp_port: int | None,
    local_tcp_port: int | None,
    timeout: float | None,
    *,
    addresses: list[tuple[int, tuple[Any, ...]]] | None = None,
    tls: TLSOptions | None = None,
) -> Coroutine[Any, Any, tuple[asyncio.Transport, asyncio.BaseProtocol]]:
    """Open a connection from ``ep``, trying each resolved address in turn; with
    ``tls``, then run the TLS handshake over it (as ``loop.create_connection``).
    Returns the coroutine that does it (without TLS, the address loop's own: one
    coroutine level less per connect)."""
    if tls is None:
        return _connect_any(
            ep, protocol_factory, host, port, tcp_port, local_tcp_port, timeout, addresses
        )
    return _connect_tls(
        ep, protocol_factory, host, port, tcp_port, local_tcp_port, timeout, addresses, tls
    )


async def _connect_tls(
    ep: Endpoint,
    protocol_factory: ProtocolFactory,
    host: str,
    port: int,
    tcp_port: int | None,
    local_tcp_port: int | None,
    timeout: float | None,
    addresses: list[tuple[int, tuple[Any, ...]]] | None,
    tls: TLSOptions,
) -> tuple[asyncio.Transport, asyncio.BaseProtocol]:
    loop = ep.loop
    waiter: asyncio.Future[None] = loop.create_future()
    app: list[tuple[asyncio.Transport, asyncio.BaseProtocol]] = []

    def tls_factory() -> asyncio.BaseProtocol:
        app_protocol = protocol_factory()
        ssl_protocol, app_transport = tls.wrap(loop, app_protocol, waiter)
        app.append((app_transport, app_protocol))
        return ssl_protocol

    await _connect_any(ep, tls_factory, host, port, tcp_port, local_tcp_port, timeout, addresses)
    app_transport, app_protocol = app[0]
    try:
        # The TLS layer bounds this wait (ssl_handshake_timeout) and aborts the
        # connection on failure; the error arrives here.
        await waiter
    except BaseException:
        app_transport.close()
        raise
    return app_transport, app_protocol


async def _connect_any(
    ep: Endpoint,
    protocol_factory: ProtocolFactory,
    host: str,
    port: int,
    tcp_port: int | None,
    local_tcp_port: int | None,
    timeout: float | None,
    addresses: list[tuple[int, tuple[Any, ...]]] | None,
) -> tuple[RudpTransport, asyncio.BaseProtocol]:
    loop = ep.loop
    if addresses is None:
        addresses = await _resolve(loop, host, port, 0, passive=False)
    errors: list[BaseException] = []
    for _fam, sockaddr in addresses:
        protocol: asyncio.BaseProtocol | None = None

        def factory() -> asyncio.BaseProtocol:
            nonlocal protocol
            protocol = protocol_factory()
            return protocol

        peer = ep.peer_address(sockaddr)
        fut = ep.open(peer, tcp_port if tcp_port is not None else port, factory, local_tcp_port)
        try:
            if timeout is not None:
                tr = await asyncio.wait_for(asyncio.shield(fut), timeout)
            else:
                # Awaited directly: a shield would add a future and a loop iteration
                # to every connect. If this task is cancelled, so is ``fut``, and
                # cancel_open() below aborts the connection.
                tr = await fut
        except ConnectTimeoutError as exc:  # the engine gave up (SYN retransmissions)
            ep.cancel_open(fut)
            raise ConnectTimeoutError(f"connect to {host} port {port}: {exc}") from None
        except (asyncio.TimeoutError, TimeoutError):  # wait_for's own timeout
            ep.cancel_open(fut)
            raise ConnectTimeoutError(
                f"connect to {host} port {port}: no answer within {timeout:g} s",
                timeout=timeout,
            ) from None
        except (ConnectionError, OSError) as exc:
            ep.cancel_open(fut)
            errors.append(exc)
            continue
        except BaseException:
            ep.cancel_open(fut)
            raise
        assert protocol is not None
        if log.debug_enabled:
            log.logger.debug("connected", conn=tr.get_extra_info("rudp_connection").name)
        return tr, protocol
    if len(errors) == 1 or all(type(e) is type(errors[0]) for e in errors):
        raise errors[0]
    raise OSError(f"multiple errors connecting to {host} port {port}: {errors}")


@overload
async def create_connection(
    protocol_factory: ProtocolFactory,
    host: str,
    port: int,
    *,
    config: Config | None = ...,
    local_addr: tuple[str, int] | None = ...,
    family: int = ...,
    timeout: float | None = ...,
    tcp_port: int | None = ...,
    ssl: None = ...,
    server_hostname: str | None = ...,
    ssl_handshake_timeout: float | None = ...,
    ssl_shutdown_timeout: float | None = ...,
) -> tuple[RudpTransport, asyncio.BaseProtocol]: ...


@overload
async def create_connection(
    protocol_factory: ProtocolFactory,
    host: str,
    port: int,
    *,
    config: Config | None = ...,
    local_addr: tuple[str, int] | None = ...,
    family: int = ...,
    timeout: float | None = ...,
    tcp_port: int | None = ...,
    ssl: _ssl.SSLContext | bool,
    server_hostname: str | None = ...,
    ssl_handshake_timeout: float | None = ...,
    ssl_shutdown_timeout: float | None = ...,
) -> tuple[asyncio.Transport, asyncio.BaseProtocol]: ...


async def create_connection(
    protocol_factory: ProtocolFactory,
    host: str,
    port: int,
    *,
    config: Config | None = None,
    local_addr: tuple[str, int] | None = None,
    family: int = 0,
    timeout: float | None = None,
    tcp_port: int | None = None,
    ssl: SSLArg = None,
    server_hostname: str | None = None,
    ssl_handshake_timeout: float | None = None,
    ssl_shutdown_timeout: float | None = None,
) -> tuple[asyncio.Transport, asyncio.BaseProtocol]:
    """Open a rudp connection to ``host``:``port`` (UDP); like ``loop.create_connection``.

    Without ``local_addr`` the connection shares its loop's client endpoint (one
    socket for every such connection); with it, it gets its own endpoint bound
    there, closed after the connection (and its TIME-WAIT).

    ``ssl``: an ``ssl.SSLContext``, or True for ``ssl.create_default_context()``,
    runs TLS over the connection, as asyncio does over TCP (docs/tls.md):
    ``server_hostname`` (default ``host``; ``""`` skips the name check),
    ``ssl_handshake_timeout`` (60 s), ``ssl_shutdown_timeout`` (30 s). The
    transport returned is then asyncio's TLS transport; ``timeout`` bounds the
    rudp handshake only.

    Raises ``ConnectionRefusedError`` (RST, or ICMP port unreachable where the
    platform reports it), :class:`rudp.ConnectTimeoutError` (no answer within
    ``config.syn_retries`` SYN retransmissions, or ``timeout`` seconds), ``OSError``
    for resolution, unreachable hosts and socket errors; with TLS, the handshake's
    ``ssl.SSLError`` (e.g. ``ssl.SSLCertVerificationError``) or
    ``ConnectionAbortedError`` once ``ssl_handshake_timeout`` has passed.
    """
    tls = client_options(ssl, host, server_hostname, ssl_handshake_timeout, ssl_shutdown_timeout)
    return await _create_connection(
        asyncio.get_running_loop(),
        protocol_factory,
        host,
        port,
        config,
        local_addr,
        family,
        timeout,
        tcp_port,
        tls,
    )


async def _create_connection(
    loop: asyncio.AbstractEventLoop,
    protocol_factory: ProtocolFactory,
    host: str,
    port: int,
    config: Config | None,
    local_addr: tuple[str, int] | None,
    family: int,
    timeout: float | None,
    tcp_port: int | None,
    tls: TLSOptions | None,
) -> tuple[asyncio.Transport, asyncio.BaseProtocol]:
    cfg = config if config is not None else _DEFAULT_CONFIG
    lookup_congestion_control(cfg.congestion_control)
    addresses = _resolved(host, port, family)  # a numeric host: no coroutine
    if addresses is None:
        addresses = await _lookup(loop, host, port, family, passive=False)
    if local_addr is None:
        fam = addresses[0][0]
        ep = _shared_endpoint(loop, fam, cfg)
        return await connect_to(
            ep, protocol_factory, host, port, tcp_port, None, timeout, addresses=addresses, tls=tls
        )
    lfam, laddr = (await _resolve(loop, local_addr[0], local_addr[1], family, passive=True))[0]
    ep = Endpoint(loop, _bind(lfam, laddr), cfg, close_when_idle=True)
    try:
        same = [a for a in addresses if a[0] == lfam]
        return await connect_to(
            ep,
            protocol_factory,
            host,
            port,
            tcp_port,
            None,
            timeout,
            addresses=same or addresses,
            tls=tls,
        )
    except BaseException:
        ep.abort()
        raise


async def open_connection(
    host: str,
    port: int,
    *,
    config: Config | None = None,
    limit: int = _DEFAULT_LIMIT,
    local_addr: tuple[str, int] | None = None,
    family: int = 0,
    timeout: float | None = None,
    tcp_port: int | None = None,
    ssl: SSLArg = None,
    server_hostname: str | None = None,
    ssl_handshake_timeout: float | None = None,
    ssl_shutdown_timeout: float | None = None,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Open a connection and return asyncio's ``(StreamReader, StreamWriter)``
    (``ssl=`` and the rest as :func:`create_connection`)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=limit, loop=loop)
    protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
    tls = client_options(ssl, host, server_hostname, ssl_handshake_timeout, ssl_shutdown_timeout)
    transport, _ = await _create_connection(
        loop, lambda: protocol, host, port, config, local_addr, family, timeout, tcp_port, tls
    )
    writer = asyncio.StreamWriter(transport, protocol, reader, loop)
    return reader, writer


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
    tcp_port: int | None = None,
    ssl: _ssl.SSLContext | None = None,
    ssl_handshake_timeout: float | None = None,
    ssl_shutdown_timeout: float | None = None,
) -> Server:
    """Listen on ``host``:``port`` (UDP); like ``loop.create_server``.

    ``host=None`` binds all IPv4 and IPv6 addresses. ``port=0`` picks a free port
    (the same one for every bound address where possible). The listener accepts a
    SYN for any TCP port unless ``tcp_port`` is given. The server owns its
    endpoints: after :meth:`Server.close` they close when their connections (and
    TIME-WAIT) are done.

    ``ssl`` (an ``ssl.SSLContext``) runs TLS over every accepted connection, as
    asyncio does (docs/tls.md): the protocol's ``connection_made`` comes after the
    TLS handshake; a connection whose handshake fails is closed.
    """
    loop = asyncio.get_running_loop()
    cfg = config if config is not None else _DEFAULT_CONFIG
    lookup_congestion_control(cfg.congestion_control)
    tls = server_options(ssl, ssl_handshake_timeout, ssl_shutdown_timeout)
    hosts: list[str | None]
    hosts = [host or None] if host is None or isinstance(host, str) else list(host)
    endpoints: list[Endpoint] = []
    try:
        for h in hosts:
            for fam, sockaddr in await _resolve(loop, h, port, family, passive=True):
                if port == 0 and endpoints:
                    # Same port on every address, as asyncio does for TCP.
                    bound = endpoints[0].local_address[1]
                    sockaddr = (sockaddr[0], bound, *sockaddr[2:])
                endpoints.append(Endpoint(loop, _bind(fam, sockaddr, reuse_port=reuse_port), cfg))
    except BaseException:
        for ep in endpoints:
            ep.abort()
        raise
    server = Server(
        loop, [(ep, tcp_port) for ep in endpoints], protocol_factory, backlog, owned=True, tls=tls
    )
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
    tcp_port: int | None = None,
    ssl: _ssl.SSLContext | None = None,
    ssl_handshake_timeout: float | None = None,
    ssl_shutdown_timeout: float | None = None,
) -> Server:
    """Start a stream server; ``client_connected_cb(reader, writer)`` per connection
    (``ssl=`` and the rest as :func:`create_server`)."""
    loop = asyncio.get_running_loop()
    return await create_server(
        stream_factory(loop, client_connected_cb, limit),
        host,
        port,
        config=config,
        backlog=backlog,
        family=family,
        reuse_port=reuse_port,
        start_serving=start_serving,
        tcp_port=tcp_port,
        ssl=ssl,
        ssl_handshake_timeout=ssl_handshake_timeout,
        ssl_shutdown_timeout=ssl_shutdown_timeout,
    )
