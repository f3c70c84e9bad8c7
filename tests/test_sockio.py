"""rudp.aio.sockio: batched UDP socket I/O on real loopback sockets, on both loops.

GSO/GRO round trips with exact payloads and boundaries, the fallback paths
(environment switches) giving identical results, PKTINFO on wildcard sockets,
ICMP errors from the error queue of a shared unconnected socket, backpressure
(a real EAGAIN on an AF_UNIX datagram pair, and a socket wrapper for the GSO
cases loopback cannot produce), and closing.

Run as a script for the throughput table (both loops, per-datagram vs GSO+GRO):
``python tests/test_sockio.py [datagrams]``.
"""

from __future__ import annotations

import asyncio
import errno
import re
import select
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest

from rudp.aio import sockio
from rudp.aio.sockio import (
    GSO_MAX_BYTES,
    GSO_MAX_SEGMENTS,
    DatagramError,
    ErrorOrigin,
    ReceivedDatagram,
    SendItem,
    UdpSocketIO,
)
from rudp.errors import InvalidStateError

LINUX = sys.platform.startswith("linux")
SWITCHES = ("RUDP_NO_GSO", "RUDP_NO_GRO", "RUDP_NO_PKTINFO", "RUDP_NO_RECVERR", "RUDP_NO_CMSG")


@pytest.fixture(autouse=True)
def _clean_switches(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SWITCHES:
        monkeypatch.delenv(name, raising=False)


def udp(host: str = "127.0.0.1", *, v6only: bool | None = None) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_DGRAM)
    if v6only is not None:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(v6only))
    # Room for every test burst (the kernel doubles the value, capped by rmem_max).
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
    s.bind((host, 0))
    s.setblocking(False)
    return s


def closed_port(host: str = "127.0.0.1") -> int:
    """A UDP port nothing listens on (ICMP port unreachable)."""
    s = udp(host)
    port = int(s.getsockname()[1])
    s.close()
    return port


def have_ipv6() -> bool:
    try:
        udp("::1").close()
    except OSError:
        return False
    return True


#: IPv6 tests skip where the machine has no IPv6.
NEEDS_IPV6 = pytest.mark.skipif(not have_ipv6(), reason="no IPv6")
#: Runs a test on an IPv4 and an IPv6 loopback socket (``host``).
BOTH_FAMILIES = pytest.mark.parametrize(
    "host", ["127.0.0.1", pytest.param("::1", marks=NEEDS_IPV6)], ids=["ipv4", "ipv6"]
)


