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


async def test_writes_of_one_iteration_leave_together() -> None:
    """The writes of one loop iteration leave together, in one segment, once the
    loop runs: write() only queues (measured: sending at once from write() when
    nothing was in flight saved no measurable latency per round trip, and with 16
    concurrent connections cost ~15% more CPU per connection, as datagrams to one
    peer no longer left in one GSO call; benchmarks/results/rpc-setup-notes.md)."""
    received: list[bytes] = []
    async with await sink_server(received) as server, client(server) as (_reader, writer):
        conn = writer.get_extra_info("rudp_connection")
        before = conn.segments_sent
        writer.write(b"a")
        writer.write(b"b")
        writer.write(b"c")
        assert conn.segments_sent == before  # queued
        for _ in range(100):
            if conn.segments_sent > before:
                break
            await asyncio.sleep(0)
        assert conn.segments_sent == before + 1  # "abc", one segment
        while sum(map(len, received)) < 3:
            await asyncio.sleep(0.001)
        assert received == [b"abc"]


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
