"""Tests for the deterministic network simulator (rudp.sim), with fake nodes."""

from __future__ import annotations

import itertools
from functools import partial

import pytest

from rudp.sim import FATES, Address, LinkConfig, Network

A: Address = ("10.0.0.1", 1000)
B: Address = ("10.0.0.2", 2000)


class Node:
    """A fake node: an outbox, a log of received datagrams and a list of deadlines."""

    def __init__(self, echo: bool = False) -> None:
        self.echo = echo
        self.outbox: list[tuple[bytes, Address]] = []
        self.inbox: list[tuple[float, Address, bytes]] = []
        self.deadlines: list[float] = []
        self.fired: list[float] = []

    def send(self, data: bytes, dst: Address) -> None:
        self.outbox.append((data, dst))

    def receive_datagram(self, data: bytes, addr: Address, now: float) -> None:
        self.inbox.append((now, addr, data))
        if self.echo:
            self.outbox.append((data, addr))

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address]]:
        out, self.outbox = self.outbox, []
        return out

    def get_timer(self) -> float | None:
        return min(self.deadlines, default=None)

    def handle_timer(self, now: float) -> None:
        self.fired.append(now)
        self.deadlines = [d for d in self.deadlines if d > now]


def pair(cfg: LinkConfig | None = None, seed: int = 0) -> tuple[Network, Node, Node]:
    net = Network(seed=seed)
    a, b = Node(), Node()
    net.add_node(a, A)
    net.add_node(b, B)
    if cfg is not None:
        net.set_link(A, B, cfg)
    return net, a, b


def send_numbered(net: Network, node: Node, n: int, interval: float, size: int = 8) -> None:
    """Schedule ``n`` datagrams carrying their index, one every ``interval`` seconds."""
    for i in range(n):
        payload = i.to_bytes(4, "big") + bytes(size - 4)
        net.call_at(i * interval, partial(node.send, payload, B))


def indices(node: Node) -> list[int]:
    return [int.from_bytes(d[:4], "big") for _, _, d in node.inbox]


def test_delivery_at_exactly_now_plus_delay() -> None:
    net, a, b = pair()
    b.echo = True
    net.set_path(A, B, LinkConfig(delay=0.05))
    a.send(b"ping", B)
    assert net.run() is True
    assert b.inbox == [(0.05, A, b"ping")]
    assert a.inbox == [(0.1, B, b"ping")]
    st = net.link_stats(A, B)
    assert (st.sent, st.delivered, st.bytes_delivered, st.in_flight) == (1, 1, 4, 0)
    assert net.total_stats().delivered == 2


def test_fifo_under_jitter() -> None:
    net, a, b = pair(LinkConfig(delay=0.01, jitter=0.05))
    send_numbered(net, a, 1000, 0.001)
    net.run()
    assert indices(b) == list(range(1000))
    latencies = {round(t - i * 0.001, 9) for (t, _, _), i in zip(b.inbox, indices(b), strict=True)}
    assert len(latencies) > 100  # jitter really varied the delay
    assert min(latencies) >= 0.01 - 1e-9


def test_loss_rate_and_counter() -> None:
    net, a, b = pair(LinkConfig(loss=0.2))
    send_numbered(net, a, 10_000, 0.0001)
    net.run()
    st = net.link_stats(A, B)
    assert st.sent == 10_000
    assert 1700 < st.lost < 2300
    assert st.lost == 10_000 - len(b.inbox) == st.dropped
    assert st.delivered == len(b.inbox)


def test_loss_max_burst() -> None:
    net, a, b = pair(LinkConfig(loss=0.9, loss_max_burst=3))
    fates: list[str] = []
    net.add_tap(lambda t, s, d, data, fate: fates.append(fate))
    send_numbered(net, a, 5000, 0.001)
    net.run()
    runs, run = [], 0
    for fate in fates:
        run = run + 1 if fate == "lost" else 0
        runs.append(run)
    assert max(runs) == 3
    st = net.link_stats(A, B)
    assert st.lost == fates.count("lost") > 0
    assert len(b.inbox) == 5000 - st.lost >= 5000 // 4


def test_duplication() -> None:
    net, a, b = pair(LinkConfig(duplicate=0.3))
    send_numbered(net, a, 2000, 0.001)
    net.run()
    st = net.link_stats(A, B)
    assert 450 < st.duplicated < 750
    got = indices(b)
    assert len(got) == st.delivered == 2000 + st.duplicated
    assert sorted(set(got)) == list(range(2000))
    assert len(got) - len(set(got)) == st.duplicated


def test_reordering() -> None:
    net, a, b = pair(LinkConfig(delay=0.02, reorder=0.1, reorder_delay=0.01))
    fates: list[str] = []
    net.add_tap(lambda t, s, d, data, fate: fates.append(fate))
    send_numbered(net, a, 1000, 0.001)
    net.run()
    got = indices(b)
    assert sorted(got) == list(range(1000))
    out_of_order = sum(1 for x, y in itertools.pairwise(got) if y < x)
    st = net.link_stats(A, B)
    assert st.reordered == fates.count("reordered") > 0
    assert out_of_order > 0


