"""A NAT (network address and port translator) for the simulator, in RFC 4787 terms.

A :class:`Nat` owns every UDP port of one public IP address. Datagrams that inside
hosts send to the outside get their source rewritten to ``(public_ip, port)`` by a
*mapping*; datagrams that arrive at ``(public_ip, port)`` are translated back to the
mapped inside address or dropped by the *filtering* rule. The object itself is pure
logic with no clock (every call takes ``now``); :meth:`rudp.sim.Network.add_nat`
places it between an inside address space and the network outside it.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from enum import Enum
from typing import TypeAlias, cast

from .link import Address


class NatBehavior(str, Enum):
    """How a mapping or a filter depends on the remote endpoint (RFC 4787 §4.1, §5)."""

    #: One mapping per inside address, used for every destination (RFC 4787 REQ-1);
    #: as a filter: anyone may send to the mapped port ("full cone").
    ENDPOINT_INDEPENDENT = "endpoint-independent"
    #: One mapping per (inside address, remote IP); as a filter: only IPs the inside
    #: host sent to may send back ("restricted cone").
    ADDRESS_DEPENDENT = "address-dependent"
    #: One mapping per (inside address, remote IP, remote port) ("symmetric"); as a
    #: filter: only exact (IP, port) the inside host sent to ("port-restricted cone").
    ADDRESS_AND_PORT_DEPENDENT = "address-and-port-dependent"


class PortAllocation(str, Enum):
    """How a public port is chosen when the inside port cannot be preserved (§4.2.1)."""

    SEQUENTIAL = "sequential"  # the next free port after the last one assigned
    RANDOM = "random"  # a seeded-random free port


#: Drop reasons a NAT reports through :meth:`rudp.sim.Network.add_tap`.
NAT_FATES = frozenset({"nat_filtered", "nat_no_mapping", "nat_no_hairpin", "nat_ports_exhausted"})

# The remote part of a mapping or filter key: None, a remote IP, or a remote address.
_Key: TypeAlias = "str | Address | None"


def _addr(a: Address) -> Address:
    """``a`` as a hashable tuple (callers may pass lists)."""
    return a if type(a) is tuple else cast(Address, tuple(a))


def _remote_key(behavior: NatBehavior, remote: Address) -> _Key:
    if behavior is NatBehavior.ENDPOINT_INDEPENDENT:
        return None
    if behavior is NatBehavior.ADDRESS_DEPENDENT:
        return remote[0]
    return remote


@dataclass(frozen=True, slots=True)
class NatConfig:
    """Behaviour of one NAT. Times are virtual seconds.

    * ``mapping``: which outbound datagrams share a public port (RFC 4787 §4.1).
    * ``filtering``: which inbound datagrams a mapping lets through (§5).
    * ``timeout``: a mapping (and each remote's filter permission) dies after this
      long without a refreshing datagram (§4.3; REQ-5 asks for >= 120 s and
      recommends >= 300 s). Outbound datagrams always refresh (REQ-6); accepted
      inbound ones too when ``inbound_refresh`` is set (REQ-6a allows it).
    * ``port_preservation``: give a new mapping the inside host's own port when it
      is free and inside ``port_range``; otherwise (or when it is taken) pick by
      ``allocation`` from ``port_range`` (§4.2.1). Ports are never shared between
      mappings ("port overloading" is forbidden by REQ-3).
    * ``hairpinning``: an inside host sending to the NAT's own public address
      reaches the inside host mapped there, with its own public address as the
      source (§6, REQ-9); when off such datagrams are dropped.
    """

    mapping: NatBehavior = NatBehavior.ENDPOINT_INDEPENDENT
    filtering: NatBehavior = NatBehavior.ADDRESS_AND_PORT_DEPENDENT
    timeout: float = 300.0
    inbound_refresh: bool = False
    port_preservation: bool = True
    allocation: PortAllocation = PortAllocation.SEQUENTIAL
    port_range: tuple[int, int] = (1024, 65535)
    hairpinning: bool = True

    def __post_init__(self) -> None:
        for name in ("mapping", "filtering"):
            value = getattr(self, name)
            if not isinstance(value, NatBehavior):
                raise ValueError(f"NatConfig.{name} must be a NatBehavior, got {value!r}")
        if not isinstance(self.allocation, PortAllocation):
            raise ValueError(
                f"NatConfig.allocation must be a PortAllocation, got {self.allocation!r}"
            )
        t = self.timeout
        if not (isinstance(t, (int, float)) and math.isfinite(t) and t > 0):
            raise ValueError(f"NatConfig.timeout must be a finite number > 0, got {t!r}")
        try:
            lo, hi = self.port_range
        except (TypeError, ValueError):
            raise ValueError(
                f"NatConfig.port_range must be a (low, high) pair, got {self.port_range!r}"
            ) from None
        if not (isinstance(lo, int) and isinstance(hi, int) and 1 <= lo <= hi <= 0xFFFF):
            raise ValueError(
                f"NatConfig.port_range needs integers 1 <= low <= high <= 65535, "
                f"got {self.port_range!r}"
            )
        object.__setattr__(self, "port_range", (lo, hi))


@dataclass(slots=True)
class NatStats:
    """Everything a NAT did. A hairpinned datagram counts in ``translated_out``,
    ``translated_in`` and ``hairpinned``."""

    mappings_created: int = 0
    mappings_expired: int = 0  # by timeout or :meth:`Nat.expire`
    rebinds: int = 0  # mappings dropped by :meth:`Nat.rebind`
    translated_out: int = 0  # outbound datagrams whose source was rewritten
    translated_in: int = 0  # inbound datagrams translated to an inside address
    forwarded: int = 0  # inbound datagrams through a static forward (also translated_in)
    hairpinned: int = 0
    filtered: int = 0  # inbound to a live mapping, refused by the filtering rule
    no_mapping: int = 0  # inbound to a public port with no mapping
    hairpin_drops: int = 0  # inside -> own public address with hairpinning off
    ports_exhausted: int = 0  # outbound datagrams dropped: no free public port

    @property
    def dropped(self) -> int:
        """Datagrams the NAT dropped, for any reason."""
        return self.filtered + self.no_mapping + self.hairpin_drops + self.ports_exhausted


@dataclass(frozen=True, slots=True)
class NatMapping:
    """A snapshot of one mapping, see :meth:`Nat.mappings`.

    ``remote`` is what the mapping depends on: None (endpoint-independent), a
    remote IP (address-dependent) or a remote address (address-and-port-dependent).
    A static forward has ``static=True`` and ``expires_at`` infinite.
    """

    inside: Address
    public: Address
    remote: str | Address | None
    expires_at: float
    static: bool = False


class _Mapping:
    __slots__ = ("expires_at", "inside", "key", "permits", "port", "static")

    def __init__(
        self, inside: Address, port: int, key: _Key, expires_at: float, static: bool
    ) -> None:
        self.inside = inside
        self.port = port
        self.key = key
        self.expires_at = expires_at
        self.static = static
        # Filter permissions: remote key -> expiry time (unused for EIF and forwards).
        self.permits: dict[_Key, float] = {}


class Nat:
    """One NAT's state: its mappings, static forwards and counters (:attr:`stats`).

    Attach it with :meth:`rudp.sim.Network.add_nat`, which sets :attr:`public_ip`.
    ``seed`` seeds random port allocation; by default it derives from the
    network's seed and the NAT's place in the topology.
    """

    def __init__(self, config: NatConfig | None = None, *, seed: int | None = None) -> None:
        self.config = config if config is not None else NatConfig()
        self.seed = seed
        self.stats = NatStats()
        self.public_ip: str | None = None
        # Replaced on attach unless seeded here; never seeded from the OS.
        self._rng = random.Random(0 if seed is None else seed)
        # Live mappings by (inside address, remote key) and by public port.
        self._by_key: dict[tuple[Address, _Key], _Mapping] = {}
        self._by_port: dict[int, _Mapping] = {}
        self._forwards: dict[Address, _Mapping] = {}  # by inside address
        self._avoid: dict[Address, set[int]] = {}  # ports an inside host had before rebind()
        self._cursor = 0  # sequential allocation: offset of the next port to try
        self._next_expiry = math.inf  # no live dynamic mapping expires before this

    def _attach(self, public_ip: str, rng_seed: str) -> None:
        if self.public_ip is not None:
            raise ValueError(f"NAT is already attached at {self.public_ip!r}")
        self.public_ip = public_ip
        if self.seed is None:
            self._rng = random.Random(rng_seed)

    def _ip(self) -> str:
        ip = self.public_ip
        if ip is None:
            raise RuntimeError("NAT is not attached to a network (Network.add_nat)")
        return ip

    # -- configuration --------------------------------------------------------

    def add_forward(self, public_port: int, inside: Address) -> None:
        """Statically forward ``public_port`` to ``inside`` (a "port mapping", like
        ``docker -p 9000:9001/udp``): anyone may send to it, it never expires, and
        everything ``inside`` sends leaves from ``public_port`` too."""
        if isinstance(public_port, bool) or not isinstance(public_port, int):
            raise ValueError(f"public_port must be an integer, got {public_port!r}")
        if not 0 < public_port <= 0xFFFF:
            raise ValueError(f"public_port must be in 1..65535, got {public_port!r}")
        inside = _addr(inside)
        old = self._by_port.get(public_port)
        if old is not None:
            what = "a static forward" if old.static else f"a mapping of {old.inside!r}"
            raise ValueError(f"public port {public_port} is already used by {what}")
        if inside in self._forwards:
            raise ValueError(f"{inside!r} already has a static forward")
        m = _Mapping(inside, public_port, None, math.inf, True)
        self._forwards[inside] = m
        self._by_port[public_port] = m

    def remove_forward(self, public_port: int) -> None:
        """Remove the static forward of ``public_port`` (KeyError if there is none)."""
        m = self._by_port.get(public_port)
        if m is None or not m.static:
            raise KeyError(f"no static forward on public port {public_port}")
        del self._by_port[public_port]
        del self._forwards[m.inside]

    # -- inspection -----------------------------------------------------------

    def mappings(self) -> list[NatMapping]:
        """Snapshots of every mapping (static forwards included), by public port."""
        ip = self._ip()
        return [
            NatMapping(m.inside, (ip, m.port), m.key, m.expires_at, m.static)
            for _, m in sorted(self._by_port.items())
        ]

    def public_address(self, inside: Address, remote: Address | None = None) -> Address | None:
        """The public address ``inside`` currently sends from (to ``remote``, which
        only a dependent mapping needs), or None if it has no mapping."""
        ip = self._ip()
        inside = _addr(inside)
        m = self._forwards.get(inside)
        if m is None:
            behavior = self.config.mapping
            if remote is None and behavior is not NatBehavior.ENDPOINT_INDEPENDENT:
                raise ValueError(f"a {behavior.value} mapping needs the remote address")
            key = None if remote is None else _remote_key(behavior, _addr(remote))
            m = self._by_key.get((inside, key))
        return None if m is None else (ip, m.port)

    # -- events ---------------------------------------------------------------

    def rebind(self, inside: Address) -> int:
        """Forget every mapping of ``inside`` (as a NAT reboot or a lost state would):
        its next outbound datagram gets a new mapping on a *different* public port,
        and datagrams still arriving at the old port find no mapping. Static forwards
        are kept. Returns the number of mappings dropped (counted in ``rebinds``)."""
        inside = _addr(inside)
        gone = [m for m in self._by_key.values() if m.inside == inside]
        for m in gone:
            self._remove(m)
        if gone:
            self._avoid.setdefault(inside, set()).update(m.port for m in gone)
        self.stats.rebinds += len(gone)
        return len(gone)

    def expire(self, inside: Address | None = None) -> int:
        """Expire now, as a timeout would, every mapping (of ``inside``, if given);
        static forwards are kept. Returns the number expired (``mappings_expired``)."""
        if inside is not None:
            inside = _addr(inside)
        gone = [m for m in self._by_key.values() if inside is None or m.inside == inside]
        for m in gone:
            self._remove(m)
        self.stats.mappings_expired += len(gone)
        return len(gone)

    def get_timer(self) -> float | None:
        """When the next mapping may expire (None: no dynamic mapping)."""
        return self._next_expiry if self._by_key else None

    def handle_timer(self, now: float) -> None:
        """Expire every mapping idle for ``timeout`` at ``now``."""
        self._expire_due(now)

    # -- translation (called by the Network) ----------------------------------

    def outbound(self, src: Address, dst: Address, now: float) -> Address | str:
        """An inside host at ``src`` sends to outside ``dst``: the public source
        address to use (creating or refreshing a mapping), or a drop fate."""
        ip = self._ip()
        if now >= self._next_expiry:
            self._expire_due(now)
        m = self._forwards.get(src)
        if m is None:
            cfg = self.config
            key = (src, _remote_key(cfg.mapping, dst))
            m = self._by_key.get(key)
            if m is None:
                port = self._allocate(src)
                if port is None:
                    self.stats.ports_exhausted += 1
                    return "nat_ports_exhausted"
                expires = now + cfg.timeout
                m = _Mapping(src, port, key[1], expires, False)
                self._by_key[key] = m
                self._by_port[port] = m
                self.stats.mappings_created += 1
                if expires < self._next_expiry:
                    self._next_expiry = expires
            else:
                m.expires_at = now + cfg.timeout  # REQ-6: outbound refresh
            if cfg.filtering is not NatBehavior.ENDPOINT_INDEPENDENT:
                m.permits[_remote_key(cfg.filtering, dst)] = now + cfg.timeout
        self.stats.translated_out += 1
        return (ip, m.port)

    def inbound(self, src: Address, public_port: int, now: float) -> Address | str:
        """``src`` sends to ``(public_ip, public_port)``: the inside address to
        deliver to (refreshing the mapping if ``inbound_refresh``), or a drop fate."""
        if now >= self._next_expiry:
            self._expire_due(now)
        m = self._by_port.get(public_port)
        if m is None:
            self.stats.no_mapping += 1
            return "nat_no_mapping"
        stats = self.stats
        if m.static:
            stats.forwarded += 1
        else:
            cfg = self.config
            if cfg.filtering is not NatBehavior.ENDPOINT_INDEPENDENT:
                pkey = _remote_key(cfg.filtering, src)
                permit = m.permits.get(pkey)
                if permit is None or permit <= now:
                    stats.filtered += 1
                    return "nat_filtered"
                if cfg.inbound_refresh:
                    m.permits[pkey] = now + cfg.timeout
            if cfg.inbound_refresh:
                m.expires_at = now + cfg.timeout
        stats.translated_in += 1
        return m.inside

    def hairpin(self, src: Address, dst: Address, now: float) -> tuple[Address, Address] | str:
        """An inside host sends to the NAT's own public address ``dst`` (RFC 4787
        §6): ``(its public source, the inside destination)``, or a drop fate."""
        if not self.config.hairpinning:
            self.stats.hairpin_drops += 1
            return "nat_no_hairpin"
        public_src = self.outbound(src, dst, now)
        if isinstance(public_src, str):
            return public_src
        inside = self.inbound(public_src, dst[1], now)
        if isinstance(inside, str):
            return inside
        self.stats.hairpinned += 1
        return public_src, inside

    # -- internals ------------------------------------------------------------

    def _remove(self, m: _Mapping) -> None:
        del self._by_key[(m.inside, m.key)]
        del self._by_port[m.port]

    def _expire_due(self, now: float) -> None:
        """Drop mappings whose timer ran out (alive while ``now < expires_at``)."""
        nxt = math.inf
        gone: list[_Mapping] = []
        for m in self._by_key.values():
            if m.expires_at <= now:
                gone.append(m)
                continue
            if m.permits:
                # Permissions die on their own timers; forget the dead ones.
                dead = [k for k, t in m.permits.items() if t <= now]
                for k in dead:
                    del m.permits[k]
            nxt = min(nxt, m.expires_at)
        for m in gone:
            self._remove(m)
        self.stats.mappings_expired += len(gone)
        self._next_expiry = nxt

    def _allocate(self, inside: Address) -> int | None:
        """A free public port for a new mapping of ``inside`` (None: exhausted)."""
        used = self._by_port
        avoid = self._avoid.pop(inside, ())
        lo, hi = self.config.port_range
        port = inside[1]
        if (
            self.config.port_preservation
            and isinstance(port, int)
            and lo <= port <= hi
            and port not in used
            and port not in avoid
        ):
            return port
        n = hi - lo + 1
        sequential = self.config.allocation is PortAllocation.SEQUENTIAL
        start = self._cursor if sequential else self._rng.randrange(n)
        for i in range(n):
            off = (start + i) % n
            port = lo + off
            if port not in used and port not in avoid:
                if sequential:
                    self._cursor = (off + 1) % n
                return port
        return None
