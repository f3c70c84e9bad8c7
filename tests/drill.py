"""A packetdrill-like harness around one sans-IO :class:`rudp.engine.Endpoint`.

The test plays the remote peer by hand. Every step happens at an explicit virtual
time ``at``; before it, the harness advances the clock to ``at``, firing every
engine timer due on the way (at its exact deadline) and recording each datagram
the endpoint sends together with the time it was sent::

    d = Drill()
    d.connect(at=0)
    d.expect("S", seq=d.L(0), at=0, mss=1400)
    d.inject("S.", seq=d.R(0), ack=d.L(1), mss=1000, at=0.25)
    d.expect(".", seq=d.L(1), ack=d.R(1), at=0.25)

Flags are written as in packetdrill: ``S`` SYN, ``F`` FIN, ``R`` RST, ``P`` PSH,
``.`` ACK (so ``"S."`` is SYN+ACK, ``"P."`` PSH+ACK) — or as an int of flag bits.
``d.L(n)`` / ``d.R(n)`` are our / the peer's ISN plus ``n`` modulo 2**32; the
default ISNs sit just below 2**32, so ordinary tests cross the sequence wrap.

The helpers at the end (:func:`syn_sent` … :func:`time_wait`) bring the connection
into every RFC 9293 state through the wire, asserting each segment on the way.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rudp.config import Config
from rudp.engine import (
    Connection,
    ConnectionAccepted,
    ConnectionEstablished,
    ConnectionTerminated,
    Endpoint,
    Event,
    PeerClosed,
    State,
)
from rudp.seq import SEQ_MASK
from rudp.wire import ACK, CWR, ECE, FIN, PSH, RST, SYN, URG, Segment, build_segment, flags_str
from rudp.wire import parse_segment as _parse
from rudp.wire.segment import encode_options

#: Our ISN and the peer's: just below 2**32 so that the first kilobyte wraps.
ISN = 2**32 - 500
PEER_ISN = 2**32 - 1000
#: The peer's UDP address, its TCP port, and our TCP port.
PEER = ("10.0.0.2", 5000)
RPORT = 5000
LPORT = 80
#: MSS the peer announces in the helpers' handshakes, and the handshake's RTT
#: (a binary fraction, so every derived time and RTO is exact in floating point).
PEER_MSS = 1000
RTT = 0.25
#: Window field the peer sends unless told otherwise.
PEER_WND = 65535

TIME_EPS = 1e-9

_FLAG_CHARS = {
    "S": SYN,
    "F": FIN,
    "R": RST,
    "P": PSH,
    ".": ACK,
    "U": URG,
    "E": ECE,
    "C": CWR,
}


class _Any:
    def __repr__(self) -> str:
        return "ANY"


#: "Do not check this field" (for ``expect``'s option arguments).
ANY: Any = _Any()


def flags_of(spec: int | str) -> int:
    """``"S."`` -> SYN|ACK; ints pass through."""
    if isinstance(spec, int):
        return spec
    out = 0
    for ch in spec:
        if ch not in _FLAG_CHARS:
            raise ValueError(f"unknown flag {ch!r} in {spec!r}")
        out |= _FLAG_CHARS[ch]
    return out


def pattern(offset: int, n: int) -> bytes:
    """``n`` bytes of a fixed, non-repeating-looking stream starting at ``offset``,
    so reassembled data can be checked byte for byte."""
    return bytes((i * 7 + (i >> 8) * 13 + 3) % 251 for i in range(offset, offset + n))


@dataclass
class Sent:
    """One datagram the endpoint sent."""

    t: float
    data: bytes
    addr: tuple[Any, ...]

    @property
    def seg(self) -> Segment:
        return _parse(self.data)


class Drill:
    """One endpoint, one hand-played peer, virtual time."""

    def __init__(
        self,
        config: Config | None = None,
        *,
        isn: int = ISN,
        peer_isn: int = PEER_ISN,
        isn_func: Callable[[Any, float], int] | None = None,
        start: float = 0.0,
    ) -> None:
        self.config = config if config is not None else Config()
        self.isn = isn
        self.peer_isn = peer_isn
        self.ep = Endpoint(
            self.config,
            isn=isn_func if isn_func is not None else (lambda key, now: isn),
            seed=0,
        )
        self.now = start
        self.sent: deque[Sent] = deque()
        self._conn: Connection | None = None

    # ------------------------------------------------------------ sequence
    def L(self, n: int) -> int:
        """Our ISN + n (mod 2**32)."""
        return (self.isn + n) & SEQ_MASK

    def R(self, n: int) -> int:
        """The peer's ISN + n (mod 2**32)."""
        return (self.peer_isn + n) & SEQ_MASK

    def describe(self, seg: Segment) -> str:
        """A segment with its sequence numbers also shown relative to the ISNs."""
        rel_seq = (seg.seq - self.isn) & SEQ_MASK
        rel_ack = (seg.ack - self.peer_isn) & SEQ_MASK
        return f"{seg!r} (L+{rel_seq}, ack R+{rel_ack})"

    # ---------------------------------------------------------------- time
    def _collect(self) -> None:
        c = self.ep.connections.get(self.key)  # type: ignore[arg-type]
        if isinstance(c, Connection):
            self._conn = c
        for data, addr in self.ep.datagrams_to_send(self.now):
            self.sent.append(Sent(self.now, data, tuple(addr)))

    def advance(self, t: float | None) -> None:
        """Move virtual time to ``t``, running every timer due on the way in order."""
        if t is None:
            return
        if t < self.now - TIME_EPS:
            raise AssertionError(f"time goes backwards: now={self.now} at={t}")
        for _ in range(100_000):
            d = self.ep.get_timer()
            if d is None or d > t:
                break
            self.now = max(self.now, d)
            self.ep.handle_timer(self.now)
            self._collect()
        else:  # pragma: no cover - a timer that never stops firing
            raise AssertionError(f"timer loop stuck at {self.now}")
        self.now = max(self.now, t)

    # ---------------------------------------------------------- the peer
    def build(
        self,
        flags: int | str,
        seq: int,
        ack: int = 0,
        *,
        wnd: int = PEER_WND,
        payload: bytes = b"",
        mss: int | None = None,
        wscale: int | None = None,
        sack_perm: bool = False,
        sack: tuple[tuple[int, int], ...] | None = None,
        ts: tuple[int, int] | None = None,
        options: bytes | None = None,
        urp: int = 0,
        sport: int = RPORT,
        dport: int = LPORT,
    ) -> bytes:
        """Serialize a segment from the peer (valid checksum)."""
        if options is None:
            options = encode_options(mss=mss, wscale=wscale, sack_perm=sack_perm, sack=sack, ts=ts)
        return build_segment(
            sport,
            dport,
            seq & SEQ_MASK,
            ack & SEQ_MASK,
            flags_of(flags),
            wnd,
            payload,
            options,
            urp,
        )

    def inject(
        self,
        flags: int | str,
        seq: int,
        ack: int = 0,
        *,
        at: float | None = None,
        addr: tuple[Any, ...] = PEER,
        react: Callable[[], object] | None = None,
        **kw: Any,
    ) -> None:
        """At time ``at``, the peer sends this segment (see :meth:`build` for ``kw``).

        ``react`` runs after the endpoint processed the segment and before its
        output is collected, like an application acting on the events at once.
        """
        self.inject_raw(self.build(flags, seq, ack, **kw), at=at, addr=addr, react=react)

    def inject_batch(self, segments: list[dict[str, Any]], *, at: float | None = None) -> None:
        """Several segments arrive in one receive batch (no output collected between
        them), as the asyncio layer processes a burst of datagrams."""
        self.advance(at)
        for kw in segments:
            kw = dict(kw)
            flags = kw.pop("flags")
            seq = kw.pop("seq")
            ack = kw.pop("ack", 0)
            self.ep.receive_datagram(self.build(flags, seq, ack, **kw), PEER, self.now)
        self._collect()

    def inject_raw(
        self,
        data: bytes,
        *,
        at: float | None = None,
        addr: tuple[Any, ...] = PEER,
        react: Callable[[], object] | None = None,
    ) -> None:
        """At time ``at``, the endpoint receives the UDP payload ``data`` from ``addr``."""
        self.advance(at)
        self.ep.receive_datagram(data, addr, self.now)
        if react is not None:
            react()
        self._collect()

    # ------------------------------------------------------- expectations
    def expect(
        self,
        flags: int | str,
        seq: int,
        ack: int | None = None,
        *,
        at: float | None = None,
        wnd: int | None = None,
        length: int | None = None,
        payload: bytes | None = None,
        mss: Any = ANY,
        wscale: Any = ANY,
        sack: Any = ANY,
        sack_perm: Any = ANY,
        ts: Any = ANY,
        dport: int = RPORT,
        sport: int = LPORT,
        addr: tuple[Any, ...] = PEER,
    ) -> Segment:
        """The next datagram sent is exactly this segment, sent at time ``at``.

        ``ack`` is required when the ACK flag is expected, and must be 0 otherwise
        unless given. ``length`` (default 0) is the payload length; ``payload``
        checks the bytes. ``wnd`` (the raw window field), ``mss``, ``wscale``,
        ``sack_perm``, ``sack`` (list of (left, right)) and ``ts`` ((TSval, TSecr),
        either may be ANY) are checked when given (``None`` means "absent").
        """
        fl = flags_of(flags)
        if at is None:
            at = self.now
        self.advance(at)
        if not self.sent:
            raise AssertionError(
                f"expected [{flags_str(fl)}] seq={seq} at t={at}, nothing was sent "
                f"(now={self.now}, next timer={self.ep.get_timer()})"
            )
        s = self.sent.popleft()
        seg = s.seg
        what = f"sent at t={s.t}: {self.describe(seg)}"
        assert abs(s.t - at) <= TIME_EPS, f"expected at t={at}, {what}"
        assert s.addr == tuple(addr), f"expected to {addr}, {what} to {s.addr}"
        assert (seg.sport, seg.dport) == (sport, dport), f"ports: {what}"
        assert seg.flags == fl, f"expected flags [{flags_str(fl)}], {what}"
        assert seg.seq == seq & SEQ_MASK, f"expected seq={seq & SEQ_MASK}, {what}"
        if ack is None:
            if fl & ACK:
                raise TypeError("expect(): ack= is required when ACK is expected")
            ack = 0
        assert seg.ack == ack & SEQ_MASK, f"expected ack={ack & SEQ_MASK}, {what}"
        if payload is not None:
            assert seg.payload == payload, f"payload differs: {what}"
        if length is None:
            length = 0 if payload is None else len(payload)
        assert len(seg.payload) == length, f"expected length {length}, {what}"
        if wnd is not None:
            assert seg.wnd == wnd, f"expected wnd={wnd}, {what}"
        if mss is not ANY:
            assert seg.mss == mss, f"expected mss={mss}, {what}"
        if wscale is not ANY:
            assert seg.wscale == wscale, f"expected wscale={wscale}, {what}"
        if sack_perm is not ANY:
            assert seg.sack_perm == sack_perm, f"expected sack_perm={sack_perm}, {what}"
        if sack is not ANY:
            got = None if seg.sack is None else [(a & SEQ_MASK, b & SEQ_MASK) for a, b in seg.sack]
            want = None if sack is None else [(a & SEQ_MASK, b & SEQ_MASK) for a, b in sack]
            assert got == want, f"expected sack={want}, {what}"
        if ts is not ANY:
            if ts is None:
                assert seg.ts is None, f"expected no timestamps, {what}"
            else:
                assert seg.ts is not None, f"expected ts={ts}, {what}"
                for got_v, want_v, name in zip(seg.ts, ts, ("TSval", "TSecr"), strict=True):
                    if want_v is not ANY:
                        assert got_v == want_v & SEQ_MASK, f"expected {name}={want_v}, {what}"
        return seg

    def expect_nothing(self, until: float | None = None) -> None:
        """Nothing is sent from now up to and including ``until``."""
        self.advance(until)
        if self.sent:
            s = self.sent[0]
            raise AssertionError(
                f"expected nothing until t={until}, sent at t={s.t}: {self.describe(s.seg)}"
                + (f" (+{len(self.sent) - 1} more)" if len(self.sent) > 1 else "")
            )

    def take_sent(self) -> list[Sent]:
        """Everything sent and not yet expected."""
        out = list(self.sent)
        self.sent.clear()
        return out

    # -------------------------------------------------------------- events
    def events(self) -> list[Event]:
        """Drain :meth:`Endpoint.next_event`."""
        out = []
        while (ev := self.ep.next_event()) is not None:
            out.append(ev)
        return out

    def expect_events(self, *kinds: type[Event]) -> list[Event]:
        """Drain the events and assert their exact types, in order."""
        evs = self.events()
        assert [type(e) for e in evs] == list(kinds), f"events: {evs}"
        return evs

    # --------------------------------------------------- application side
    @property
    def key(self) -> tuple[Any, ...]:
        return (PEER, LPORT, RPORT)

    @property
    def conn(self) -> Connection:
        """The connection to PEER (the last one seen, after it is gone)."""
        c = self.ep.connections.get(self.key)  # type: ignore[arg-type]
        if isinstance(c, Connection):  # (not its compact TIME-WAIT record)
            self._conn = c
        assert self._conn is not None, "no connection yet"
        return self._conn

    @property
    def state(self) -> State:
        return self.conn.state

    def listen(self, port: int = LPORT, backlog: int = 128) -> None:
        self.ep.listen(port, backlog)

    def call(self, fn: Callable[[float], Any], at: float | None = None) -> Any:
        """At time ``at``, call ``fn(now)`` (an application action) and collect output."""
        self.advance(at)
        try:
            return fn(self.now)
        finally:
            self._collect()

    def connect(self, at: float | None = None, **kw: Any) -> Connection:
        conn = self.call(lambda now: self.ep.connect(PEER, RPORT, now, local_port=LPORT, **kw), at)
        self._conn = conn
        return conn  # type: ignore[no-any-return]

    def send(self, data: bytes, at: float | None = None) -> bool:
        return self.call(lambda now: self.conn.send(data, now), at)  # type: ignore[no-any-return]

    def read(self, n: int = -1, at: float | None = None) -> bytes:
        return self.call(lambda now: self.conn.read(n), at)  # type: ignore[no-any-return]

    def shutdown(self, at: float | None = None) -> None:
        self.call(self.conn.shutdown, at)

    def close(self, at: float | None = None) -> None:
        self.call(self.conn.close, at)

    def abort(self, at: float | None = None) -> None:
        self.call(self.conn.abort, at)


