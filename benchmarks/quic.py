"""The aioquic peer: QUIC streams with a self-signed certificate made at start-up.

A "connection" of the workloads is one QUIC connection carrying one
bidirectional stream. Two additions make the comparison fair:

* backpressure: aioquic's ``StreamWriter.drain()`` never blocks, so a bulk
  sender would queue the whole transfer in memory. :class:`BenchQuicProtocol`
  makes ``drain()`` wait while more than :data:`DRAIN_HIGH` bytes of the stream
  are unacknowledged (resuming below :data:`DRAIN_LOW`), like a send buffer;
* socket buffers as large as rudp's (:data:`~benchmarks.common.SOCKET_BUFFER`).

Closing a client stream sends CONNECTION_CLOSE at once; the draining period
(3 x PTO, RFC 9000 §10.2) then runs in the background and is not timed.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import ssl
from collections.abc import AsyncIterator
from typing import Any

from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.asyncio.server import QuicServer, serve
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import ConnectionTerminated, QuicEvent
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .common import quic_datagram_size, tune_socket_buffers
from .stacks import CLOSE_TIMEOUT, BenchStream, StreamHandler, StreamStack

ALPN = "rudp-bench"
#: drain() blocks above this many unacknowledged stream bytes (aioquic's default
#: stream flow-control window is 1 MiB, so more would only queue in memory) ...
DRAIN_HIGH = 1024 * 1024
#: ... and resumes once they fall below this.
DRAIN_LOW = 512 * 1024


def self_signed_certificate() -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A fresh P-256 key and a one-day self-signed certificate for localhost."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    return key, cert


class BenchQuicProtocol(QuicConnectionProtocol):
    """QuicConnectionProtocol whose streams get a real ``drain()``."""

    def __init__(self, quic: QuicConnection, stream_handler: Any = None) -> None:
        super().__init__(quic, stream_handler=stream_handler)
        self._drain_waiter: asyncio.Future[None] | None = None
        self._drain_stream = -1
        self._terminated = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if self._quic.configuration.is_client:  # a server's shared socket is tuned once
            tune_socket_buffers(transport)

    def unacked(self, stream_id: int) -> int:
        """Bytes written to ``stream_id`` and not yet acknowledged by the peer."""
        stream = self._quic._streams.get(stream_id)
        if stream is None:
            return 0
        sender = stream.sender
        return int(sender._buffer_stop - sender._buffer_start)

    async def drain_stream(self, stream_id: int) -> None:
        if self._terminated:
            raise ConnectionResetError("QUIC connection terminated")
        if self.unacked(stream_id) <= DRAIN_HIGH:
            return
        waiter = self._loop.create_future()
        self._drain_waiter = waiter
        self._drain_stream = stream_id
        await waiter

    def datagram_received(self, data: bytes | str, addr: Any) -> None:
        super().datagram_received(data, addr)
        waiter = self._drain_waiter
        if waiter is not None and self.unacked(self._drain_stream) <= DRAIN_LOW:
            self._drain_waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def quic_event_received(self, event: QuicEvent) -> None:
        super().quic_event_received(event)
        if isinstance(event, ConnectionTerminated):
            self._terminated = True
            waiter = self._drain_waiter
            self._drain_waiter = None
            if waiter is not None and not waiter.done():
                waiter.set_exception(ConnectionResetError(f"QUIC closed: {event.reason_phrase}"))


class QuicStream(BenchStream):
    """One bidirectional QUIC stream; the client side owns its connection."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        protocol: BenchQuicProtocol,
        owner: QuicStack | None = None,
        exit_stack: contextlib.AbstractAsyncContextManager[Any] | None = None,
    ) -> None:
        super().__init__(reader, writer)
        self.protocol = protocol
        self.stream_id = int(writer.get_extra_info("stream_id"))
        self._owner = owner
        self._cm = exit_stack
        self._closed = False

    async def drain(self) -> None:
        await self.protocol.drain_stream(self.stream_id)

    def write_eof(self) -> None:
        if self.writer.can_write_eof():
            self.writer.write_eof()

    async def close(self, timeout: float | None = None) -> None:
        # Nothing to wait for: the draining period runs in the background.
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            self.write_eof()
        if self._cm is not None and self._owner is not None:
            # Client: CONNECTION_CLOSE now; the draining period runs in the background.
            self.protocol.close()
            self._owner.spawn(_exit(self._cm))

    def abort(self) -> None:
        self._closed = True
        self.protocol.close(reason_phrase="abort")
        if self._cm is not None and self._owner is not None:
            self._owner.spawn(_exit(self._cm))


class QuicStack(StreamStack):
    """aioquic over UDP; max_datagram_size = mss + 28, clamped to [1200, QUIC_MAX_DATAGRAM]."""

    name = "aioquic"

    def __init__(self, mss: int | None) -> None:
        super().__init__(mss)
        self.datagram_size = quic_datagram_size(mss if mss is not None else 1400)
        self._server: QuicServer | None = None

    def _config(self, is_client: bool) -> QuicConfiguration:
        return QuicConfiguration(
            is_client=is_client,
            alpn_protocols=[ALPN],
            max_datagram_size=self.datagram_size,
            verify_mode=ssl.CERT_NONE if is_client else None,
            server_name="localhost" if is_client else None,
        )

    async def start_server(self, host: str, handler: StreamHandler) -> int:
        config = self._config(is_client=False)
        key, cert = self_signed_certificate()
        config.private_key = key
        config.certificate = cert

        def on_stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            protocol = writer.transport.protocol  # type: ignore[attr-defined]
            stream = QuicStream(reader, writer, protocol)
            self.spawn(self.run_handler(handler, stream))

        self._server = await serve(
            host,
            0,
            configuration=config,
            create_protocol=BenchQuicProtocol,
            stream_handler=on_stream,
        )
        transport = self._server._transport
        assert transport is not None
        tune_socket_buffers(transport)
        return int(transport.get_extra_info("sockname")[1])

    async def stop_server(self) -> None:
        if self._server is not None:
            self._server.close()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=CLOSE_TIMEOUT)

    async def connect(self, host: str, port: int) -> BenchStream:
        cm = _client(host, port, self._config(is_client=True))
        protocol = await cm.__aenter__()
        try:
            reader, writer = await protocol.create_stream()
        except BaseException:
            await cm.__aexit__(None, None, None)
            raise
        return QuicStream(reader, writer, protocol, owner=self, exit_stack=cm)

    async def shutdown(self) -> None:
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=CLOSE_TIMEOUT)


async def _exit(cm: contextlib.AbstractAsyncContextManager[Any]) -> None:
    """Leave a client connection's context: wait for the draining period, close."""
    await cm.__aexit__(None, None, None)


@contextlib.asynccontextmanager
async def _client(
    host: str, port: int, config: QuicConfiguration
) -> AsyncIterator[BenchQuicProtocol]:
    async with connect(
        host, port, configuration=config, create_protocol=BenchQuicProtocol
    ) as protocol:
        assert isinstance(protocol, BenchQuicProtocol)
        yield protocol
