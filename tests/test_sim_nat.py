"""NATs in the deterministic simulator (rudp.sim.nat): RFC 4787 mapping, filtering,
port assignment, timeouts, rebinding, hairpinning, static forwards, two NATs, a NAT
behind a NAT; then rudp connections through NATs."""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import pytest

from rudp.engine import Endpoint, State
from rudp.sim import (
    FATES,
    NAT_FATES,
    Address,
    LinkConfig,
    Nat,
    NatBehavior,
    NatConfig,
    Network,
    PortAllocation,
)
from rudp.sim.host import BulkApp, Host

EI = NatBehavior.ENDPOINT_INDEPENDENT
AD = NatBehavior.ADDRESS_DEPENDENT
APD = NatBehavior.ADDRESS_AND_PORT_DEPENDENT

PUB = "203.0.113.1"  # NAT A's public IP
PUB_B = "198.51.100.1"  # NAT B's public IP
H: Address = ("192.168.1.10", 5000)  # an inside host
H2: Address = ("192.168.1.11", 5000)
S: Address = ("192.0.2.1", 3478)  # public servers
S_PORT2: Address = ("192.0.2.1", 3479)
S2: Address = ("192.0.2.2", 3478)

Event = tuple[float, Address, Address, bytes, str]


class Node:
    """A tiny test node: an outbox and a log of ``(time, source, data)`` received."""

    def __init__(self, echo: bool = False) -> None:
        self.echo = echo
        self.outbox: list[tuple[bytes, Address]] = []
        self.inbox: list[tuple[float, Address, bytes]] = []

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
        return None

    def handle_timer(self, now: float) -> None:
        pass

    def sources(self) -> list[Address]:
        return [src for _, src, _ in self.inbox]


def natted(
    cfg: NatConfig | None = None, *, seed: int = 0, servers: Sequence[Address] = (S,)
) -> tuple[Network, Nat, Node, dict[Address, Node], list[Event]]:
    """An inside host H behind a NAT at PUB, plus public servers; records every tap."""
    net = Network(seed=seed)
    nat = Nat(cfg)
    net.add_nat(nat, PUB)
    h = Node()
    net.add_node(h, H, behind=nat)
    nodes = {}
    for addr in servers:
        nodes[addr] = Node()
        net.add_node(nodes[addr], addr)
    events: list[Event] = []
    net.add_tap(lambda *ev: events.append(ev))
    return net, nat, h, nodes, events


def fates(events: list[Event]) -> list[str]:
    return [e[4] for e in events]


# -- translation ---------------------------------------------------------------


def test_outbound_rewritten_reply_translated_one_tap_per_hop() -> None:
    net, nat, h, srv, events = natted()
    s = srv[S]
    net.set_default_link(LinkConfig(delay=0.01))
    h.send(b"ping", S)
    net.run_for(1.0)
    assert s.inbox == [(0.01, (PUB, 5000), b"ping")]  # port preserved
    s.send(b"pong", (PUB, 5000))
    net.run_for(1.0)
    assert h.inbox == [(1.01, S, b"pong")]  # the reply comes from S, to H
    # One tap per hop, with each hop's own addresses.
    assert [(e[1], e[2], e[4]) for e in events] == [
        (H, S, "delivered"),
        ((PUB, 5000), S, "delivered"),
        (S, (PUB, 5000), "delivered"),
        (S, H, "delivered"),
    ]
    st = nat.stats
    assert (st.mappings_created, st.translated_out, st.translated_in, st.dropped) == (1, 1, 1, 0)
    assert nat.public_address(H) == (PUB, 5000)
    [m] = nat.mappings()
    assert (m.inside, m.public, m.remote, m.static) == (H, (PUB, 5000), None, False)
    assert m.expires_at == 300.0  # default timeout (RFC 4787 REQ-5c), from t=0
    # Inside links are ideal by default; the public default applies outside only.
    assert net.link_stats(H, S, behind=nat).delivered == 1
    assert net.link_stats((PUB, 5000), S).delivered == 1
    assert net.total_stats().delivered == 4


@pytest.mark.parametrize(
    ("mapping", "expected"),
    [
        (EI, [5000, 5000, 5000]),
        (AD, [5000, 5000, 1024]),  # new mapping for a new remote IP
        (APD, [5000, 1024, 1025]),  # new mapping for every remote address
    ],
)
def test_mapping_behaviour(mapping: NatBehavior, expected: list[int]) -> None:
    """RFC 4787 §4.1: which destinations share one public port."""
    net, nat, h, srv, _ = natted(NatConfig(mapping=mapping), servers=(S, S_PORT2, S2))
    for dst in (S, S_PORT2, S2):
        h.send(b"x", dst)
    net.run_for(1.0)
    seen = [srv[dst].sources()[0] for dst in (S, S_PORT2, S2)]
    assert seen == [(PUB, p) for p in expected]
    assert nat.stats.mappings_created == len(set(expected))
    remotes = {m.public[1]: m.remote for m in nat.mappings()}
    if mapping is AD:
        assert remotes == {5000: S[0], 1024: S2[0]}
    if mapping is APD:
        assert remotes == {5000: S, 1024: S_PORT2, 1025: S2}
        with pytest.raises(ValueError, match="needs the remote"):
            nat.public_address(H)
        assert nat.public_address(H, S2) == (PUB, 1025)


