"""Real-time bridges between TUN devices, the rudp engine and each other.

:class:`EngineBridge` makes a rudp engine a host the kernel can talk TCP to: IP
packets the kernel routes into a TUN device become rudp datagrams (the TCP segment,
checksum converted, see :mod:`.ippacket`) for a sans-IO node -- an
:class:`rudp.engine.Endpoint`, or a :class:`rudp.sim.host.Host` with applications --
and the node's datagrams go back into the TUN device as IP packets. The kernel is
one synthetic UDP address per IP, ``(ip, KERNEL_UDP_PORT)``; the engine answers
from ``engine_ips`` (one per address family).

:class:`Forwarder` joins two TUN devices (in two network namespaces) so that two
kernels talk TCP to each other through the same impairment stages.

Both run on an asyncio loop in real time: ``add_reader`` on the TUN descriptors,
``loop.time()`` as the engine's clock, one ``call_at`` for the engine's deadline
(re-armed only when it changes, as aioquic's asyncio adapter does) and one per
direction for the delay line. Each direction of each bridge has its own
impairment :class:`~.impair.Stage` (``LinkConfig``), seeded from ``seed`` and the
direction's name: ``"a2b"`` carries packets from side A (the engine, or the first
TUN) to side B, ``"b2a"`` the other way. Only TCP packets meet the impairment; the
forwarder passes other packets through untouched and the engine bridge drops them
(counted).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import math
import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from rudp.sim import LinkConfig, LinkStats, SimNode

from .impair import DelayLine, make_stage
from .ippacket import IPPROTO_TCP, PacketCodec, PacketError

__all__ = [
    "KERNEL_UDP_PORT",
    "EngineBridge",
    "Forwarder",
    "PacketTap",
    "is_tcp",
    "lateness_summary",
]

Address = tuple[Any, ...]
#: ``tap(direction, time, ip_packet, fate)``: every TCP packet a direction is
#: offered, before its fate applies (``"delivered"``, ``"lost"``, ``"queue_drop"``).
PacketTap = Callable[[str, float, bytes, str], None]

#: The UDP port of the kernel's synthetic address as the engine sees it.
KERNEL_UDP_PORT = 0
#: Packets read from a TUN device per wake-up before other callbacks get a turn.
READ_BATCH = 256
_READ_SIZE = 65536


def is_tcp(packet: bytes) -> bool:
    """True for an IPv4 or IPv6 packet whose protocol / next header is TCP."""
    if not packet:
        return False
    version = packet[0] >> 4
    if version == 4:
        return len(packet) >= 20 and packet[9] == IPPROTO_TCP
    if version == 6:
        return len(packet) >= 40 and packet[6] == IPPROTO_TCP
    return False


class _Direction:
    """One direction: impairment stage, delay line, sink (a batch of packets)."""

    __slots__ = ("_due", "_sink", "line", "name", "stage", "stats", "tap")

    def __init__(
        self,
        name: str,
        cfg: LinkConfig,
        seed: int | str,
        loop: asyncio.AbstractEventLoop,
        sink: Callable[[list[bytes]], None],
        tap: PacketTap | None,
    ) -> None:
        self.name = name
        self.stage = make_stage(cfg, seed, name)
        self.stats: LinkStats = self.stage.stats
        self._sink = sink
        self.tap = tap
        self.line: DelayLine[bytes] = DelayLine(loop, self._deliver)
        self._due: list[bytes] = []

    def offer(self, now: float, packet: bytes) -> None:
        fate, copies = self.stage.decide(now, packet)
        if self.tap is not None:
            self.tap(self.name, now, packet, fate)
        for at, data in copies:
            if at <= now and not len(self.line):
                self._due.append(data)  # no delay: with the rest of this batch
            else:
                self.line.push(at, data)

    def flush(self) -> None:
        """Deliver what :meth:`offer` found due at once (call after a batch)."""
        if self._due:
            batch, self._due = self._due, []
            self._deliver(batch)

    def _deliver(self, batch: list[bytes]) -> None:
        st = self.stats
        st.delivered += len(batch)
        st.bytes_delivered += sum(map(len, batch))
        self._sink(batch)

    def close(self) -> None:
        self.line.close()
        self._due.clear()


class _TunPort:
    """Reading and writing one TUN descriptor, with counters."""

    __slots__ = ("counters", "fd")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.counters: dict[str, int] = {
            "packets_read": 0,
            "bytes_read": 0,
            "packets_written": 0,
            "bytes_written": 0,
            "write_errors": 0,
        }

    def read_batch(self) -> list[bytes]:
        out: list[bytes] = []
        fd = self.fd
        for _ in range(READ_BATCH):
            try:
                pkt = os.read(fd, _READ_SIZE)
            except (BlockingIOError, InterruptedError):
                break
            if not pkt:
                break
            out.append(pkt)
        if out:
            self.counters["packets_read"] += len(out)
            self.counters["bytes_read"] += sum(map(len, out))
        return out

    def write_batch(self, packets: Iterable[bytes]) -> None:
        fd = self.fd
        c = self.counters
        for pkt in packets:
            try:
                os.write(fd, pkt)
            except OSError:  # device down or gone; the packet is lost
                c["write_errors"] += 1
                continue
            c["packets_written"] += 1
            c["bytes_written"] += len(pkt)


class EngineBridge:
    """A rudp sans-IO node behind a TUN device (see the module doc).

    ``fd`` is the TUN descriptor (IFF_TUN | IFF_NO_PI, non-blocking); ``node`` the
    engine (anything with the :class:`rudp.sim.SimNode` methods); ``engine_ips``
    the addresses the kernel reaches the engine at (routed into the TUN device),
    at most one IPv4 and one IPv6. ``to_kernel`` impairs the engine's packets
    (direction ``"a2b"``), ``to_engine`` the kernel's (``"b2a"``).

    Code that calls the engine from outside the bridge's callbacks (an application
    writing to a connection) calls :meth:`kick` afterwards, so what it queued is sent.
    """

    def __init__(
        self,
        fd: int,
        node: SimNode,
        engine_ips: Sequence[str],
        *,
        to_kernel: LinkConfig | None = None,
        to_engine: LinkConfig | None = None,
        seed: int | str = 0,
        tap: PacketTap | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.loop = loop or asyncio.get_running_loop()
        self.node = node
        self.tun = _TunPort(fd)
        self.codec = PacketCodec()
        self._local: dict[int, bytes] = {}
        for text in engine_ips:
            packed = ipaddress.ip_address(text).packed
            if len(packed) in self._local:
                raise ValueError(f"one engine address per family, got {list(engine_ips)}")
            self._local[len(packed)] = packed
        self._local_set = frozenset(self._local.values())
        self._packed: dict[Any, bytes] = {}
        self.out = _Direction(
            "a2b", to_kernel or LinkConfig(), seed, self.loop, self.tun.write_batch, tap
        )
        self.inn = _Direction(
            "b2a", to_engine or LinkConfig(), seed, self.loop, self._to_engine, tap
        )
        self.counters: dict[str, int] = {"dropped": 0}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
        #: How late the loop ran the engine's timer (s), every time it fired.
        self.timer_lateness: list[float] = []
        self._kick_pending = False
        self._running = False

    # ------------------------------------------------------------ control
    def start(self) -> None:
        self.loop.add_reader(self.tun.fd, self._on_readable)
        self._running = True
        self._service()

    def close(self) -> None:
        """Stop reading and sending; the TUN descriptor stays open (the caller's)."""
        if self._running:
            self.loop.remove_reader(self.tun.fd)
            self._running = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = math.inf
        self.out.close()
        self.inn.close()

    def __enter__(self) -> EngineBridge:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def now(self) -> float:
        """The engine's clock (the loop's)."""
        return self.loop.time()

    def kick(self) -> None:
        """Send whatever the engine has queued, soon (coalesced)."""
        if not self._kick_pending and self._running:
            self._kick_pending = True
            self.loop.call_soon(self._kicked)

    @staticmethod
    def kernel_address(ip: str) -> Address:
        """The engine's UDP address for the kernel at ``ip`` (for ``Endpoint.connect``)."""
        return (ipaddress.ip_address(ip).compressed, KERNEL_UDP_PORT)

    def stats(self) -> dict[str, Any]:
        return {
            "a2b": _stats_dict(self.out.stats),
            "b2a": _stats_dict(self.inn.stats),
            "tun": dict(self.tun.counters),
            "timer_late_ms": lateness_summary(self.timer_lateness),
            **self.counters,
        }

    # ----------------------------------------------------------- internals
    def _drop(self, reason: str) -> None:
        c = self.counters
        c["dropped"] += 1
        key = "drop_" + reason
        c[key] = c.get(key, 0) + 1

    def _kicked(self) -> None:
        self._kick_pending = False
        if self._running:
            self._service()

    def _on_readable(self) -> None:
        now = self.loop.time()
        inn = self.inn
        for pkt in self.tun.read_batch():
            if is_tcp(pkt):
                inn.offer(now, pkt)
            else:
                self._drop("not_tcp")
        inn.flush()

    def _to_engine(self, packets: list[bytes]) -> None:
        if not self._running:
            return
        now = self.loop.time()
        node = self.node
        decode = self.codec.decode
        local = self._local_set
        for pkt in packets:
            try:
                src_text, _src, dst, seg = decode(pkt)
            except PacketError as exc:
                self._drop(exc.reason)
                continue
            if dst not in local:
                self._drop("wrong_dst")
                continue
            node.receive_datagram(seg, (src_text, KERNEL_UDP_PORT), now)
        self._service()

    def _service(self) -> None:
        """Collect the node's output, send it, re-arm its timer."""
        now = self.loop.time()
        node = self.node
        out = self.out
        encode = self.codec.encode
        for data, addr in node.datagrams_to_send(now):
            dst = self._packed.get(addr[0])
            if dst is None:
                try:
                    dst = ipaddress.ip_address(addr[0]).packed
                except ValueError:
                    self._drop("bad_address")
                    continue
                self._packed[addr[0]] = dst
            src = self._local.get(len(dst))
            if src is None:
                self._drop("no_local_address")
                continue
            try:
                pkt = encode(data, src, dst)
            except PacketError as exc:
                self._drop(exc.reason)
                continue
            out.offer(now, pkt)
        out.flush()
        t = node.get_timer()
        at = math.inf if t is None else t
        if at != self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._timer_at = at
            if t is not None and self._running:
                self._timer = self.loop.call_at(t, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        at = self._timer_at
        self._timer_at = math.inf
        if not self._running:
            return
        now = self.loop.time()
        self.timer_lateness.append(now - at)
        self.node.handle_timer(max(now, at))
        self._service()


class Forwarder:
    """Forward IP packets between TUN devices A and B (see the module doc):
    ``a2b`` impairs TCP packets read from A on their way into B, ``b2a`` the others."""

    def __init__(
        self,
        fd_a: int,
        fd_b: int,
        *,
        a2b: LinkConfig | None = None,
        b2a: LinkConfig | None = None,
        seed: int | str = 0,
        tap: PacketTap | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.loop = loop or asyncio.get_running_loop()
        self.a = _TunPort(fd_a)
        self.b = _TunPort(fd_b)
        self.ab = _Direction("a2b", a2b or LinkConfig(), seed, self.loop, self.b.write_batch, tap)
        self.ba = _Direction("b2a", b2a or LinkConfig(), seed, self.loop, self.a.write_batch, tap)
        self.passed_through = 0  # packets other than TCP, forwarded unimpaired
        self._running = False

    def start(self) -> None:
        self.loop.add_reader(self.a.fd, self._on_readable, self.a, self.b, self.ab)
        self.loop.add_reader(self.b.fd, self._on_readable, self.b, self.a, self.ba)
        self._running = True

    def close(self) -> None:
        if self._running:
            for fd in (self.a.fd, self.b.fd):
                with contextlib.suppress(ValueError, OSError):
                    self.loop.remove_reader(fd)
            self._running = False
        self.ab.close()
        self.ba.close()

    def __enter__(self) -> Forwarder:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def stats(self) -> dict[str, Any]:
        return {
            "a2b": _stats_dict(self.ab.stats),
            "b2a": _stats_dict(self.ba.stats),
            "tun_a": dict(self.a.counters),
            "tun_b": dict(self.b.counters),
            "passed_through": self.passed_through,
        }

    def _on_readable(self, src: _TunPort, dst: _TunPort, direction: _Direction) -> None:
        now = self.loop.time()
        other: list[bytes] = []
        for pkt in src.read_batch():
            if is_tcp(pkt):
                direction.offer(now, pkt)
            else:
                other.append(pkt)
        direction.flush()
        if other:
            self.passed_through += len(other)
            dst.write_batch(other)


def lateness_summary(lateness: Sequence[float]) -> dict[str, float]:
    """Count, median, 90th and 99th percentile and maximum of timer lateness, in
    milliseconds (the nearest-rank percentiles; empty without samples)."""
    if not lateness:
        return {}
    xs = sorted(lateness)
    n = len(xs)

    def rank(p: float) -> float:
        return round(max(0.0, xs[min(n - 1, math.ceil(p * n) - 1)]) * 1000, 3)

    return {"n": n, "p50": rank(0.5), "p90": rank(0.9), "p99": rank(0.99), "max": rank(1.0)}


def _stats_dict(st: LinkStats) -> dict[str, int]:
    return {
        "sent": st.sent,
        "delivered": st.delivered,
        "lost": st.lost,
        "queue_drops": st.queue_drops,
        "bytes_delivered": st.bytes_delivered,
    }