class Collector:
    """on_datagrams/on_error/on_writable callbacks that record and wake waiters."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.got: list[tuple[bytes, Any, Any]] = []
        self.batches: list[int] = []
        self.errors: list[DatagramError] = []
        self.writable = 0
        self.reply: Callable[[ReceivedDatagram], None] | None = None
        self._waiters: list[tuple[Callable[[], bool], asyncio.Future[None]]] = []

    def on_datagrams(self, batch: list[ReceivedDatagram]) -> None:
        self.batches.append(len(batch))
        for payload, src, local in batch:
            assert isinstance(payload, memoryview)
            self.got.append((bytes(payload), src, local))
            if self.reply is not None:
                self.reply((payload, src, local))
        self._wake()

    def on_error(self, err: DatagramError) -> None:
        self.errors.append(err)
        self._wake()

    def on_writable(self) -> None:
        self.writable += 1
        self._wake()

    def _wake(self) -> None:
        for cond, fut in self._waiters:
            if not fut.done() and cond():
                fut.set_result(None)

    async def until(self, cond: Callable[[], bool], timeout: float = 10) -> None:
        if cond():
            return
        fut = self.loop.create_future()
        self._waiters.append((cond, fut))
        try:
            await asyncio.wait_for(fut, timeout)
        finally:
            self._waiters.remove((cond, fut))

    def payloads(self) -> list[bytes]:
        return [p for p, _s, _l in self.got]

    def io(self, sock: socket.socket, **kw: Any) -> UdpSocketIO:
        return UdpSocketIO(
            self.loop,
            sock,
            self.on_datagrams,
            on_error=self.on_error,
            on_writable=self.on_writable,
            **kw,
        )


def pattern(dest: Any, other: Any) -> list[SendItem]:
    """Datagrams that exercise every grouping rule (see test_gso_groups_and_gro_splits)."""
    items: list[SendItem] = []

    def add(size: int, count: int, to: Any = dest) -> None:
        for _ in range(count):
            n = len(items)
            items.append((bytes([n % 251]) * size, to, None))

    add(1200, 10)
    add(700, 1)  # a shorter last one ends the group: 11 datagrams, one sendmsg
    add(1200, 69)  # 54 x 1200 fit GSO_MAX_BYTES: groups of 54 and 15
    add(0, 1)  # empty datagram: sent alone
    add(300, 3)  # one group of 3
    add(300, 2, other)  # another destination: its own group
    add(300, 1)  # alone: the next one is larger
    add(1400, 1)  # 1400 and a shorter 100: a group of 2
    add(100, 1)
    return items


@BOTH_FAMILIES
async def test_gso_groups_and_gro_splits(host: str) -> None:
    c_tx, c_rx, c_other = Collector(), Collector(), Collector()
    rx = c_rx.io(udp(host))
    other = c_other.io(udp(host))
    tx = c_tx.io(udp(host))
    if not (tx.features.gso and rx.features.gro):
        pytest.skip(f"kernel lacks UDP GSO/GRO: {tx.features}")
    dest, to_other = rx.socket.getsockname(), other.socket.getsockname()
    items = pattern(dest, to_other)
    assert 54 * 1200 <= GSO_MAX_BYTES < 55 * 1200
    assert tx.send(items) is True
    mine = [p for p, d, _s in items if d == dest]
    await c_rx.until(lambda: len(c_rx.got) == len(mine))
    await c_other.until(lambda: len(c_other.got) == 2)
    # Exact payloads, boundaries and order, the empty datagram included.
    assert c_rx.payloads() == mine
    assert c_other.payloads() == [p for p, d, _s in items if d == to_other]
    assert all(src == tx.socket.getsockname() and local is None for _p, src, local in c_rx.got)
    st = tx.stats
    # 11 | 54 | 15 | 0 alone | 3 | 2 (other) | 300 alone | 1400 + 100
    assert (st.gso_sends, st.gso_segments) == (6, 11 + 54 + 15 + 3 + 2 + 2)
    assert st.sends == 8 and st.datagrams_sent == len(items)
    assert st.bytes_sent == sum(len(p) for p, _d, _s in items)
    # GRO really ran: the receiver got super-datagrams and split them.
    assert rx.stats.gro_receives >= 1 and rx.stats.gro_segments > rx.stats.gro_receives
    assert rx.stats.recvs < rx.stats.datagrams_received == len(mine)
    for io in (tx, rx, other):
        io.close()


@pytest.mark.parametrize("switch", ["RUDP_NO_GSO", "RUDP_NO_GRO", "RUDP_NO_CMSG"])
async def test_fallbacks_give_identical_results(
    switch: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(switch, "1")
    c_rx, c_other = Collector(), Collector()
    rx, other, tx = c_rx.io(udp()), c_other.io(udp()), Collector().io(udp())
    items = pattern(rx.socket.getsockname(), other.socket.getsockname())
    mine = [p for p, d, _s in items if d == rx.socket.getsockname()]
    assert tx.send(items)
    await c_rx.until(lambda: len(c_rx.got) == len(mine))
    await c_other.until(lambda: len(c_other.got) == 2)
    assert c_rx.payloads() == mine
    assert [p for p, _s, _l in c_other.got] == [p for p, d, _s in items[-5:-3]]
    if switch in ("RUDP_NO_GSO", "RUDP_NO_CMSG"):
        assert not tx.features.gso and tx.stats.gso_sends == 0
        assert tx.stats.sends == len(items)
    if switch in ("RUDP_NO_GRO", "RUDP_NO_CMSG"):
        assert not rx.features.gro and rx.stats.gro_receives == 0
        assert rx.stats.recvs == len(mine)
    if switch == "RUDP_NO_CMSG":
        assert tx.features == sockio.Features()  # nothing at all: the portable path
    for io in (tx, rx, other):
        io.close()


async def test_payload_buffers_and_batch_bound() -> None:
    c_rx = Collector()
    rx = c_rx.io(udp(), gro=False, batch=64)
    tx = Collector().io(udp(), gso=False)
    dest = rx.socket.getsockname()
    buf = bytearray(b"a" * 500)
    items: list[SendItem] = [(memoryview(buf), dest, None), (buf, dest, None)]
    items += [(i.to_bytes(2, "big") * 250, dest, None) for i in range(298)]
    assert tx.send(items)
    buf[:] = b"b" * 500  # the caller may reuse its buffers once send() returned
    await c_rx.until(lambda: len(c_rx.got) == 300)
    assert c_rx.payloads() == [b"a" * 500] * 2 + [p for p, _d, _s in items[2:]]
    assert max(c_rx.batches) <= 64 and len(c_rx.batches) >= 300 // 64
    assert rx.stats.reader_wakeups >= len(c_rx.batches)
    tx.close()
    rx.close()


async def test_pktinfo_ipv4_wildcard_replies_from_the_address_used() -> None:
    c_srv, c_cli = Collector(), Collector()
    srv = c_srv.io(udp("0.0.0.0"))
    if not srv.features.pktinfo:
        pytest.skip("no IP_PKTINFO on this system")
    port = srv.socket.getsockname()[1]

    def echo(d: ReceivedDatagram) -> None:
        payload, src, local = d
        # "control" replies without a source address: the kernel picks one.
        srv.send([(b"re:" + payload, src, None if payload == b"control" else local)])

    c_srv.reply = echo
    cli = c_cli.io(udp("127.0.0.1"))
    assert not cli.features.pktinfo  # not wildcard: off unless asked for
    cli.send(
        [
            (b"one", ("127.0.0.1", port), None),
            (b"two", ("127.0.0.2", port), None),
            (b"control", ("127.0.0.2", port), None),
        ]
    )
    await c_cli.until(lambda: len(c_cli.got) == 3)
    assert [local for _p, _s, local in c_srv.got] == [
        ("127.0.0.1", port),
        ("127.0.0.2", port),
        ("127.0.0.2", port),
    ]
    replies = {p: src for p, src, _l in c_cli.got}
    assert replies[b"re:one"] == ("127.0.0.1", port)
    assert replies[b"re:two"] == ("127.0.0.2", port)  # answered from the address used
    assert replies[b"re:control"] == ("127.0.0.1", port)  # what happens without PKTINFO
    srv.close()
    cli.close()


async def test_pktinfo_with_gso_groups() -> None:
    """A source address travels with a GSO group (both control messages in one sendmsg)."""
    c_srv, c_cli = Collector(), Collector()
    srv = c_srv.io(udp("0.0.0.0"))
    cli = c_cli.io(udp("127.0.0.1"))
    if not (srv.features.pktinfo and srv.features.gso):
        pytest.skip(f"needs PKTINFO and GSO: {srv.features}")
    port = srv.socket.getsockname()[1]
    cli.send([(b"hi", ("127.0.0.2", port), None)])
    await c_srv.until(lambda: len(c_srv.got) == 1)
    _p, peer, local = c_srv.got[0]
    assert local == ("127.0.0.2", port)
    srv.send([(bytes([i]) * 1000, peer, local) for i in range(20)])
    await c_cli.until(lambda: len(c_cli.got) == 20)
    assert c_cli.payloads() == [bytes([i]) * 1000 for i in range(20)]
    assert {src for _p, src, _l in c_cli.got} == {("127.0.0.2", port)}
    assert srv.stats.gso_sends == 1 and srv.stats.sends == 1
    srv.close()
    cli.close()


@pytest.mark.skipif(not have_ipv6(), reason="no IPv6 loopback")
async def test_pktinfo_ipv6_loopback() -> None:
    c_srv, c_cli = Collector(), Collector()
    srv = c_srv.io(udp("::", v6only=True))
    if not srv.features.pktinfo:
        pytest.skip("no IPV6_RECVPKTINFO on this system")
    port = srv.socket.getsockname()[1]
    c_srv.reply = lambda d: srv.send([(b"re:" + d[0], d[1], d[2])])
    cli = c_cli.io(udp("::1"))
    cli.send([(b"six", ("::1", port), None)])
    await c_cli.until(lambda: len(c_cli.got) == 1)
    assert c_srv.got[0][2] == ("::1", port, 0, 0)
    assert c_cli.got[0][:2] == (b"re:six", ("::1", port, 0, 0))
    srv.close()
    cli.close()


@pytest.mark.skipif(not have_ipv6(), reason="no IPv6 loopback")
async def test_pktinfo_dual_stack_ipv4_mapped() -> None:
    c_srv, c_cli = Collector(), Collector()
    srv = c_srv.io(udp("::", v6only=False))
    if not srv.features.pktinfo:
        pytest.skip("no IPV6_RECVPKTINFO on this system")
    port = srv.socket.getsockname()[1]
    c_srv.reply = lambda d: srv.send([(b"re:" + d[0], d[1], d[2])])
    cli = c_cli.io(udp("127.0.0.1"))
    cli.send([(b"four", ("127.0.0.2", port), None)])
    await c_cli.until(lambda: len(c_cli.got) == 1)
    payload, src, local = c_srv.got[0]
    assert payload == b"four" and local == ("::ffff:127.0.0.2", port, 0, 0)
    assert src[0] == "::ffff:127.0.0.1"
    assert c_cli.got[0][:2] == (b"re:four", ("127.0.0.2", port))
    srv.close()
    cli.close()


def wait_socket_error(sock: socket.socket, timeout: float = 10) -> None:
    """Block until the kernel flags an error on ``sock`` (POLLERR), without reading it."""
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLERR)
    assert poller.poll(timeout * 1000), "no socket error arrived"


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        pytest.param("::1", marks=NEEDS_IPV6),
        pytest.param("::", marks=NEEDS_IPV6),
    ],
    ids=["ipv4", "ipv6", "dual-stack"],
)
async def test_icmp_port_unreachable_names_the_destination(host: str) -> None:
    """A shared unconnected socket learns which destination refused, with the payload."""
    c_tx, c_live = Collector(), Collector()
    tx = c_tx.io(udp(host, v6only=False) if host == "::" else udp(host))
    if not tx.features.recverr:
        pytest.skip("no IP_RECVERR on this system")
    live = c_live.io(udp("127.0.0.1" if host == "::" else host))
    dead_host = "127.0.0.1" if host == "::" else host
    dead1, dead2 = closed_port(dead_host), closed_port(dead_host)
    live_port = live.socket.getsockname()[1]
    mapped = "::ffff:127.0.0.1" if host == "::" else dead_host
    tx.send(
        [
            (b"to dead one", (mapped, dead1), None),
            (b"to live", (mapped, live_port), None),
            (b"to dead two", (mapped, dead2), None),
        ]
    )
    await c_tx.until(lambda: len(c_tx.errors) == 2)
    await c_live.until(lambda: len(c_live.got) == 1)
    by_port = {e.dest[1]: e for e in c_tx.errors if e.dest is not None}
    assert set(by_port) == {dead1, dead2}
    for port, payload in ((dead1, b"to dead one"), (dead2, b"to dead two")):
        err = by_port[port]
        assert err.dest is not None and err.dest[0] == mapped
        assert err.errno == errno.ECONNREFUSED
        assert err.payload == payload
        if ":" in dead_host:
            assert (err.origin, err.icmp_type, err.icmp_code) == (ErrorOrigin.ICMP6, 1, 4)
        else:  # ICMP destination unreachable / port unreachable (also on a dual-stack socket)
            assert (err.origin, err.icmp_type, err.icmp_code) == (ErrorOrigin.ICMP, 3, 3)
        assert err.offender is not None and err.offender[0] == mapped
    assert c_live.payloads() == [b"to live"]
    tx.close()
    live.close()


async def test_reading_goes_on_after_icmp_errors() -> None:
    """An ICMP error in the error queue makes epoll report EPOLLERR, on which libuv
    (uvloop) stops the reader's poll handle for good: the socket must still receive
    afterwards, whether or not a send reads the error first (both loops)."""
    c = Collector()
    io = c.io(udp())
    if not io.features.recverr:
        pytest.skip("no IP_RECVERR on this system")
    peer = udp()
    here = io.socket.getsockname()
    for i in range(3):
        io.send([(b"to nobody", ("127.0.0.1", closed_port("127.0.0.1")), None)])
        await c.until(lambda: len(c.errors) == i + 1)  # noqa: B023 (awaited here)
        peer.sendto(b"ping %d" % i, here)
        await c.until(lambda: len(c.got) == i + 1)  # noqa: B023
    assert c.payloads() == [b"ping 0", b"ping 1", b"ping 2"]
    assert io.stats.errqueue_reads >= 3
    io.close()
    peer.close()


async def test_pending_error_does_not_eat_the_next_send() -> None:
    """sk_err is returned by the next send to any destination: that send is retried."""
    c_tx, c_live = Collector(), Collector()
    tx = c_tx.io(udp())
    if not tx.features.recverr:
        pytest.skip("no IP_RECVERR on this system")
    live = c_live.io(udp())
    tx.pause_reading()  # so the reader does not consume the pending error first
    dead = ("127.0.0.1", closed_port())
    assert tx.send([(b"x", dead, None)])
    wait_socket_error(tx.socket)
    assert tx.send([(b"after the error", live.socket.getsockname(), None)])
    await c_live.until(lambda: len(c_live.got) == 1)
    assert c_live.payloads() == [b"after the error"]
    await c_tx.until(lambda: len(c_tx.errors) == 1)  # reported from the loop, not from send()
    assert c_tx.errors[0].dest == dead and c_tx.errors[0].errno == errno.ECONNREFUSED
    assert tx.stats.sends == 2 and tx.stats.send_errors == 0 and tx.stats.errqueue_reads == 1
    tx.close()
    live.close()


async def test_connected_socket_without_error_queue(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fallback where there is no error queue: a connected socket's failing recv."""
    monkeypatch.setenv("RUDP_NO_RECVERR", "1")
    c = Collector()
    s = udp()
    dead = ("127.0.0.1", closed_port())
    s.connect(dead)
    io = c.io(s)
    assert not io.features.recverr
    io.send([(b"hello?", None, None)])
    await c.until(lambda: len(c.errors) == 1)
    assert c.errors[0] == DatagramError(dead, errno.ECONNREFUSED, b"", ErrorOrigin.SOCKET)
    assert io.stats.recv_errors == 1
    io.close()


