"""The simulated path: senders, one shared bottleneck, a receiver, and the
wire-level meters that measure every flow independently of the engine.

Topology (simulator addresses)::

    SenderGroup (SENDERS)                                        ReceiverProbe (RECEIVER)
      host 0 (port 40000) -+      bottleneck link: rate, tail-drop
      host 1 (port 40001) -+====> queue of B bytes, delay d, loss p ====>  one Endpoint,
      ...                  -+                                              listening on 80
                            <==== ACK link: delay d, no rate limit, loss p only with
                                  "loss each way"

The simulator's rate limiter and queue belong to one link, i.e. one ``(src, dst)``
address pair. To make N flows compete in one queue, every sender lives inside one
:class:`SenderGroup` node at one address (hosts behind one switch port or NAT, with no
delay in between): all their datagrams enter the same bottleneck link, in the order
they are emitted, and share its FIFO and serializer. The receiver is one
:class:`~rudp.engine.Endpoint`; it tells flows apart by the senders' TCP ports (each
flow has its own fixed port), and the group hands each ACK to the host owning its
destination port. (A router node forwarding between separate sender addresses and the
bottleneck would model the same thing with two more simulator events per datagram,
about 60 % more wall time.)

Measurement happens at node boundaries, from the datagrams themselves (the TCP header,
RFC 9293 §3.1), never from engine counters: the :class:`SenderGroup` sees every
datagram a sender emits and every ACK it receives; the :class:`ReceiverProbe` sees
every data segment that arrives and every ACK the receiver emits. Both feed one
:class:`FlowMeter` per flow.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_right
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from rudp.engine import Connection, ConnectionTerminated, Event
from rudp.sim.host import BulkApp, Host

Address = tuple[Any, ...]

SEQ_MASK = 0xFFFFFFFF
_SYN = 0x02
_TCP_HEADER = 20  # the fixed TCP header (RFC 9293 §3.1); options come on top
_ZEROS = bytes(1 << 18)  # what every source sends (content does not matter)

SENDERS: Address = ("10.0.1.1", 4000)
RECEIVER: Address = ("10.0.2.1", 5000)
SERVER_PORT = 80


def sender_port(flow: int) -> int:
    """The fixed TCP port of flow ``flow``'s sender (the receiver demultiplexes on it)."""
    return 40000 + flow