@pytest.mark.parametrize(
    ("filtering", "accepted"),
    [
        (EI, [S, S_PORT2, S2]),
        (AD, [S, S_PORT2]),  # same IP, any port
        (APD, [S]),  # exact address only
    ],
)
def test_filtering_behaviour(filtering: NatBehavior, accepted: list[Address]) -> None:
    """RFC 4787 §5: H sent to S only; who may send back to its public address."""
    net, nat, h, srv, events = natted(NatConfig(filtering=filtering), servers=(S, S_PORT2, S2))
    h.send(b"out", S)
    net.run_for(1.0)
    for addr in (S, S_PORT2, S2):
        srv[addr].send(addr[0].encode() + b":" + str(addr[1]).encode(), (PUB, 5000))
    net.run_for(1.0)
    assert h.sources() == accepted
    refused = 3 - len(accepted)
    assert nat.stats.filtered == refused
    assert fates(events).count("nat_filtered") == refused
    assert nat.stats.translated_in == len(accepted)


def test_unsolicited_inbound_has_no_mapping() -> None:
    net, nat, h, srv, events = natted(NatConfig(filtering=EI))
    srv[S].send(b"hello?", (PUB, 5000))
    net.run_for(1.0)
    assert h.inbox == []
    assert nat.stats.no_mapping == 1 == nat.stats.dropped
    assert events[-1][1:] == (S, (PUB, 5000), b"hello?", "nat_no_mapping")


# -- port assignment -----------------------------------------------------------


def hosts_behind(nat_cfg: NatConfig, n: int, seed: int = 0) -> list[int]:
    """Public ports given to ``n`` inside hosts that all use private port 5000."""
    net = Network(seed=seed)
    nat = Nat(nat_cfg)
    net.add_nat(nat, PUB)
    s = Node()
    net.add_node(s, S)
    for i in range(n):
        node = Node()
        net.add_node(node, (f"192.168.1.{10 + i}", 5000), behind=nat)
        node.send(b"x", S)
    net.run_for(1.0)
    return [src[1] for src in s.sources()]


def test_port_preservation_then_sequential() -> None:
    assert hosts_behind(NatConfig(), 4) == [5000, 1024, 1025, 1026]
    assert hosts_behind(NatConfig(port_preservation=False), 3) == [1024, 1025, 1026]
    # A private port outside port_range is not preserved.
    assert hosts_behind(NatConfig(port_range=(20000, 20010)), 2) == [20000, 20001]


def test_random_port_allocation_is_seeded() -> None:
    cfg = NatConfig(allocation=PortAllocation.RANDOM, port_preservation=False)
    a = hosts_behind(cfg, 20, seed=1)
    assert a == hosts_behind(cfg, 20, seed=1)
    assert a != hosts_behind(cfg, 20, seed=2)
    assert len(set(a)) == 20 and all(1024 <= p <= 65535 for p in a)
    assert a != sorted(a)  # not sequential
    # An explicit Nat seed overrides the network's.
    net = Network(seed=5)
    nat = Nat(cfg, seed=99)
    net.add_nat(nat, PUB)
    other = Nat(cfg, seed=99)
    Network(seed=6).add_nat(other, PUB)
    ports = [nat.outbound((f"10.0.0.{i}", 1), S, 0.0) for i in range(5)]
    assert ports == [other.outbound((f"10.0.0.{i}", 1), S, 0.0) for i in range(5)]


def test_port_exhaustion_drops_and_counts() -> None:
    net = Network()
    nat = Nat(NatConfig(port_range=(2000, 2001), mapping=APD))
    net.add_nat(nat, PUB)
    s = Node()
    net.add_node(s, S)
    h = Node()
    net.add_node(h, H, behind=nat)
    events: list[Event] = []
    net.add_tap(lambda *ev: events.append(ev))
    for port in (1, 2, 3):
        h.send(b"x", (S[0], port))
    net.run_for(1.0)
    assert nat.stats.mappings_created == 2
    assert nat.stats.ports_exhausted == 1 == fates(events).count("nat_ports_exhausted")


# -- timeouts, expiry, rebinding ----------------------------------------------


