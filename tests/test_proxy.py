"""The UDP impairment proxy (rudp.sim.proxy) over real sockets, on both loops.

First the proxy alone, with plain UDP peers; then rudp connections through it
(the "real" rows of the reliability matrix: transfer through loss with every
congestion controller, P1 port mapping, P2 NAT rebinding, S1 soak). Every test
asserts that its impairment actually happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import os
import random
import re
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, cast

import pytest

import rudp
from rudp.engine.congestion import ALGORITHMS
from rudp.sim import LinkConfig
from rudp.sim.proxy import UdpProxy

HOST = "127.0.0.1"
#: The proxy listens on another loopback address with the server's own port: rudp
#: puts the UDP port it connects to in the TCP header (see the P1 tests below).
PROXY_HOST = "127.0.0.2"
SockAddr = tuple[Any, ...]


# -- plain UDP peers --------------------------------------------------------------


class Peer(asyncio.DatagramProtocol):
    """A UDP socket that records what arrives (and echoes it if asked)."""

    def __init__(self, echo: bool = False) -> None:
        self.echo = echo
        self.got: list[tuple[bytes, SockAddr, float]] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: SockAddr) -> None:
        self.got.append((data, addr, asyncio.get_running_loop().time()))
        if self.echo:
            self.send(data, addr)

    def send(self, data: bytes, addr: SockAddr) -> None:
        assert self.transport is not None
        self.transport.sendto(data, addr)

    @property
    def address(self) -> SockAddr:
        assert self.transport is not None
        return tuple(self.transport.get_extra_info("sockname"))

    def payloads(self) -> list[bytes]:
        return [d for d, _, _ in self.got]

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


@contextlib.asynccontextmanager
async def peers(n: int, host: str = HOST, echo: bool = False) -> AsyncIterator[list[Peer]]:
    loop = asyncio.get_running_loop()
    out: list[Peer] = []
    try:
        for _ in range(n):
            sock = socket.socket(
                socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM
            )
            # Room for a whole burst: the proxy may forward hundreds at once.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            sock.bind((host, 0))
            _, p = await loop.create_datagram_endpoint(lambda: Peer(echo), sock=sock)
            out.append(p)
        yield out
    finally:
        for p in out:
            p.close()


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait (polling) until ``predicate()``; TimeoutError otherwise. Never asserts on time."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        if loop.time() > end:
            raise TimeoutError("condition not reached")
        await asyncio.sleep(0.002)


def numbered(i: int, size: int = 32) -> bytes:
    """Datagram ``i``: its index, then bytes derived from it (so corruption shows)."""
    head = i.to_bytes(4, "big")
    return head + hashlib.sha256(head).digest()[: size - 4].ljust(size - 4, b"\0")


def index(data: bytes) -> int:
    return int.from_bytes(data[:4], "big")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


def second_loopback_address() -> str | None:
    """Why PROXY_HOST cannot be bound, or None."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((PROXY_HOST, 0))
    except OSError as exc:
        return f"cannot bind {PROXY_HOST} (loopback is not 127.0.0.0/8 here): {exc}"
    return None


# -- the proxy alone ----------------------------------------------------------------


async def test_forwards_both_ways_as_a_port_mapping_nat() -> None:
    async with peers(1, echo=True) as (server,), peers(2) as (a, b):
        target = server.address
        async with UdpProxy(("127.0.0.1", 0), target) as proxy:
            listen = proxy.address
            assert listen[1] != target[1]  # port mapping: A != B
            for i in range(10):
                a.send(numbered(i), listen)
            b.send(numbered(99), listen)
            await until(lambda: len(a.got) == 10 and len(b.got) == 1)
            assert a.payloads() == [numbered(i) for i in range(10)]  # order kept
            assert {addr for _, addr, _ in a.got + b.got} == {listen}  # answers from A
            # The server saw one source port per client, never the client's own.
            sources = proxy.clients()
            assert set(sources) == {a.address, b.address}
            seen = {addr for _, addr, _ in server.got}
            assert seen == set(sources.values())
            assert sources[a.address] != sources[b.address]
            assert a.address not in seen and b.address not in seen
            assert proxy.stats.clients == 2
            assert proxy.up_stats.delivered == proxy.down_stats.delivered == 11
            assert proxy.up_stats.bytes_delivered == 11 * 32
            assert proxy.target == target


