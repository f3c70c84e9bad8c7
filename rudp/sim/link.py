"""Link impairment configuration, per-link counters and per-link state.

:meth:`Link.decide` is the one place that applies a :class:`LinkConfig` to a
datagram; the simulator (:class:`rudp.sim.Network`, virtual time) and the UDP
proxy (:class:`rudp.sim.proxy.UdpProxy`, the event loop's clock) both call it.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, fields

Address = tuple[str, int]

#: One copy to deliver: ``(arrival time, bytes)``, see :meth:`Link.decide`.
Copy = tuple[float, bytes]
_NO_COPIES: tuple[Copy, ...] = ()

# Tolerance (bytes) when comparing a float-derived backlog with queue_limit.
_QUEUE_EPS = 1e-6

#: Every fate a tap can report, see :meth:`rudp.sim.Network.add_tap`.
FATES = frozenset(
    {
        "delivered",
        "lost",
        "corrupted",
        "duplicated",
        "blackholed",
        "queue_drop",
        "mtu_drop",
        "reordered",
        "unroutable",
        # Drops by a NAT (see rudp.sim.nat.NAT_FATES).
        "nat_filtered",
        "nat_no_mapping",
        "nat_no_hairpin",
        "nat_ports_exhausted",
    }
)


def _check_nonneg(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
        raise ValueError(f"LinkConfig.{name} must be a finite number >= 0, got {value!r}")


def _check_prob(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
        raise ValueError(f"LinkConfig.{name} must be a probability in [0, 1], got {value!r}")


def _check_count(name: str, value: int | None, allow_none: bool = True) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"LinkConfig.{name} must be an integer >= 1, got {value!r}")


@dataclass(frozen=True, slots=True)
class LinkConfig:
    """Impairments of one direction of a path. Times are seconds: virtual time in
    the simulator, time since the proxy started for :class:`rudp.sim.proxy.UdpProxy`.

    A datagram offered to a link at time ``t`` goes through these stages, in order
    (:meth:`Link.decide` applies them):

    1. ``mtu``: larger datagrams are dropped (``mtu_drops``).
    2. ``blackhole``: dropped if ``t`` falls in a window ``[start, end)``; with
       ``blackhole_period`` every window repeats at ``start + k * period`` for k >= 0.
       Only the send time matters: datagrams already in flight are still delivered.
    3. ``rate``: serialization at ``rate`` bytes/s behind earlier datagrams; if the
       backlog plus this datagram would exceed ``queue_limit`` bytes it is dropped
       (``queue_drops``).
    4. ``loss``: dropped with this probability (``lost``); with ``loss_max_burst`` N,
       after N consecutive losses the next datagram is forced through.
    5. ``corrupt``: ``corrupt_bytes`` distinct random bytes are XORed with random
       nonzero values; the datagram is still delivered (``corrupted``).
    6. Propagation: ``delay`` plus uniform ``[0, jitter)``. Jitter never reorders:
       a datagram never arrives before an earlier one on the same link.
    7. ``reorder``: with this probability the datagram is held back an extra
       ``reorder_delay`` so that later datagrams can overtake it (``reordered``).
    8. ``duplicate``: with this probability a second identical copy is delivered
       right after the first (``duplicated``; both copies count in ``delivered``).
    """

    delay: float = 0.0
    jitter: float = 0.0
    loss: float = 0.0
    loss_max_burst: int | None = None
    duplicate: float = 0.0
    reorder: float = 0.0
    reorder_delay: float = 0.01
    corrupt: float = 0.0
    corrupt_bytes: int = 1
    rate: float | None = None
    queue_limit: int | None = None
    blackhole: Sequence[tuple[float, float]] = ()
    blackhole_period: float | None = None
    mtu: int | None = None

    def __post_init__(self) -> None:
        for name in ("delay", "jitter", "reorder_delay"):
            _check_nonneg(name, getattr(self, name))
        for name in ("loss", "duplicate", "reorder", "corrupt"):
            _check_prob(name, getattr(self, name))
        _check_count("loss_max_burst", self.loss_max_burst)
        _check_count("corrupt_bytes", self.corrupt_bytes, allow_none=False)
        _check_count("queue_limit", self.queue_limit)
        _check_count("mtu", self.mtu)
        if self.rate is not None:
            _check_nonneg("rate", self.rate)
            if self.rate == 0:
                raise ValueError("LinkConfig.rate must be > 0 (or None for unlimited)")
        if self.queue_limit is not None and self.rate is None:
            raise ValueError("LinkConfig.queue_limit needs a rate (the queue feeds the limiter)")
        windows: list[tuple[float, float]] = []
        for window in self.blackhole:
            try:
                start, end = (float(x) for x in window)
            except (TypeError, ValueError):
                raise ValueError(
                    f"LinkConfig.blackhole windows must be (start, end) pairs, got {window!r}"
                ) from None
            if not (math.isfinite(start) and math.isfinite(end) and start < end):
                raise ValueError(
                    f"LinkConfig.blackhole window needs finite start < end, got {window!r}"
                )
            windows.append((start, end))
        # Normalize to a tuple so the frozen config stays hashable and immutable.
        object.__setattr__(self, "blackhole", tuple(windows))
        period = self.blackhole_period
        if period is not None:
            _check_nonneg("blackhole_period", period)
            if period == 0:
                raise ValueError("LinkConfig.blackhole_period must be > 0 (or None)")
            if not windows:
                raise ValueError("LinkConfig.blackhole_period needs at least one blackhole window")
            for start, end in windows:
                if end - start > period:
                    raise ValueError(
                        f"LinkConfig.blackhole window ({start}, {end}) is longer than "
                        f"blackhole_period {period}"
                    )

    def is_blackholed(self, t: float) -> bool:
        """True if a datagram sent at virtual time ``t`` falls in a blackhole window."""
        period = self.blackhole_period
        for start, end in self.blackhole:
            if t < start:
                continue
            if period is None:
                if t < end:
                    return True
            elif (t - start) % period < end - start:
                return True
        return False


@dataclass(slots=True)
class LinkStats:
    """Counters of one link (or their sum, see :meth:`rudp.sim.Network.total_stats`).

    ``sent`` counts datagrams offered; ``delivered`` counts copies actually handed to
    the destination node (duplicates included), so once nothing is in flight
    ``sent + duplicated == delivered + dropped``.
    """

    sent: int = 0
    delivered: int = 0
    lost: int = 0
    duplicated: int = 0
    reordered: int = 0
    corrupted: int = 0
    queue_drops: int = 0
    blackholed: int = 0
    mtu_drops: int = 0
    bytes_delivered: int = 0

    @property
    def dropped(self) -> int:
        """Datagrams dropped by any impairment."""
        return self.lost + self.queue_drops + self.blackholed + self.mtu_drops

    @property
    def in_flight(self) -> int:
        """Copies scheduled for delivery but not delivered yet."""
        return self.sent + self.duplicated - self.delivered - self.dropped

    def add(self, other: LinkStats) -> None:
        """Add every counter of ``other`` into this one."""
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


class Link:
    """One direction ``src -> dst``: its config, counters and impairment state.

    ``rng`` replaces the random stream derived from ``seed``, the realm and the
    addresses (the proxy, whose addresses are not stable, names its own streams).
    """

    __slots__ = (
        "busy_until",
        "cfg",
        "dst",
        "explicit",
        "last_arrival",
        "loss_run",
        "rng",
        "src",
        "stats",
    )

    def __init__(
        self,
        src: Address,
        dst: Address,
        cfg: LinkConfig,
        seed: int,
        realm: str = "",
        *,
        rng: random.Random | None = None,
    ) -> None:
        self.src = src
        self.dst = dst
        self.cfg = cfg
        self.explicit = False  # set by set_link/set_path; else follows the default
        self.stats = LinkStats()
        if rng is None:
            # A string seed is hashed with SHA-512 by random.Random, so it is stable
            # across processes (unlike hash()). Each link draws from its own stream:
            # traffic on one link does not perturb the impairments of another. A link
            # inside a NAT also mixes in its realm (the same private addresses may
            # exist behind several NATs).
            key = f"{seed}|{realm}|{src!r}|{dst!r}" if realm else f"{seed}|{src!r}|{dst!r}"
            rng = random.Random(key)
        self.rng = rng
        self.busy_until = -math.inf  # when the rate limiter finishes its backlog
        self.last_arrival = -math.inf  # FIFO floor for non-reordered datagrams
        self.loss_run = 0  # consecutive losses so far

    def decide(self, now: float, data: bytes) -> tuple[str, tuple[Copy, ...]]:
        """Offer ``data`` to the link at time ``now``: the stages of :class:`LinkConfig`.

        Returns ``(fate, copies)``. ``fate`` is a drop reason (``"mtu_drop"``,
        ``"blackholed"``, ``"queue_drop"``, ``"lost"``) or, for a datagram that will
        be delivered, the first of ``"corrupted"``, ``"reordered"``, ``"duplicated"``
        that applies, else ``"delivered"``. ``copies`` lists what to deliver as
        ``(arrival time, bytes)`` in delivery order: none for a drop, two equal
        copies for a duplicate; the bytes differ from ``data`` when corrupted.

        Every counter of :attr:`stats` is updated here except ``delivered`` and
        ``bytes_delivered``: the caller counts a copy when it actually arrives.
        """
        cfg = self.cfg
        st = self.stats
        st.sent += 1
        size = len(data)
        if cfg.mtu is not None and size > cfg.mtu:
            st.mtu_drops += 1
            return "mtu_drop", _NO_COPIES
        if cfg.blackhole and cfg.is_blackholed(now):
            st.blackholed += 1
            return "blackholed", _NO_COPIES
        t = now
        rate = cfg.rate
        if rate is not None:
            busy = self.busy_until
            if busy > now:
                limit = cfg.queue_limit
                if limit is not None and (busy - now) * rate + size > limit + _QUEUE_EPS:
                    st.queue_drops += 1
                    return "queue_drop", _NO_COPIES
                t = busy
            t += size / rate
            self.busy_until = t  # the datagram occupies the link even if lost later
        rng = self.rng
        if cfg.loss and rng.random() < cfg.loss:
            burst = cfg.loss_max_burst
            if burst is None or self.loss_run < burst:
                self.loss_run += 1
                st.lost += 1
                return "lost", _NO_COPIES
        self.loss_run = 0
        fate = "delivered"
        if cfg.corrupt and size and rng.random() < cfg.corrupt:
            buf = bytearray(data)
            for i in rng.sample(range(size), min(cfg.corrupt_bytes, size)):
                buf[i] ^= rng.randrange(1, 256)
            st.corrupted += 1
            fate = "corrupted"
            data = bytes(buf)
        arrival = t + cfg.delay
        if cfg.jitter:
            arrival += rng.random() * cfg.jitter
        if arrival < self.last_arrival:
            arrival = self.last_arrival  # jitter must not reorder
        if cfg.reorder and rng.random() < cfg.reorder:
            # Held back without raising the FIFO floor, so later datagrams overtake.
            arrival += cfg.reorder_delay
            st.reordered += 1
            if fate == "delivered":
                fate = "reordered"
        else:
            self.last_arrival = arrival
        if cfg.duplicate and rng.random() < cfg.duplicate:
            st.duplicated += 1
            if fate == "delivered":
                fate = "duplicated"
            return fate, ((arrival, data), (arrival, data))
        return fate, ((arrival, data),)