def test_mapping_timeout_outbound_refresh_and_exact_expiry() -> None:
    net, nat, h, srv, events = natted(NatConfig(timeout=30.0, filtering=EI))
    s = srv[S]
    h.send(b"a", S)  # t=0: mapping until t=30
    net.call_at(20.0, partial(h.send, b"b", S))  # refresh: until t=50
    net.call_at(45.0, partial(s.send, b"c", (PUB, 5000)))  # inbound does not refresh
    net.call_at(49.999, partial(s.send, b"d", (PUB, 5000)))
    net.call_at(50.0, partial(s.send, b"e", (PUB, 5000)))  # exactly at expiry: gone
    net.run_for(49.0)
    assert nat.stats.mappings_expired == 0
    assert [m.expires_at for m in nat.mappings()] == [50.0]
    net.run_for(100.0)
    assert [d for _, _, d in h.inbox] == [b"c", b"d"]
    assert nat.stats.mappings_expired == 1 and nat.mappings() == []
    assert nat.stats.no_mapping == 1 and "nat_no_mapping" in fates(events)
    # A new mapping after expiry may well get the same (preserved) port again.
    h.send(b"f", S)
    net.run_for(1.0)
    assert s.sources()[-1] == (PUB, 5000) and nat.stats.mappings_created == 2


def test_mapping_timer_fires_without_traffic() -> None:
    net, nat, h, _, _ = natted(NatConfig(timeout=120.0))
    h.send(b"a", S)
    assert net.run() is True  # returns once the last mapping expired
    assert net.now == 120.0
    assert nat.stats.mappings_expired == 1 and nat.get_timer() is None


def test_inbound_refresh_setting() -> None:
    for refresh, expected in ((False, 30.0), (True, 55.0)):
        net, nat, h, srv, _ = natted(NatConfig(timeout=30.0, inbound_refresh=refresh))
        h.send(b"a", S)
        net.call_at(25.0, partial(srv[S].send, b"b", (PUB, 5000)))
        net.run_for(26.0)
        assert len(h.inbox) == 1
        assert [m.expires_at for m in nat.mappings()] == [expected]


def test_filter_permission_expires_on_its_own() -> None:
    """EIM + APDF: talking to S2 keeps the mapping alive, but S's permission lapses."""
    net, nat, h, srv, _ = natted(NatConfig(timeout=30.0), servers=(S, S2))
    h.send(b"a", S2)
    net.call_at(5.0, partial(h.send, b"b", S))  # S may answer until t=35
    for t in range(10, 60, 10):
        net.call_at(t, partial(h.send, b"k", S2))
    net.call_at(34.0, partial(srv[S].send, b"in time", (PUB, 5000)))
    net.call_at(45.0, partial(srv[S].send, b"late", (PUB, 5000)))
    net.call_at(45.0, partial(srv[S2].send, b"ok", (PUB, 5000)))
    net.run_for(46.0)
    assert [d for _, _, d in h.inbox] == [b"in time", b"ok"]
    assert nat.stats.filtered == 1 and nat.stats.mappings_expired == 0


def test_nat_alone_exact_expiry_without_timer() -> None:
    """The Nat object is sans-IO: expiry is exact even if handle_timer never runs
    (alive while now < last refresh + timeout)."""
    nat = Nat(NatConfig(timeout=10.0, filtering=EI))
    Network().add_nat(nat, PUB)
    assert nat.outbound(H, S, 0.0) == (PUB, 5000)
    assert nat.get_timer() == 10.0
    assert nat.inbound(S, 5000, 9.999) == H
    assert nat.outbound(H, S, 5.0) == (PUB, 5000)  # refresh: until 15
    assert nat.inbound(S, 5000, 14.999) == H
    assert nat.inbound(S, 5000, 15.0) == "nat_no_mapping"
    assert nat.stats.mappings_expired == 1 and nat.get_timer() is None


def test_sequential_allocation_continues_after_the_last_port() -> None:
    nat = Nat(NatConfig(port_preservation=False))
    Network().add_nat(nat, PUB)
    hosts = [(f"10.0.0.{i}", 1) for i in range(4)]
    assert [nat.outbound(h, S, 0.0) for h in hosts[:3]] == [(PUB, p) for p in (1024, 1025, 1026)]
    nat.expire(hosts[0])  # frees 1024, but the cursor has moved on
    assert nat.outbound(hosts[3], S, 0.0) == (PUB, 1027)
    small = Nat(NatConfig(port_preservation=False, port_range=(7, 9)))
    Network().add_nat(small, PUB)
    assert [small.outbound(h, S, 0.0)[1] for h in hosts[:3]] == [7, 8, 9]
    small.expire(hosts[1])
    assert small.outbound(hosts[3], S, 0.0) == (PUB, 8)  # wraps around to the free one


def test_expire_forces_a_new_mapping() -> None:
    net, nat, h, _, _ = natted()
    h.send(b"a", S)
    net.run_for(1.0)
    assert nat.expire(H) == 1 and nat.expire() == 0
    assert nat.stats.mappings_expired == 1 and nat.public_address(H) is None
    h.send(b"b", S)
    net.run_for(1.0)
    assert nat.stats.mappings_created == 2