def test_corruption() -> None:
    net, a, b = pair(LinkConfig(corrupt=0.1, corrupt_bytes=2))
    sent = [bytes([i % 256]) * 50 for i in range(2000)]
    for i, data in enumerate(sent):
        net.call_at(i * 0.001, partial(a.send, data, B))
    net.run()
    got = [d for _, _, d in b.inbox]
    assert len(got) == 2000  # corrupted datagrams are still delivered
    differing = 0
    for orig, recv in zip(sent, got, strict=True):
        assert len(orig) == len(recv)
        flipped = sum(1 for x, y in zip(orig, recv, strict=True) if x != y)
        assert flipped in (0, 2)
        differing += flipped > 0
    st = net.link_stats(A, B)
    assert st.corrupted == differing > 0


def test_rate_limit_throughput_and_queue_drops() -> None:
    net, a, b = pair(LinkConfig(rate=100_000, delay=0.01))
    for _ in range(200):
        a.send(bytes(1000), B)
    net.run()
    times = [t for t, _, _ in b.inbox]
    assert times[0] == pytest.approx(0.02)
    assert times[-1] == pytest.approx(2.01)  # 200 kB at 100 kB/s, plus the delay
    assert 200 * 1000 / (times[-1] - 0.01) == pytest.approx(100_000)

    net, a, b = pair(LinkConfig(rate=100_000, queue_limit=10_000))
    for _ in range(200):
        a.send(bytes(1000), B)
    net.run()
    st = net.link_stats(A, B)
    assert len(b.inbox) == st.delivered == 10
    assert st.queue_drops == 190
    # Once the queue has drained, the link accepts datagrams again.
    a.send(bytes(1000), B)
    net.run()
    assert st.delivered == 11


def test_blackhole_window() -> None:
    net, a, b = pair(LinkConfig(blackhole=[(1.0, 2.0)]))
    send_numbered(net, a, 30, 0.1)
    net.run()
    st = net.link_stats(A, B)
    assert st.blackholed == 10
    assert indices(b) == [*range(10), *range(20, 30)]


def test_blackhole_periodic() -> None:
    cfg = LinkConfig(blackhole=((5, 7),), blackhole_period=7)
    assert [cfg.is_blackholed(t) for t in (0, 4.99, 5, 6.99, 7, 11.9, 12, 13.5, 14)] == [
        False,
        False,
        True,
        True,
        False,
        False,
        True,
        True,
        False,
    ]
    net, a, b = pair(cfg)
    send_numbered(net, a, 60, 0.5)  # t = 0, 0.5, ..., 29.5
    net.run()
    received = {i * 0.5 for i in indices(b)}
    dropped = {i * 0.5 for i in range(60)} - received
    assert dropped == {t for t in received | dropped if t >= 5 and (t - 5) % 7 < 2}
    assert net.link_stats(A, B).blackholed == len(dropped) == 16


def test_mtu_drops() -> None:
    net, a, b = pair(LinkConfig(mtu=100))
    fates: list[str] = []
    net.add_tap(lambda t, s, d, data, fate: fates.append(fate))
    a.send(bytes(100), B)
    a.send(bytes(101), B)
    net.run()
    assert [len(d) for _, _, d in b.inbox] == [100]
    assert net.link_stats(A, B).mtu_drops == 1
    assert fates == ["delivered", "mtu_drop"]


def test_unroutable() -> None:
    net, a, b = pair()
    fates: list[str] = []
    net.add_tap(lambda t, s, d, data, fate: fates.append(fate))
    a.send(b"x", ("10.9.9.9", 9))
    net.flush()
    assert net.stats.unroutable == 1
    assert fates == ["unroutable"]
    # A node that disappears while a datagram is in flight also makes it unroutable.
    net.set_link(A, B, LinkConfig(delay=1))
    a.send(b"y", B)
    net.flush()
    net.remove_node(B)
    net.run()
    assert net.stats.unroutable == 2 and b.inbox == []


def test_timers_fire_at_deadline_and_stale_skipped() -> None:
    net = Network(start_time=10.0)
    n = Node()
    net.add_node(n, A)
    n.deadlines = [11.0]
    net.flush()
    n.deadlines = [12.5]  # moved later outside the loop: the 11.0 entry goes stale
    net.flush()
    net.run()
    assert n.fired == [12.5]
    assert net.now == 12.5 and net.stats.timers_fired == 1

    n.deadlines = [14.0, 13.0]
    net.flush()
    n.deadlines = [13.0, 12.75]  # moved earlier; 14.0 is cancelled
    assert net.run() is True
    assert n.fired == [12.5, 12.75, 13.0]

    net.run_for(1.0)
    n.deadlines = [1.0]  # in the past: fires at once, never before its deadline
    net.run()
    assert n.fired == [12.5, 12.75, 13.0, 14.0]


