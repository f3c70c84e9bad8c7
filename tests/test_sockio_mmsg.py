"""rudp.aio.sockio's batched system calls: ``sendmmsg``/``recvmmsg`` through the C
accelerator (Linux), on real loopback sockets and both loops.

What the batching must not change: payloads, boundaries, order, destinations,
source addresses and error reports are those of the Python path (tests/test_sockio.py,
which also runs with the accelerator absent: tests/test_accel.py). What it must
change, counted: fewer system calls than messages.
"""

from __future__ import annotations

import asyncio
import errno
import socket
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_sockio import BOTH_FAMILIES, Collector, closed_port, pattern, udp, wait_socket_error

from rudp.aio import sockio
from rudp.aio.sockio import SendItem, UdpSocketIO

pytestmark = pytest.mark.skipif(
    sockio.send_batch is None, reason="no C accelerator with sendmmsg/recvmmsg (Linux)"
)


@pytest.fixture(autouse=True)
def _clean_switches(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RUDP_NO_GSO", "RUDP_NO_GRO", "RUDP_NO_PKTINFO", "RUDP_NO_MMSG"):
        monkeypatch.delenv(name, raising=False)


def mmsg_io(c: Collector, sock: socket.socket, **kw: Any) -> UdpSocketIO:
    io = c.io(sock, **kw)
    assert io.features.mmsg
    return io


@BOTH_FAMILIES
async def test_many_datagrams_per_system_call_without_gso(host: str) -> None:
    """Without GSO/GRO each datagram is a message: one sendmmsg sends 64 of them,
    one recvmmsg reads what is queued (the reader was paused while they came)."""
    c_rx = Collector()
    rx = mmsg_io(c_rx, udp(host), gro=False)
    tx = mmsg_io(Collector(), udp(host), gso=False)
    dest = rx.socket.getsockname()
    rx.pause_reading()
    items: list[SendItem] = [(i.to_bytes(2, "big") * 300, dest, None) for i in range(100)]
    assert tx.send(items)
    assert tx.stats.sends == tx.stats.datagrams_sent == 100
    assert tx.stats.send_calls == 2  # 64 + 36
    rx.resume_reading()
    await c_rx.until(lambda: len(c_rx.got) == 100)
    assert c_rx.payloads() == [p for p, _d, _s in items]
    assert all(src == tx.socket.getsockname() for _p, src, _l in c_rx.got)
    assert rx.stats.recvs == 100
    assert rx.stats.recv_calls == 2  # 64 messages per recvmmsg, then the other 36
    tx.close()
    rx.close()


async def test_gso_groups_leave_in_one_system_call() -> None:
    """With GSO, each group is one message of the sendmmsg: the same groups as the
    Python path (test_sockio.test_gso_groups_and_gro_splits), one call."""
    c_rx, c_other = Collector(), Collector()
    rx, other = c_rx.io(udp()), c_other.io(udp())
    tx = mmsg_io(Collector(), udp())
    if not (tx.features.gso and rx.features.gro):
        pytest.skip("kernel lacks UDP GSO/GRO")
    dest, to_other = rx.socket.getsockname(), other.socket.getsockname()
    items = pattern(dest, to_other)
    assert tx.send(items)
    mine = [p for p, d, _s in items if d == dest]
    await c_rx.until(lambda: len(c_rx.got) == len(mine))
    await c_other.until(lambda: len(c_other.got) == 2)
    assert c_rx.payloads() == mine
    st_ = tx.stats
    assert (st_.gso_sends, st_.sends, st_.send_calls) == (6, 8, 1)
    for io in (tx, rx, other):
        io.close()


async def test_sources_from_a_wildcard_socket() -> None:
    """Replies from a wildcard socket carry their source (IP_PKTINFO) through the
    batched path: the first use of a source is cached from Python, then sent."""
    c_srv = Collector()
    srv = mmsg_io(c_srv, udp("0.0.0.0"), gso=False)
    assert srv.features.pktinfo
    port = srv.socket.getsockname()[1]
    c_cli = Collector()
    cli = mmsg_io(c_cli, udp())
    cli.send([(b"ping %d" % i, ("127.0.0.1", port), None) for i in range(3)])
    await c_srv.until(lambda: len(c_srv.got) == 3)
    assert {local for _p, _s, local in c_srv.got} == {("127.0.0.1", port)}
    replies: list[SendItem] = [(b"pong " + p, src, local) for p, src, local in c_srv.got]
    assert srv.send(replies)
    await c_cli.until(lambda: len(c_cli.got) == 3)
    assert c_cli.payloads() == [b"pong ping %d" % i for i in range(3)]
    assert all(src == ("127.0.0.1", port) for _p, src, _l in c_cli.got)
    assert srv.stats.send_calls == 1
    srv.close()
    cli.close()


async def test_items_for_the_python_path_keep_their_place() -> None:
    """A destination given by name, and payloads that are not bytes, go through
    Python's socket calls, in order with the batched ones around them."""
    c_rx = Collector()
    rx = mmsg_io(c_rx, udp(), gro=False)
    tx = mmsg_io(Collector(), udp(), gso=False)
    port = rx.socket.getsockname()[1]
    dest = ("127.0.0.1", port)
    items: list[SendItem] = [
        (b"one", dest, None),
        (b"two", ("localhost", port), None),
        (bytearray(b"three"), dest, None),
        (memoryview(b"four"), dest, None),
        (b"five", dest, None),
    ]
    assert tx.send(items)
    await c_rx.until(lambda: len(c_rx.got) == 5)
    assert c_rx.payloads() == [b"one", b"two", b"three", b"four", b"five"]
    assert tx.stats.sends == 5 and tx.stats.send_calls == 5  # 1 + 3 alone + 1
    tx.close()
    rx.close()


async def test_an_error_in_a_batch_drops_only_its_datagram() -> None:
    """EMSGSIZE met by sendmmsg in the middle of a batch: the datagrams before and
    after it are sent, it is reported once (with its destination), as the Python
    path reports it."""
    c_rx, c_tx = Collector(), Collector()
    rx = mmsg_io(c_rx, udp(), gro=False)
    tx = mmsg_io(c_tx, udp(), gso=False)
    dest = rx.socket.getsockname()
    big = b"y" * 65508  # one byte over the IPv4 limit
    items: list[SendItem] = [(b"a", dest, None), (b"b", dest, None), (big, dest, None)]
    items += [(b"c", dest, None)]
    assert tx.send(items)
    await c_rx.until(lambda: len(c_rx.got) == 3)
    await c_tx.until(lambda: len(c_tx.errors) == 1)
    assert c_rx.payloads() == [b"a", b"b", b"c"]
    assert (c_tx.errors[0].dest, c_tx.errors[0].errno) == (dest, errno.EMSGSIZE)
    assert tx.stats.send_errors == 1 and tx.stats.datagrams_sent == 3
    # Once: the first sendmmsg lost the error (it returned the count sent), its
    # retry met it, and the kernel queued an error-queue entry for each attempt.
    assert tx.stats.errors_reported == 1 and tx.stats.errqueue_reads == 2
    tx.close()
    rx.close()


async def test_pending_icmp_error_met_by_sendmmsg() -> None:
    """The pending socket error (an ICMP port unreachable for an earlier datagram)
    is returned by the next sendmmsg: reported for the dead destination, and the
    datagram that met it is sent on the retry."""
    c_tx, c_live = Collector(), Collector()
    tx = mmsg_io(c_tx, udp())
    if not tx.features.recverr:
        pytest.skip("no IP_RECVERR on this system")
    live = c_live.io(udp())
    tx.pause_reading()
    dead = ("127.0.0.1", closed_port())
    assert tx.send([(b"x", dead, None)])
    wait_socket_error(tx.socket)
    assert tx.send([(b"after the error", live.socket.getsockname(), None)])
    await c_live.until(lambda: len(c_live.got) == 1)
    await c_tx.until(lambda: len(c_tx.errors) == 1)
    assert c_tx.errors[0].dest == dead and c_tx.errors[0].errno == errno.ECONNREFUSED
    assert tx.stats.sends == 2 and tx.stats.send_errors == 0
    tx.close()
    live.close()


async def test_eagain_from_sendmmsg_queues_the_rest_in_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """EAGAIN (which loopback UDP never returns) in the middle of a batch: the
    kernel's sendmmsg is made to stop after 10 messages and say EAGAIN once."""
    real = sockio.send_batch
    assert real is not None
    calls = {"n": 0}

    def full_after_ten(fd: int, items: list[SendItem], start: int, *rest: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:  # the socket takes ten, then is full
            head = items[: start + 10]
            i, _code, *counts = real(fd, head, start, *rest)
            assert i == start + 10
            return (i, errno.EAGAIN, *counts)
        return real(fd, items, start, *rest)

    monkeypatch.setattr(sockio, "send_batch", full_after_ten)
    c_rx, c_tx = Collector(), Collector()
    rx = mmsg_io(c_rx, udp(), gro=False)
    tx = mmsg_io(c_tx, udp(), gso=False)
    dest = rx.socket.getsockname()
    items: list[SendItem] = [(i.to_bytes(2, "big") * 100, dest, None) for i in range(50)]
    assert tx.send(items) is False
    assert tx.writing_paused and tx.queued == 40 and tx.stats.eagain == 1
    await c_tx.until(lambda: c_tx.writable == 1)
    await c_rx.until(lambda: len(c_rx.got) == 50)
    assert c_rx.payloads() == [p for p, _d, _s in items]
    assert tx.stats.datagrams_sent == 50 and calls["n"] == 2
    tx.close()
    rx.close()


async def test_connected_socket_recv_error_through_recvmmsg(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A connected socket without the error queue: recvmmsg returns the pending
    ECONNREFUSED, reported for the peer; reading goes on."""
    monkeypatch.setenv("RUDP_NO_RECVERR", "1")
    c = Collector()
    s = udp()
    dead = ("127.0.0.1", closed_port())
    s.connect(dead)
    io = mmsg_io(c, s)
    assert not io.features.recverr
    io.send([(b"hello?", None, None)])
    await c.until(lambda: len(c.errors) >= 1)
    assert c.errors[0].dest == dead and c.errors[0].errno == errno.ECONNREFUSED
    io.close()


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    sizes=st.lists(
        st.tuples(st.sampled_from([0, 1, 100, 1199, 1200, 1400, 9000]), st.booleans()),
        min_size=1,
        max_size=150,
    ),
    gso=st.booleans(),
)
def test_batched_and_python_paths_deliver_the_same(
    sizes: list[tuple[int, bool]], gso: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Any list of items to two receivers: the batched path and the Python path
    deliver the same datagrams to each, in order, with the same counts."""

    async def run(mmsg: bool) -> tuple[list[bytes], list[bytes], tuple[int, ...]]:
        if mmsg:
            monkeypatch.delenv("RUDP_NO_MMSG", raising=False)
        else:
            monkeypatch.setenv("RUDP_NO_MMSG", "1")
        c_a, c_b = Collector(), Collector()
        a, b = c_a.io(udp()), c_b.io(udp())
        tx = Collector().io(udp(), gso=gso)
        assert tx.features.mmsg is mmsg
        to_a, to_b = a.socket.getsockname(), b.socket.getsockname()
        items: list[SendItem] = [
            (bytes([k % 251]) * size, to_a if first else to_b, None)
            for k, (size, first) in enumerate(sizes)
        ]
        assert tx.send(items)
        n_a = sum(1 for _p, d, _s in items if d == to_a)
        await c_a.until(lambda: len(c_a.got) == n_a)
        await c_b.until(lambda: len(c_b.got) == len(items) - n_a)
        s = tx.stats
        counts = (s.sends, s.datagrams_sent, s.bytes_sent, s.gso_sends, s.gso_segments)
        for io in (a, b, tx):
            io.close()
        return c_a.payloads(), c_b.payloads(), counts

    async def both() -> None:
        batched = await run(True)
        python = await run(False)
        assert batched == python

    asyncio.run(both())