def test_rebind_idle_gives_a_new_public_port() -> None:
    net, nat, h, srv, events = natted()
    s = srv[S]
    h.send(b"before", S)
    net.run_for(1.0)
    assert nat.rebind(H) == 1 and nat.rebind(H2) == 0
    assert nat.stats.rebinds == 1 and nat.public_address(H) is None
    s.send(b"to old port", (PUB, 5000))
    h.send(b"after", S)
    net.run_for(1.0)
    old, new = s.sources()
    assert old == (PUB, 5000)
    assert new[0] == PUB and new != old  # preservation would give 5000 again: avoided
    assert nat.public_address(H) == new
    assert nat.stats.no_mapping == 1 and "nat_no_mapping" in fates(events)
    s.send(b"to new port", new)
    net.run_for(1.0)
    assert [d for _, _, d in h.inbox] == [b"to new port"]


def test_rebind_while_busy_drops_in_flight_replies() -> None:
    """H streams to an echo server over a 50 ms path; the NAT rebinds mid-stream:
    the server sees the new source at once, echoes in flight to the old port die."""
    net, nat, h, srv, events = natted()
    s = srv[S]
    s.echo = True
    net.set_default_link(LinkConfig(delay=0.025))
    for i in range(100):  # one every 10 ms for 1 s
        net.call_at(i * 0.01, partial(h.send, i.to_bytes(2, "big"), S))
    net.call_at(0.505, partial(nat.rebind, H))
    net.run_for(2.0)
    srcs = s.sources()
    assert srcs[:51] == [(PUB, 5000)] * 51  # sent at 0.00 .. 0.50
    new = srcs[51]
    assert new[0] == PUB and new[1] != 5000 and set(srcs[51:]) == {new}
    assert len(srcs) == 100  # nothing outbound was lost
    echoed = [int.from_bytes(d, "big") for _, _, d in h.inbox]
    lost = sorted(set(range(100)) - set(echoed))
    # Echoes reach the NAT 50 ms after their datagram left H: those of datagrams
    # 46..50 (sent at 0.46 .. 0.50) arrive after the rebind at 0.505, at the old port.
    assert lost == [46, 47, 48, 49, 50]
    assert nat.stats.no_mapping == 5 == fates(events).count("nat_no_mapping")
    assert echoed == [i for i in range(100) if i not in lost]


# -- hairpinning ---------------------------------------------------------------


def two_inside(cfg: NatConfig) -> tuple[Network, Nat, Node, Node, list[Event]]:
    net = Network()
    nat = Nat(cfg)
    net.add_nat(nat, PUB)
    h1, h2, s = Node(), Node(), Node()
    net.add_node(h1, H, behind=nat)
    net.add_node(h2, ("192.168.1.11", 6000), behind=nat)
    net.add_node(s, S)
    h1.send(b"reg", S)  # both get mappings: (PUB, 5000) and (PUB, 6000)
    h2.send(b"reg", S)
    events: list[Event] = []
    net.add_tap(lambda *ev: events.append(ev))
    net.run_for(1.0)
    return net, nat, h1, h2, events


def test_hairpinning_uses_the_external_source() -> None:
    net, nat, h1, h2, events = two_inside(NatConfig(filtering=EI))
    h1.send(b"hi", (PUB, 6000))
    net.run_for(1.0)
    # RFC 4787 REQ-9a: the receiver sees the sender's *public* address.
    assert h2.inbox == [(1.0, (PUB, 5000), b"hi")]
    h2.send(b"back", (PUB, 5000))
    net.run_for(1.0)
    assert [(src, d) for _, src, d in h1.inbox] == [((PUB, 6000), b"back")]
    assert nat.stats.hairpinned == 2 and nat.stats.dropped == 0
    assert ((PUB, 5000), ("192.168.1.11", 6000), "delivered") in [e[1:3] + e[4:] for e in events]


def test_hairpinning_applies_filtering() -> None:
    net, nat, h1, h2, _ = two_inside(NatConfig())  # APDF
    h1.send(b"1", (PUB, 6000))  # h2 never sent to (PUB, 5000): filtered
    net.run_for(1.0)
    h2.send(b"2", (PUB, 5000))  # h1 did send to (PUB, 6000): accepted
    net.run_for(1.0)
    h1.send(b"3", (PUB, 6000))  # now h2 has sent to (PUB, 5000)
    net.run_for(1.0)
    assert [d for _, _, d in h1.inbox + h2.inbox] == [b"2", b"3"]
    assert nat.stats.filtered == 1 and nat.stats.hairpinned == 2


def test_hairpinning_off() -> None:
    net, nat, h1, h2, events = two_inside(NatConfig(filtering=EI, hairpinning=False))
    h1.send(b"hi", (PUB, 6000))
    net.run_for(1.0)
    assert h2.inbox == []
    assert nat.stats.hairpin_drops == 1 == fates(events).count("nat_no_hairpin")


# -- static forwards -----------------------------------------------------------