# ---------------------------------------------------------------------------
# Getting into every state. Each helper asserts the segments on the way, drains
# the events, and leaves ``d.now`` at the time noted.


def syn_sent(d: Drill, at: float = 0.0) -> Drill:
    """SYN-SENT: our SYN went out at ``at``."""
    d.connect(at=at)
    d.expect("S", seq=d.L(0), at=at, mss=d.config.mss)
    assert d.state is State.SYN_SENT
    d.expect_events()
    return d


def established_active(d: Drill, *, peer_mss: int | None = PEER_MSS, **kw: Any) -> Drill:
    """ESTABLISHED by active open; now = RTT (the RTT sample is RTT)."""
    syn_sent(d)
    d.inject("S.", seq=d.R(0), ack=d.L(1), mss=peer_mss, at=RTT, **kw)
    d.expect(".", seq=d.L(1), ack=d.R(1), at=RTT)
    assert d.state is State.ESTABLISHED
    d.expect_events(ConnectionEstablished)
    return d


def syn_received(d: Drill, *, peer_mss: int | None = PEER_MSS, **kw: Any) -> Drill:
    """SYN-RECEIVED (passive): the peer's SYN at 0, our SYN-ACK at 0."""
    d.listen()
    d.inject("S", seq=d.R(0), mss=peer_mss, at=0.0, **kw)
    d.expect("S.", seq=d.L(0), ack=d.R(1), at=0.0, mss=d.config.mss)
    assert d.state is State.SYN_RECEIVED
    d.expect_events()
    return d


