"""Endpoints over real sockets (issue "Real networks"): one UDP socket that listens and
connects in both directions, shared client endpoints, TIME-WAIT at the asyncio layer,
replies from the address a datagram arrived at, and connection churn without file
descriptors."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
from collections.abc import Callable

import pytest

import rudp

HOST = "127.0.0.1"


async def _until(condition: Callable[[], bool], limit: float = 10.0) -> None:
    """Wait for ``condition`` (a state the engine reaches by itself), polling."""
    loop = asyncio.get_running_loop()
    end = loop.time() + limit
    while not condition():
        assert loop.time() < end, "condition not reached"
        await asyncio.sleep(0.01)


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


async def test_one_endpoint_listens_and_connects_both_ways() -> None:
    """Two endpoints, each a server and a client of the other, on one socket each:
    what two peers behind NATs need once their holes are punched."""
    async with (
        await rudp.create_endpoint((HOST, 0)) as a,
        await rudp.create_endpoint((HOST, 0)) as b,
    ):
        sa = await a.start_server(_echo)
        sb = await b.start_server(_echo)
        (ra, wa), (rb, wb) = await asyncio.gather(
            a.open_connection(HOST, b.local_address[1]),
            b.open_connection(HOST, a.local_address[1]),
        )
        for r, w, msg in ((ra, wa, b"from a\n"), (rb, wb, b"from b\n")):
            w.write(msg)
            assert await r.readline() == msg
            assert w.get_extra_info("sockname") in (a.local_address, b.local_address)
        assert len(a.connections) == 2 and len(b.connections) == 2  # one each way
        for w in (wa, wb):
            w.close()
            await w.wait_closed()
        for s in (sa, sb):
            s.close()
            await s.wait_closed()
    assert a.is_closing() and b.is_closing()


async def test_server_tcp_port_is_mirrored_and_services_can_share_a_port() -> None:
    """By default a listener takes SYNs for any TCP port and mirrors them (port
    mappings are transparent); listeners bound to a TCP port let several services
    share one UDP port (as FreeBSD's TCP-over-UDP does)."""
    async with await rudp.create_endpoint((HOST, 0)) as ep:
        port = ep.local_address[1]

        async def named(name: bytes) -> rudp.Server:
            async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
                w.write(name)
                w.close()

            return await ep.start_server(handle, tcp_port=None if name == b"any" else int(name))

        servers = [await named(b"22"), await named(b"80"), await named(b"any")]
        for tcp_port, expect in ((22, b"22"), (80, b"80"), (4242, b"any"), (port, b"any")):
            r, w = await rudp.open_connection(HOST, port, tcp_port=tcp_port)
            assert await r.read() == expect
            w.close()
            await w.wait_closed()
        for s in servers:
            s.close()


async def test_time_wait_at_the_asyncio_layer_holds_the_identity_and_no_fd() -> None:
    """The client closes first and holds TIME-WAIT on the shared endpoint (no file
    descriptor of its own): the identity is not reused while it lasts."""
    cfg = rudp.Config(msl=0.5)
    server = await rudp.start_server(_echo, HOST, 0, config=cfg)
    port = server.addresses[0][1]
    r, w = await rudp.open_connection(HOST, port, config=cfg)
    w.write(b"x")
    assert await r.read(1) == b"x"
    conn = w.get_extra_info("rudp_connection")
    w.close()
    await w.wait_closed()  # (our FIN is acknowledged: FIN-WAIT-2 or already TIME-WAIT)
    (ep,) = [e for e in rudp.aio.shared_endpoints() if e.config is cfg]
    states = rudp.engine.State
    await _until(lambda: conn.state is states.TIME_WAIT)  # the server's FIN arrived
    assert ep.stats()["state_TIME-WAIT"] == 1
    assert ep.socket.fileno() != -1  # held by the shared endpoint, on its socket
    # 2 MSL = 1 s later the record goes and the connection is CLOSED.
    await _until(lambda: conn.state is states.CLOSED)
    assert ep.stats().get("state_TIME-WAIT") is None
    server.close()
    await server.wait_closed()


@pytest.mark.uvloop_only
async def test_20000_sequential_short_connections_hold_one_fd() -> None:
    """Connection churn through the shared client endpoint: 20,000 connections one
    after another, the client closing first (so it keeps TIME-WAIT for each), hold
    a constant number of file descriptors; TIME-WAIT identities are reused once the
    ephemeral ports run out (timestamps make it safe: RFC 6191, Linux tcp_tw_reuse)."""

    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await r.read()
        w.close()

    server = await rudp.start_server(handle, HOST, 0)
    port = server.addresses[0][1]
    fds = []
    for i in range(20_000):
        _r, w = await rudp.open_connection(HOST, port)
        w.close()
        await w.wait_closed()
        if i % 2000 == 1999:
            fds.append(len(os.listdir("/proc/self/fd")))
    (ep,) = rudp.aio.shared_endpoints()
    stats = ep.engine.stats()
    assert max(fds) == min(fds) < 100  # constant: not one per connection
    assert stats["state_TIME-WAIT"] > 10_000  # the client held TIME-WAIT for them
    assert ep.engine.counters["time_wait_reused"] > 0
    server.close()


async def test_reply_from_the_address_the_datagram_arrived_at() -> None:
    """A server bound to 0.0.0.0 answers from the local address each client reached
    (IP_PKTINFO), not the kernel's first choice: a client talking to 127.0.0.2 gets
    its SYN-ACK from 127.0.0.2, or the connection would not exist."""
    server = await rudp.start_server(_echo, "0.0.0.0", 0)
    port = server.addresses[0][1]
    (ep,) = server.endpoints
    if not ep.stats()["features"]["pktinfo"]:
        pytest.skip("this platform has no IP_PKTINFO")
    for target in ("127.0.0.2", "127.0.0.1"):
        r, w = await asyncio.wait_for(rudp.open_connection(target, port), 5)
        w.write(b"hi\n")
        assert await r.readline() == b"hi\n"
        assert w.get_extra_info("peername") == (target, port)
        w.close()
        await w.wait_closed()
    server.close()
    await server.wait_closed()


async def test_transfer_over_an_ipv6_dual_stack_endpoint() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    async with await rudp.create_endpoint(("::", 0)) as ep:
        server = await ep.start_server(_echo)
        payload = os.urandom(300_000)
        for host in ("::1", "127.0.0.1"):  # IPv6 and IPv4-mapped on one socket
            r, w = await rudp.open_connection(host, ep.local_address[1])
            w.write(payload)
            w.write_eof()
            got = await r.read(-1)
            assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()
            w.close()
            await w.wait_closed()
        server.close()