def test_static_forward_public_port_to_another_inside_port() -> None:
    """The ``docker -p 9000:9001/udp`` case: public port 9000 reaches 10.0.0.2:9001."""
    net = Network()
    nat = Nat()  # APDF: only the forward lets unsolicited traffic in
    net.add_nat(nat, PUB)
    inside: Address = ("10.0.0.2", 9001)
    server, client = Node(echo=True), Node()
    net.add_node(server, inside, behind=nat)
    net.add_node(client, S)
    nat.add_forward(9000, inside)
    client.send(b"hello", (PUB, 9000))
    net.run_for(1.0)
    assert server.inbox == [(0.0, S, b"hello")]
    assert client.inbox == [(0.0, (PUB, 9000), b"hello")]  # replies leave from 9000
    assert nat.stats.forwarded == 1 and nat.stats.mappings_created == 0
    [m] = nat.mappings()
    assert (m.inside, m.public, m.static, m.expires_at) == (inside, (PUB, 9000), True, float("inf"))
    net.run_for(10_000.0)
    assert nat.mappings() == [m]  # never expires
    assert nat.expire() == 0 and nat.rebind(inside) == 0
    client.send(b"x", (PUB, 9001))  # the inside port is not reachable directly
    nat.remove_forward(9000)
    client.send(b"y", (PUB, 9000))
    net.run_for(1.0)
    assert nat.stats.no_mapping == 2 and len(server.inbox) == 1


def test_forward_misuse_raises() -> None:
    net, nat, h, _, _ = natted()
    h.send(b"x", S)
    net.run_for(1.0)
    with pytest.raises(ValueError, match="already used by a mapping"):
        nat.add_forward(5000, ("192.168.1.99", 1))
    nat.add_forward(9000, ("192.168.1.99", 1))
    with pytest.raises(ValueError, match="already used by a static forward"):
        nat.add_forward(9000, ("192.168.1.98", 1))
    with pytest.raises(ValueError, match="already has a static forward"):
        nat.add_forward(9001, ("192.168.1.99", 1))
    with pytest.raises(ValueError, match=r"1\.\.65535"):
        nat.add_forward(0, ("192.168.1.97", 1))
    with pytest.raises(KeyError):
        nat.remove_forward(5000)


# -- topologies ----------------------------------------------------------------


def test_two_nats_same_private_address_hole_punching() -> None:
    """Both peers are 192.168.1.10:5000 behind their own EIM/APDF NAT; a rendezvous
    server learns their public addresses; A's first punch is filtered by B's NAT,
    B's punch opens the way, then both directions work."""
    net = Network()
    nat_a, nat_b = Nat(), Nat()
    net.add_nat(nat_a, PUB)
    net.add_nat(nat_b, PUB_B)
    a, b, r = Node(), Node(), Node()
    net.add_node(a, H, behind=nat_a)
    net.add_node(b, H, behind=nat_b)  # the same private address, another realm
    net.add_node(r, S)
    net.set_default_link(LinkConfig(delay=0.02))
    a.send(b"register", S)
    b.send(b"register", S)
    net.run_for(1.0)
    a_pub, b_pub = r.sources()
    assert (a_pub, b_pub) == ((PUB, 5000), (PUB_B, 5000))
    a.send(b"punch a", b_pub)  # B's NAT never saw B send to a_pub: filtered
    net.run_for(1.0)
    b.send(b"punch b", a_pub)  # A's NAT saw A send to b_pub: accepted
    net.run_for(1.0)
    a.send(b"data a", b_pub)  # now B's NAT has a permission for a_pub
    net.run_for(1.0)
    assert [(s, d) for _, s, d in b.inbox] == [(a_pub, b"data a")]
    assert [(s, d) for _, s, d in a.inbox] == [(b_pub, b"punch b")]
    assert nat_b.stats.filtered == 1 and nat_a.stats.filtered == 0
    # Private links of the two realms are distinct, though the addresses match.
    assert net.link_stats(H, b_pub, behind=nat_a).sent == 2
    assert net.link_stats(H, a_pub, behind=nat_b).sent == 1


def test_symmetric_nats_defeat_hole_punching() -> None:
    """With address-and-port-dependent mapping the address the rendezvous server saw
    is not the one used towards the peer, so every punch is dropped."""
    net = Network()
    cfg = NatConfig(mapping=APD, filtering=APD)
    nat_a, nat_b = Nat(cfg), Nat(cfg)
    net.add_nat(nat_a, PUB)
    net.add_nat(nat_b, PUB_B)
    a, b, r = Node(), Node(), Node()
    net.add_node(a, H, behind=nat_a)
    net.add_node(b, H2, behind=nat_b)
    net.add_node(r, S)
    a.send(b"register", S)
    b.send(b"register", S)
    net.run_for(1.0)
    a_pub, b_pub = r.sources()
    for _ in range(3):
        a.send(b"punch", b_pub)
        b.send(b"punch", a_pub)
        net.run_for(1.0)
    assert a.inbox == [] and b.inbox == []
    assert nat_a.stats.filtered == nat_b.stats.filtered == 3
    assert nat_a.public_address(H, b_pub) == (PUB, 1024) != a_pub


