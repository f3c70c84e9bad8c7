"""The asyncio layer over real UDP sockets, on both loops (see conftest.py)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import socket

import pytest

import rudp
from rudp import Config

HOST = "127.0.0.1"


async def echo_server(**kw: object) -> rudp.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            return
        writer.close()
        await writer.wait_closed()

    return await rudp.start_server(handle, HOST, 0, **kw)  # type: ignore[arg-type]


def port_of(server: rudp.Server) -> int:
    return int(server.addresses[0][1])


async def test_echo_and_extra_info() -> None:
    async with await echo_server() as server:
        reader, writer = await rudp.open_connection(HOST, port_of(server))
        writer.write(b"hello rudp\n")
        assert await reader.readline() == b"hello rudp\n"
        assert writer.get_extra_info("peername") == (HOST, port_of(server))
        assert writer.get_extra_info("sockname")[0] == HOST or True
        stats = writer.get_extra_info(rudp.STATS_KEY)
        assert stats["state"] == "ESTABLISHED"
        assert stats["segments_sent"] >= 2 and stats["bytes_received"] == 11
        assert stats["srtt"] is not None and stats["rto"] >= 0.2
        assert writer.can_write_eof()
        writer.close()
        await writer.wait_closed()
        assert writer.is_closing()


async def test_stream_reader_api() -> None:
    async with await echo_server() as server:
        reader, writer = await rudp.open_connection(HOST, port_of(server))
        writer.write(b"line1\nabcXYZtail")
        writer.write_eof()
        assert await reader.readline() == b"line1\n"
        assert await reader.readuntil(b"XYZ") == b"abcXYZ"
        assert await reader.readexactly(2) == b"ta"
        rest = [chunk async for chunk in reader]
        assert b"".join(rest) == b"il"
        assert reader.at_eof()
        writer.close()
        await writer.wait_closed()


async def test_20mb_each_way_at_once() -> None:
    size = 20 * 1024 * 1024
    up = os.urandom(size)
    down = os.urandom(size)
    got_up = hashlib.sha256()
    done = asyncio.get_running_loop().create_future()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def send() -> None:
            for i in range(0, size, 1 << 20):
                writer.write(down[i : i + (1 << 20)])
                await writer.drain()
            writer.write_eof()

        async def recv() -> None:
            while data := await reader.read(1 << 20):
                got_up.update(data)

        await asyncio.gather(send(), recv())
        writer.close()
        await writer.wait_closed()
        done.set_result(None)

    server = await rudp.start_server(handle, HOST, 0)
    reader, writer = await rudp.open_connection(HOST, port_of(server))
    got_down = hashlib.sha256()

    async def send() -> None:
        for i in range(0, size, 1 << 20):
            writer.write(up[i : i + (1 << 20)])
            await writer.drain()
        writer.write_eof()

    async def recv() -> None:
        while data := await reader.read(1 << 20):
            got_down.update(data)

    await asyncio.wait_for(asyncio.gather(send(), recv()), 120)
    await asyncio.wait_for(done, 30)
    assert got_up.digest() == hashlib.sha256(up).digest()
    assert got_down.digest() == hashlib.sha256(down).digest()
    writer.close()
    await writer.wait_closed()
    server.close()
    await server.wait_closed()


async def test_200_concurrent_connections() -> None:
    async with await echo_server(backlog=256) as server:
        port = port_of(server)

        async def one(i: int) -> bytes:
            reader, writer = await rudp.open_connection(HOST, port)
            msg = f"conn {i}\n".encode()
            writer.write(msg)
            line = await reader.readline()
            writer.close()
            await writer.wait_closed()
            return line

        lines = await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(200))), 120)
        assert lines == [f"conn {i}\n".encode() for i in range(200)]


async def test_half_close_both_directions() -> None:
    done = asyncio.get_running_loop().create_future()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.read()  # until the client's FIN
        assert reader.at_eof()
        writer.write(b"after your FIN: " + data)  # CLOSE-WAIT can still send
        await writer.drain()
        writer.write_eof()
        writer.close()
        await writer.wait_closed()
        done.set_result(None)

    async with await rudp.start_server(handle, HOST, 0) as server:
        reader, writer = await rudp.open_connection(HOST, port_of(server))
        writer.write(b"ping")
        writer.write_eof()  # FIN-WAIT: we keep receiving
        with pytest.raises(BrokenPipeError):
            writer.write(b"more")
        assert await reader.read() == b"after your FIN: ping"
        await done
        writer.close()
        await writer.wait_closed()


async def test_server_half_closes_first() -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"greeting")
        writer.write_eof()  # server half-closes first, then keeps reading
        data = await reader.read()
        assert data == b"reply"
        writer.close()
        await writer.wait_closed()

    async with await rudp.start_server(handle, HOST, 0) as server:
        reader, writer = await rudp.open_connection(HOST, port_of(server))
        assert await reader.read() == b"greeting"
        writer.write(b"reply")
        writer.write_eof()
        writer.close()
        await writer.wait_closed()


async def test_refused_when_nothing_listens() -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((HOST, 0))
    port = s.getsockname()[1]
    s.close()  # nothing on that UDP port: ICMP port unreachable
    t0 = asyncio.get_running_loop().time()
    with pytest.raises(ConnectionRefusedError, match="ICMP"):
        await asyncio.wait_for(rudp.open_connection(HOST, port), 10)
    # From the error queue of the shared socket, before any SYN retransmission
    # (the first would be at rto_initial = 1 s): not a timeout.
    assert asyncio.get_running_loop().time() - t0 < 0.9


async def test_refused_by_rst_after_server_closed() -> None:
    """A socket that no longer listens answers SYN with RST -> ConnectionRefusedError."""
    async with await echo_server() as server:
        port = port_of(server)
        reader, writer = await rudp.open_connection(HOST, port)
        writer.write(b"accepted?\n")  # make sure the server has accepted it
        assert await reader.readline() == b"accepted?\n"
        server.close()  # stops listening; the socket stays open for this connection
        with pytest.raises(ConnectionRefusedError):
            await asyncio.wait_for(rudp.open_connection(HOST, port), 10)
        writer.write(b"still works\n")
        assert await reader.readline() == b"still works\n"
        writer.close()
        await writer.wait_closed()


async def test_open_timeout_when_peer_silent() -> None:
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind((HOST, 0))
    try:
        cfg = Config(syn_retries=2, rto_initial=0.2, rto_min=0.2)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(
                rudp.open_connection(HOST, silent.getsockname()[1], config=cfg), 30
            )
        # The SYN really was retransmitted: 1 + syn_retries SYNs reached the socket.
        silent.setblocking(False)
        syns = 0
        while True:
            try:
                silent.recv(2048)
                syns += 1
            except BlockingIOError:
                break
        assert syns == 3
    finally:
        silent.close()


async def test_reset_by_peer() -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(5)
        writer.transport.abort()  # RST

    async with await rudp.start_server(handle, HOST, 0) as server:
        reader, writer = await rudp.open_connection(HOST, port_of(server))
        writer.write(b"hello")
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(reader.read(), 10)
        with pytest.raises(ConnectionResetError):
            writer.write(b"x")
        writer.close()
        with pytest.raises(ConnectionResetError):  # as asyncio: wait_closed re-raises
            await writer.wait_closed()


async def test_write_after_close_raises() -> None:
    async with await echo_server() as server:
        _reader, writer = await rudp.open_connection(HOST, port_of(server))
        writer.close()
        with pytest.raises(BrokenPipeError):
            writer.write(b"late")
        await writer.wait_closed()


async def test_server_close_with_clients_attached() -> None:
    server = await echo_server(config=rudp.Config(msl=0.5))
    port = port_of(server)
    clients = [await rudp.open_connection(HOST, port) for _ in range(3)]
    for r, w in clients:  # accepted by the server (not just in its accept queue)
        w.write(b"hi\n")
        assert await r.readline() == b"hi\n"
    server.close()
    assert not server.is_serving()
    for r, w in clients:  # established connections keep working, as in asyncio
        w.write(b"x\n")
        assert await r.readline() == b"x\n"
    server.close_clients()  # FIN to everyone
    for r, _w in clients:
        assert await asyncio.wait_for(r.read(), 10) == b""
    for _r, w in clients:
        w.close()
        await w.wait_closed()
    # Done once every connection's FIN exchange has finished.
    await asyncio.wait_for(server.wait_closed(), 10)
    # The server closed first, so it holds TIME-WAIT: its socket stays open 2 MSL
    # after wait_closed() returned (as kernel TCP), then closes.
    (ep,) = server.endpoints
    assert ep.socket.fileno() != -1
    assert ep.stats()["state_TIME-WAIT"] == 3
    await asyncio.wait_for(ep.wait_socket_closed(), 5)
    assert ep.socket.fileno() == -1


async def test_drain_blocks_until_peer_reads() -> None:
    """drain() really blocks while the send buffer is above its high-water mark, and
    a reader that stops reading closes the window instead of losing data."""
    release = asyncio.Event()
    total = 4 * 1024 * 1024
    got = bytearray()
    server_conn: list[object] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        server_conn.append(writer.get_extra_info("rudp_connection"))
        await release.wait()
        while data := await reader.read(1 << 20):
            got.extend(data)
        writer.close()
        await writer.wait_closed()

    cfg = Config(rcv_buf=128 * 1024, snd_buf=128 * 1024)
    async with await rudp.start_server(handle, HOST, 0, config=cfg, limit=16 * 1024) as server:
        try:
            reader, writer = await rudp.open_connection(HOST, port_of(server), config=cfg)
            writer.transport.set_write_buffer_limits(high=64 * 1024)
            assert writer.transport.get_write_buffer_limits() == (64 * 1024 * 2 // 3, 64 * 1024)
            payload = os.urandom(total)
            writer.write(payload)
            assert writer.transport.get_write_buffer_size() == total  # write() never blocks
            drain = asyncio.ensure_future(writer.drain())
            # Wait (bounded) until the peer's window is shut.
            conn = writer.get_extra_info("rudp_connection")
            for _ in range(500):
                if conn.stats()["snd_wnd"] == 0:
                    break
                await asyncio.sleep(0.01)
            assert conn.stats()["snd_wnd"] == 0
            assert not drain.done()  # still above the high-water mark: drain blocks
            srv = server_conn[0]
            assert srv.stats()["recv_buffered"] <= 128 * 1024  # bounded memory
            release.set()
            await asyncio.wait_for(drain, 60)
            writer.write_eof()
            await asyncio.wait_for(reader.read(), 60)
            assert bytes(got) == payload  # nothing lost
        finally:
            release.set()  # a failed assertion must not leave the handler waiting
        writer.close()
        await writer.wait_closed()


class EchoProtocol(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data.upper())


class ClientProtocol(asyncio.BufferedProtocol):
    def __init__(self) -> None:
        self.buf = bytearray(7)
        self.got = bytearray()
        self.eof = asyncio.get_running_loop().create_future()
        self.lost = asyncio.get_running_loop().create_future()

    def get_buffer(self, sizehint: int) -> bytearray:
        return self.buf

    def buffer_updated(self, nbytes: int) -> None:
        self.got += self.buf[:nbytes]
        if self.got.endswith(b": ENDEND"):  # both writes, however they were segmented
            self.eof.set_result(None)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(exc)


async def test_protocol_and_buffered_protocol() -> None:
    server = await rudp.create_server(EchoProtocol, HOST, 0)
    transport, protocol = await rudp.create_connection(ClientProtocol, HOST, port_of(server))
    assert isinstance(protocol, ClientProtocol)
    transport.write(b"small buffer, many callbacks: end")
    transport.write(b"END".lower().upper())
    await asyncio.wait_for(protocol.eof, 10)
    assert bytes(protocol.got) == b"SMALL BUFFER, MANY CALLBACKS: ENDEND"
    transport.close()
    assert await asyncio.wait_for(protocol.lost, 10) is None
    server.close()
    await server.wait_closed()


async def test_ipv6() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        s.bind(("::1", 0))
        s.close()
    except OSError as exc:
        pytest.skip(f"IPv6 loopback unavailable: {exc}")
    async with await rudp.start_server(_echo_once, "::1", 0) as server:
        port = server.addresses[0][1]
        reader, writer = await rudp.open_connection("::1", port)
        writer.write(b"v6\n")
        assert await reader.readline() == b"v6\n"
        assert writer.get_extra_info("peername")[0] == "::1"
        writer.close()
        await writer.wait_closed()


async def _echo_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(await reader.readline())
    await writer.drain()
    writer.close()
    await writer.wait_closed()


async def test_serve_forever_and_cancel() -> None:
    server = await rudp.start_server(_echo_once, HOST, 0)
    task = asyncio.ensure_future(server.serve_forever())
    reader, writer = await rudp.open_connection(HOST, port_of(server))
    writer.write(b"hi\n")
    assert await reader.readline() == b"hi\n"
    writer.close()
    await writer.wait_closed()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not server.is_serving()


async def test_logging_state_transitions(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="rudp")
    async with await echo_server() as server:
        _reader, writer = await rudp.open_connection(HOST, port_of(server))
        writer.close()
        await writer.wait_closed()
    states = [r for r in caplog.records if getattr(r, "rudp_event", None) == "state"]
    assert any(
        r.rudp_fields["old"] == "SYN-SENT" and r.rudp_fields["new"] == "ESTABLISHED" for r in states
    )
    assert all(r.name == "rudp" and "conn" in r.rudp_fields for r in states)


async def test_cancelled_open_leaves_nothing_behind() -> None:
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind((HOST, 0))
    try:
        before = asyncio.all_tasks()
        with pytest.raises(asyncio.TimeoutError):  # the builtin TimeoutError from 3.11 on
            await asyncio.wait_for(rudp.open_connection(HOST, silent.getsockname()[1]), 0.3)
        with pytest.raises(rudp.ConnectTimeoutError, match=r"port \d+: no answer within 0.3 s"):
            await rudp.open_connection(HOST, silent.getsockname()[1], timeout=0.3)
        await asyncio.sleep(0)
        # Only the loop's shared client endpoint remains (its keeper task closes it
        # with the loop); no connection is left in it.
        new = asyncio.all_tasks() - before
        assert all(t.get_name().startswith("rudp shared endpoint") for t in new)
        (ep,) = rudp.aio.shared_endpoints()
        assert not ep.engine.connections
    finally:
        silent.close()


async def test_keepalive_keeps_idle_connection_and_counts_probes() -> None:
    cfg = Config(keepalive=True, keepalive_idle=0.2, keepalive_interval=0.1, keepalive_count=3)
    async with await echo_server(config=cfg) as server:
        reader, writer = await rudp.open_connection(HOST, port_of(server), config=cfg)
        stats = writer.get_extra_info(rudp.STATS_KEY)
        for _ in range(200):  # bounded wait for probes; the peer answers them
            if writer.get_extra_info(rudp.STATS_KEY)["keepalive_probes"] >= 3:
                break
            await asyncio.sleep(0.05)
        stats = writer.get_extra_info(rudp.STATS_KEY)
        assert stats["keepalive_probes"] >= 3  # more than keepalive_count: answered
        assert stats["state"] == "ESTABLISHED"
        writer.write(b"alive\n")
        assert await reader.readline() == b"alive\n"
        writer.close()
        await writer.wait_closed()