async def test_too_large_is_reported_once_with_its_destination() -> None:
    c = Collector()
    io = c.io(udp())
    dest = ("127.0.0.1", closed_port())
    big = b"y" * 65508  # one byte over the IPv4 limit (65535 - 20 - 8)
    assert io.send([(big, dest, None)])
    await c.until(lambda: len(c.errors) == 1)
    err = c.errors[0]
    assert (err.dest, err.errno, err.payload) == (dest, errno.EMSGSIZE, big[:2048])
    if io.features.recverr:  # Linux queued it itself (ip_local_error), with the MTU
        assert err.origin is ErrorOrigin.LOCAL and err.info > 0
    assert io.stats.send_errors == 1 and io.stats.sends == 0
    io.close()


async def test_backpressure_on_a_real_full_socket() -> None:
    """EAGAIN for real: an AF_UNIX datagram pair whose reader does not read."""
    loop = asyncio.get_running_loop()
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    a.setblocking(False)
    b.setblocking(False)
    c = Collector()
    io = c.io(a, max_queue=100 * 1000)
    items: list[SendItem] = [(i.to_bytes(4, "big") * 250, None, None) for i in range(400)]
    assert io.send(items[:300]) is False  # the peer's queue filled up
    assert io.writing_paused and io.stats.eagain == 1 and io.stats.pauses == 1
    sent = io.stats.datagrams_sent
    assert 0 < sent < 300 and io.queued == min(300 - sent, 100)
    assert io.send(items[300:]) is False  # paused: queued behind, in order
    queued = io.queued
    assert queued == 100 and io.queued_bytes == 100 * 1000
    assert io.stats.dropped_queue_full == 400 - sent - queued > 0
    assert c.writable == 0

    got: list[bytes] = []

    def read() -> None:
        while True:
            try:
                got.append(b.recv(2000))
            except BlockingIOError:
                c._wake()  # a waiter's condition may hold now
                return

    loop.add_reader(b, read)
    await c.until(lambda: c.writable == 1)
    await c.until(lambda: len(got) == sent + queued)  # the last ones may still be in flight
    assert got == [p for p, _d, _s in items[: sent + queued]]
    assert not io.writing_paused and io.queued == 0 and io.queued_bytes == 0
    assert not loop.remove_writer(a.fileno())  # the writer callback is gone
    assert io.send(items[:1]) is True  # producing again
    loop.remove_reader(b)
    io.close()
    b.close()