def established_passive(d: Drill, *, peer_mss: int | None = PEER_MSS, **kw: Any) -> Drill:
    """ESTABLISHED by passive open; the peer's ACK at RTT."""
    wnd = kw.pop("wnd", PEER_WND)
    syn_received(d, peer_mss=peer_mss, wnd=wnd, **kw)
    d.inject(".", seq=d.R(1), ack=d.L(1), wnd=wnd, at=RTT)
    assert d.state is State.ESTABLISHED
    d.expect_events(ConnectionAccepted)
    d.expect_nothing()
    return d


def established(d: Drill, passive: bool = False, **kw: Any) -> Drill:
    return established_passive(d, **kw) if passive else established_active(d, **kw)


def fin_wait_1(d: Drill, passive: bool = False) -> Drill:
    """FIN-WAIT-1: shutdown() at 0.5, our FIN seq L(1) out at 0.5."""
    established(d, passive)
    d.shutdown(at=0.5)
    d.expect("F.", seq=d.L(1), ack=d.R(1), at=0.5)
    assert d.state is State.FIN_WAIT_1
    return d


def fin_wait_2(d: Drill, passive: bool = False) -> Drill:
    """FIN-WAIT-2: the peer ACKs our FIN at 0.75."""
    fin_wait_1(d, passive)
    d.inject(".", seq=d.R(1), ack=d.L(2), at=0.75)
    d.expect_nothing()
    assert d.state is State.FIN_WAIT_2
    d.expect_events()
    return d