async def test_delay_and_jitter_keep_order() -> None:
    up = LinkConfig(delay=0.03, jitter=0.02)
    down = LinkConfig(delay=0.01)
    async with (
        peers(1, echo=True) as (server,),
        peers(1) as (client,),
        UdpProxy((HOST, 0), server.address, up=up, down=down, seed=3) as proxy,
    ):
        loop = asyncio.get_running_loop()
        sent_at: dict[int, float] = {}
        for i in range(50):
            sent_at[i] = loop.time()
            client.send(numbered(i), proxy.address)
            if i % 10 == 9:
                await asyncio.sleep(0.003)
        await until(lambda: len(client.got) == 50)
        # Jitter never reorders (LinkConfig stage 6).
        assert [index(d) for d in client.payloads()] == list(range(50))
        # Each echo took at least both delays (less the batching window per hop).
        floor = up.delay + down.delay - 2 * proxy.batch_window
        rtts = [t - sent_at[index(d)] for d, _, t in client.got]
        assert min(rtts) >= floor
        # ... and jitter added to it (50 draws from [0, 20 ms): the largest is > 5 ms).
        assert max(rtts) > up.delay + down.delay + 0.005


async def test_reordering_happens() -> None:
    up = LinkConfig(delay=0.001, reorder=0.3, reorder_delay=0.02)
    async with (
        peers(1) as (server,),
        peers(1) as (client,),
        UdpProxy((HOST, 0), server.address, up=up, seed=5) as proxy,
    ):
        for i in range(200):
            client.send(numbered(i), proxy.address)
            if i % 20 == 19:
                await asyncio.sleep(0.002)
        await until(lambda: len(server.got) == 200)
        got = [index(d) for d in server.payloads()]
        assert sorted(got) == list(range(200))  # nothing lost
        assert got != sorted(got)
        assert proxy.up_stats.reordered > 0
        late = sum(1 for x, y in itertools.pairwise(got) if y < x)
        assert late > 0


async def lost_with_seed(seed: int) -> set[int]:
    n = 400
    async with peers(1) as (server,), peers(1) as (client,):
        up = LinkConfig(loss=0.1)
        async with UdpProxy((HOST, 0), server.address, up=up, seed=seed) as proxy:
            for i in range(n):
                client.send(numbered(i), proxy.address)
            await until(lambda: proxy.up_stats.sent == n)
            st = proxy.up_stats
            await until(lambda: len(server.got) == n - st.lost)
            assert st.lost > 0 and st.delivered == n - st.lost and st.in_flight == 0
            return set(range(n)) - {index(d) for d in server.payloads()}


async def test_loss_is_counted_and_seeded() -> None:
    first = await lost_with_seed(7)
    assert 10 < len(first) < 80  # about 10 % of 400
    assert await lost_with_seed(7) == first  # same seed, same datagrams lost
    assert await lost_with_seed(8) != first


async def test_duplication_and_corruption() -> None:
    n = 300
    cfg = LinkConfig(duplicate=0.2, corrupt=0.2, corrupt_bytes=2)
    async with (
        peers(1) as (server,),
        peers(1) as (client,),
        UdpProxy((HOST, 0), server.address, up=cfg, seed=11) as proxy,
    ):
        for i in range(n):
            client.send(numbered(i), proxy.address)
        st = proxy.up_stats
        await until(lambda: st.sent == n and len(server.got) == n + st.duplicated)
        assert st.duplicated > 0 and st.corrupted > 0
        sent = {numbered(i) for i in range(n)}
        damaged = {d for d in server.payloads() if d not in sent}
        assert len(damaged) == st.corrupted


async def test_rate_limit_queue_mtu_and_blackhole() -> None:
    async with peers(1) as (server,), peers(1) as (client,):
        rate = LinkConfig(rate=500_000, queue_limit=20_000)
        async with UdpProxy((HOST, 0), server.address, up=rate) as proxy:
            loop = asyncio.get_running_loop()
            start = loop.time()
            for i in range(100):  # one burst of 100 kB into a 20 kB queue
                client.send(numbered(i, 1000), proxy.address)
            st = proxy.up_stats
            await until(
                lambda: st.sent == 100 and st.in_flight == 0 and len(server.got) == st.delivered
            )
            assert st.queue_drops > 0 and st.delivered + st.queue_drops == 100
            # Serialization at the rate: the last one left no earlier than that.
            elapsed = server.got[-1][2] - start
            assert elapsed >= st.delivered * 1000 / 500_000 - proxy.batch_window
            # MTU and blackhole, switched at run time.
            proxy.up_config = LinkConfig(mtu=100)
            client.send(numbered(1000, 200), proxy.address)
            client.send(numbered(1001, 50), proxy.address)
            await until(lambda: st.mtu_drops == 1 and index(server.got[-1][0]) == 1001)
            proxy.up_config = LinkConfig(blackhole=[(0.0, 3600.0)])
            for i in range(5):
                client.send(numbered(2000 + i), proxy.address)
            await until(lambda: st.blackholed == 5)
            proxy.up_config = LinkConfig()
            client.send(numbered(3000), proxy.address)
            await until(lambda: index(server.got[-1][0]) == 3000)
            assert not any(2000 <= index(d) < 2005 for d in server.payloads())