class WrappedSocket:
    """A real UDP socket whose sends can be made to fail (GSO cases loopback never shows)."""

    def __init__(self, real: socket.socket) -> None:
        self.real = real
        self.blocked_after: int | None = None  # EAGAIN after this many more sendmsg calls
        self.gso_errno: int | None = None  # fail GSO sendmsg calls with this errno
        self.gso_calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def _gate(self) -> None:
        if self.blocked_after is not None:
            if self.blocked_after == 0:
                raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")
            self.blocked_after -= 1

    def sendmsg(self, buffers: Any, ancdata: Any = (), flags: int = 0, *address: Any) -> int:
        self._gate()
        if any(kind == sockio.UDP_SEGMENT for _level, kind, _data in ancdata):
            self.gso_calls += 1
            if self.gso_errno is not None:
                raise OSError(self.gso_errno, "refused by the test")
        return self.real.sendmsg(buffers, ancdata, flags, *address)

    def sendto(self, data: Any, address: Any) -> int:
        self._gate()
        return self.real.sendto(data, address)


async def spin_until(cond: Callable[[], bool], iterations: int = 10_000) -> None:
    """Let the loop run callbacks (no timers, no sleeping) until ``cond()``."""
    for _ in range(iterations):
        if cond():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition not reached")


