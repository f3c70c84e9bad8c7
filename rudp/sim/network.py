"""The virtual-clock network: nodes, links and a single event heap."""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from .link import Address, Link, LinkConfig, LinkStats
from .nat import Nat

#: ``tap(time, src, dst, data, fate)``, see :meth:`Network.add_tap`.
Tap = Callable[[float, Address, Address, bytes, str], None]

_DELIVER = 0
_TIMER = 1
_CALL = 2
_NAT_TIMER = 3


class SimNode(Protocol):
    """Anything the network can drive; :class:`rudp.engine.Endpoint` is one.

    ``addr`` given to :meth:`receive_datagram` is the datagram's *source* address.
    """

    def receive_datagram(self, data: bytes, addr: Address, now: float) -> None: ...

    def datagrams_to_send(self, now: float) -> Sequence[tuple[bytes, Address]]: ...

    def get_timer(self) -> float | None: ...

    def handle_timer(self, now: float) -> None: ...


@dataclass(slots=True)
class NetworkStats:
    """Network-wide counters that belong to no link."""

    unroutable: int = 0  # datagrams to an address with no node
    events: int = 0  # events processed (deliveries, timers, calls)
    timers_fired: int = 0


class _NodeEntry:
    __slots__ = ("addr", "deadline", "node", "realm")

    def __init__(self, node: SimNode, addr: Address, realm: _Realm) -> None:
        self.node = node
        self.addr = addr
        self.realm = realm
        self.deadline: float | None = None  # the deadline currently on the heap


class _Realm:
    """One address space: the public network, or the inside of one NAT.

    Addresses are unique within a realm only; links are keyed by the addresses
    as they appear on this realm's wire.
    """

    __slots__ = ("default", "gateway", "links", "nats", "nodes", "tag")

    def __init__(self, default: LinkConfig, gateway: _NatEntry | None, tag: str) -> None:
        self.nodes: dict[Address, _NodeEntry] = {}
        self.links: dict[tuple[Address, Address], Link] = {}
        self.nats: dict[str, _NatEntry] = {}  # NATs whose public side is here, by IP
        self.gateway = gateway  # the NAT this realm is behind (None: the public realm)
        self.default = default
        self.tag = tag  # "" for the public realm; part of link RNG seeds otherwise


class _NatEntry:
    __slots__ = ("deadline", "inside", "nat", "outside")

    def __init__(self, nat: Nat, outside: _Realm, tag: str) -> None:
        self.nat = nat
        self.outside = outside
        # Inside links are ideal unless configured (see Network.add_nat).
        self.inside = _Realm(LinkConfig(), self, tag)
        self.deadline: float | None = None  # the NAT timer currently on the heap