async def test_rebind_while_idle() -> None:
    async with (
        peers(1) as (server,),
        peers(1) as (client,),
        UdpProxy((HOST, 0), server.address) as proxy,
    ):
        client.send(b"before", proxy.address)
        await until(lambda: len(server.got) == 1)
        old = server.got[0][1]
        assert proxy.rebind() == 1
        new = proxy.clients()[client.address]
        assert new != old and new[1] != old[1]
        client.send(b"after", proxy.address)
        await until(lambda: len(server.got) == 2)
        assert server.got[1][:2] == (b"after", new)  # the server sees the new port
        # The old mapping is gone: an answer to it is lost, one to the new port
        # arrives (loopback delivers or drops within sendto(), so order is kept).
        server.send(b"to old", old)
        server.send(b"to new", new)
        await until(lambda: len(client.got) == 1)
        assert client.payloads() == [b"to new"]
        assert proxy.stats.rebinds == 1 and proxy.stats.clients == 1
        with pytest.raises(KeyError):
            proxy.rebind(("127.0.0.1", 9))


async def test_rebind_while_busy() -> None:
    up = LinkConfig(delay=0.005)  # a few datagrams are always in flight
    async with (
        peers(1, echo=True) as (server,),
        peers(1) as (client,),
        UdpProxy((HOST, 0), server.address, up=up) as proxy,
    ):
        n = 0
        while len(server.got) < 50 or n < 100:
            client.send(numbered(n), proxy.address)
            n += 1
            await asyncio.sleep(0.001)
            if n == 100:
                assert proxy.up_stats.in_flight > 0  # busy
                assert proxy.rebind(client.address) == 1
        await until(lambda: len(server.got) == n)
        got = server.got
        assert [index(d) for d, _, _ in got] == list(range(n))  # none lost, in order
        ports = [addr[1] for _, addr, _ in got]
        switch = next(k for k, p in enumerate(ports) if p != ports[0])
        assert 50 <= switch <= 100  # the port changed mid-stream, once; the datagrams
        new = proxy.clients()[client.address]  # in flight left from the new one
        assert set(ports[switch:]) == {new[1]}
        # Echoes to the new port come back (those to the old one may be lost).
        await until(lambda: {index(d) for d in client.payloads()} >= set(range(switch, n)))
        assert {addr for _, addr, _ in client.got} == {proxy.address}


async def echo_with_lossy_return(server: Peer, client: Peer) -> None:
    """100 datagrams from an IPv6 client through a proxy on ::1 to ``server``."""
    loss = LinkConfig(loss=0.2)
    async with UdpProxy(("::1", 0), server.address[:2], down=loss, seed=2) as proxy:
        assert proxy.address[0] == "::1"
        start = len(client.got)
        for i in range(100):
            client.send(numbered(i), proxy.address)
        st = proxy.down_stats
        await until(lambda: st.sent == 100 and len(client.got) - start == 100 - st.lost)
        assert st.lost > 0
        assert {addr[:2] for _, addr, _ in client.got[start:]} == {proxy.address[:2]}


@pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback (::1) on this host")
async def test_ipv6_and_6_to_4() -> None:
    async with (
        peers(1, "::1", echo=True) as (s6,),
        peers(1, HOST, echo=True) as (s4,),
        peers(1, "::1") as (client,),
    ):
        await echo_with_lossy_return(s6, client)
        await echo_with_lossy_return(s4, client)  # an IPv6 front for an IPv4 server
        assert {addr[0] for _, addr, _ in s4.got} == {HOST}
        assert {addr[0] for _, addr, _ in s6.got} == {"::1"}