def wrapped_io(c: Collector) -> tuple[WrappedSocket, UdpSocketIO]:
    w = WrappedSocket(udp())
    io = c.io(cast(socket.socket, w))
    if not io.features.gso:
        pytest.skip("kernel lacks UDP GSO")
    return w, io


async def test_eagain_in_the_middle_of_gso_groups_keeps_order() -> None:
    c_rx, c_tx = Collector(), Collector()
    rx = c_rx.io(udp())
    w, tx = wrapped_io(c_tx)
    dest = rx.socket.getsockname()
    items: list[SendItem] = [(bytes([i]) * 1000, dest, None) for i in range(150)]
    w.blocked_after = 1  # the first group leaves, then the socket is full
    assert tx.send(items) is False
    assert tx.stats.gso_sends == 1 and tx.stats.datagrams_sent == GSO_MAX_SEGMENTS
    assert tx.queued == 150 - GSO_MAX_SEGMENTS and tx.writing_paused
    await spin_until(lambda: tx.stats.eagain == 2)  # the writer callback met EAGAIN again
    assert tx.queued == 150 - GSO_MAX_SEGMENTS and c_tx.writable == 0
    w.blocked_after = None
    await c_tx.until(lambda: c_tx.writable == 1)
    await c_rx.until(lambda: len(c_rx.got) == 150)
    assert c_rx.payloads() == [p for p, _d, _s in items]
    assert tx.stats.gso_sends == 3 and tx.stats.eagain >= 2 and tx.stats.pauses == 1
    tx.close()
    rx.close()