def close_wait(d: Drill, passive: bool = False) -> Drill:
    """CLOSE-WAIT: the peer's FIN seq R(1) at 0.5, ACKed after the delayed-ACK time
    (the application did not close in the meantime; Linux's tcp_fin)."""
    established(d, passive)
    d.inject("F.", seq=d.R(1), ack=d.L(1), at=0.5)
    assert d.state is State.CLOSE_WAIT
    d.expect_events(PeerClosed)
    d.expect(".", seq=d.L(1), ack=d.R(2), at=0.5 + d.config.delayed_ack)
    return d


def last_ack(d: Drill, passive: bool = False) -> Drill:
    """LAST-ACK: shutdown() in CLOSE-WAIT at 0.75, our FIN seq L(1)."""
    close_wait(d, passive)
    d.shutdown(at=0.75)
    d.expect("F.", seq=d.L(1), ack=d.R(2), at=0.75)
    assert d.state is State.LAST_ACK
    return d


def closing(d: Drill, passive: bool = False) -> Drill:
    """CLOSING: the FINs cross; the peer's FIN (not ACKing ours) at 0.625."""
    fin_wait_1(d, passive)
    d.inject("F.", seq=d.R(1), ack=d.L(1), at=0.625)
    d.expect(".", seq=d.L(2), ack=d.R(2), at=0.625)
    assert d.state is State.CLOSING
    d.expect_events(PeerClosed)
    return d


def time_wait(d: Drill, passive: bool = False) -> Drill:
    """TIME-WAIT: from FIN-WAIT-2, the peer's FIN at 1.0 (2 MSL from 1.0)."""
    fin_wait_2(d, passive)
    d.inject("F.", seq=d.R(1), ack=d.L(2), at=1.0)
    d.expect(".", seq=d.L(2), ack=d.R(2), at=1.0)
    assert d.state is State.TIME_WAIT
    evs = d.expect_events(PeerClosed, ConnectionTerminated)
    assert isinstance(evs[1], ConnectionTerminated) and evs[1].error is None
    return d


#: State name -> helper, for parametrized tests.
STATE_HELPERS: dict[State, Callable[..., Drill]] = {
    State.SYN_SENT: syn_sent,
    State.SYN_RECEIVED: syn_received,
    State.ESTABLISHED: established,
    State.FIN_WAIT_1: fin_wait_1,
    State.FIN_WAIT_2: fin_wait_2,
    State.CLOSE_WAIT: close_wait,
    State.CLOSING: closing,
    State.LAST_ACK: last_ack,
    State.TIME_WAIT: time_wait,
}