async def test_idle_clients_expire() -> None:
    async with (
        peers(1) as (server,),
        peers(1) as (client,),
        UdpProxy((HOST, 0), server.address, idle_timeout=0.1) as proxy,
    ):
        client.send(b"1", proxy.address)
        await until(lambda: len(server.got) == 1)
        fds = open_fds()
        await until(lambda: proxy.stats.expired == 1)
        assert proxy.clients() == {} and open_fds() == fds - 1  # its socket closed
        client.send(b"2", proxy.address)
        await until(lambda: len(server.got) == 2)
        assert proxy.stats.clients == 2 and server.got[1][1] != server.got[0][1]


async def test_start_and_close_leak_nothing() -> None:
    tasks = asyncio.all_tasks()
    async with peers(1, echo=True) as (server,), peers(3) as clients:
        fds = open_fds()
        proxy = UdpProxy((HOST, 0), server.address, up=LinkConfig(delay=5.0))
        with pytest.raises(RuntimeError, match="not started"):
            _ = proxy.address
        await proxy.start()
        with pytest.raises(RuntimeError, match="already"):
            await proxy.start()
        for c in clients:
            c.send(b"stuck in a 5 s delay", proxy.address)
        await until(lambda: proxy.up_stats.sent == 3)
        assert open_fds() == fds + 4  # listening socket + one per client
        proxy.rebind()
        assert proxy.stats.rebinds == 3 and open_fds() == fds + 4
        assert proxy.up_stats.in_flight == 3
        proxy.close()
        proxy.close()  # idempotent
        assert proxy.is_closing() and open_fds() == fds
        assert asyncio.all_tasks() == tasks
        with pytest.raises(RuntimeError):
            proxy.rebind()
        with pytest.raises(RuntimeError):
            _ = proxy.address
        assert server.got == []  # dropped with the proxy, never sent later
    with pytest.raises(ValueError, match="idle_timeout"):
        UdpProxy((HOST, 0), (HOST, 9), idle_timeout=0)
    with pytest.raises(ValueError, match="batch_window"):
        UdpProxy((HOST, 0), (HOST, 9), batch_window=-1)


def test_cli_forwards_and_reports_on_ctrl_c() -> None:
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind((HOST, 0))
    client.bind((HOST, 0))
    server.settimeout(10)
    client.settimeout(10)
    cmd = [sys.executable, "-m", "rudp.sim.proxy", "--listen", f"{HOST}:0"]
    cmd += ["--target", f"{HOST}:{server.getsockname()[1]}", "--delay", "0.001"]
    cmd += ["--down-loss", "1", "--seed", "4", "--loop", "asyncio"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        m = re.match(r"proxy: 127\.0\.0\.1:(\d+) -> 127\.0\.0\.1:\d+$", line.strip())
        assert m, line
        assert proc.stderr.readline().strip() == "proxy: up (client -> target): delay=0.001"
        assert "loss=1" in proc.stderr.readline()
        client.sendto(b"through", (HOST, int(m.group(1))))
        data, src = server.recvfrom(100)
        assert data == b"through" and src != client.getsockname()
        server.sendto(b"dropped", src)  # --down-loss 1
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
        server.close()
        client.close()
    assert proc.returncode == 130
    assert "proxy: up: sent=1 delivered=1 lost=0" in err
    assert "proxy: down: sent=1 delivered=0 lost=1" in err
    assert "clients=1" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--listen", "127.0.0.1", "--target", "127.0.0.1:1"], "expected HOST:PORT"),
        (["--listen", "x:1", "--target", "127.0.0.1:70000"], "0..65535"),
        (["--listen", "h:0", "--target", "h:1", "--loss", "2"], "LinkConfig.loss"),
        (["--listen", "h:0", "--target", "h:1", "--blackhole", "5"], "START:END"),
        (["--listen", "h:0", "--target", "h:1", "--queue-limit", "9"], "needs a rate"),
    ],
)
def test_cli_usage_errors(args: list[str], message: str) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "rudp.sim.proxy", *args], capture_output=True, text=True
    )
    assert res.returncode == 2 and message in res.stderr, res.stderr


# -- rudp through the proxy ----------------------------------------------------------


def on_uvloop() -> bool:
    return type(asyncio.get_running_loop()).__module__.startswith("uvloop")