async def test_gso_eio_disables_gso_and_resends_one_by_one() -> None:
    c_rx, c_tx = Collector(), Collector()
    rx = c_rx.io(udp())
    w, tx = wrapped_io(c_tx)
    w.gso_errno = errno.EIO  # what Linux says without checksum offload
    dest = rx.socket.getsockname()
    items: list[SendItem] = [(bytes([i]) * 900, dest, None) for i in range(40)]
    assert tx.send(items[:20]) and tx.send(items[20:])
    await c_rx.until(lambda: len(c_rx.got) == 40)
    assert c_rx.payloads() == [p for p, _d, _s in items]  # each exactly once, in order
    assert not tx.features.gso and w.gso_calls == 1 and tx.stats.gso_failures == 1
    assert tx.stats.sends == 40 and tx.stats.gso_sends == 0
    tx.close()
    rx.close()


async def test_gso_emsgsize_splits_but_keeps_gso() -> None:
    c_rx, c_tx = Collector(), Collector()
    rx = c_rx.io(udp())
    w, tx = wrapped_io(c_tx)
    w.gso_errno = errno.EMSGSIZE  # a segment above the route's MTU
    dest = rx.socket.getsockname()
    items: list[SendItem] = [(bytes([i]) * 900, dest, None) for i in range(10)]
    assert tx.send(items)
    await c_rx.until(lambda: len(c_rx.got) == 10)
    assert c_rx.payloads() == [p for p, _d, _s in items]
    assert tx.features.gso and tx.stats.gso_failures == 1 and tx.stats.sends == 10
    tx.close()
    rx.close()


async def test_paused_even_when_the_queue_holds_nothing() -> None:
    """max_queue=0: what meets EAGAIN is dropped, but the producer still waits."""
    c_rx, c_tx = Collector(), Collector()
    rx = c_rx.io(udp())
    w = WrappedSocket(udp())
    tx = c_tx.io(cast(socket.socket, w), max_queue=0)
    dest = rx.socket.getsockname()
    w.blocked_after = 0
    assert tx.send([(b"lost", dest, None)]) is False
    assert tx.writing_paused and tx.queued == 0 and tx.stats.dropped_queue_full == 1
    assert tx.send([(b"lost too", dest, None)]) is False
    assert tx.stats.dropped_queue_full == 2
    w.blocked_after = None
    await c_tx.until(lambda: c_tx.writable == 1)
    assert not tx.writing_paused and tx.send([(b"kept", dest, None)])
    await c_rx.until(lambda: len(c_rx.got) == 1)
    assert c_rx.payloads() == [b"kept"]
    tx.close()
    rx.close()


