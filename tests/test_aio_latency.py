"""The asyncio layer's share of a request/response round trip, over real sockets on
both loops (conftest.py): when a write leaves, and how many datagrams an exchange
takes. Counters only, no clocks."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import rudp
from rudp.engine.connection import Connection

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


async def echo_server(connections: list[Connection] | None = None) -> rudp.Server:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if connections is not None:
            connections.append(writer.get_extra_info("rudp_connection"))
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


async def _segments_after_pass(conn: Connection, than: int) -> int:
    for _ in range(100):
        if conn.segments_sent > than:
            break
        await asyncio.sleep(0)
    return int(conn.segments_sent)


async def test_a_stream_that_answers_nothing_sends_in_bursts() -> None:
    """A connection's first write answers nothing (the handshake ended with an ACK),
    nor do the writes after it while the peer is silent (a one-way stream): they
    leave together with the next transmit, one segment for two writes, and still
    not at once when nothing is in flight any more."""
    received: list[bytes] = []
    async with await sink_server(received) as server, client(server) as (_reader, writer):
        conn = writer.get_extra_info("rudp_connection")
        before = conn.segments_sent
        writer.write(b"a")
        writer.write(b"b")
        assert conn.segments_sent == before  # wait for the transmit
        assert await _segments_after_pass(conn, before) == before + 1  # "ab", one segment
        while sum(map(len, received)) < 2:
            await asyncio.sleep(0.001)
        assert b"".join(received) == b"ab"
        for _ in range(1000):  # the sink's delayed ACK
            if conn.snd_una == conn.snd_max:
                break
            await asyncio.sleep(0.001)
        assert conn.snd_una == conn.snd_max
        writer.write(b"c")  # nothing in flight, but the peer has said nothing
        assert conn.segments_sent == before + 1
        assert await _segments_after_pass(conn, before + 1) == before + 2
        while sum(map(len, received)) < 3:
            await asyncio.sleep(0.001)
        assert b"".join(received) == b"abc"


async def test_requests_and_responses_leave_at_once() -> None:
    """Request/response: each write after the first answers the peer's last
    message, so it is sent at once (the response to it can be on its way before
    this task yields); the first request answers nothing and waits for the
    transmit."""
    async with await echo_server() as server, client(server) as (reader, writer):
        conn = writer.get_extra_info("rudp_connection")
        for i in range(5):
            before = conn.segments_sent
            writer.write(bytes([i]) * 64)
            assert conn.segments_sent == before + (1 if i else 0)
            assert await reader.readexactly(64) == bytes([i]) * 64


async def test_writes_in_a_protocol_callback_leave_with_the_dispatch() -> None:
    """A protocol callback's writes (the endpoint is dispatching events) leave with
    the rest of the dispatch's output, after the callbacks: one segment here."""
    server_conns: list[Connection] = []
    sent_during: list[int] = []

    class Echo(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            assert isinstance(transport, asyncio.Transport)
            self.transport = transport
            server_conns.append(transport.get_extra_info("rudp_connection"))

        def data_received(self, data: bytes) -> None:
            conn = server_conns[0]
            before = conn.segments_sent
            for b in data:
                self.transport.write(bytes([b]))  # one write per byte
            sent_during.append(conn.segments_sent - before)

    server = await rudp.create_server(Echo, HOST, 0)
    async with server:
        reader, writer = await rudp.open_connection(HOST, server.addresses[0][1])
        writer.write(b"xyz")
        assert await reader.readexactly(3) == b"xyz"
        (conn,) = server_conns
        assert sent_during == [0]  # nothing left inside the callback
        stats = conn.stats()
        assert stats["segments_sent"] == 2  # SYN-ACK, then "xyz" in one segment
        writer.close()
        await writer.wait_closed()


async def test_request_response_is_one_datagram_each_way() -> None:
    """Request/response: each request and each response is exactly one segment (the
    ACKs ride on them: no pure ACKs, no window update on the first request).

    Real sockets on a shared machine: a process stalled past the probe timeout
    (2·SRTT + 200 ms with one segment in flight, RFC 8985 §7.2) makes the client
    send a tail loss probe, a retransmission the peer answers with a duplicate ACK.
    Those timer-driven segments are counted apart and must be the only extra ones."""
    server_conns: list[Connection] = []
    async with await echo_server(server_conns) as server, client(server) as (reader, writer):
        conn = writer.get_extra_info("rudp_connection")
        before = conn.stats()
        for i in range(50):
            writer.write(bytes([i]) * 64)
            assert await reader.readexactly(64) == bytes([i]) * 64
        after = conn.stats()
        (peer,) = server_conns
        peer_stats = peer.stats()

    def delta(key: str) -> int:
        return int(after[key]) - int(before[key])

    # Retransmissions, if any, came from timers (a probe or an RTO), never from
    # the exchange itself; each may draw one duplicate ACK from the other side.
    retransmitted = delta("retransmissions")
    peer_retransmitted = int(peer_stats["retransmissions"])
    assert retransmitted <= delta("tlp_probes") + delta("rto_expiries")
    assert peer_retransmitted <= int(peer_stats["tlp_probes"]) + int(peer_stats["rto_expiries"])
    # One segment per request and per response: the writes of an iteration leave
    # together and the ACKs ride on them.
    assert delta("segments_sent") - retransmitted == 50
    assert delta("pure_acks_sent") <= peer_retransmitted
    assert delta("segments_received") - 50 <= peer_retransmitted + retransmitted
    assert int(peer_stats["pure_acks_sent"]) <= retransmitted
    if retransmitted == peer_retransmitted == 0:  # the usual case: exact
        assert delta("segments_received") == 50
        assert after["pure_acks_sent"] == 1  # the handshake's third segment only
        assert peer_stats["pure_acks_sent"] == 0
