"""Peer-to-peer through NATs (examples/p2p.py, docs/p2p.md; TEST-MATRIX P3).

* In the simulator, in virtual time: the example's own sans-IO rendezvous server and
  peer logic, two hosts behind two NATs, hole punching, then rudp's engine with a
  simultaneous open and 1 MB both ways; which NAT combinations work and which fail.
* Over real sockets on loopback: the example's asyncio functions, in one process
  (default loop and uvloop), and its command line as three processes.
* Through real NATs: five network namespaces, two of them Linux NATs doing nftables
  masquerade; the example runs as three processes (root, iproute2 and nft needed).
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import io
import json
import logging
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rudp.engine import Connection, Endpoint
from rudp.sim import Address, LinkConfig, Nat, NatBehavior, NatConfig, Network
from rudp.sim.host import BulkApp, Host
from rudp.wire import ParseError, parse_segment

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "p2p.py"


def _load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("rudp_example_p2p", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


p2p = _load_example()
Phase = p2p.Phase

EI = NatBehavior.ENDPOINT_INDEPENDENT
AD = NatBehavior.ADDRESS_DEPENDENT
APD = NatBehavior.ADDRESS_AND_PORT_DEPENDENT

PUB_A, PUB_B = "203.0.113.1", "198.51.100.1"  # the NATs' public IPs
PRIV: Address = ("192.168.1.10", 5000)  # both peers' private address (two realms)
RDV: Address = ("192.0.2.1", 3478)  # the rendezvous server, public
SYN, ACK = 0x02, 0x10
ADM = NatConfig(mapping=AD, filtering=AD)  # address-dependent mapping
SYM = NatConfig(mapping=APD, filtering=APD)  # "symmetric"


def sha(data: bytes | bytearray) -> str:
    return hashlib.sha256(data).hexdigest()


# -- the simulator ---------------------------------------------------------------


class SimPeer:
    """A simulator node doing what ``run_peer`` does with a socket: the example's
    :class:`PeerFinder` on its UDP address until the path is open, then rudp's
    engine (through :class:`rudp.sim.host.Host`) opening a connection to the peer
    with the agreed TCP port on both sides."""

    def __init__(self, finder: Any, payload: bytes, seed: int) -> None:
        self.finder = finder
        self.host = Host(Endpoint(seed=seed))
        self.app = BulkApp(payload)
        self.conn: Connection | None = None
        self.ready_at: float | None = None

    def _advance(self, now: float) -> None:
        if self.conn is None and self.finder.phase is Phase.READY:
            port = p2p.tcp_port_for(self.finder.room)
            self.conn = self.host.connect(self.app, self.finder.peer, port, now, local_port=port)
            self.ready_at = now

    def receive_datagram(self, data: bytes, addr: Address, now: float) -> None:
        if self.conn is None:
            self.finder.receive_datagram(data, addr, now)
            self._advance(now)
        else:
            self.host.receive_datagram(data, addr, now)

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address]]:
        return [*self.finder.datagrams_to_send(now), *self.host.datagrams_to_send(now)]

    def get_timer(self) -> float | None:
        times = [t for t in (self.finder.get_timer(), self.host.get_timer()) if t is not None]
        return min(times) if times else None

    def handle_timer(self, now: float) -> None:
        t = self.finder.get_timer()
        if t is not None and t <= now:
            self.finder.handle_timer(now)
            self._advance(now)
        t = self.host.get_timer()
        if t is not None and t <= now:
            self.host.handle_timer(now)


class World:
    """Two peers behind their own NAT (same private address), a public rendezvous."""

    def __init__(
        self,
        nat_a: NatConfig,
        nat_b: NatConfig,
        *,
        payload_a: bytes,
        payload_b: bytes,
        seed: int = 1,
        start_b: float = 1.0,
    ) -> None:
        self.net = net = Network(seed=seed)
        self.nat_a, self.nat_b = Nat(nat_a), Nat(nat_b)
        net.add_nat(self.nat_a, PUB_A)
        net.add_nat(self.nat_b, PUB_B)
        self.rendezvous = p2p.Rendezvous()
        net.add_node(self.rendezvous, RDV)
        room = "sim-room"
        # B starts later: A waits in the room, and is told about B when B arrives.
        self.a = SimPeer(p2p.PeerFinder(room, RDV, PRIV, 0.0), payload_a, seed=11)
        self.b = SimPeer(p2p.PeerFinder(room, RDV, PRIV, start_b), payload_b, seed=12)
        net.add_node(self.a, PRIV, behind=self.nat_a)
        net.add_node(self.b, PRIV, behind=self.nat_b)
        net.set_default_link(LinkConfig(delay=0.01))  # the public network
        # A is nearer the rendezvous than B, so A hears about B first and punches
        # before B has punched: B's NAT drops A's first punches. A's first request
        # to the rendezvous is lost (repeated).
        net.set_path(
            PRIV, RDV, LinkConfig(delay=0.005, blackhole=[(0.0, 0.001)]), behind=self.nat_a
        )
        net.set_path(PRIV, RDV, LinkConfig(delay=0.03), behind=self.nat_b)
        # Every hop, with its fate (taps see each hop with that hop's addresses).
        self.log: list[tuple[float, Address, Address, bytes, str]] = []
        net.add_tap(lambda *ev: self.log.append(ev))

    def run_until_finders_done(self, limit: float = 120.0) -> None:
        assert self.net.run_until(lambda: self.a.finder.done and self.b.finder.done, limit)

    def run_until_transferred(self, limit: float = 600.0) -> None:
        ok = self.net.run_until(lambda: self.a.app.terminated and self.b.app.terminated, limit)
        assert ok, (self.a.app.error, self.b.app.error)

    def tcp_flags_from(self, public: Address) -> set[int]:
        """SYN/ACK flags of every TCP segment that left ``public`` on a public hop."""
        flags = set()
        for _t, src, _dst, data, _fate in self.log:
            if src != public:
                continue
            try:
                seg = parse_segment(data)
            except ParseError:
                continue  # a message of the example
            flags.add(seg.flags & (SYN | ACK))
        return flags


def test_sim_1mb_both_ways_through_two_nats() -> None:
    """EIM + APDF NATs on both sides ("port-restricted cone", Linux masquerade's
    behaviour): rendezvous (its first request lost and repeated), punching (the first
    punches filtered), a simultaneous open, then 1 MB each way over a lossy path."""
    up, down = random.Random(1).randbytes(1_000_000), random.Random(2).randbytes(1_000_000)
    w = World(NatConfig(), NatConfig(), payload_a=up, payload_b=down)
    fa, fb = w.a.finder, w.b.finder
    a_pub, b_pub = (PUB_A, 5000), (PUB_B, 5000)
    w.run_until_finders_done()
    assert fa.phase is Phase.READY and fb.phase is Phase.READY
    # The rendezvous request was lost once and repeated.
    assert w.net.link_stats(PRIV, RDV, behind=w.nat_a).blackholed == 1
    assert fa.registers_sent >= 2
    # The rendezvous saw (and told) each peer's public address: the NAT's, not
    # 192.168.1.10; each was introduced to the other once.
    assert (fa.public, fb.public) == (a_pub, b_pub)
    assert (fa.peer, fb.peer) == (b_pub, a_pub)
    assert w.rendezvous.counters["introductions"] == 1
    # Before B punched, B's NAT filtered A's punches: the impairment happened.
    filtered = [p2p.decode(d) for _t, _s, _d, d, fate in w.log if fate == "nat_filtered"]
    assert w.nat_b.stats.filtered >= 1 and w.nat_a.stats.filtered == 0
    assert filtered and all(m is not None and m["op"] == "punch" for m in filtered)
    assert fb.punches_received >= 1 and fa.punches_received >= 1
    # Now the transfer, over a lossy public path between the NATs.
    w.net.set_path(a_pub, b_pub, LinkConfig(delay=0.01, loss=0.01))
    w.run_until_transferred()
    assert w.a.app.error is None and w.b.app.error is None
    assert sha(w.b.app.received) == sha(up) and sha(w.a.app.received) == sha(down)
    assert w.net.link_stats(a_pub, b_pub).lost + w.net.link_stats(b_pub, a_pub).lost > 0
    # A simultaneous open: each side sent a SYN and then a SYN,ACK (SYN-SENT ->
    # SYN-RECEIVED, RFC 9293 §3.5 figure 7); neither side listened.
    for public, peer in ((a_pub, w.a), (b_pub, w.b)):
        assert {SYN, SYN | ACK} <= w.tcp_flags_from(public)
        assert not peer.host.endpoint.listeners
        assert peer.conn is not None and peer.conn.addr != PRIV


def test_sim_symmetric_nats_on_both_sides_fail_cleanly() -> None:
    """Address-and-port-dependent mapping on both sides: each NAT gives the peer
    another public port than the one the rendezvous saw, so every punch is filtered.
    Both peers give up after punch_timeout with an explanation; no SYN is sent."""
    w = World(SYM, SYM, payload_a=b"a", payload_b=b"b")
    w.run_until_finders_done()
    fa, fb = w.a.finder, w.b.finder
    assert fa.phase is Phase.FAILED and fb.phase is Phase.FAILED
    for f in (fa, fb):
        assert f.heard is False and f.punches_received == 0 and f.punches_sent > 50
        assert "symmetric" in f.error and "docs/p2p.md" in f.error
    assert w.nat_a.stats.filtered > 0 and w.nat_b.stats.filtered > 0
    assert w.a.conn is None and w.b.conn is None
    assert not w.tcp_flags_from((PUB_A, 5000)) and not w.tcp_flags_from((PUB_B, 5000))
    # Introduced at about t = 1.05; punching gives up punch_timeout (10 s) later.
    assert 11.0 < w.net.now < 11.2


@pytest.mark.parametrize(
    ("nat_a", "nat_b", "works"),
    [
        pytest.param(NatConfig(filtering=EI), NatConfig(filtering=EI), True, id="EIM/EIF+EIM/EIF"),
        pytest.param(NatConfig(filtering=AD), NatConfig(), True, id="EIM/ADF+EIM/APDF"),
        # A mapping that depends on the destination gives the peer another public
        # port than the one the rendezvous saw: its punches come from a port nobody
        # announced. A NAT filtering by address only lets them in, and the peer
        # adopts that address (peer-reflexive); one filtering by address and port
        # does not, and then nothing gets through.
        pytest.param(ADM, NatConfig(filtering=AD), True, id="ADM/ADF+EIM/ADF"),
        pytest.param(ADM, NatConfig(), False, id="ADM/ADF+EIM/APDF"),
        pytest.param(SYM, NatConfig(filtering=AD), True, id="APDM/APDF+EIM/ADF"),
        pytest.param(SYM, NatConfig(), False, id="APDM/APDF+EIM/APDF"),
        pytest.param(SYM, SYM, False, id="APDM/APDF+APDM/APDF"),
        pytest.param(ADM, SYM, False, id="ADM/ADF+APDM/APDF"),
    ],
)
def test_sim_nat_combinations(nat_a: NatConfig, nat_b: NatConfig, works: bool) -> None:
    """The table in docs/p2p.md."""
    up, down = random.Random(3).randbytes(30_000), random.Random(4).randbytes(20_000)
    w = World(nat_a, nat_b, payload_a=up, payload_b=down)
    w.run_until_finders_done()
    phases = {w.a.finder.phase, w.b.finder.phase}
    if not works:
        assert phases == {Phase.FAILED}
        assert w.nat_a.stats.filtered + w.nat_b.stats.filtered > 0
        return
    assert phases == {Phase.READY}
    w.run_until_transferred()
    assert w.b.app.received == up and w.a.app.received == down
    assert w.a.app.error is None and w.b.app.error is None


def test_sim_both_peers_behind_one_nat_without_hairpinning() -> None:
    """Same public IP: the peers use each other's local address (the NAT here does
    not hairpin, so the public addresses would not work)."""
    net = Network(seed=5)
    nat = Nat(NatConfig(hairpinning=False))
    net.add_nat(nat, PUB_A)
    rdv = p2p.Rendezvous()
    net.add_node(rdv, RDV)
    la, lb = ("192.168.1.10", 5000), ("192.168.1.11", 6000)
    a = SimPeer(p2p.PeerFinder("lan", RDV, la, 0.0), b"from a" * 1000, seed=1)
    b = SimPeer(p2p.PeerFinder("lan", RDV, lb, 0.5), b"from b" * 1000, seed=2)
    net.add_node(a, la, behind=nat)
    net.add_node(b, lb, behind=nat)
    net.set_default_link(LinkConfig(delay=0.01))
    assert net.run_until(lambda: a.app.terminated and b.app.terminated, 60)
    assert a.finder.public[0] == b.finder.public[0] == PUB_A
    assert (a.finder.peer, b.finder.peer) == (lb, la)
    assert b.app.received == b"from a" * 1000 and a.app.received == b"from b" * 1000
    assert nat.stats.hairpin_drops == 0  # they never tried the public addresses


def test_sim_timeouts_say_why() -> None:
    net = Network()
    lonely = p2p.PeerFinder("alone", RDV, PRIV, 0.0, timeout=5.0)
    nobody = p2p.PeerFinder("alone", ("192.0.2.99", 1), ("10.0.0.1", 1), 0.0, timeout=5.0)
    net.add_node(p2p.Rendezvous(), RDV)
    net.add_node(lonely, PRIV)
    net.add_node(nobody, ("10.0.0.1", 1))
    net.run_for(6.0)
    assert lonely.phase is nobody.phase is Phase.FAILED
    assert lonely.error == "no peer joined room 'alone' within 5 s"
    assert nobody.error.startswith("no answer from the rendezvous server at 192.0.2.99:1 (")
    # Backoff 0.25 s doubling to 2 s: requests at 0, .25, .75, 1.75, 3.75.
    assert nobody.registers_sent == 5


# -- the sans-IO parts alone -------------------------------------------------------

R1: Address = ("198.51.100.7", 4000)
R2: Address = ("203.0.113.9", 5000)
R3: Address = ("192.0.2.50", 6000)


def register(room: str, ident: str, local: Address = ("10.0.0.1", 1)) -> bytes:
    msg: bytes = p2p.encode("register", room=room, id=ident, local=list(local))
    return msg


def replies(rdv: Any) -> list[tuple[dict[str, Any], Address]]:
    return [(p2p.decode(data), dst) for data, dst in rdv.datagrams_to_send(0.0)]


def test_rendezvous_introduces_both_and_repeats_answers() -> None:
    rdv = p2p.Rendezvous()
    rdv.receive_datagram(register("r", "a" * 16), R1, 0.0)
    [(msg, dst)] = replies(rdv)
    assert (msg["op"], msg["you"], dst) == ("wait", list(R1), R1)
    rdv.receive_datagram(register("r", "b" * 16, ("10.0.0.2", 2)), R2, 1.0)
    (to_b, dst_b), (to_a, dst_a) = replies(rdv)
    assert (to_b["op"], dst_b, to_b["peer"], to_b["peer_id"]) == ("peer", R2, list(R1), "a" * 16)
    assert (to_a["op"], dst_a, to_a["peer"], to_a["peer_local"]) == (
        "peer", R1, list(R2), ["10.0.0.2", 2],
    )  # fmt: skip
    # A repeated request (its answer was lost) is answered again, to the asker only.
    rdv.receive_datagram(register("r", "a" * 16), R1, 2.0)
    [(again, dst)] = replies(rdv)
    assert (again["op"], dst, again["peer"]) == ("peer", R1, list(R2))
    assert rdv.counters["introductions"] == 1 and rdv.counters["requests"] == 3


def test_rendezvous_state_is_bounded_and_expires() -> None:
    rdv = p2p.Rendezvous(ttl=30.0, max_rooms=3)
    for i in range(5):
        rdv.receive_datagram(register(f"room{i}", f"{i:016x}"), R1, float(i))
    assert list(rdv.rooms) == ["room2", "room3", "room4"]
    assert rdv.counters["evicted"] == 2
    rdv.receive_datagram(register("room2", "2" * 16), R1, 10.0)  # refreshes room2
    rdv.receive_datagram(register("x", "9" * 16), R2, 33.5)  # room3 (t=3) is 30.5 s old
    assert list(rdv.rooms) == ["room4", "room2", "x"] and rdv.counters["expired"] == 1
    rdv.receive_datagram(register("x", "8" * 16), R3, 100.0)  # every other room expired
    assert list(rdv.rooms) == ["x"]
    assert [m.ident for m in rdv.rooms["x"]] == ["8" * 16]  # the old member, too


def test_rendezvous_third_peer_replaces_the_oldest() -> None:
    rdv = p2p.Rendezvous()
    for ident, addr in (("a" * 16, R1), ("b" * 16, R2), ("c" * 16, R3)):
        rdv.receive_datagram(register("r", ident), addr, 0.0)
    assert [m.ident for m in rdv.rooms["r"]] == ["b" * 16, "c" * 16]
    (to_c, _), (to_b, dst) = replies(rdv)[-2:]
    assert to_c["peer_id"] == "b" * 16 and (to_b["peer_id"], dst) == ("c" * 16, R2)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"register",
        p2p.MAGIC,
        p2p.MAGIC + b"[" * 1000 + b"]" * 10,  # nesting beyond the recursion limit
        p2p.MAGIC + b"\xff\xfe{}",
        p2p.encode("register", room="", id="a" * 16, local=["10.0.0.1", 1]),
        p2p.encode("register", room="r", id="A" * 16, local=["10.0.0.1", 1]),
        p2p.encode("register", room="r", id="a" * 16, local=["host", 1]),
        p2p.encode("register", room="r", id="a" * 16, local=["10.0.0.1", True]),
        p2p.encode("register", room="r", id="a" * 16, local=["10.0.0.1", 70000]),
        p2p.encode("register", room="r" * 65, id="a" * 16, local=["10.0.0.1", 1]),
        p2p.encode("register", room="r", id="a" * 16, local=["10.0.0.1", 1], pad="x" * 1024),
        p2p.encode("punch", room="r", id="a" * 16, peer_id="b" * 16, seen=True),
    ],
)
def test_rendezvous_drops_and_counts_bad_requests(data: bytes) -> None:
    rdv = p2p.Rendezvous()
    rdv.receive_datagram(data, R1, 0.0)
    assert rdv.counters["dropped"] == 1 and not rdv.rooms and not replies(rdv)


FIELDS = ["op", "room", "id", "local", "you", "peer", "peer_id", "peer_local", "seen"]
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=6,
)


@settings(max_examples=200, deadline=None)
@given(
    data=st.binary(max_size=200),
    op=st.sampled_from(["register", "wait", "peer", "punch"]) | st.text(max_size=5),
    fields=st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=5), JSON, max_size=6),
)
def test_nothing_from_the_network_raises(data: bytes, op: str, fields: dict[str, Any]) -> None:
    """Any bytes, any JSON, from anyone: dropped and counted, or a well-formed answer."""
    message = p2p.MAGIC + json.dumps({"op": op, **fields}).encode()
    rdv = p2p.Rendezvous()
    finder = p2p.PeerFinder("r", RDV, ("10.0.0.1", 1), 0.0, ident="a" * 16)
    finder.receive_datagram(
        p2p.encode(
            "peer", room="r", you=list(R1), peer=list(R2), peer_local=list(R2), peer_id="b" * 16
        ),
        RDV,
        0.0,
    )
    assert finder.phase is Phase.PUNCHING
    for payload in (data, p2p.MAGIC + data, message):
        for src in (R1, R2, RDV):
            rdv.receive_datagram(payload, src, 0.0)
            finder.receive_datagram(payload, src, 0.0)
    for out, _dst in [*rdv.datagrams_to_send(0.0), *finder.datagrams_to_send(0.0)]:
        assert p2p.decode(out) is not None


def test_messages_are_never_mistaken_for_tcp_segments() -> None:
    """A late punch reaching rudp's endpoint is dropped as malformed (data offset 0),
    whatever its content: the 13th byte of every message is 0."""
    for msg in (
        p2p.encode("punch", room="r", id="a" * 16, peer_id="b" * 16, seen=True),
        p2p.encode("peer", room="r", you=["1.2.3.4", 5], peer=["::1", 7], peer_local=[], x=1),
    ):
        assert msg[12] == 0
        with pytest.raises(ParseError, match="data_offset"):
            parse_segment(msg)
    ep = Endpoint()
    ep.receive_datagram(p2p.encode("punch", seen=True), R1, 0.0)
    assert ep.counters["drop_data_offset"] == 1 and ep.datagrams_to_send(0.0) == []


def test_punching_answers_without_ping_pong() -> None:
    """A punch saying "not seen" is answered at once; one saying "seen" makes the
    finder READY, answered once more; READY answers nothing."""
    f = p2p.PeerFinder("r", RDV, ("10.0.0.1", 1), 0.0, ident="a" * 16)
    f.handle_timer(0.0)
    f.datagrams_to_send(0.0)
    intro = p2p.encode(
        "peer", room="r", you=list(R1), peer=list(R2), peer_local=["10.9.9.9", 9], peer_id="b" * 16
    )
    f.receive_datagram(intro, RDV, 0.1)
    [(first, dst)] = f.datagrams_to_send(0.1)
    assert dst == R2 and p2p.decode(first)["seen"] is False
    f.receive_datagram(
        p2p.encode("punch", room="r", id="b" * 16, peer_id="a" * 16, seen=False), R2, 0.15
    )
    [(answer, _)] = f.datagrams_to_send(0.15)
    assert p2p.decode(answer)["seen"] is True and f.phase is Phase.PUNCHING
    f.receive_datagram(
        p2p.encode("punch", room="r", id="b" * 16, peer_id="a" * 16, seen=True), R2, 0.2
    )
    [(last, _)] = f.datagrams_to_send(0.2)
    assert p2p.decode(last)["seen"] is True and f.phase is Phase.READY and f.peer == R2
    f.receive_datagram(
        p2p.encode("punch", room="r", id="b" * 16, peer_id="a" * 16, seen=True), R2, 0.3
    )
    assert f.datagrams_to_send(0.3) == [] and f.get_timer() is None
    # A punch for another room or from a stranger is not the peer's.
    g = p2p.PeerFinder("r", RDV, ("10.0.0.1", 1), 0.0, ident="a" * 16)
    g.receive_datagram(intro, RDV, 0.1)
    g.receive_datagram(
        p2p.encode("punch", room="q", id="b" * 16, peer_id="a" * 16, seen=True), R2, 0.2
    )
    g.receive_datagram(
        p2p.encode("punch", room="r", id="c" * 16, peer_id="a" * 16, seen=True), R2, 0.2
    )
    assert g.phase is Phase.PUNCHING and g.dropped == 2


def test_address_helpers() -> None:
    assert p2p.parse_address("example.org:3478") == ("example.org", 3478)
    assert p2p.parse_address("[::1]:9") == ("::1", 9)
    for bad in ("nohost", ":1", "h:0", "h:70000", "h:x"):
        with pytest.raises(ValueError):
            p2p.parse_address(bad)
    assert p2p.format_address(("::1", 9, 0, 0)) == "[::1]:9"
    assert p2p.valid_address(["::ffff:192.0.2.1", 5]) == ("192.0.2.1", 5)  # dual-stack server
    assert p2p.valid_address(["2001:db8::1", 5]) == ("2001:db8::1", 5)
    assert 1024 <= p2p.tcp_port_for("x") <= 65535
    assert p2p.tcp_port_for("x") == p2p.tcp_port_for("x") != p2p.tcp_port_for("y")
    with pytest.raises(ValueError, match="room"):
        p2p.PeerFinder("", RDV, PRIV, 0.0)


# -- real sockets on loopback ------------------------------------------------------


def _simultaneous_opens(records: list[logging.LogRecord]) -> set[str]:
    """Connections that went SYN-SENT -> SYN-RECEIVED (rudp's DEBUG state events)."""
    found = set()
    for r in records:
        fields: dict[str, Any] = getattr(r, "rudp_fields", {})
        if getattr(r, "rudp_event", None) == "state" and (
            (fields["old"], fields["new"]) == ("SYN-SENT", "SYN-RECEIVED")
        ):
            found.add(fields["conn"])
    return found


async def test_loopback_1mb_both_ways(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="rudp")
    transport, rdv = await p2p.start_rendezvous("127.0.0.1", 0)
    server = transport.get_extra_info("sockname")[:2]
    up, down = os.urandom(1_000_000), os.urandom(1_000_000)
    got_a, got_b = io.BytesIO(), io.BytesIO()
    lines: list[str] = []
    try:
        ta, tb = await asyncio.wait_for(
            asyncio.gather(
                p2p.run_peer(server, "loop", io.BytesIO(up), got_a, report=lines.append),
                p2p.run_peer(server, "loop", io.BytesIO(down), got_b, report=lines.append),
            ),
            30,
        )
    finally:
        transport.close()
    assert ta.ok and tb.ok
    assert sha(got_b.getvalue()) == sha(up) == ta.sent_sha256 == tb.received_sha256
    assert sha(got_a.getvalue()) == sha(down) == tb.sent_sha256 == ta.received_sha256
    assert rdv.counters["introductions"] == 1
    assert len(_simultaneous_opens(caplog.records)) == 2  # both ends
    assert sum("SHA-256 OK" in line for line in lines) == 2


async def test_loopback_rendezvous_retried_until_the_server_is_up() -> None:
    """The first requests go to a port nobody serves yet (lost): the peer repeats them
    and meets the other once the server starts there."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        server = s.getsockname()
    sock, finder = await p2p.start_peer(server, "late", timeout=20.0)
    task = asyncio.ensure_future(p2p.find_peer(sock, finder))
    transport = None
    lines: list[str] = []
    try:
        for _ in range(200):
            if finder.registers_sent >= 2:
                break
            await asyncio.sleep(0.01)
        assert finder.registers_sent >= 2 and finder.public is None
        transport, rdv = await p2p.start_rendezvous(*server)
        assert rdv.counters["requests"] == 0  # everything before this was lost
        other = asyncio.ensure_future(
            p2p.run_peer(server, "late", io.BytesIO(b"x" * 5000), io.BytesIO(), report=lines.append)
        )
        await asyncio.wait_for(task, 20)
        ep, reader, writer = await p2p.open_peer_connection(sock, finder)
        result = await p2p.exchange(reader, writer, io.BytesIO(b"y" * 7000), io.BytesIO())
        writer.close()
        await writer.wait_closed()
        ep.close()
        assert result.ok and result.received == 5000
        assert (await asyncio.wait_for(other, 20)).received == 7000
    finally:
        task.cancel()
        sock.close()
        if transport is not None:
            transport.close()


async def test_loopback_timeouts_have_clear_messages() -> None:
    transport, _ = await p2p.start_rendezvous("127.0.0.1", 0)
    server = transport.get_extra_info("sockname")[:2]
    try:
        with pytest.raises(p2p.PeerTimeoutError, match=r"no peer joined room 'solo' within 0\.5 s"):
            await p2p.run_peer(server, "solo", io.BytesIO(), io.BytesIO(), timeout=0.5)
    finally:
        transport.close()
    with pytest.raises(TimeoutError, match=r"no answer from the rendezvous server at 127\.0\.0\.1"):
        await p2p.run_peer(server, "solo", io.BytesIO(), io.BytesIO(), timeout=0.5)


def test_cli_three_processes_on_loopback(tmp_path: Path) -> None:
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(os.urandom(300_000))
    b.write_bytes(os.urandom(200_000))
    cmd = [sys.executable, str(EXAMPLE)]
    rdv = subprocess.Popen(
        [*cmd, "rendezvous", "--host", "127.0.0.1", "--port", "0"],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert rdv.stderr is not None
        m = re.search(r"listening on (\S+)", rdv.stderr.readline())
        assert m, "the rendezvous server did not start"
        peer = [*cmd, "peer", "--rendezvous", m.group(1), "--room", "cli", "--timeout", "20"]
        pa = subprocess.Popen(
            [*peer, "--send", str(a), "--out", str(tmp_path / "got_b")],
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        pb = subprocess.run(
            [*peer, "--send", str(b), "--out", str(tmp_path / "got_a")],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        _, err_a = pa.communicate(timeout=60)
    finally:
        rdv.kill()
        rdv.communicate()
    assert pb.returncode == 0, pb.stderr
    assert pa.returncode == 0, err_a
    assert "SHA-256 OK" in pb.stderr and "SHA-256 OK" in err_a
    assert (tmp_path / "got_a").read_bytes() == a.read_bytes()
    assert (tmp_path / "got_b").read_bytes() == b.read_bytes()
    # A timeout is an error with a message, exit status 1.
    res = subprocess.run(
        [*cmd, "peer", "--rendezvous", "127.0.0.1:9", "--room", "r", "--timeout", "0.3"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert res.returncode == 1
    assert "p2p: error: no answer from the rendezvous server at 127.0.0.1:9" in res.stderr


# -- real NATs: network namespaces with nftables masquerade ------------------------

NAT_RULES = """
table ip p2pnat {{
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
        oifname "{pub}" counter masquerade
    }}
    # A home router's stateful firewall: only answers get in. Unsolicited datagrams
    # (a punch that arrives before ours left) are dropped silently, and counted.
    chain input {{
        type filter hook input priority filter; policy accept;
        ct state established,related accept
        iifname {{ "lo", "{priv}" }} accept
        counter drop
    }}
    chain forward {{
        type filter hook forward priority filter; policy accept;
        ct state established,related accept
        {extra}
        iifname "{priv}" oifname "{pub}" accept
        counter drop
    }}
}}
"""
#: On NAT B: its peer's first punches towards the other peer are lost (a byte quota
#: of about five punches, 0.5 s), so the other peer's punches reach NAT B before B's hole
#: exists, deterministically (this machine may lack netem to delay them instead).
LOSE_FIRST_PUNCHES = 'iifname "{priv}" ip daddr != 192.0.2.1 quota until 700 bytes counter drop'


def _netns_unavailable() -> str | None:
    if sys.platform != "linux":
        return "network namespaces are Linux-only"
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    if shutil.which("ip") is None:
        return "iproute2 'ip' command not found"
    if shutil.which("nft") is None:
        return "nft (nftables) not found: install nftables for the NAT namespaces"
    probe = f"p2pprobe{uuid.uuid4().hex[:6]}"
    res = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if res.returncode != 0:
        return f"cannot create network namespaces: {res.stderr.strip()}"
    try:
        res = subprocess.run(
            ["ip", "netns", "exec", probe, "nft", "-f", "-"],
            input="table ip probe {\nchain c {\ntype nat hook postrouting priority srcnat\n}\n}\n",
            capture_output=True,
            text=True,
        )
        if res.returncode != 0:
            return f"nft cannot load NAT rules in a network namespace: {res.stderr.strip()}"
    finally:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def _sh(*args: str, stdin: str | None = None) -> str:
    res = subprocess.run(args, input=stdin, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {res.stderr.strip()}")
    return res.stdout


@contextmanager
def nat_topology() -> Iterator[dict[str, str]]:
    """Five namespaces: peer A (10.0.0.2) behind NAT A (public 198.51.100.2), peer B
    (also 10.0.0.2) behind NAT B (public 203.0.113.2), and a router R between the
    two public links with the rendezvous address 192.0.2.1. Always cleaned up."""
    tag = uuid.uuid4().hex[:6]
    ns = {k: f"p2p{k}{tag}" for k in ("a", "na", "b", "nb", "r")}
    created: list[str] = []
    try:
        for name in ns.values():
            _sh("ip", "netns", "add", name)
            created.append(name)
        for side, pub_net in (("a", "198.51.100"), ("b", "203.0.113")):
            host, nat, priv, pub, rif = (
                ns[side],
                ns["n" + side],
                f"p{side}{tag}",
                f"o{side}{tag}",
                f"r{side}{tag}",
            )
            inner = f"h{side}{tag}"
            _sh(
                "ip",
                "link",
                "add",
                inner,
                "netns",
                host,
                "type",
                "veth",
                "peer",
                "name",
                priv,
                "netns",
                nat,
            )
            _sh(
                "ip",
                "link",
                "add",
                pub,
                "netns",
                nat,
                "type",
                "veth",
                "peer",
                "name",
                rif,
                "netns",
                ns["r"],
            )
            _sh("ip", "-n", host, "addr", "add", "10.0.0.2/24", "dev", inner)
            _sh("ip", "-n", nat, "addr", "add", "10.0.0.1/24", "dev", priv)
            _sh("ip", "-n", nat, "addr", "add", f"{pub_net}.2/24", "dev", pub)
            _sh("ip", "-n", ns["r"], "addr", "add", f"{pub_net}.1/24", "dev", rif)
            for n, dev in ((host, inner), (nat, priv), (nat, pub), (ns["r"], rif)):
                _sh("ip", "-n", n, "link", "set", dev, "up")
            _sh("ip", "-n", host, "route", "add", "default", "via", "10.0.0.1")
            _sh("ip", "-n", nat, "route", "add", "default", "via", f"{pub_net}.1")
            _sh("ip", "netns", "exec", nat, "sysctl", "-qw", "net.ipv4.ip_forward=1")
            extra = LOSE_FIRST_PUNCHES.format(priv=priv) if side == "b" else ""
            rules = NAT_RULES.format(pub=pub, priv=priv, extra=extra)
            _sh("ip", "netns", "exec", nat, "nft", "-f", "-", stdin=rules)
        for name in ns.values():
            _sh("ip", "-n", name, "link", "set", "lo", "up")
        _sh("ip", "-n", ns["r"], "addr", "add", "192.0.2.1/32", "dev", "lo")
        _sh("ip", "netns", "exec", ns["r"], "sysctl", "-qw", "net.ipv4.ip_forward=1")
        yield ns
    finally:
        for name in created:
            subprocess.run(["ip", "netns", "del", name], capture_output=True)


def _counters(ns: str, chain: str) -> list[int]:
    """Packet counts of the ``counter`` rules of one chain of a NAT namespace."""
    out = _sh("ip", "netns", "exec", ns, "nft", "list", "chain", "ip", "p2pnat", chain)
    return [int(n) for n in re.findall(r"counter packets (\d+)", out)]


@pytest.mark.netns
def test_netns_two_linux_nats_1mb_both_ways(tmp_path: Path) -> None:
    reason = _netns_unavailable()
    if reason is not None:
        pytest.skip(reason)
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(os.urandom(1_000_000))
    b.write_bytes(os.urandom(1_000_000))
    env = dict(os.environ, PYTHONPATH=str(ROOT), RUDP_LOG="debug")
    with nat_topology() as ns:

        def run_in(name: str, *args: str) -> list[str]:
            return ["ip", "netns", "exec", name, sys.executable, str(EXAMPLE), *args]

        rdv = subprocess.Popen(
            run_in(ns["r"], "rendezvous", "--host", "192.0.2.1", "--port", "3478"),
            stderr=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        peers: list[subprocess.Popen[str]] = []
        try:
            assert rdv.stderr is not None
            assert "listening on 192.0.2.1:3478" in rdv.stderr.readline()
            common = [
                "peer",
                "--rendezvous",
                "192.0.2.1:3478",
                "--room",
                "netns",
                "--timeout",
                "20",
            ]
            for side, send, out in (("a", a, "got_b"), ("b", b, "got_a")):
                args = [*common, "--send", str(send), "--out", str(tmp_path / out)]
                peers.append(
                    subprocess.Popen(
                        run_in(ns[side], *args), stderr=subprocess.PIPE, text=True, env=env
                    )
                )
            errs = [p.communicate(timeout=60)[1] for p in peers]
            nat_b_input, nat_b_forward = (
                _counters(ns["nb"], "input"),
                _counters(ns["nb"], "forward"),
            )
            masq = [_counters(ns[n], "postrouting")[0] for n in ("na", "nb")]
        finally:
            for p in [*peers, rdv]:
                if p.poll() is None:
                    p.kill()
            rdv_log = rdv.communicate()[1]
    for p, err in zip(peers, errs, strict=True):
        assert p.returncode == 0, err[-3000:]
        assert "SHA-256 OK" in err
    assert (tmp_path / "got_a").read_bytes() == a.read_bytes()
    assert (tmp_path / "got_b").read_bytes() == b.read_bytes()
    # The masquerade happened: the rendezvous saw the NATs' public addresses (never
    # the private 10.0.0.2), and the peers learnt theirs from it.
    [pair] = re.findall(r"introduced (\S+):\d+ <-> (\S+):\d+", rdv_log)
    assert sorted(pair) == ["198.51.100.2", "203.0.113.2"], rdv_log
    assert "10.0.0.2" not in rdv_log
    assert "public address 198.51.100.2:" in errs[0] and "public address 203.0.113.2:" in errs[1]
    assert all(n > 0 for n in masq)
    # NAT B lost B's first punches and dropped A's unsolicited ones: the holes were
    # punched against a filtering NAT.
    assert nat_b_forward[0] >= 1 and nat_b_input[0] >= 1
    # Both ends did a simultaneous open (rudp's DEBUG state events on stderr).
    for err in errs:
        assert "old=SYN-SENT new=SYN-RECEIVED" in err, err[-3000:]
