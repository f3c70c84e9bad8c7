"""The asyncio layer's share of a request/response round trip, over real sockets on
both loops (conftest.py): when a write leaves, and how many datagrams an exchange
takes. Counters only (segments and the socket layer's ``datagrams_sent``), no clocks."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import rudp

HOST = "127.0.0.1"
Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def sink_server(received: list[bytes]) -> rudp.Server:
    """A server that reads and never answers (its ACKs are delayed ones)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                received.append(data)
        writer.close()

    return await rudp.start_server(handle, HOST, 0)


async def echo_server() -> rudp.Server:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                writer.write(await reader.readexactly(64))
        writer.close()

    return await rudp.start_server(echo, HOST, 0)


@contextlib.asynccontextmanager
async def client(server: rudp.Server) -> AsyncIterator[Stream]:
    """A connection, closed at the end, aborted if the test fails (else the
    server's ``async with`` would wait for it forever)."""
    reader, writer = await rudp.open_connection(HOST, server.addresses[0][1])
    try:
        yield reader, writer
    except BaseException:
        writer.transport.abort()
        raise
    writer.close()
    await writer.wait_closed()


def datagrams_sent(writer: asyncio.StreamWriter) -> int:
    stats = writer.get_extra_info("rudp_endpoint").stats()
    return int(stats["socket"]["datagrams_sent"])


async def test_write_on_an_idle_connection_leaves_at_once() -> None:
    """Nothing in flight: write() hands the segment to the socket before it returns,
    as asyncio's socket transports do with an empty buffer, not one loop iteration
    later (which cost every request and every response an iteration)."""
    received: list[bytes] = []
    async with await sink_server(received) as server, client(server) as (_reader, writer):
        conn = writer.get_extra_info("rudp_connection")
        before = datagrams_sent(writer)
        writer.write(b"request")
        assert datagrams_sent(writer) == before + 1  # no await in between
        assert conn.segments_sent == 3  # SYN, the handshake's ACK, the request
        while not received:
            await asyncio.sleep(0.001)
        assert received == [b"request"]


async def test_writes_while_data_is_in_flight_gather() -> None:
    """With data in flight, the writes of one loop iteration leave together, in one
    segment, once the loop runs (the first one left at once)."""
    received: list[bytes] = []
    async with await sink_server(received) as server, client(server) as (_reader, writer):
        conn = writer.get_extra_info("rudp_connection")
        before = conn.segments_sent
        writer.write(b"a")
        writer.write(b"b")
        writer.write(b"c")
        assert conn.segments_sent == before + 1  # "a" left; "b" and "c" wait
        assert conn.in_flight == 1
        for _ in range(100):
            if conn.segments_sent > before + 1:
                break
            await asyncio.sleep(0)
        assert conn.segments_sent == before + 2  # "bc", one segment
        while sum(map(len, received)) < 3:
            await asyncio.sleep(0.001)
        assert b"".join(received) == b"abc"


async def test_request_response_is_one_datagram_each_way() -> None:
    """Request/response: each request and each response is exactly one segment (the
    ACKs ride on them: no pure ACKs, no window update on the first request)."""
    async with await echo_server() as server, client(server) as (reader, writer):
        conn = writer.get_extra_info("rudp_connection")
        sent0, received0 = conn.segments_sent, conn.segments_received
        for i in range(50):
            writer.write(bytes([i]) * 64)
            assert await reader.readexactly(64) == bytes([i]) * 64
        assert conn.segments_sent - sent0 == 50
        assert conn.segments_received - received0 == 50
        assert conn.pure_acks_sent == 1  # the handshake's third segment only
