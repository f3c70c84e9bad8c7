"""``Server``: listeners on one or more endpoints, with asyncio.Server's semantics."""

from __future__ import annotations

import asyncio
import functools
import socket
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ..engine import Connection
from .tls import handshake_done
from .transport import RudpTransport

if TYPE_CHECKING:
    from .endpoint import Endpoint, ProtocolFactory
    from .tls import TLSOptions

ClientConnectedCallback = Callable[
    [asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None] | None
]


def stream_factory(
    loop: asyncio.AbstractEventLoop, client_connected_cb: ClientConnectedCallback, limit: int
) -> Callable[[], asyncio.BaseProtocol]:
    """A protocol factory giving ``client_connected_cb(reader, writer)`` per connection."""

    def factory() -> asyncio.BaseProtocol:
        reader = asyncio.StreamReader(limit=limit, loop=loop)
        return asyncio.StreamReaderProtocol(reader, client_connected_cb, loop=loop)

    return factory


class Server:
    """A rudp server, like ``asyncio.Server``.

    ``close()`` stops accepting (existing connections continue, as in asyncio);
    ``close_clients()``/``abort_clients()`` end them; ``wait_closed()`` returns
    once the server is closed and every connection it accepted has finished. A
    server made by :func:`rudp.start_server`/:func:`rudp.create_server` owns its
    endpoints: they close (after their connections, TIME-WAIT included, in the
    background) once it is closed.

    With ``tls``, every accepted connection runs asyncio's TLS layer
    (:mod:`rudp.aio.tls`); ``close_clients()`` then closes TLS first
    (close_notify), ``abort_clients()`` resets at once.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        listeners: list[tuple[Endpoint, int | None]],
        protocol_factory: ProtocolFactory,
        backlog: int,
        *,
        owned: bool,
        tls: TLSOptions | None = None,
    ) -> None:
        self._loop = loop
        self._listeners = listeners
        self._factory = protocol_factory
        self._backlog = backlog
        self._owned = owned
        self._serving = False
        self._closed = False
        self._serving_forever: asyncio.Future[None] | None = None
        self._closed_fut: asyncio.Future[None] = loop.create_future()
        self._clients: set[RudpTransport] = set()
        self._tls = tls
        #: With TLS: each client's TLS transport (the one the application holds).
        self._tls_transports: dict[RudpTransport, asyncio.Transport] = {}
        self._clients_done: asyncio.Future[None] | None = None

    @property
    def endpoints(self) -> list[Endpoint]:
        """The endpoints this server listens on."""
        return [ep for ep, _port in self._listeners]

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        """The bound UDP sockets."""
        return tuple(ep.socket for ep in self.endpoints)

    @property
    def addresses(self) -> list[tuple[Any, ...]]:
        """The bound (host, port[, …]) UDP addresses."""
        return [ep.local_address for ep in self.endpoints]

    @property
    def connections(self) -> list[RudpTransport]:
        """Transports of the connections this server accepted that are still open."""
        return list(self._clients)

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
        for ep, port in self._listeners:
            ep.listen(port, self._backlog, functools.partial(self._accept, ep))

    def _accept(self, ep: Endpoint, conn: Connection) -> None:
        app_transport: asyncio.Transport | None = None
        try:
            protocol = self._factory()
            if self._tls is not None:
                # As asyncio's servers: the TLS layer is the connection's protocol;
                # the application's connection_made comes after the handshake.
                waiter: asyncio.Future[None] = self._loop.create_future()
                protocol, app_transport = self._tls.wrap(self._loop, protocol, waiter)
                waiter.add_done_callback(functools.partial(handshake_done, app_transport))
        except Exception as exc:
            conn.abort(self._loop.time())
            self._loop.call_exception_handler(
                {"message": "rudp server protocol factory failed", "exception": exc}
            )
            return
        tr = ep.attach(conn, protocol)
        self._clients.add(tr)
        if app_transport is not None:
            self._tls_transports[tr] = app_transport
        tr.add_lost_callback(self._client_lost)

    def _client_lost(self, tr: RudpTransport) -> None:
        self._clients.discard(tr)
        self._tls_transports.pop(tr, None)
        if not self._clients and self._clients_done is not None and not self._clients_done.done():
            self._clients_done.set_result(None)

    def close(self) -> None:
        """Stop accepting new connections; established ones continue."""
        if self._closed:
            return
        self._closed = True
        self._serving = False
        self._closed_fut.set_result(None)
        for ep, port in self._listeners:
            ep.stop_listening(port)
            if self._owned:
                ep.close_when_idle()
        if self._serving_forever is not None and not self._serving_forever.done():
            self._serving_forever.cancel()

    def close_clients(self) -> None:
        """Close (FIN) every connection of this server (with TLS: close_notify first;
        a connection still in its TLS handshake is reset)."""
        for tr in list(self._clients):
            self._tls_transports.get(tr, tr).close()

    def abort_clients(self) -> None:
        """Reset (RST) every connection of this server."""
        for tr in list(self._clients):
            tr.abort()

    async def wait_closed(self) -> None:
        """Wait until the server is closed and all its connections are done."""
        # Like asyncio: waiting on an open server waits for close() first.
        await asyncio.shield(self._closed_fut)
        if self._clients:
            self._clients_done = self._loop.create_future()
            await asyncio.shield(self._clients_done)

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