class FlowMeter:
    """Wire-level accounting of one flow (sender side and receiver side).

    Sequence numbers are kept relative to the flow's ISN + 1 (taken from the SYN the
    sender emits), modulo 2**32; a run moves far less than 2**31 bytes per flow, so
    relative offsets are plain integers that never wrap.
    """

    __slots__ = (
        "base",
        "delivered",
        "dup_bytes",
        "dup_segs",
        "hdr_at_max",
        "max_payload",
        "measuring",
        "min_rtt",
        "ooo_ends",
        "ooo_segs",
        "ooo_starts",
        "port",
        "rcv_bytes",
        "rcv_cum",
        "rcv_segs",
        "retx_bytes",
        "retx_segs",
        "rev_owd",
        "rev_pending",
        "rtt_samples",
        "sent_at",
        "sent_bytes",
        "sent_segs",
        "snd_max",
        "watch_end",
        "watch_times",
    )

    def __init__(self, port: int) -> None:
        self.port = port
        self.base: int | None = None  # ISN + 1
        # Sender side (what left the sender's node).
        self.snd_max = 0  # relative end of the highest data sent
        self.sent_bytes = 0  # payload bytes, retransmissions included
        self.sent_segs = 0
        self.retx_bytes = 0  # payload bytes at or below snd_max when sent
        self.retx_segs = 0
        self.max_payload = 0  # largest payload seen, and its header length
        self.hdr_at_max = _TCP_HEADER
        #: Send time of data segments sent exactly once so far, by raw sequence number.
        self.sent_at: dict[int, float] = {}
        #: Send times of every transmission of the segment ending at ``watch_end``.
        self.watch_end: int | None = None
        self.watch_times: list[float] = []
        # Receiver side (what arrived at the receiver's node).
        self.rcv_cum = 0  # every relative byte below this has arrived
        self.ooo_starts: list[int] = []  # arrived runs above rcv_cum, sorted, disjoint
        self.ooo_ends: list[int] = []
        self.rcv_bytes = 0
        self.rcv_segs = 0
        self.dup_bytes = 0  # payload bytes that had already arrived (unneeded copies)
        self.dup_segs = 0  # segments carrying at least one such byte
        self.ooo_segs = 0  # segments that arrived with a hole before them
        self.delivered = 0  # bytes the receiving application read, in order
        # RTT (see FlowMeter.on_data_arrival).
        self.rev_pending: dict[bytes, deque[float]] = {}  # ACK bytes -> emission times
        self.rev_owd = 0.0  # latest one-way delay of an ACK, receiver -> sender
        self.measuring = False
        self.rtt_samples: list[float] = []
        self.min_rtt = float("inf")

    # -- sender side ----------------------------------------------------------
    def on_sent(self, data: bytes, now: float) -> None:
        """A datagram left the sender."""
        if len(data) < _TCP_HEADER:
            return
        hlen = (data[12] >> 4) * 4
        n = len(data) - hlen
        seq = int.from_bytes(data[4:8], "big")
        if data[13] & _SYN:
            self.base = (seq + 1) & SEQ_MASK
            return
        base = self.base
        if n <= 0 or base is None:
            return
        rel = (seq - base) & SEQ_MASK
        end = rel + n
        self.sent_bytes += n
        self.sent_segs += 1
        if end == self.watch_end:
            self.watch_times.append(now)
        if n > self.max_payload:
            self.max_payload = n
            self.hdr_at_max = hlen
        snd_max = self.snd_max
        if rel < snd_max:
            # At least partly a retransmission: Karn's rule, no RTT sample from it.
            self.retx_bytes += min(end, snd_max) - rel
            self.retx_segs += 1
            self.sent_at.pop(seq, None)
            if end > snd_max:
                self.snd_max = end
        else:
            self.sent_at[seq] = now
            self.snd_max = end

    def on_ack_arrival(self, data: bytes, now: float) -> None:
        """An ACK reached the sender: one reverse one-way delay sample."""
        pending = self.rev_pending.get(data)
        if pending:
            self.rev_owd = now - pending.popleft()
            if not pending:
                del self.rev_pending[data]

    # -- receiver side --------------------------------------------------------
    def on_ack_sent(self, data: bytes, now: float) -> None:
        pending = self.rev_pending.get(data)
        if pending is None:
            self.rev_pending[data] = deque((now,))
        else:
            pending.append(now)

    def on_data_arrival(self, data: bytes, now: float) -> None:
        """A data segment reached the receiver.

        RTT sample: the segment's forward one-way delay (sender emission to receiver
        arrival, queueing and serialization included) plus the latest reverse one-way
        delay of an ACK. Only segments sent exactly once are sampled (Karn). The
        sample leaves out the receiver's delayed-ACK wait and the time a segment
        spends behind a hole, so it is the network's RTT, not the ACK clock's.
        """
        hlen = (data[12] >> 4) * 4
        n = len(data) - hlen
        base = self.base
        if n <= 0 or base is None:
            return
        seq = int.from_bytes(data[4:8], "big")
        sent = self.sent_at.pop(seq, None)
        if sent is not None:
            rtt = now - sent + self.rev_owd
            if rtt < self.min_rtt:
                self.min_rtt = rtt
            if self.measuring:
                self.rtt_samples.append(rtt)
        self.rcv_bytes += n
        self.rcv_segs += 1
        s = (seq - base) & SEQ_MASK
        e = s + n
        cum = self.rcv_cum
        starts = self.ooo_starts
        if s == cum and not starts:
            self.rcv_cum = e  # in order, nothing held: the common case
            return
        dup = 0
        if s < cum:
            dup = min(e, cum) - s
            s = cum
        elif s > cum:
            self.ooo_segs += 1
        if s < e:
            dup += self._merge(s, e)
        if dup:
            self.dup_bytes += dup
            self.dup_segs += 1

    def _merge(self, s: int, e: int) -> int:
        """Add ``[s, e)`` (with ``s >= rcv_cum``) to the arrived set; return the
        number of its bytes that were already there."""
        starts = self.ooo_starts
        ends = self.ooo_ends
        dup = 0
        lo, hi = s, e  # the merged run
        i = bisect_right(starts, s)
        if i and ends[i - 1] >= s:
            i -= 1
            dup += max(0, min(ends[i], e) - s)
            lo = starts[i]
            hi = max(hi, ends[i])
            j = i + 1
        else:
            j = i
        while j < len(starts) and starts[j] <= hi:
            dup += max(0, min(ends[j], e) - max(starts[j], s))
            hi = max(hi, ends[j])
            j += 1
        starts[i:j] = [lo]
        ends[i:j] = [hi]
        if starts[0] <= self.rcv_cum:
            self.rcv_cum = max(self.rcv_cum, ends[0])
            del starts[0]
            del ends[0]
        return dup

    def snapshot(self) -> dict[str, int]:
        return {
            "delivered": self.delivered,
            "sent_bytes": self.sent_bytes,
            "sent_segs": self.sent_segs,
            "retx_bytes": self.retx_bytes,
            "retx_segs": self.retx_segs,
            "rcv_bytes": self.rcv_bytes,
            "rcv_segs": self.rcv_segs,
            "dup_bytes": self.dup_bytes,
            "dup_segs": self.dup_segs,
            "ooo_segs": self.ooo_segs,
        }