async def test_close_unregisters_and_closes() -> None:
    loop = asyncio.get_running_loop()
    io = Collector().io(udp())
    fd = io.socket.fileno()
    io.close()
    await io.wait_closed()
    assert io.socket.fileno() == -1
    assert not loop.remove_reader(fd) and not loop.remove_writer(fd)
    with pytest.raises(InvalidStateError):
        io.send([(b"x", ("127.0.0.1", 9), None)])
    io.close()  # idempotent


async def test_close_flushes_the_queue_first() -> None:
    loop = asyncio.get_running_loop()
    c_rx = Collector()
    rx = c_rx.io(udp())
    w, tx = wrapped_io(Collector())
    fd = w.real.fileno()
    w.blocked_after = 0
    dest = rx.socket.getsockname()
    assert tx.send([(b"last words", dest, None)]) is False
    tx.close()
    assert tx.is_closing and w.real.fileno() == fd  # still open: something to send
    w.blocked_after = None
    await asyncio.wait_for(tx.wait_closed(), 10)
    await c_rx.until(lambda: len(c_rx.got) == 1)
    assert c_rx.payloads() == [b"last words"] and w.real.fileno() == -1
    assert not loop.remove_reader(fd) and not loop.remove_writer(fd)
    rx.abort()


async def test_abort_drops_the_queue() -> None:
    loop = asyncio.get_running_loop()
    w, tx = wrapped_io(Collector())
    fd = w.real.fileno()
    w.blocked_after = 0
    assert tx.send([(b"never", ("127.0.0.1", 9), None)]) is False
    tx.abort()
    await tx.wait_closed()
    assert w.real.fileno() == -1 and tx.queued == 0
    assert not loop.remove_reader(fd) and not loop.remove_writer(fd)


async def test_misuse_raises() -> None:
    loop = asyncio.get_running_loop()
    blocking = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with pytest.raises(ValueError, match="non-blocking"):
        UdpSocketIO(loop, blocking, lambda b: None)
    blocking.close()
    io = Collector().io(udp("127.0.0.1"))
    assert not io.features.pktinfo
    with pytest.raises(InvalidStateError, match="pktinfo"):
        io.send([(b"x", ("127.0.0.1", 9), ("127.0.0.1", 1))])
    io.close()
    connected = udp("0.0.0.0")
    connected.connect(("127.0.0.1", 9))
    io = Collector().io(connected)
    assert not io.features.pktinfo  # like api.py's client sockets: wildcard-bound, then connected
    io.close()


@pytest.mark.skipif(not LINUX, reason="Linux constants")
def test_constants_match_the_system() -> None:
    """Our Linux numbers equal the socket module's and the installed kernel headers'."""
    ours = {
        "SOL_UDP": sockio.SOL_UDP,
        "UDP_SEGMENT": sockio.UDP_SEGMENT,
        "UDP_GRO": sockio.UDP_GRO,
        "IP_PKTINFO": sockio.IP_PKTINFO,
        "IP_RECVERR": sockio.IP_RECVERR,
        "IPV6_RECVERR": sockio.IPV6_RECVERR,
        "IPV6_RECVPKTINFO": sockio.IPV6_RECVPKTINFO,
        "IPV6_PKTINFO": sockio.IPV6_PKTINFO,
        "MSG_ERRQUEUE": sockio.MSG_ERRQUEUE,
    }
    assert ours == {
        "SOL_UDP": 17,
        "UDP_SEGMENT": 103,
        "UDP_GRO": 104,
        "IP_PKTINFO": 8,
        "IP_RECVERR": 11,
        "IPV6_RECVERR": 25,
        "IPV6_RECVPKTINFO": 49,
        "IPV6_PKTINFO": 50,
        "MSG_ERRQUEUE": 0x2000,
    }
    checked = 0
    for name, value in ours.items():
        if hasattr(socket, name):
            assert getattr(socket, name) == value, name
            checked += 1
    headers = [Path("/usr/include/linux") / h for h in ("udp.h", "in.h", "in6.h")]
    text = "\n".join(h.read_text() for h in headers if h.exists())
    for name, value in ours.items():
        m = re.search(rf"#define\s+{name}\s+(\d+)", text)
        if m:
            assert int(m.group(1)) == value, name
            checked += 1
    assert checked >= 3
    # sizeof(struct in_pktinfo), sizeof(struct in6_pktinfo), sizeof(struct sock_extended_err)
    assert (sockio._IN_PKTINFO.size, sockio._IN6_PKTINFO.size) == (12, 20)
    assert sockio._SOCK_EXTENDED_ERR.size == 16


