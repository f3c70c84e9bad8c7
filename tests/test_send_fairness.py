"""Connections of one endpoint that send at the same moment are interleaved.

``Endpoint.datagrams_to_send`` deals the datagrams of several connections
round-robin, ``SEND_QUANTUM`` per connection per turn (Linux's fq qdisc does the
same per flow), keeping each connection's own order. Without it the first
connection flushed would reach a shared, nearly full bottleneck queue first
every time (benchmarks/linuxpeer/fair.py measured 86/14 shares for two BBR flows).
"""

from __future__ import annotations

import itertools

import pytest

from rudp import Config
from rudp.engine import Endpoint
from rudp.engine.endpoint import SEND_QUANTUM
from rudp.seq import seq_lt
from rudp.wire import parse_segment

A = ("10.0.0.1", 4000)
B = ("10.0.0.2", 5000)
C = ("10.0.0.3", 5000)
MSS = 1000


def _exchange(a: Endpoint, peers: dict[tuple[str, int], Endpoint], now: float) -> None:
    """Carry datagrams between ``a`` and its peers until nothing moves."""
    for _ in range(20):
        moved = False
        for dgram, addr in a.datagrams_to_send(now):
            peers[addr].receive_datagram(dgram, A, now)
            moved = True
        for addr, ep in peers.items():
            for dgram, _ in ep.datagrams_to_send(now):
                a.receive_datagram(dgram, addr, now)
                moved = True
        if not moved:
            return


def _established(n: int, same_peer: bool) -> tuple[Endpoint, list[object]]:
    cfg = Config(mss=MSS, initial_cwnd=10)
    a = Endpoint(cfg, seed=1)
    peers: dict[tuple[str, int], Endpoint] = {}
    conns = []
    for i in range(n):
        addr = B if same_peer else (f"10.0.1.{i + 1}", 5000)
        if addr not in peers:
            peers[addr] = Endpoint(cfg, seed=2 + i)
            peers[addr].listen(80 + i if same_peer else 80)
        if same_peer and i:
            peers[addr].listen(80 + i)
        conns.append(a.connect(addr, 80 + i if same_peer else 80, 0.0))
    _exchange(a, peers, 0.0)
    for c in conns:
        assert c.state.name == "ESTABLISHED"  # type: ignore[attr-defined]
    return a, conns


Flow = tuple[tuple[str, int], int]  # (UDP destination, TCP destination port)


def _flows(batch: list[tuple[bytes, tuple[str, int]]]) -> list[tuple[Flow, int]]:
    """(flow, seq) of each data segment, in order."""
    out = []
    for dgram, addr in batch:
        seg = parse_segment(dgram)
        if seg.payload:
            out.append(((addr, seg.dport), seg.seq))
    return out


@pytest.mark.parametrize("same_peer", [True, False])
@pytest.mark.parametrize("n", [2, 3])
def test_connections_sending_at_once_are_interleaved(n: int, same_peer: bool) -> None:
    a, conns = _established(n, same_peer)
    now = 0.1
    # Unequal amounts: 10, 7 (and 3) segments within each initial window.
    sizes = [10, 7, 3][:n]
    for conn, k in zip(conns, sizes, strict=True):
        conn.send(b"x" * (k * MSS), now)  # type: ignore[attr-defined]
    flows = _flows(a.datagrams_to_send(now))
    assert len(flows) == sum(sizes)
    ports = [p for p, _ in flows]
    # Round-robin in turns of SEND_QUANTUM, each connection until it runs out.
    expected: list[Flow] = []
    order = sorted(set(ports), key=ports.index)  # the connection flushed first leads
    left = {flow: ports.count(flow) for flow in order}
    assert sorted(left.values()) == sorted(sizes)
    while any(left.values()):
        for port in list(left):
            take = min(SEND_QUANTUM, left[port])
            expected += [port] * take
            left[port] -= take
    assert ports == expected
    # Each connection's segments keep their order.
    for port in set(ports):
        seqs = [s for p, s in flows if p == port]
        assert all(seq_lt(x, y) for x, y in itertools.pairwise(seqs))


def test_one_connection_keeps_its_batch_whole() -> None:
    a, (conn,) = _established(1, same_peer=True)
    conn.send(b"y" * (10 * MSS), 0.1)  # type: ignore[attr-defined]
    flows = _flows(a.datagrams_to_send(0.1))
    seqs = [s for _, s in flows]
    assert len(seqs) == 10
    assert all(seq_lt(x, y) for x, y in itertools.pairwise(seqs))


def test_first_turn_is_not_always_the_same_connections() -> None:
    """The connection flushed first leads its turn; the others still get a
    quantum in each round, so none waits for another's whole batch."""
    a, conns = _established(2, same_peer=True)
    conns[0].send(b"a" * (10 * MSS), 0.1)  # type: ignore[attr-defined]
    conns[1].send(b"b" * (10 * MSS), 0.1)  # type: ignore[attr-defined]
    ports = [p for p, _ in _flows(a.datagrams_to_send(0.1))]
    # Within any 2 * SEND_QUANTUM consecutive data segments both connections appear.
    for i in range(len(ports) - 2 * SEND_QUANTUM + 1):
        assert len(set(ports[i : i + 2 * SEND_QUANTUM])) == 2