def test_timer_wakes_node_that_sends() -> None:
    net, a, b = pair(LinkConfig(delay=0.25))
    a.deadlines = [1.0]
    net.flush()
    net.call_at(0.5, lambda: None)

    def on_timer(now: float) -> None:
        a.fired.append(now)
        a.deadlines = []
        a.send(b"tick", B)

    a.handle_timer = on_timer  # type: ignore[method-assign]
    net.run()
    assert a.fired == [1.0]
    assert b.inbox == [(1.25, A, b"tick")]


def test_runaway_timer_raises() -> None:
    class Stuck(Node):
        def get_timer(self) -> float | None:
            return 0.0

    net = Network(max_events_per_instant=1000)
    net.add_node(Stuck(), A)
    with pytest.raises(RuntimeError, match="without time advancing"):
        net.run()


def test_run_until_and_run_for() -> None:
    net, a, b = pair(LinkConfig(delay=0.3))
    net.run_for(0.5)
    assert net.now == 0.5
    a.send(b"x", B)
    assert net.run_until(lambda: len(b.inbox) > 5, timeout=2.25) is False
    assert net.now == 2.75
    a.send(b"y", B)
    assert net.run_until(lambda: bool(b.inbox) and b.inbox[-1][2] == b"y", timeout=10) is True
    assert net.now == pytest.approx(3.05)
    assert net.run_until(lambda: True, timeout=1) is True and net.now == pytest.approx(3.05)
    with pytest.raises(ValueError):
        net.run_until(lambda: True, timeout=-1)
    b.deadlines = [100.0]
    assert net.run(max_time=50.0) is False
    assert net.now == 50.0 and b.fired == []


def test_default_link_applies_to_unset_pairs_only() -> None:
    net, a, b = pair()
    net.set_link(B, A, LinkConfig(delay=0.5))
    net.set_default_link(LinkConfig(delay=0.1))
    a.send(b"1", B)
    b.send(b"2", A)
    net.run()
    assert b.inbox[0][0] == 0.1 and a.inbox[0][0] == 0.5


def trace(seed: int) -> list[tuple[float, Address, Address, bytes, str]]:
    cfg = LinkConfig(delay=0.01, jitter=0.01, loss=0.1, duplicate=0.05, reorder=0.05, corrupt=0.05)
    net = Network(seed=seed)
    a, b = Node(), Node(echo=True)
    net.add_node(a, A)
    net.add_node(b, B)
    net.set_default_link(cfg)
    events: list[tuple[float, Address, Address, bytes, str]] = []
    net.add_tap(lambda *ev: events.append(ev))
    send_numbered(net, a, 500, 0.002)
    net.run()
    assert {e[4] for e in events} <= FATES
    return events + [(t, s, B, d, "recv") for t, s, d in a.inbox]


def test_determinism() -> None:
    assert trace(7) == trace(7)
    assert trace(7) != trace(8)


def test_total_stats_sums_links() -> None:
    net, a, b = pair()
    b.echo = True
    net.set_path(A, B, LinkConfig(loss=0.3))
    send_numbered(net, a, 1000, 0.001)
    net.run()
    ab, ba, total = net.link_stats(A, B), net.link_stats(B, A), net.total_stats()
    assert total.sent == ab.sent + ba.sent == 1000 + ab.delivered
    assert total.lost == ab.lost + ba.lost and ab.lost > 0 and ba.lost > 0
    assert total.in_flight == 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"delay": -1}, "delay"),
        ({"jitter": float("nan")}, "jitter"),
        ({"loss": 1.5}, "loss"),
        ({"duplicate": -0.1}, "duplicate"),
        ({"reorder": 2}, "reorder"),
        ({"corrupt": 1.01}, "corrupt"),
        ({"loss_max_burst": 0}, "loss_max_burst"),
        ({"corrupt_bytes": 0}, "corrupt_bytes"),
        ({"rate": 0}, "rate"),
        ({"queue_limit": 1000}, "queue_limit needs a rate"),
        ({"rate": 1e6, "queue_limit": 0}, "queue_limit"),
        ({"mtu": 0}, "mtu"),
        ({"blackhole": [(2, 1)]}, "blackhole"),
        ({"blackhole": [(1,)]}, "blackhole"),
        ({"blackhole_period": 5}, "blackhole_period"),
        ({"blackhole": [(0, 6)], "blackhole_period": 5}, "longer than"),
    ],
)
def test_link_config_validation(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        LinkConfig(**kwargs)  # type: ignore[arg-type]


def test_node_registration_errors() -> None:
    net, a, _ = pair()
    with pytest.raises(ValueError, match="already has a node"):
        net.add_node(Node(), A)
    with pytest.raises(ValueError, match="already attached"):
        net.add_node(a, ("10.0.0.3", 1))