class Source(BulkApp):
    """Writes zeros as fast as the connection accepts them (``limit`` bytes, or forever).

    It never half-closes, so a finite transfer ends with a data segment, not a FIN.
    """

    def __init__(self, limit: int | None = None) -> None:
        super().__init__(b"", read=False)
        self.limit = limit
        self.written = 0

    def pump(self, now: float) -> None:
        conn = self.conn
        if conn is None or self.terminated:
            return
        limit = self.limit
        chunk = memoryview(_ZEROS)
        while not conn.writing_paused:
            n = len(chunk) if limit is None else min(len(chunk), limit - self.written)
            if n <= 0:
                break
            conn.send(chunk[:n], now)
            self.written += n

    def on_event(self, ev: Event, now: float) -> None:
        if isinstance(ev, ConnectionTerminated):
            self.terminated = True
            self.error = ev.error
            self.done_at = now
        else:
            self.pump(now)


class Sink(BulkApp):
    """Reads (and discards) everything; counts it in the flow's meter."""

    def __init__(self, meters: dict[int, FlowMeter], target: int | None = None) -> None:
        super().__init__(b"", read=True)
        self.meters = meters
        self.meter: FlowMeter | None = None
        self.target = target  # record when this many bytes have been read
        self.target_at: float | None = None

    def attach(self, conn: Connection, now: float) -> None:
        self.meter = self.meters[conn.remote_port]
        super().attach(conn, now)

    def pump(self, now: float) -> None:
        conn = self.conn
        meter = self.meter
        if conn is None or meter is None:
            return
        if conn.readable:
            meter.delivered += len(conn.read())
            if (
                self.target is not None
                and self.target_at is None
                and meter.delivered >= self.target
            ):
                self.target_at = now

    def on_event(self, ev: Event, now: float) -> None:
        self.pump(now)
        if isinstance(ev, ConnectionTerminated):
            self.terminated = True
            self.error = ev.error
            self.done_at = now


#: ``drop(data, now)``: discard a datagram a sender emitted (it is still metered).
DropRule = Callable[[bytes, float], bool]