@contextlib.asynccontextmanager
async def sink_server(
    config: rudp.Config,
) -> AsyncIterator[tuple[rudp.Server, asyncio.Future[tuple[int, bytes]]]]:
    """A rudp server that hashes everything a client sends; yields (server, done)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[tuple[int, bytes]] = loop.create_future()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        h = hashlib.sha256()
        n = 0
        try:
            while data := await reader.read(1 << 20):
                h.update(data)
                n += len(data)
        except (ConnectionError, TimeoutError) as exc:  # reset, user timeout
            if not done.done():
                done.set_exception(exc)
            return
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
        if not done.done():
            done.set_result((n, h.digest()))

    server = await rudp.start_server(handle, HOST, 0, config=config)
    try:
        yield server, done
    finally:
        server.close()
        server.abort_clients()
        await server.wait_closed()


@pytest.mark.slow
@pytest.mark.parametrize("cc", sorted(ALGORITHMS))
async def test_transfer_through_loss(cc: str) -> None:
    """Matrix "real": 50 MB (uvloop; 8 MB on the default loop, for the suite's time
    budget) client -> server through 1 % loss each way, 2 ms delay each way and
    1 % reordering, with each congestion controller; SHA-256 checked."""
    if (why := second_loopback_address()) is not None:
        pytest.skip(why)
    size = (50 if on_uvloop() else 8) * 1024 * 1024
    payload = random.Random(cc).randbytes(size)
    cfg = LinkConfig(delay=0.002, loss=0.01, reorder=0.01, reorder_delay=0.004)
    config = rudp.Config(congestion_control=cc)
    async with sink_server(config) as (server, done):
        port = server.addresses[0][1]
        async with UdpProxy((PROXY_HOST, port), (HOST, port), up=cfg, down=cfg, seed=1) as proxy:
            _reader, writer = await rudp.open_connection(PROXY_HOST, port, config=config)
            view = memoryview(payload)
            for i in range(0, size, 1 << 20):
                writer.write(view[i : i + (1 << 20)])
                await writer.drain()
            writer.write_eof()
            n, digest = await asyncio.wait_for(done, 240)
            assert n == size and digest == hashlib.sha256(payload).digest()
            stats = writer.get_extra_info("rudp_stats")
            assert stats["retransmissions"] > 0
            assert proxy.up_stats.lost > 0 and proxy.down_stats.lost > 0
            assert proxy.up_stats.reordered > 0
            writer.close()
            await writer.wait_closed()


async def echo_1mb(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    payload = random.Random(1).randbytes(1 << 20)

    async def send() -> None:
        writer.write(payload)
        await writer.drain()
        writer.write_eof()

    sender = asyncio.ensure_future(send())
    got = await asyncio.wait_for(reader.read(), 60)  # until the echo server's FIN
    await sender
    assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()
    writer.close()
    await writer.wait_closed()


@contextlib.asynccontextmanager
async def echo_server() -> AsyncIterator[rudp.Server]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
            writer.write_eof()
            writer.close()
            await writer.wait_closed()
        except ConnectionError:
            return

    server = await rudp.start_server(handle, HOST, 0)
    try:
        yield server
    finally:
        server.close()
        server.abort_clients()
        await server.wait_closed()


async def test_echo_through_port_mapping_forwarder_with_tcp_port() -> None:
    """P1 with the client naming the server's TCP port B itself (``tcp_port=``): a
    forwarder on UDP port A in front of the server's port B, 1 MB echoed, some loss."""
    async with echo_server() as server:
        port = server.addresses[0][1]
        cfg = LinkConfig(loss=0.01, delay=0.001)
        async with UdpProxy((HOST, 0), (HOST, port), up=cfg, down=cfg, seed=3) as proxy:
            assert proxy.address[1] != port
            reader, writer = await rudp.open_connection(HOST, proxy.address[1], tcp_port=port)
            await echo_1mb(reader, writer)
            assert proxy.up_stats.lost + proxy.down_stats.lost > 0


async def test_echo_through_port_mapping_forwarder() -> None:
    """P1 (matrix): the client knows only the forwarder's port A (``docker -p
    A:B/udp``); its SYN carries TCP port A, which the server's listener accepts and
    mirrors (docs/wire.md)."""
    async with echo_server() as server:
        port = server.addresses[0][1]
        async with UdpProxy((HOST, 0), (HOST, port)) as proxy:
            assert proxy.address[1] != port
            reader, writer = await rudp.open_connection(HOST, proxy.address[1])
            await echo_1mb(reader, writer)
            conn = writer.get_extra_info("rudp_connection")
            assert conn.remote_port == proxy.address[1]  # TCP port A, end to end