class Network:
    """A deterministic, seeded, in-memory network of :class:`SimNode` objects.

    Time is virtual (:attr:`now`, seconds) and only moves in the ``run*`` methods,
    which pop events from one heap in ``(time, insertion order)`` order: datagram
    deliveries, node timers and :meth:`call_at` callbacks. After every delivery or
    timer the simulator collects that node's output (``datagrams_to_send``) and
    re-reads its ``get_timer``; a timer fires with ``now`` equal to its deadline
    (or to the current time if the node asked for a deadline in the past).

    Code that changes a node outside the loop (e.g. writes to a connection) should
    call :meth:`flush`; the ``run*`` methods also flush every node when they start.
    All randomness derives from ``seed``: the same seed and the same node behaviour
    give an identical run.

    Nodes can sit behind NATs (:meth:`add_nat`, ``add_node(..., behind=nat)``); see
    docs/simulator-nat.md. Every method that takes ``behind`` addresses the inside
    of that NAT; without it, the public network.
    """

    def __init__(
        self, seed: int = 0, start_time: float = 0.0, *, max_events_per_instant: int = 1_000_000
    ) -> None:
        self.now = float(start_time)
        self.seed = seed
        #: Free for users (e.g. to seed nodes); links use their own derived streams.
        self.rng = random.Random(seed)
        self.stats = NetworkStats()
        self._max_same = max_events_per_instant
        self._public = _Realm(LinkConfig(), None, "")
        self._realms: list[_Realm] = [self._public]
        self._nats: dict[Nat, _NatEntry] = {}
        self._taps: list[Tap] = []
        # (time, seq, kind, payload); seq keeps equal-time events in insertion order.
        self._heap: list[tuple[float, int, int, Any]] = []
        self._seq = itertools.count()

    # -- topology -------------------------------------------------------------

    def _realm(self, behind: Nat | None) -> _Realm:
        if behind is None:
            return self._public
        entry = self._nats.get(behind)
        if entry is None:
            raise ValueError("that NAT is not attached to this network (Network.add_nat)")
        return entry.inside

    def add_node(self, node: SimNode, addr: Address, *, behind: Nat | None = None) -> None:
        """Attach ``node`` at ``addr``; datagrams it sends come from ``addr``.

        With ``behind=nat`` the node sits in that NAT's inside address space:
        ``addr`` is its private address, and what it sends to any address not
        inside goes through the NAT.
        """
        realm = self._realm(behind)
        if addr in realm.nodes:
            raise ValueError(f"address {addr!r} already has a node")
        if realm.nats and addr[0] in realm.nats:
            raise ValueError(f"IP {addr[0]!r} is a NAT's public address")
        gw = realm.gateway
        if gw is not None and addr[0] == gw.nat.public_ip:
            raise ValueError(f"IP {addr[0]!r} is the public address of the NAT it is behind")
        if any(e.node is node for r in self._realms for e in r.nodes.values()):
            raise ValueError("node is already attached to the network")
        realm.nodes[addr] = _NodeEntry(node, addr, realm)

    def remove_node(self, addr: Address, *, behind: Nat | None = None) -> None:
        """Detach the node at ``addr`` (a crash): later datagrams to it are unroutable."""
        del self._realm(behind).nodes[addr]

    def add_nat(self, nat: Nat, public_ip: str, *, behind: Nat | None = None) -> None:
        """Attach ``nat`` with public address ``public_ip``; it owns every port of it.

        Its inside is a new, empty address space: put nodes there with
        ``add_node(node, addr, behind=nat)``. With ``behind=other`` the NAT's own
        public side is inside ``other`` (a NAT behind a NAT, as with carrier-grade
        NAT). Links inside a NAT are ideal unless configured with ``behind=nat``.
        """
        if nat in self._nats or nat.public_ip is not None:
            raise ValueError("NAT is already attached")
        outside = self._realm(behind)
        if public_ip in outside.nats or any(a[0] == public_ip for a in outside.nodes):
            raise ValueError(f"IP {public_ip!r} is already in use")
        gw = outside.gateway
        if gw is not None and public_ip == gw.nat.public_ip:
            raise ValueError(f"IP {public_ip!r} is the public address of the NAT it is behind")
        tag = f"{outside.tag}/nat {public_ip}"
        nat._attach(public_ip, f"{self.seed}|{tag}")
        entry = _NatEntry(nat, outside, tag)
        self._nats[nat] = entry
        outside.nats[public_ip] = entry
        self._realms.append(entry.inside)

    def _link(self, realm: _Realm, src: Address, dst: Address) -> Link:
        link = realm.links.get((src, dst))
        if link is None:
            link = realm.links[(src, dst)] = Link(src, dst, realm.default, self.seed, realm.tag)
        return link

    def set_link(
        self, src: Address, dst: Address, cfg: LinkConfig, *, behind: Nat | None = None
    ) -> None:
        """Configure the one direction ``src -> dst`` (counters and queue are kept)."""
        link = self._link(self._realm(behind), src, dst)
        link.cfg = cfg
        link.explicit = True

    def set_path(
        self, a: Address, b: Address, cfg: LinkConfig, *, behind: Nat | None = None
    ) -> None:
        """Configure both directions between ``a`` and ``b`` with the same config."""
        self.set_link(a, b, cfg, behind=behind)
        self.set_link(b, a, cfg, behind=behind)

    def set_default_link(self, cfg: LinkConfig, *, behind: Nat | None = None) -> None:
        """Config for every pair not configured by :meth:`set_link`/:meth:`set_path`
        (in the public network, or inside ``behind``: each has its own default)."""
        realm = self._realm(behind)
        realm.default = cfg
        for link in realm.links.values():
            if not link.explicit:
                link.cfg = cfg

    def link_stats(self, src: Address, dst: Address, *, behind: Nat | None = None) -> LinkStats:
        """The live counters of ``src -> dst`` (all zero if never used)."""
        return self._link(self._realm(behind), src, dst).stats

    def total_stats(self) -> LinkStats:
        """A new :class:`LinkStats` summing every link (inside NATs too)."""
        total = LinkStats()
        for realm in self._realms:
            for link in realm.links.values():
                total.add(link.stats)
        return total

    def add_tap(self, tap: Tap) -> None:
        """Call ``tap(time, src, dst, data, fate)`` for every datagram offered.

        ``time`` is the send time and ``data`` the bytes as sent. ``fate`` is a
        drop reason (``"mtu_drop"``, ``"blackholed"``, ``"queue_drop"``, ``"lost"``,
        ``"unroutable"``) or, for a datagram that will be delivered, the first of
        ``"corrupted"``, ``"reordered"``, ``"duplicated"`` that applies, else
        ``"delivered"``.

        A datagram crossing a NAT is offered once per hop, with the addresses of
        that hop (inside: private source; outside: public source), and
        ``"delivered"`` on a hop into a NAT means delivered to the NAT. A NAT's
        drops are reported at the time the datagram reaches it, with the addresses
        it arrived with and a fate from :data:`rudp.sim.nat.NAT_FATES`
        (``"nat_filtered"``, ``"nat_no_mapping"``, ``"nat_no_hairpin"``,
        ``"nat_ports_exhausted"``).
        """
        self._taps.append(tap)

    def remove_tap(self, tap: Tap) -> None:
        self._taps.remove(tap)

    # -- scheduling -----------------------------------------------------------

    def call_at(self, when: float, callback: Callable[[], object]) -> None:
        """Run ``callback()`` at virtual time ``when`` (or now, if in the past);
        every node is flushed afterwards."""
        heapq.heappush(self._heap, (max(when, self.now), next(self._seq), _CALL, callback))

    def call_later(self, delay: float, callback: Callable[[], object]) -> None:
        self.call_at(self.now + delay, callback)

    def flush(self) -> None:
        """Collect pending output and timers from every node (and NAT timers)."""
        for realm in self._realms:
            for entry in list(realm.nodes.values()):
                self._service(entry)
        for nat_entry in self._nats.values():
            self._service_nat(nat_entry)

    def _service(self, entry: _NodeEntry) -> None:
        now = self.now
        out = entry.node.datagrams_to_send(now)
        if out:
            src = entry.addr
            realm = entry.realm
            for data, dst in out:
                self._offer(realm, src, dst, data)
        deadline = entry.node.get_timer()
        if deadline != entry.deadline:
            # The old heap entry (if any) goes stale: it is skipped when popped
            # because its deadline no longer matches entry.deadline.
            entry.deadline = deadline
            if deadline is not None:
                item = (max(deadline, now), next(self._seq), _TIMER, (entry, deadline))
                heapq.heappush(self._heap, item)

    def _service_nat(self, entry: _NatEntry) -> None:
        deadline = entry.nat.get_timer()
        if deadline != entry.deadline:
            entry.deadline = deadline  # as in _service: the old heap entry goes stale
            if deadline is not None:
                item = (max(deadline, self.now), next(self._seq), _NAT_TIMER, (entry, deadline))
                heapq.heappush(self._heap, item)

    def _offer(
        self, realm: _Realm, src: Address, dst: Address, data: bytes, from_nat: bool = False
    ) -> None:
        """Push one datagram through the link ``src -> dst`` of ``realm`` (see
        :meth:`Link.decide`) towards the node at ``dst``, or towards a NAT: the one
        whose public IP ``dst`` has, else (from an inside host, not from the NAT
        itself) the one ``realm`` is behind."""
        now = self.now
        via = None
        if dst not in realm.nodes:
            if realm.nats:
                via = realm.nats.get(dst[0])
            if via is None:
                via = None if from_nat else realm.gateway
                if via is None:
                    self.stats.unroutable += 1
                    self._tap(now, src, dst, data, "unroutable")
                    return
        link = realm.links.get((src, dst))
        if link is None:
            link = self._link(realm, src, dst)
        fate, copies = link.decide(now, data)
        if copies:
            heap = self._heap
            for arrival, copy in copies:
                item = (link, copy, realm, via)
                heapq.heappush(heap, (arrival, next(self._seq), _DELIVER, item))
        if self._taps:
            self._tap(now, src, dst, data, fate)  # the bytes as sent, even if corrupted

    def _through_nat(
        self, entry: _NatEntry, realm: _Realm, src: Address, dst: Address, data: bytes
    ) -> None:
        """A datagram from ``src`` to ``dst`` reached NAT ``entry`` from ``realm``
        (its inside or its outside): translate and send it on, or drop it."""
        nat = entry.nat
        now = self.now
        if realm is entry.inside:
            if dst[0] == nat.public_ip:
                hairpin = nat.hairpin(src, dst, now)
                if isinstance(hairpin, str):
                    self._tap(now, src, dst, data, hairpin)
                else:
                    self._offer(entry.inside, hairpin[0], hairpin[1], data, from_nat=True)
            else:
                public_src = nat.outbound(src, dst, now)
                if isinstance(public_src, str):
                    self._tap(now, src, dst, data, public_src)
                else:
                    self._offer(entry.outside, public_src, dst, data)
        else:
            inside = nat.inbound(src, dst[1], now)
            if isinstance(inside, str):
                self._tap(now, src, dst, data, inside)
            else:
                self._offer(entry.inside, src, inside, data, from_nat=True)
        self._service_nat(entry)

    def _tap(self, now: float, src: Address, dst: Address, data: bytes, fate: str) -> None:
        for tap in self._taps:
            tap(now, src, dst, data, fate)

    # -- running --------------------------------------------------------------

    def run_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Process events until ``predicate()`` is true (True) or ``timeout`` virtual
        seconds pass (False, with :attr:`now` exactly ``now + timeout``).

        ``predicate`` is checked at the start and after every event; events at
        exactly the end time are processed.
        """
        if timeout < 0:
            raise ValueError(f"timeout must be >= 0, got {timeout!r}")
        return self._run(self.now + timeout, predicate)

    def run_for(self, duration: float) -> None:
        """Process every event in the next ``duration`` seconds; ends at ``now + duration``."""
        if duration < 0:
            raise ValueError(f"duration must be >= 0, got {duration!r}")
        self._run(self.now + duration, None)

    def run(self, max_time: float | None = None) -> bool:
        """Run until nothing is pending (True) or absolute time ``max_time`` (False).

        Nodes that always keep a timer (keepalives) never go idle: pass ``max_time``.
        A NAT's mapping timers are pending events too: with NATs, ``run()`` returns
        only once every mapping has expired.
        """
        return self._run(max_time, None)

    def _run(self, end: float | None, predicate: Callable[[], bool] | None) -> bool:
        self.flush()
        if predicate is not None and predicate():
            return True
        heap = self._heap
        pop = heapq.heappop
        stats = self.stats
        same = 0  # events processed without time advancing
        while heap:
            t = heap[0][0]
            if end is not None and t > end:
                break
            _, _, kind, payload = pop(heap)
            if kind == _TIMER:
                entry, deadline = payload
                if entry.deadline != deadline or entry.realm.nodes.get(entry.addr) is not entry:
                    continue  # stale: rescheduled, cancelled or node removed
            elif kind == _NAT_TIMER and payload[0].deadline != payload[1]:
                continue  # stale
            if t > self.now:
                self.now = t
                same = 0
            else:
                same += 1
                if same > self._max_same:
                    raise RuntimeError(
                        f"{same} events at virtual time {t} without time advancing: a node "
                        "keeps returning a deadline <= now (node bug) or zero-delay links "
                        "carry an endless exchange"
                    )
            stats.events += 1
            if kind == _DELIVER:
                link, data, realm, via = payload
                if via is not None:
                    st = link.stats
                    st.delivered += 1
                    st.bytes_delivered += len(data)
                    self._through_nat(via, realm, link.src, link.dst, data)
                else:
                    entry = realm.nodes.get(link.dst)
                    if entry is None:
                        stats.unroutable += 1  # node removed while the datagram was in flight
                        continue
                    st = link.stats
                    st.delivered += 1
                    st.bytes_delivered += len(data)
                    entry.node.receive_datagram(data, link.src, t)
                    self._service(entry)
            elif kind == _TIMER:
                # Clear first: if the node returns the same deadline again it is
                # re-armed (and the same-instant guard catches an endless loop).
                entry.deadline = None
                stats.timers_fired += 1
                entry.node.handle_timer(t)
                self._service(entry)
            elif kind == _NAT_TIMER:
                nat_entry = payload[0]
                nat_entry.deadline = None
                nat_entry.nat.handle_timer(t)
                self._service_nat(nat_entry)
            else:
                payload()
                self.flush()
            if predicate is not None and predicate():
                return True
        if end is not None and self.now < end:
            self.now = end
        if predicate is not None:
            return bool(predicate())
        return not heap