class SenderGroup:
    """A :class:`~rudp.sim.SimNode` holding every sender, one :class:`Host` per flow.

    The senders sit behind one simulator address, like hosts behind one switch port
    or NAT: their datagrams all enter the single ``SENDERS -> RECEIVER`` link, so
    every flow waits in the same tail-drop FIFO and shares one serializer, exactly as
    at a real bottleneck. ACKs are handed to the host owning their destination port.

    It also meters each flow: every datagram a sender emits and every ACK it
    receives goes through the flow's :class:`FlowMeter`. ``drop`` (optional)
    discards chosen datagrams after they are metered, for targeted-loss scenarios.
    """

    def __init__(self) -> None:
        self.flows: list[tuple[Host, FlowMeter]] = []
        self.by_port: dict[int, tuple[Host, FlowMeter]] = {}
        self.drop: DropRule | None = None
        self.dropped = 0
        self.unroutable = 0
        self._turn = 0  # who goes first when several senders emit at one instant

    def add(self, port: int, host: Host, meter: FlowMeter) -> None:
        self.flows.append((host, meter))
        self.by_port[port] = (host, meter)

    def receive_datagram(self, data: bytes, addr: Address, now: float) -> None:
        entry = self.by_port.get((data[2] << 8) | data[3]) if len(data) >= _TCP_HEADER else None
        if entry is None:
            self.unroutable += 1
            return
        host, meter = entry
        meter.on_ack_arrival(data, now)
        host.receive_datagram(data, addr, now)

    def datagrams_to_send(self, now: float) -> Sequence[tuple[bytes, Address]]:
        flows = self.flows
        if len(flows) == 1 and self.drop is None:
            host, meter = flows[0]
            out = host.datagrams_to_send(now)
            on_sent = meter.on_sent
            for data, _ in out:
                on_sent(data, now)
            return out
        # Several senders: take turns being first, so that no flow is always at the
        # head of the queue when two emit at the same virtual instant.
        n = len(flows)
        self._turn = (self._turn + 1) % n
        result: list[tuple[bytes, Address]] = []
        drop = self.drop
        for k in range(n):
            host, meter = flows[(self._turn + k) % n]
            for item in host.datagrams_to_send(now):
                meter.on_sent(item[0], now)
                if drop is not None and drop(item[0], now):
                    self.dropped += 1
                else:
                    result.append(item)
        return result

    def get_timer(self) -> float | None:
        deadline: float | None = None
        for host, _ in self.flows:
            t = host.get_timer()
            if t is not None and (deadline is None or t < deadline):
                deadline = t
        return deadline

    def handle_timer(self, now: float) -> None:
        for host, _ in self.flows:
            t = host.get_timer()
            if t is not None and t <= now:
                host.handle_timer(now)


class ReceiverProbe:
    """A :class:`~rudp.sim.SimNode` around the receiver's :class:`Host`.

    Data segments are attributed to flows by their source port (the sender's fixed
    port); ACKs by their destination port.
    """

    def __init__(self, host: Host, meters: dict[int, FlowMeter]) -> None:
        self.host = host
        self.meters = meters

    def receive_datagram(self, data: bytes, addr: Address, now: float) -> None:
        if len(data) >= _TCP_HEADER:
            meter = self.meters.get((data[0] << 8) | data[1])
            if meter is not None:
                meter.on_data_arrival(data, now)
        self.host.receive_datagram(data, addr, now)

    def datagrams_to_send(self, now: float) -> Sequence[tuple[bytes, Address]]:
        out = self.host.datagrams_to_send(now)
        meters = self.meters
        for data, _ in out:
            meter = meters.get((data[2] << 8) | data[3])
            if meter is not None:
                meter.on_ack_sent(data, now)
        return out

    def get_timer(self) -> float | None:
        return self.host.get_timer()

    def handle_timer(self, now: float) -> None:
        self.host.handle_timer(now)


def fixed_isn(seed: int) -> Callable[[tuple[Any, ...], float], int]:
    """A deterministic ISN function (the default one is keyed per process)."""

    def isn(identity: tuple[Any, ...], now: float) -> int:
        digest = hashlib.blake2s(f"{seed}|{identity!r}".encode(), digest_size=4).digest()
        return int.from_bytes(digest, "big")

    return isn