@pytest.mark.parametrize("when", ["idle", "busy"])
async def test_transfer_survives_nat_rebinding(when: str) -> None:
    """P2 (matrix, real): the forwarder's source port towards the server changes
    mid-connection, after idle or during a transfer; 10 MB, hash checked."""
    if (why := second_loopback_address()) is not None:
        pytest.skip(why)
    size = 10 * 1024 * 1024
    payload = random.Random(when).randbytes(size)
    config = rudp.Config(user_timeout=10)
    async with sink_server(config) as (server, done):
        port = server.addresses[0][1]
        cfg = LinkConfig(delay=0.001)
        async with UdpProxy((PROXY_HOST, port), (HOST, port), up=cfg, down=cfg) as proxy:
            _reader, writer = await rudp.open_connection(PROXY_HOST, port, config=config)
            chunks = [payload[i : i + (1 << 20)] for i in range(0, size, 1 << 20)]
            writer.write(chunks[0])
            await writer.drain()
            old = proxy.clients()
            if when == "idle":
                sent = len(chunks[0])
                await until(lambda: writer.get_extra_info("rudp_stats")["bytes_acked"] >= sent)
                proxy.rebind()
            for k, chunk in enumerate(chunks[1:]):
                writer.write(chunk)
                await writer.drain()
                if when == "busy" and k == 3:
                    proxy.rebind()
            writer.write_eof()
            assert proxy.stats.rebinds == 1 and proxy.clients() != old
            n, digest = await asyncio.wait_for(done, 30)
            assert n == size and digest == hashlib.sha256(payload).digest()
            writer.close()
            await writer.wait_closed()


#: S1's spread of paths: clean, mild, and long and lossy (one proxy each).
S1_PATHS = [
    LinkConfig(),
    LinkConfig(delay=0.01, jitter=0.002, loss=0.005, reorder=0.01, reorder_delay=0.005),
    LinkConfig(delay=0.05, loss=0.01, reorder=0.02, reorder_delay=0.01),
]


@pytest.mark.slow
async def test_s1_soak() -> None:
    """S1 (matrix, real), scaled: 200 concurrent connections spread over three
    proxies (loss 0-1 %, delay 0-50 ms, reordering), each moving a different amount
    both ways at once, hashes checked on both ends. Sizes are 16-256 KiB here; with
    RUDP_SOAK=full they are the matrix's 256 KiB-8 MiB (about 1.6 GB each way)."""
    hosts = [f"127.0.0.{2 + i}" for i in range(len(S1_PATHS))]
    if (why := second_loopback_address()) is not None:
        pytest.skip(why)
    full = os.environ.get("RUDP_SOAK") == "full"
    lo, hi = (256 << 10, 8 << 20) if full else (16 << 10, 256 << 10)
    rng = random.Random(1)
    sizes = [(rng.randint(lo, hi), rng.randint(lo, hi)) for _ in range(200)]

    def data(i: int, direction: int) -> bytes:
        return random.Random(i * 2 + direction).randbytes(sizes[i][direction])

    server_got: dict[int, bytes] = {}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        i = int.from_bytes(await reader.readexactly(4), "big")

        async def send() -> None:
            writer.write(data(i, 1))
            await writer.drain()
            writer.write_eof()

        sender = asyncio.ensure_future(send())
        h = hashlib.sha256()
        while chunk := await reader.read(1 << 16):
            h.update(chunk)
        await sender
        server_got[i] = h.digest()
        writer.close()
        await writer.wait_closed()

    async def client(i: int, port: int) -> bytes:
        reader, writer = await rudp.open_connection(hosts[i % len(hosts)], port)

        async def send() -> None:
            writer.write(i.to_bytes(4, "big") + data(i, 0))
            await writer.drain()
            writer.write_eof()

        sender = asyncio.ensure_future(send())
        h = hashlib.sha256()
        while chunk := await reader.read(1 << 16):
            h.update(chunk)
        await sender
        writer.close()
        await writer.wait_closed()
        return h.digest()

    async with contextlib.AsyncExitStack() as stack:
        server = await rudp.start_server(handle, HOST, 0, backlog=256)
        # abort_clients(): a server connection whose last FIN-ACK was lost would
        # otherwise retransmit until user_timeout (the client's socket closes at
        # TIME-WAIT, so nothing re-ACKs it), and wait_closed() would wait for it.
        stack.push_async_callback(server.wait_closed)
        stack.callback(server.abort_clients)
        stack.callback(server.close)
        port = server.addresses[0][1]
        proxies = [
            await stack.enter_async_context(UdpProxy((h, port), (HOST, port), up=c, down=c, seed=i))
            for i, (h, c) in enumerate(zip(hosts, S1_PATHS, strict=True))
        ]
        got = await asyncio.wait_for(
            asyncio.gather(*(client(i, port) for i in range(len(sizes)))), 600
        )
        await until(lambda: len(server_got) == len(sizes))
        for i in range(len(sizes)):
            assert got[i] == hashlib.sha256(data(i, 1)).digest(), i
            assert server_got[i] == hashlib.sha256(data(i, 0)).digest(), i
        # The 200 client connections share the loop's client endpoint: one UDP
        # source per proxy (they had one socket each before endpoints).
        assert [p.stats.clients for p in proxies] == [1, 1, 1]
        for p in proxies[1:]:
            assert p.up_stats.lost > 0 and p.down_stats.lost > 0 and p.up_stats.reordered > 0