def test_nat_behind_nat() -> None:
    """A home NAT behind a carrier-grade NAT: the server sees the CGN's address."""
    net = Network()
    cgn, home = Nat(NatConfig(port_preservation=False)), Nat()
    net.add_nat(cgn, PUB)
    net.add_nat(home, "100.64.0.7", behind=cgn)
    h, s = Node(), Node(echo=True)
    net.add_node(h, H, behind=home)
    net.add_node(s, S)
    h.send(b"hi", S)
    net.run_for(1.0)
    assert s.sources() == [(PUB, 1024)]
    assert h.inbox == [(0.0, S, b"hi")]
    assert home.public_address(H) == ("100.64.0.7", 5000)
    assert cgn.mappings()[0].inside == ("100.64.0.7", 5000)
    assert home.stats.translated_in == cgn.stats.translated_in == 1


def test_impairments_on_both_sides() -> None:
    """Inside links are keyed by the inside view (private source, destination as
    addressed): stable across rebinds. Outside links see the public address."""
    net, nat, h, srv, events = natted()
    s = srv[S]
    s.echo = True
    net.set_path(H, S, LinkConfig(delay=0.001, loss=0.2), behind=nat)
    net.set_default_link(LinkConfig(delay=0.01))
    net.set_link((PUB, 5000), S, LinkConfig(delay=0.03, duplicate=0.3))
    for i in range(500):
        net.call_at(i * 0.01, partial(h.send, i.to_bytes(2, "big"), S))
    net.run_for(10.0)
    out_in, back_in = net.link_stats(H, S, behind=nat), net.link_stats(S, H, behind=nat)
    out_pub, back_pub = net.link_stats((PUB, 5000), S), net.link_stats(S, (PUB, 5000))
    assert out_in.lost > 0 and back_in.lost > 0
    assert out_pub.sent == out_in.delivered and out_pub.duplicated > 0
    assert back_pub.sent == len(s.inbox) == out_pub.delivered
    assert len(h.inbox) == back_in.delivered
    # One way: 1 ms inside + 30 ms outside; back: 10 ms outside + 1 ms inside.
    assert s.inbox[0][0] == pytest.approx(0.031)
    first_echo = next(t for t, _, d in h.inbox if d == s.inbox[0][2])
    assert first_echo == pytest.approx(0.031 + 0.011)
    total = net.total_stats()
    assert total.lost == out_in.lost + back_in.lost
    assert total.sent == out_in.sent + back_in.sent + out_pub.sent + back_pub.sent
    assert {e[4] for e in events} <= FATES


def trace(seed: int) -> list[Event]:
    cfg = NatConfig(allocation=PortAllocation.RANDOM, port_preservation=False, timeout=2.0)
    net = Network(seed=seed)
    nat = Nat(cfg)
    net.add_nat(nat, PUB)
    s = Node(echo=True)
    net.add_node(s, S)
    net.set_default_link(LinkConfig(delay=0.01, jitter=0.01, loss=0.1))
    net.set_default_link(LinkConfig(loss=0.1, duplicate=0.1), behind=nat)
    events: list[Event] = []
    net.add_tap(lambda *ev: events.append(ev))
    hosts = [Node() for _ in range(5)]
    for i, node in enumerate(hosts):
        net.add_node(node, (f"192.168.1.{i}", 4000), behind=nat)
    for k in range(200):
        net.call_at(k * 0.05, partial(hosts[k % 5].send, bytes([k]), S))
    net.call_at(3.0, partial(nat.rebind, ("192.168.1.0", 4000)))
    net.run()
    assert {e[4] for e in events} <= FATES
    assert nat.stats.mappings_expired > 0 and nat.stats.rebinds == 1
    return events + [(t, src, S, d, "recv") for node in hosts for t, src, d in node.inbox]


def test_determinism() -> None:
    assert trace(3) == trace(3)
    assert trace(3) != trace(4)
    assert NAT_FATES <= FATES


# -- misuse --------------------------------------------------------------------