# ------------------------------------------------------------------ measurement
async def measure(mode: str, total: int, size: int = 1400, window: int = 512) -> dict[str, float]:
    """Send ``total`` datagrams of ``size`` bytes to a receiver in this process.

    ``mode``: "transport" (asyncio's datagram transport, one sendto and one
    datagram_received per datagram), "plain" (UdpSocketIO without GSO/GRO: one
    syscall per datagram each way, batched wakeups) or "gso" (GSO + GRO). At most
    ``window`` datagrams are in flight, so none are dropped.
    """
    loop = asyncio.get_running_loop()
    a, b = udp(), udp()
    b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    dest = b.getsockname()
    payload = b"x" * size
    sent = received = 0
    done = loop.create_future()
    send: Callable[[int], None]

    def pump() -> None:
        nonlocal sent
        n = min(window - (sent - received), total - sent)
        if n > 0:
            send(n)
            sent += n

    def on_received(n: int) -> None:
        nonlocal received
        received += n
        if received >= total:
            if not done.done():
                done.set_result(None)
        elif sent - received < window // 2:
            pump()

    closers: list[Callable[[], None]] = []
    stats: dict[str, float] = {}
    if mode == "transport":

        class Receiver(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: Any) -> None:
                on_received(1)

        ta, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, sock=a)
        tb, _ = await loop.create_datagram_endpoint(Receiver, sock=b)

        def send_transport(n: int) -> None:
            for _ in range(n):
                ta.sendto(payload, dest)

        send = send_transport
        closers += [ta.close, tb.close]
    else:
        on = mode == "gso"
        sa = UdpSocketIO(loop, a, lambda batch: None, gso=on, gro=on)
        sb = UdpSocketIO(loop, b, lambda batch: on_received(len(batch)), gso=on, gro=on)
        if on and not (sa.features.gso and sb.features.gro):
            raise RuntimeError("no GSO/GRO here")
        item: SendItem = (payload, dest, None)

        def send_io(n: int) -> None:
            sa.send([item] * n)

        send = send_io
        closers += [sa.close, sb.close]
    t0 = time.perf_counter()
    pump()
    await asyncio.wait_for(done, 120)
    elapsed = time.perf_counter() - t0
    if mode != "transport":
        stats = {"send_calls": sa.stats.sends, "recv_calls": sb.stats.recvs}
    for close in closers:
        close()
    return {
        "datagrams_per_s": total / elapsed,
        "mb_per_s": total * size / elapsed / 1e6,
        "us_per_datagram": elapsed / total * 1e6,
        **stats,
    }


@pytest.mark.parametrize("mode", ["plain", "gso"])
async def test_measure_runs(mode: str) -> None:
    probe = UdpSocketIO(asyncio.get_running_loop(), udp(), lambda b: None)
    if mode == "gso" and not (probe.features.gso and probe.features.gro):
        pytest.skip("kernel lacks UDP GSO/GRO")
    probe.close()
    res = await measure(mode, 3000)
    assert res["datagrams_per_s"] > 0
    if mode == "gso":
        assert res["send_calls"] < 3000 / 10 and res["recv_calls"] < 3000 / 10
    else:
        assert res["send_calls"] == res["recv_calls"] == 3000


def main() -> None:  # pragma: no cover - a manual measurement
    import uvloop

    total = int(sys.argv[1]) if len(sys.argv) > 1 else 300_000
    loops: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
        "asyncio": asyncio.new_event_loop,
        "uvloop": uvloop.new_event_loop,
    }
    print(f"{total} datagrams of 1400 bytes, send + receive in one process on loopback")
    print(f"{'loop':8} {'mode':10} {'datagrams/s':>12} {'MB/s':>8} {'us/datagram':>12}")
    for name, factory in loops.items():
        for mode in ("transport", "plain", "gso"):
            loop = factory()
            try:
                r = loop.run_until_complete(measure(mode, total))
            finally:
                loop.close()
            print(
                f"{name:8} {mode:10} {r['datagrams_per_s']:12.0f} {r['mb_per_s']:8.1f}"
                f" {r['us_per_datagram']:12.2f}"
            )


if __name__ == "__main__":  # pragma: no cover
    main()