def test_docs_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """The Python block of docs/proxy.md runs as written (on the default loop)."""
    if (why := second_loopback_address()) is not None:
        pytest.skip(why)
    text = (Path(__file__).resolve().parent.parent / "docs" / "proxy.md").read_text()
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    exec(compile(code, "docs/proxy.md", "exec"), {"__name__": "docs"})
    out = capsys.readouterr().out
    lost = re.search(r"lost: (\d+) up, (\d+) down", out)
    assert lost and int(lost[1]) + int(lost[2]) > 0, out
    retrans = re.search(r"retransmissions: (\d+)", out)
    assert retrans and int(retrans[1]) > 0, out


async def test_w2_time_wait_reacks_the_retransmitted_fin() -> None:
    """W2 (matrix, real): the closer's last ACK is lost; the passive side
    retransmits its FIN, the closer's TIME-WAIT (held on the shared client
    endpoint, no file descriptor of its own) re-ACKs it and the passive side's
    connection closes, well within 2 MSL."""
    from rudp.wire import ACK, FIN, parse_segment

    seen = {"server_fin": False, "dropped": 0, "acks_after": 0}

    def drop_last_ack(up: bool, data: bytes) -> bool:
        seg = parse_segment(data)
        if not up:
            seen["server_fin"] |= bool(seg.flags & FIN)
            return False
        if seen["server_fin"] and seg.flags == ACK and not seg.payload:
            if not seen["dropped"]:
                seen["dropped"] = 1
                return True  # the client's ACK of the server's FIN
            seen["acks_after"] += 1
        return False

    server_conn: list[rudp.engine.Connection] = []
    lost = asyncio.get_running_loop().create_future()

    class Passive(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            server_conn.append(transport.get_extra_info("rudp_connection"))

        def eof_received(self) -> bool:
            return False  # close on the client's FIN: FIN back (LAST-ACK)

        def connection_lost(self, exc: Exception | None) -> None:
            lost.set_result(exc)

    cfg = rudp.Config(msl=5.0)
    server = await rudp.create_server(Passive, HOST, 0, config=cfg)
    port = server.addresses[0][1]
    async with UdpProxy((HOST, 0), (HOST, port), drop=drop_last_ack) as proxy:
        _r, w = await rudp.open_connection(HOST, proxy.address[1], config=cfg)
        assert w.get_extra_info("socket") is rudp.aio.shared_endpoints()[0].socket
        w.close()  # the client closes first: it will hold TIME-WAIT
        await w.wait_closed()
        assert await asyncio.wait_for(lost, 5) is None  # the retransmitted FIN was re-ACKed
        assert proxy.stats.rule_drops == 1 and seen["acks_after"] >= 1
        assert server_conn[0].state is rudp.engine.State.CLOSED
        st = server_conn[0].stats()
        assert st["retransmissions"] >= 1  # it retransmitted its FIN (by TLP or RTO)
        (ep,) = [e for e in rudp.aio.shared_endpoints() if e.config is cfg]
        assert ep.stats()["state_TIME-WAIT"] == 1  # still within 2 MSL = 10 s
    server.close()
    await server.wait_closed()