def test_topology_errors() -> None:
    net = Network()
    nat = Nat()
    with pytest.raises(ValueError, match="not attached"):
        net.add_node(Node(), H, behind=nat)
    with pytest.raises(RuntimeError, match="not attached"):
        nat.mappings()
    with pytest.raises(RuntimeError, match="not attached"):
        nat.outbound(H, S, 0.0)
    assert nat.stats.mappings_created == 0
    net.add_node(Node(), S)
    with pytest.raises(ValueError, match="in use"):
        net.add_nat(nat, S[0])
    net.add_nat(nat, PUB)
    with pytest.raises(ValueError, match="already attached"):
        net.add_nat(nat, "203.0.113.2")
    with pytest.raises(ValueError, match="already attached"):
        Network().add_nat(nat, PUB)
    with pytest.raises(ValueError, match="in use"):
        net.add_nat(Nat(), PUB)
    with pytest.raises(ValueError, match="NAT's public address"):
        net.add_node(Node(), (PUB, 1))
    with pytest.raises(ValueError, match="NAT it is behind"):
        net.add_node(Node(), (PUB, 1), behind=nat)
    with pytest.raises(ValueError, match="NAT it is behind"):
        net.add_nat(Nat(), PUB, behind=nat)
    node = Node()
    net.add_node(node, H, behind=nat)
    with pytest.raises(ValueError, match="already has a node"):
        net.add_node(Node(), H, behind=nat)
    with pytest.raises(ValueError, match="already attached"):
        net.add_node(node, H)
    net.add_node(Node(), H)  # the same address in another realm is fine
    net.remove_node(H, behind=nat)
    with pytest.raises(KeyError):
        net.remove_node(H, behind=nat)


def test_inside_node_removed_unroutable() -> None:
    net, nat, h, srv, events = natted(NatConfig(filtering=EI))
    h.send(b"x", S)
    net.run_for(1.0)
    net.remove_node(H, behind=nat)
    srv[S].send(b"y", (PUB, 5000))
    net.run_for(1.0)
    # Translated, but nobody is at the inside address any more (and the NAT does
    # not send it back out: only on-link addresses are reachable from the NAT).
    assert nat.stats.translated_in == 1 and nat.stats.translated_out == 1
    assert fates(events)[-1] == "unroutable" and net.stats.unroutable == 1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"mapping": "endpoint-independent"}, "mapping"),
        ({"filtering": None}, "filtering"),
        ({"allocation": "random"}, "allocation"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": float("inf")}, "timeout"),
        ({"port_range": (0, 10)}, "port_range"),
        ({"port_range": (10, 9)}, "port_range"),
        ({"port_range": 5}, "port_range"),
    ],
)
def test_nat_config_validation(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        NatConfig(**kwargs)  # type: ignore[arg-type]


# -- rudp connections through NATs ---------------------------------------------


def test_engine_1mb_through_nat_to_public_server() -> None:
    net = Network(seed=21)
    nat = Nat()  # EIM, APDF
    net.add_nat(nat, PUB)
    client = Host(Endpoint(seed=1))
    server = Host(Endpoint(seed=2))
    net.add_node(client, H, behind=nat)
    net.add_node(server, S)
    net.set_default_link(LinkConfig(delay=0.02, loss=0.01))
    server.endpoint.listen(80)
    up, down = random.Random(21).randbytes(1_000_000), random.Random(22).randbytes(100_000)
    server.accept_factory = lambda: BulkApp(down)
    app = BulkApp(up)
    client.connect(app, S, 80, 0.0)

    def done() -> bool:
        return app.terminated and bool(server.accepted) and server.accepted[0].terminated

    assert net.run_until(done, 600)
    srv = server.accepted[0]
    assert hashlib.sha256(srv.received).digest() == hashlib.sha256(up).digest()
    assert hashlib.sha256(app.received).digest() == hashlib.sha256(down).digest()
    assert app.error is None and srv.error is None
    assert srv.conn is not None and srv.conn.addr == (PUB, 5000)  # the server saw the NAT
    assert net.total_stats().lost > 0
    st = nat.stats
    assert st.translated_out > 700 and st.translated_in > 70 and st.dropped == 0
    assert st.mappings_created == 1


def test_engine_server_behind_a_port_forward() -> None:
    """A rudp server at 10.0.0.2:9001 published as (PUB, 9000), like
    ``docker -p 9000:9001/udp``; the client only knows the public address."""
    net = Network(seed=51)
    nat = Nat()
    net.add_nat(nat, PUB)
    inside: Address = ("10.0.0.2", 9001)
    client, server = Host(Endpoint(seed=1)), Host(Endpoint(seed=2))
    net.add_node(server, inside, behind=nat)
    net.add_node(client, S)
    nat.add_forward(9000, inside)
    net.set_default_link(LinkConfig(delay=0.01))
    server.endpoint.listen(80)
    down = random.Random(5).randbytes(50_000)
    server.accept_factory = lambda: BulkApp(down)
    app = BulkApp(b"request")
    conn = client.connect(app, (PUB, 9000), 80, 0.0)
    net.run_until(
        lambda: app.terminated and bool(server.accepted) and server.accepted[0].terminated, 60
    )
    assert app.received == down and server.accepted[0].received == b"request"
    assert app.error is None and conn.addr == (PUB, 9000)
    srv_conn = server.accepted[0].conn
    assert srv_conn is not None and srv_conn.addr == S  # no NAT on the client's side
    assert nat.stats.forwarded > 0 and nat.stats.mappings_created == 0


class PunchHost(Host):
    """A Host that can also send raw (non-TCP) datagrams from its UDP address."""

    def __init__(self, endpoint: Endpoint) -> None:
        super().__init__(endpoint)
        self.raw: list[tuple[bytes, Address]] = []

    def datagrams_to_send(self, now: float) -> Sequence[tuple[bytes, Address]]:
        out = list(super().datagrams_to_send(now))
        raw, self.raw = self.raw, []
        return raw + out


def test_engine_simultaneous_open_through_two_nats() -> None:
    net = Network(seed=31)
    nat_a, nat_b = Nat(), Nat()  # both EIM + APDF ("port-restricted cone")
    net.add_nat(nat_a, PUB)
    net.add_nat(nat_b, PUB_B)
    a, b, r = PunchHost(Endpoint(seed=1)), PunchHost(Endpoint(seed=2)), Node()
    net.add_node(a, H, behind=nat_a)
    net.add_node(b, H, behind=nat_b)
    net.add_node(r, S)
    net.set_default_link(LinkConfig(delay=0.02))
    # Rendezvous: the server learns both public (server-reflexive) addresses.
    a.raw.append((b"register", S))
    b.raw.append((b"register", S))
    net.run_for(0.5)
    a_pub, b_pub = r.sources()
    # Hole punching: A's punch arrives before B sent anything to A: filtered.
    a.raw.append((b"punch", b_pub))
    net.run_for(0.5)
    assert nat_b.stats.filtered == 1
    b.raw.append((b"punch", a_pub))  # passes: A already sent to b_pub
    net.run_for(0.5)
    assert nat_a.stats.translated_in == 1
    assert a.endpoint.counters["dropped"] == 1  # the punch is not a TCP segment
    # Simultaneous open (RFC 9293 §3.5, figure 8) with matching TCP ports.
    up, down = random.Random(1).randbytes(200_000), random.Random(2).randbytes(150_000)
    app_a, app_b = BulkApp(up), BulkApp(down)
    syns: list[tuple[Address, int]] = []  # (source, flags) of SYNs on the public hops

    def tap(t: float, src: Address, dst: Address, data: bytes, fate: str) -> None:
        if src in (a_pub, b_pub) and data[13:14] and data[13] & 0x02:
            syns.append((src, data[13] & 0x12))

    net.add_tap(tap)
    ca = a.connect(app_a, b_pub, 7001, net.now, local_port=7000)
    cb = b.connect(app_b, a_pub, 7000, net.now, local_port=7001)
    net.run_until(lambda: app_a.terminated and app_b.terminated, 120)
    assert app_b.received == up and app_a.received == down
    assert app_a.error is None and app_b.error is None
    assert ca.addr == b_pub and cb.addr == a_pub
    assert nat_a.stats.filtered == 0 and nat_b.stats.filtered == 1
    # Both sides sent a SYN and then, having received the other's, a SYN-ACK
    # (SYN-SENT -> SYN-RECEIVED): no side played listener.
    assert set(syns) == {(a_pub, 0x02), (b_pub, 0x02), (a_pub, 0x12), (b_pub, 0x12)}
    assert not a.endpoint.listeners and not b.endpoint.listeners
    assert ca.state in (State.TIME_WAIT, State.CLOSED)


def test_engine_rebind_mid_transfer_server_sees_new_source() -> None:
    """No migration claim: only that after rebind() the server's endpoint receives
    the client's segments from a new public address."""
    net = Network(seed=41)
    nat = Nat()
    net.add_nat(nat, PUB)
    client, server = Host(Endpoint(seed=1)), Host(Endpoint(seed=2))
    net.add_node(client, H, behind=nat)
    net.add_node(server, S)
    net.set_default_link(LinkConfig(delay=0.01, rate=1_000_000))
    server.endpoint.listen(80)
    server.accept_factory = lambda: BulkApp(b"")
    client.connect(BulkApp(bytes(2_000_000)), S, 80, 0.0)
    seen: list[tuple[float, Address]] = []  # (time, source) on the public hop to S

    def tap(t: float, src: Address, dst: Address, data: bytes, fate: str) -> None:
        if dst == S and src[0] == PUB and fate == "delivered":
            seen.append((t, src))

    net.add_tap(tap)
    net.run_for(0.5)
    assert server.accepted and len(server.accepted[0].received) > 100_000  # busy
    assert nat.rebind(H) == 1
    t_rebind = net.now
    net.run_for(0.5)
    before = {src for t, src in seen if t < t_rebind}
    after = {src for t, src in seen if t >= t_rebind}
    assert before == {(PUB, 5000)}
    [new] = after
    assert new[0] == PUB and new[1] != 5000 and nat.public_address(H) == new
    assert server.endpoint.counters["datagrams_received"] > 0


# -- docs ----------------------------------------------------------------------


def test_docs_example_runs() -> None:
    text = (Path(__file__).resolve().parent.parent / "docs" / "simulator-nat.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert blocks
    for block in blocks:
        exec(compile(block, "docs/simulator-nat.md", "exec"), {})
