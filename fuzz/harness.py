"""Two rudp engines, an in-test network and an attacker, with invariants checked
after every step. Shared by the hypothesis state machine and the atheris targets.

A :class:`Pair` holds a client and a server :class:`~rudp.engine.Endpoint`. Nothing
moves by itself: the fuzzer delivers, drops, duplicates, reorders (delivers out of
queue order) or corrupts each queued datagram, advances virtual time (every timer
fires at its exact deadline), changes the client's public UDP address (NAT
rebinding), acts as both applications (send, read, shutdown, close, abort,
connect) and plays an attacker who injects raw bytes or well-formed segments
(valid checksum, or 0 = "not computed") built around the live sequence numbers of
a victim connection (:class:`Craft`).

The applications send one deterministic byte stream per connection, a function of
the sender's ISS and the byte's position, so every byte read can be checked where
it stands: delivered data must be exactly the stream (no corruption, duplication
or reordering). Segments the attacker builds carry the stream's bytes for the
positions they claim, so accepting them is not a failure in itself; segments the
engines did not send ("foreign") taint the connections they reach, which turns off
only the checks an attacker can legitimately defeat (see :class:`Taint`).

Internal errors: the endpoint catches exceptions of its own and counts them as
``internal_errors``. With ``strict=True`` (the default) the counters dictionary
raises :class:`EngineBug` the moment that counter is incremented, inside the
engine's ``except`` block, so the original exception and its traceback travel
with it (``__context__``) and a fuzzer sees a crash rather than a counter.
"""

from __future__ import annotations

import random
import signal
import struct
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from rudp.config import Config
from rudp.engine import (
    ANY_PORT,
    Connection,
    ConnectionAccepted,
    ConnectionEstablished,
    ConnectionTerminated,
    DataReceived,
    Endpoint,
    State,
)
from rudp.engine.isn import isn_rfc6528
from rudp.engine.recovery.scoreboard import ACKED, END, FLAGS, LOST, RETRANS, SACKED, START
from rudp.engine.timers import Timer
from rudp.errors import RudpError
from rudp.seq import SEQ_MASK, seq_le, seq_sub
from rudp.wire.checksum import checksum
from rudp.wire.segment import (
    FIN,
    SYN,
    ParseError,
    Segment,
    build_segment,
    parse_segment,
)

Address = tuple[Any, ...]
INF = float("inf")

CLIENT, SERVER = 0, 1
SIDE_NAMES = ("client", "server")
SERVER_ADDR: Address = ("10.0.0.2", 5000)
CLIENT_ADDR: Address = ("10.0.0.1", 40000)
SERVER_PORT = 80
#: Addresses the attacker sends from (never answered by anyone: a blackhole).
ATTACKER_ADDRS: tuple[Address, ...] = (("10.66.0.1", 6666), ("10.66.0.2", 7777))
#: Datagrams kept per direction for replays of old duplicates.
HISTORY = 256
#: Timer expiries without output within 10 ms of virtual time: a storm.
STORM = 500
#: Most bytes one application sends on one connection (keeps every run fast).
MAX_STREAM = 256 * 1024
#: Largest single send() the harness makes (the stream table's overlap).
MAX_CHUNK = 1 << 17

# ---------------------------------------------------------------------------
# The application byte stream

_PERIOD = 1_000_003  # a prime: misplacing data by a multiple of it is implausible
_TABLE = random.Random(0x5EED).randbytes(_PERIOD)
_TABLE += _TABLE[:MAX_CHUNK]
_MIX = 2_654_435_761


def stream(base: int, offset: int, n: int) -> bytes:
    """``n`` bytes at ``offset`` of the stream a connection with ISS ``base`` sends
    (byte 0 has sequence number ``base + 1``). ``offset`` may be negative (bytes an
    attacker puts before the stream: never deliverable)."""
    out = bytearray()
    while n > 0:
        k = min(n, MAX_CHUNK)
        i = (base * _MIX + offset) % _PERIOD
        out += _TABLE[i : i + k]
        offset += k
        n -= k
    return bytes(out)


def _isn_near_wrap(key: bytes) -> Callable[[Any, float], int]:
    """RFC 6528 ISNs with a fixed key (runs replay exactly), placed so that every
    connection's sequence numbers wrap past 2**32 within its first 20 KB."""

    def isn(identity: Any, now: float) -> int:
        h = isn_rfc6528(identity, 0.0, key=key.ljust(16, b"-")[:16])
        return (2**32 - 20_000 + h % 10_000 + int(now * 250_000)) & SEQ_MASK

    return isn


# ---------------------------------------------------------------------------
# Failures


class EngineBug(AssertionError):
    """The engine caught an exception of its own (``internal_errors``); the original
    is this exception's ``__context__``."""


class InvariantViolation(AssertionError):
    """An invariant of the engine (or of the pair of engines) does not hold."""


class StrictCounters(dict[str, int]):
    """Endpoint counters that turn an internal error into an exception at once."""

    def __setitem__(self, key: str, value: int) -> None:
        if key == "internal_errors" and value:
            caught = sys.exc_info()[1]
            raise EngineBug(f"rudp caught an exception of its own (internal_errors): {caught!r}")
        super().__setitem__(key, value)


#: Exceptions the application API may raise by contract (errors module: OSError
#: family for the network's and the peer's doing, RudpError for misuse).
APP_ERRORS = (OSError, RudpError)


def fail(msg: str) -> InvariantViolation:
    return InvariantViolation(msg)


#: Wall-clock seconds one engine call may take before it counts as a hang.
HANG_SECONDS = 10.0


@contextmanager
def watchdog(what: str) -> Iterator[None]:
    """Turn an engine call that never returns (an infinite loop) into an
    :class:`InvariantViolation` raised inside it, with its traceback (SIGALRM; main
    thread on POSIX only, else no watchdog)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGALRM"):
        yield
        return

    def alarm(signum: int, frame: Any) -> None:
        raise InvariantViolation(f"{what} did not return within {HANG_SECONDS} s (a hang)")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, HANG_SECONDS)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


#: Known engine bugs the checks tolerate, so fuzzing can go on past them: name ->
#: the regression test (tests/test_fuzz_regressions.py) that reproduces it, xfail
#: until fixed. Remove an entry (and its use below) once the bug is fixed.
KNOWN_BUGS: dict[str, str] = {}
#: False: no tolerance at all (the regression tests and ``--strict-known``).
TOLERATE_KNOWN_BUGS = True


# ---------------------------------------------------------------------------
# Configuration


@dataclass(frozen=True)
class Setup:
    """What both endpoints are configured with."""

    client: Config
    server: Config
    wildcard: bool = False  # the server listens on ANY_PORT instead of SERVER_PORT
    backlog: int = 8

    @staticmethod
    def from_bits(bits: int) -> Setup:
        """A setup from a few bits of fuzz input (every combination is valid)."""
        cc = ("reno", "cubic", "bbr", "reno")[bits & 3]
        small = bool(bits & 4)
        tiny_mss = bool(bits & 8)
        return Setup(
            client=make_config(
                sack=not bits & 16,
                timestamps=not bits & 32,
                small=small,
                tiny_mss=tiny_mss,
                cc=cc,
                checksum=not bits & 0x400,
                keepalive=bool(bits & 0x800),
            ),
            server=make_config(
                sack=not bits & 64,
                timestamps=not bits & 128,
                small=small or bool(bits & 0x1000),
                tiny_mss=tiny_mss,
                cc=cc,
                delayed_ack0=bool(bits & 0x2000),
                migration=not bits & 0x4000,
                pacing=bool(bits & 0x8000),
            ),
            wildcard=bool(bits & 0x100),
            backlog=2 if bits & 0x200 else 8,
        )


def make_config(
    *,
    sack: bool = True,
    timestamps: bool = True,
    small: bool = False,
    tiny_mss: bool = False,
    cc: str = "reno",
    checksum: bool = True,
    keepalive: bool = False,
    delayed_ack0: bool = False,
    migration: bool = True,
    pacing: bool = False,
) -> Config:
    """A configuration with short timeouts (so every run ends in little virtual
    time) and optionally small buffers and MSS (zero windows, many segments)."""
    mss = 88 if tiny_mss else (536 if small else 1400)
    return Config(
        mss=mss,
        msl=5.0,
        syn_retries=3,
        synack_retries=3,
        keepalive=keepalive,
        keepalive_idle=20.0,
        keepalive_interval=2.0,
        keepalive_count=3,
        user_timeout=30.0,
        rcv_buf=4096 if small else 256 * 1024,
        snd_buf=8192 if small else 256 * 1024,
        rto_max=10.0,
        delayed_ack=0.0 if delayed_ack0 else 0.04,
        congestion_control=cc,
        sack=sack,
        timestamps=timestamps,
        pacing=pacing,
        checksum=checksum,
        migration=migration,
    )


# ---------------------------------------------------------------------------
# What the fuzzer can ask for


@dataclass(frozen=True)
class Craft:
    """A segment the attacker builds around a victim connection's live values.

    Fields are small integers (easy to draw and to decode from fuzz bytes): *_base
    pick a live value (see :data:`SEQ_BASES`, :data:`ACK_BASES`), *_delta is added.
    ``options`` are encoded by :func:`encode_craft_options` (any combination, then
    cut to 40 bytes: a cut may leave a malformed option, which is fine).
    """

    victim: int = 0  # index into the victim side's connections, or the listener (mod)
    flags: int = 0x10
    seq_base: int = 0
    seq_delta: int = 0
    ack_base: int = 0
    ack_delta: int = 0
    wnd: int = 65535
    urp: int = 0
    options: tuple[tuple[int, ...], ...] = ()
    payload: int = 0
    src: int = 0  # 0: the victim's peer address, 1/2: attacker, 3: a fresh address
    ports: int = 0  # 0: the victim's, 1: swapped, 2: the listener's port, 3: random
    zero_checksum: bool = False


#: Sequence-number bases for a segment towards victim ``v`` (its receive space).
SEQ_BASES = (
    "rcv_nxt",
    "rcv_nxt+wnd",
    "irs",
    "peer_snd_max",
    "snd_una",
    "zero",
)
#: Acknowledgment-number bases (the victim's send space).
ACK_BASES = (
    "snd_una",
    "snd_max",
    "iss",
    "snd_una-max_wnd",
    "rcv_nxt",
    "zero",
)

# Option codes for Craft.options entries (first element of each tuple).
O_MSS, O_WS, O_SACKOK, O_TS, O_SACK, O_RAW, O_NOP, O_EOL = range(8)
N_OPTIONS = 8


def _u32(x: int) -> int:
    return x & SEQ_MASK


def encode_craft_options(
    opts: tuple[tuple[int, ...], ...], v: Connection | None, now: float
) -> bytes:
    """Encode ``opts`` with values relative to victim ``v``; pad to 4, cut to 40."""
    out = bytearray()
    una = v.snd_una if v is not None else 0
    smax = v.snd_max if v is not None else 0
    ts_recent = v.ts_recent if v is not None else 0
    tsval_now = v._tsval(now) if v is not None else 0
    for o in opts:
        kind = o[0] % N_OPTIONS
        a = o[1] if len(o) > 1 else 0
        b = o[2] if len(o) > 2 else 0
        c = o[3] if len(o) > 3 else 0
        d = o[4] if len(o) > 4 else 0
        if kind == O_MSS:
            out += struct.pack("!BBH", 2, 4, a & 0xFFFF)
        elif kind == O_WS:
            out += bytes((3, 3, a & 0xFF))
        elif kind == O_SACKOK:
            out += b"\x04\x02"
        elif kind == O_TS:
            tsval = (ts_recent, 0, tsval_now, a)[a & 3] + b
            tsecr = (tsval_now, 0, ts_recent, c)[c & 3] - d
            out += struct.pack("!BBII", 8, 10, _u32(tsval), _u32(tsecr))
        elif kind == O_SACK:
            # Blocks from the remaining fields, two per block: (left delta from a base
            # chosen by its low bits, signed length): wrapping, inverted, overlapping.
            vals = list(o[1:]) or [0, 1]
            blocks = []
            for i in range(0, min(len(vals), 8), 2):
                left_spec = vals[i]
                length = vals[i + 1] if i + 1 < len(vals) else 1
                base = (una, smax, una + 1, 0)[left_spec & 3]
                left = _u32(base + (left_spec >> 2))
                blocks.append((left, _u32(left + length)))
            out += bytes((5, 2 + 8 * len(blocks)))
            for left, right in blocks:
                out += struct.pack("!II", left, right)
        elif kind == O_RAW:
            # Any kind with any length byte and filler: unknown kinds, bad lengths.
            out += bytes((a & 0xFF, b & 0xFF)) + bytes([c & 0xFF]) * (d % 12)
        elif kind == O_NOP:
            out += b"\x01"
        else:
            out += b"\x00"
    if len(out) % 4:
        out += bytes(4 - len(out) % 4)
    return bytes(out[:40])


@dataclass(eq=False)
class Taint:
    """What foreign segments (not sent by either engine) may have done to a
    connection, and so which checks no longer apply to it."""

    touched: bool = False  # any foreign segment reached it: no liveness/completeness
    data: bool = False  # foreign payload: it may hold more than the peer sent
    fin: bool = False  # foreign FIN: EOF may come early
    garbage: bool = False  # bytes not from the stream may have been accepted


@dataclass(eq=False)
class App:
    """The application's view of one connection."""

    conn: Connection
    side: int
    sent: int = 0  # stream bytes send() accepted
    rcvd: int = 0  # stream bytes read and checked
    shut: bool = False  # shutdown() or close() called
    closed: bool = False  # close() or abort() called
    terminated: int = 0  # ConnectionTerminated events
    opened: int = 0  # ConnectionEstablished / ConnectionAccepted events


@dataclass
class Packet:
    data: bytes
    src: Address
    legit: bool  # sent by an engine, unmodified


@dataclass
class Stats:
    """What happened during a run (for tests that must show the impairment did)."""

    delivered: int = 0
    dropped: int = 0
    duplicated: int = 0
    reordered: int = 0
    corrupted: int = 0
    injected: int = 0
    replayed: int = 0
    rebinds: int = 0
    blackholed: int = 0
    app_bytes_read: int = 0
    steps: int = 0
    checks: int = 0
    extra: dict[str, int] = field(default_factory=dict)


# ---------------------------------------------------------------------------
# The pair


class Pair:
    """A client and a server endpoint, an in-test network, apps and an attacker."""

    def __init__(self, setup: Setup | None = None, *, strict: bool = True, seed: int = 0) -> None:
        self.setup = setup if setup is not None else Setup(make_config(), make_config())
        self.strict = strict
        self.now = 0.0
        self.eps = (
            Endpoint(self.setup.client, isn=_isn_near_wrap(b"client%d" % seed), seed=seed + 1),
            Endpoint(self.setup.server, isn=_isn_near_wrap(b"server%d" % seed), seed=seed + 2),
        )
        if strict:
            for ep in self.eps:
                ep.counters = StrictCounters(ep.counters)
        self.eps[SERVER].listen(
            ANY_PORT if self.setup.wildcard else SERVER_PORT, self.setup.backlog
        )
        #: Datagrams in flight, by destination side.
        self.queues: tuple[list[Packet], list[Packet]] = ([], [])
        self.history: tuple[list[Packet], list[Packet]] = ([], [])
        self.client_addr = CLIENT_ADDR
        self.client_addrs: list[Address] = [CLIENT_ADDR]
        self.apps: tuple[list[App], list[App]] = ([], [])
        self._app_of: dict[Connection, App] = {}
        self.taint: dict[Connection, Taint] = {}
        self.auto_read = [True, True]
        self.stats = Stats()
        # Amplification accounting per (side, remote address): bytes in, bytes out.
        self._rx: dict[tuple[int, Address], int] = {}
        self._tx: dict[tuple[int, Address], int] = {}
        self._validated: set[tuple[int, Address]] = set()
        self._fresh = 0
        self._expiries: tuple[deque[float], deque[float]] = (
            deque(maxlen=STORM),
            deque(maxlen=STORM),
        )

    # ------------------------------------------------------------ plumbing
    def _scan_validated(self) -> None:
        for side, ep in enumerate(self.eps):
            for held in ep.connections.values():
                if isinstance(held, Connection) and held._validated:
                    self._validated.add((side, held.addr))

    def collect(self) -> None:
        """Take events and output from both endpoints until both are quiet."""
        for _ in range(1000):
            busy = False
            for side in (CLIENT, SERVER):
                if self._events(side):
                    busy = True
                self._scan_validated()
                out = self.eps[side].datagrams_to_send(self.now)
                for data, dst in out:
                    self._route(side, data, tuple(dst))
            if not busy:
                return
        raise fail("events and output never settle (1000 rounds)")

    def _route(self, side: int, data: bytes, dst: Address) -> None:
        self._expiries[side].clear()  # output is progress: not a timer storm
        if side == CLIENT:
            ok = dst == SERVER_ADDR
            src = self.client_addr
        else:
            ok = dst in self.client_addrs
            src = SERVER_ADDR
        if not ok:
            self.stats.blackholed += 1
            key = (side, dst)
            self._tx[key] = self._tx.get(key, 0) + len(data)
            return
        pkt = Packet(bytes(data), src, True)
        peer = 1 - side
        self.queues[peer].append(pkt)
        hist = self.history[peer]
        hist.append(pkt)
        if len(hist) > HISTORY:
            del hist[: len(hist) - HISTORY]

    def _events(self, side: int) -> bool:
        ep = self.eps[side]
        any_event = False
        while (ev := ep.next_event()) is not None:
            any_event = True
            conn = ev.conn
            app = self._app_of.get(conn)
            if isinstance(ev, (ConnectionAccepted, ConnectionEstablished)):
                if app is None:
                    app = self._register(side, conn)
                app.opened += 1
                if app.opened > 1:
                    raise fail(f"{conn!r}: opened twice (ConnectionEstablished/Accepted)")
            elif app is None:
                # Events for a connection the application never saw opened: only a
                # client's own connect() (registered at once) or an accepted one.
                raise fail(f"{SIDE_NAMES[side]}: {type(ev).__name__} for unknown {conn!r}")
            elif isinstance(ev, ConnectionTerminated):
                app.terminated += 1
                if app.terminated > 1:
                    raise fail(f"{conn!r}: ConnectionTerminated twice")
            elif isinstance(ev, DataReceived) and self.auto_read[side]:
                self._read(app, -1)
        return any_event

    def _register(self, side: int, conn: Connection) -> App:
        app = App(conn, side)
        self.apps[side].append(app)
        self._app_of[conn] = app
        return app

    def taint_of(self, conn: Connection) -> Taint:
        t = self.taint.get(conn)
        if t is None:
            t = self.taint[conn] = Taint()
        return t

    def _receive(self, side: int, data: bytes, src: Address, legit: bool, consistent: bool) -> None:
        """Feed one datagram to ``side``, checking the drop accounting, and taint
        what a foreign datagram reaches."""
        ep = self.eps[side]
        key = (side, src)
        self._rx[key] = self._rx.get(key, 0) + len(data)
        try:
            seg: Segment | None = parse_segment(data)
            reason = ""
        except ParseError as exc:
            seg = None
            reason = exc.reason
        before = dict(ep.counters)
        affected: dict[Connection, tuple[int, State]] = {}
        if seg is not None and not legit:
            affected = {c: (c.irs, c.state) for c in self._matching(side, seg)}
        with watchdog("Endpoint.receive_datagram"):
            ep.receive_datagram(data, src, self.now)
        c = ep.counters
        if c["datagrams_received"] != before["datagrams_received"] + 1:
            raise fail("datagrams_received did not count the datagram")
        if seg is None:
            dkey = "drop_" + reason
            if c["dropped"] != before["dropped"] + 1 or c.get(dkey, 0) != before.get(dkey, 0) + 1:
                raise fail(f"malformed datagram ({reason}) not counted as dropped")
        elif not legit:
            for conn in self._matching(side, seg):
                if conn not in affected:
                    affected[conn] = (-1, State.CLOSED)  # created by this segment
            for conn, (irs, state) in affected.items():
                t = self.taint_of(conn)
                t.touched = True
                if seg.payload:
                    t.data = True
                if seg.flags & FIN:
                    t.fin = True
                if not consistent and seg.payload:
                    t.garbage = True
                if irs != conn.irs or (state in (State.SYN_SENT, State.CLOSED) and conn.irs):
                    t.garbage = True  # its receive stream was set by the attacker
        self.collect()

    def _matching(self, side: int, seg: Segment) -> Iterator[Connection]:
        for held in self.eps[side].connections.values():
            if (
                isinstance(held, Connection)
                and held.local_port == seg.dport
                and held.remote_port == seg.sport
            ):
                yield held

    # ------------------------------------------------------------ time
    def advance(self, dt: float) -> None:
        """Move virtual time ``dt`` ahead, firing each timer at its deadline."""
        dt = max(0.0, dt)
        target = self.now + dt
        self._run_timers(target)
        self.now = target

    def _run_timers(self, target: float) -> None:
        for _ in range(100_000):
            due = [(t, s) for s in (CLIENT, SERVER) if (t := self.eps[s].get_timer()) is not None]
            due = [(t, s) for t, s in due if t <= target]
            if not due:
                return
            t, side = min(due)
            if t < self.now - 1e-9:
                raise fail(f"{SIDE_NAMES[side]}: timer at {t} is in the past (now {self.now})")
            self.now = max(self.now, t)
            self._storm_check(side)
            with watchdog("Endpoint.handle_timer"):
                self.eps[side].handle_timer(self.now)
            self.collect()
        raise fail(f"timers keep firing at t={self.now} (100000 expiries)")

    def _storm_check(self, side: int) -> None:
        """A timer storm: more than STORM expiries within 10 ms of virtual time with
        no datagram sent in between (a paced sender on a zero-delay path legitimately
        fires a timer per segment, nanoseconds apart)."""
        times = self._expiries[side]
        times.append(self.now)
        if len(times) == times.maxlen and self.now - times[0] < 0.01:
            due = []
            for h in self.eps[side].connections.values():
                if isinstance(h, Connection) and h.deadline <= self.now:
                    due += [
                        f"{h!r}: {Timer(i).name}"
                        for i, t in enumerate(h._timer_at)
                        if t <= self.now
                    ]
            raise fail(
                f"{SIDE_NAMES[side]}: {times.maxlen} timer expiries within 10 ms of "
                f"t={self.now} (timer storm): {'; '.join(due)}"
            )

    def settle(self) -> None:
        """Fire timers due now."""
        self._run_timers(self.now)

    # ------------------------------------------------------------ network
    def deliver(self, side: int, index: int = 0, *, duplicate: bool = False) -> bool:
        """Deliver the ``index``-th queued datagram (mod) to ``side``; keep a copy
        queued if ``duplicate``. False if nothing is queued."""
        q = self.queues[side]
        if not q:
            return False
        i = index % len(q)
        pkt = q[i] if duplicate else q.pop(i)
        self.stats.delivered += 1
        if i:
            self.stats.reordered += 1
        if duplicate:
            self.stats.duplicated += 1
        self._receive(side, pkt.data, pkt.src, pkt.legit, pkt.legit)
        return True

    def drop(self, side: int, index: int = 0) -> bool:
        q = self.queues[side]
        if not q:
            return False
        q.pop(index % len(q))
        self.stats.dropped += 1
        return True

    def corrupt(self, side: int, index: int, pos: int, xor: int, fix: bool = False) -> bool:
        """Damage one byte of a queued datagram; ``fix`` recomputes the checksum
        (an on-path attacker rewriting it), else the checksum must catch it."""
        q = self.queues[side]
        if not q or not xor & 0xFF:
            return False
        pkt = q[index % len(q)]
        data = bytearray(pkt.data)
        data[pos % len(data)] ^= xor & 0xFF
        if fix and len(data) >= 20:
            data[16:18] = b"\0\0"
            data[16:18] = (checksum(data) or 0xFFFF).to_bytes(2, "big")
        pkt.data = bytes(data)
        pkt.legit = False
        self.stats.corrupted += 1
        return True

    def deliver_all(self, rounds: int = 64) -> None:
        """A perfect network for a while: deliver in order until nothing is queued."""
        for _ in range(rounds):
            if not (self.queues[CLIENT] or self.queues[SERVER]):
                return
            for side in (SERVER, CLIENT):
                while self.queues[side]:
                    self.deliver(side, 0)

    def replay(self, side: int, index: int) -> bool:
        """Deliver again an old datagram sent to ``side`` (an old duplicate)."""
        hist = self.history[side]
        if not hist:
            return False
        pkt = hist[index % len(hist)]
        self.stats.replayed += 1
        self._receive(side, pkt.data, pkt.src, pkt.legit, pkt.legit)
        return True

    def rebind(self) -> None:
        """NAT rebinding: the client's datagrams now come from a new public port;
        datagrams to any of its earlier addresses still reach it."""
        self.stats.rebinds += 1
        self.client_addr = (CLIENT_ADDR[0], CLIENT_ADDR[1] + len(self.client_addrs))
        self.client_addrs.append(self.client_addr)

    # ------------------------------------------------------------ attacker
    def inject(self, side: int, data: bytes, src: Address, consistent: bool = False) -> None:
        """The attacker's datagram ``data`` reaches ``side`` from ``src``."""
        self.stats.injected += 1
        self._receive(side, data, src, False, consistent)

    def victims(self, side: int) -> list[Connection]:
        return [h for h in self.eps[side].connections.values() if isinstance(h, Connection)]

    def craft(self, side: int, c: Craft) -> tuple[bytes, Address]:
        """Build ``c`` towards a connection of ``side`` (or, if it has none, towards
        the server's listener): valid checksum, stream-consistent payload."""
        victims = self.victims(side)
        # One more choice than there are connections: the listener (no victim).
        i = c.victim % (len(victims) + 1)
        v = victims[i] if i < len(victims) else None
        if v is not None:
            sport, dport = v.remote_port, v.local_port
            peer_addr = v.addr
            rcv_nxt, irs = v.rcv_nxt, v.irs
            wnd_edge = rcv_nxt + max(0, v._rcv_adv_abs - v._rcv_nxt_abs)
            snd_una, snd_max, iss = v.snd_una, v.snd_max, v.iss
            max_wnd = v.max_snd_wnd
        else:
            sport, dport = 41000 + c.victim % 7, SERVER_PORT
            peer_addr = self.client_addr if side == SERVER else SERVER_ADDR
            rcv_nxt = irs = wnd_edge = snd_una = snd_max = iss = max_wnd = 0
        peer_snd_max = 0
        for other in self.victims(1 - side):
            if other.local_port == sport and other.remote_port == dport:
                peer_snd_max = other.snd_max
        seq_base = (rcv_nxt, wnd_edge, irs, peer_snd_max, snd_una, 0)[c.seq_base % 6]
        ack_base = (snd_una, snd_max, iss, snd_una - max_wnd, rcv_nxt, 0)[c.ack_base % 6]
        seq = _u32(seq_base + c.seq_delta)
        ack = _u32(ack_base + c.ack_delta)
        ports = c.ports % 4
        if ports == 1:
            sport, dport = dport, sport
        elif ports == 2:
            dport = SERVER_PORT
        elif ports == 3:
            sport, dport = (c.victim * 7919) & 0xFFFF, (c.urp * 31) & 0xFFFF
        src_choice = c.src % 4
        if src_choice == 0:
            src = peer_addr
        elif src_choice in (1, 2):
            src = ATTACKER_ADDRS[src_choice - 1]
        else:
            self._fresh += 1
            src = ("10.77.0.1", 20000 + self._fresh)
        flags = c.flags & 0xFF
        n = max(0, min(c.payload, 4000))
        # The payload is the stream at the positions it claims: for a SYN, after
        # the sequence number it proposes as the ISN; else after the victim's IRS.
        if flags & SYN:
            base, offset = seq, 0
        else:
            base = irs
            offset = seq_sub(seq, _u32(irs + 1))
        payload = stream(base, offset, n)
        opts = encode_craft_options(c.options, v, self.now)
        data = build_segment(
            sport & 0xFFFF,
            dport & 0xFFFF,
            seq,
            ack,
            flags,
            c.wnd & 0xFFFF,
            payload,
            opts,
            c.urp & 0xFFFF,
            compute_checksum=not c.zero_checksum,
        )
        return data, src

    def inject_crafted(self, side: int, c: Craft) -> None:
        data, src = self.craft(side, c)
        self.inject(side, data, src, consistent=True)

    # ------------------------------------------------------------ applications
    def _app(self, side: int, which: int) -> App | None:
        apps = self.apps[side]
        if not apps:
            return None
        return apps[which % len(apps)]

    def connect(self) -> App | None:
        """The client opens a connection to the server (``None`` if refused)."""
        try:
            conn = self.eps[CLIENT].connect(SERVER_ADDR, SERVER_PORT, self.now)
        except APP_ERRORS:
            return None
        app = self._register(CLIENT, conn)
        self.collect()
        return app

    def _call(self, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except APP_ERRORS:
            return None
        finally:
            self.collect()

    def send(self, side: int, which: int, n: int) -> None:
        app = self._app(side, which)
        if app is None:
            return
        n = max(0, min(n, MAX_CHUNK, MAX_STREAM - app.sent))
        data = stream(app.conn.iss, app.sent, n)
        try:
            app.conn.send(data, self.now)
        except APP_ERRORS:
            pass
        else:
            app.sent += n
        self.collect()

    def _read(self, app: App, n: int) -> bytes:
        data = app.conn.read(n)
        if data:
            self.stats.app_bytes_read += len(data)
            if not self.taint_of(app.conn).garbage:
                want = stream(app.conn.irs, app.rcvd, len(data))
                if data != want:
                    bad = next(i for i in range(len(data)) if data[i] != want[i])
                    raise fail(
                        f"{SIDE_NAMES[app.side]} {app.conn!r}: read {len(data)} bytes at "
                        f"stream offset {app.rcvd}, first wrong byte at offset "
                        f"{app.rcvd + bad} (data corrupted, duplicated or reordered)"
                    )
            app.rcvd += len(data)
        return data

    def read(self, side: int, which: int, n: int = -1) -> None:
        app = self._app(side, which)
        if app is None:
            return
        self._read(app, n)
        self.collect()

    def shutdown(self, side: int, which: int) -> None:
        app = self._app(side, which)
        if app is None:
            return
        app.shut = True
        self._call(app.conn.shutdown, self.now)

    def close(self, side: int, which: int) -> None:
        app = self._app(side, which)
        if app is None:
            return
        app.shut = app.closed = True
        self._call(app.conn.close, self.now)

    def abort(self, side: int, which: int) -> None:
        app = self._app(side, which)
        if app is None:
            return
        app.shut = app.closed = True
        self._call(app.conn.abort, self.now)

    # ------------------------------------------------------------ invariants
    def peer_app(self, app: App) -> App | None:
        """The other side's application on the connection ``app``'s receives from
        (its ISS is ``app``'s IRS and the ports mirror)."""
        c = app.conn
        for other in self.apps[1 - app.side]:
            o = other.conn
            if o.iss == c.irs and o.local_port == c.remote_port and o.remote_port == c.local_port:
                return other
        return None

    def check(self) -> None:
        """Every invariant, now. Raises :class:`InvariantViolation`."""
        self.stats.checks += 1
        for side in (CLIENT, SERVER):
            self._check_endpoint(side)
        for side in (CLIENT, SERVER):
            for app in self.apps[side]:
                self._check_app(app)
        self._check_amplification()

    def _check_endpoint(self, side: int) -> None:
        ep = self.eps[side]
        name = SIDE_NAMES[side]
        if ep.counters["internal_errors"]:
            raise fail(f"{name}: internal_errors = {ep.counters['internal_errors']}")
        t = ep.get_timer()
        if t is not None and t < self.now - 1e-9:
            raise fail(f"{name}: endpoint timer {t} before now {self.now}")
        heap_entries = {(e[0], id(e[2])) for e in ep._heap}
        heap_entries.update((t, id(h)) for t, h in ep._tw_queue)  # TIME-WAIT deadlines
        by_ports: set[int] = set()
        for ports in list(ep._by_ports):
            by_ports.update(id(h) for h in ep.held_by_ports(ports))
        for key, held in ep.connections.items():
            where = f"{name} {held!r}"
            if held.key != key:
                raise fail(f"{where}: indexed under {key}, its key is {held.key}")
            if id(held) not in by_ports:
                raise fail(f"{where}: missing from the by-ports index")
            if held.state is State.CLOSED:
                raise fail(f"{where}: CLOSED but still held")
            d = held.deadline
            if d != INF:
                if d < self.now - 1e-9:
                    raise fail(f"{where}: deadline {d} before now {self.now}")
                if held.sched_at > d or (held.sched_at, id(held)) not in heap_entries:
                    raise fail(f"{where}: deadline {d} not scheduled (sched_at {held.sched_at})")
            if isinstance(held, Connection):
                self._check_conn(name, held)
        if len(by_ports) != len(ep.connections):
            raise fail(f"{name}: by-ports index holds {len(by_ports)}, {len(ep.connections)} held")
        for port, lst in ep.listeners.items():
            if lst.accept_pending < 0:
                raise fail(f"{name}: listener {port} accept_pending < 0")
            if lst.half_open + lst.accept_pending > lst.backlog:
                raise fail(f"{name}: listener {port} holds more than its backlog")
            for c in lst.syn_received:
                if c.state is not State.SYN_RECEIVED or ep.connections.get(c.key) is not c:
                    raise fail(f"{name}: listener {port} half-open {c!r} is not held")

    def _check_conn(self, name: str, c: Connection) -> None:
        where = f"{name} {c!r}"
        if c.deadline != min(c._timer_at):
            raise fail(f"{where}: deadline {c.deadline} != earliest timer {min(c._timer_at)}")
        # Sequence space (RFC 9293 §3.3.1): SND.UNA <= SND.NXT <= SND.MAX, and the
        # wrapped values agree with the unwrapped positions.
        if not (0 <= c._una_abs <= c._max_abs):
            raise fail(f"{where}: unwrapped una {c._una_abs} > max {c._max_abs}")
        if c.snd_una != _u32(c.iss + c._una_abs) or c.snd_max != _u32(c.iss + c._max_abs):
            raise fail(f"{where}: snd_una/snd_max disagree with their unwrapped positions")
        if not (seq_le(c.snd_una, c.snd_nxt) and seq_le(c.snd_nxt, c.snd_max)):
            raise fail(f"{where}: not snd_una <= snd_nxt <= snd_max")
        if c.state is not State.SYN_SENT and c.rcv_nxt != _u32(c.irs + 1 + c._rcv_nxt_abs):
            raise fail(f"{where}: rcv_nxt disagrees with its unwrapped position")
        sndq = c._sndq
        if c.state not in (State.SYN_SENT, State.SYN_RECEIVED, State.TIME_WAIT):
            lag = seq_sub(c.snd_una, sndq.seq)
            fin_acked = c._fin_sent and c._una_abs > c._fin_abs
            if not (lag == 0 or (lag == 1 and fin_acked)):
                raise fail(f"{where}: send buffer starts at {sndq.seq}, snd_una {c.snd_una}")
            over = seq_sub(c.snd_max, sndq.end)
            if over > (1 if c._fin_sent else 0) or (over > 0 and not c._fin_sent):
                raise fail(f"{where}: snd_max {c.snd_max} beyond the buffered data {sndq.end}")
        # Scoreboard: the records tile [SND.UNA, SND.MAX) and the counters are their sums.
        sb = c.recovery.sb
        recs = sb.outstanding_records()
        sacked = lost = retrans = 0
        pos = c._una_abs
        for i, r in enumerate(recs):
            f = r[FLAGS]
            size = r[END] - r[START]
            if size <= 0 or f & ACKED:
                raise fail(f"{where}: scoreboard record {r[:4]} empty or acknowledged")
            if r[START] < c._una_abs or r[END] > c._max_abs:
                raise fail(f"{where}: record {r[:4]} outside [{c._una_abs}, {c._max_abs})")
            if i and r[START] != pos:
                raise fail(f"{where}: records do not tile (gap/overlap at {pos}: {r[:4]})")
            pos = r[END]
            if f & SACKED:
                sacked += size
                if f & (LOST | RETRANS):
                    raise fail(f"{where}: record {r[:4]} SACKed and lost")
            if f & LOST:
                lost += size
            if f & RETRANS:
                retrans += size
                if not f & LOST:
                    raise fail(f"{where}: record {r[:4]} RETRANS without LOST")
        if recs and c.state is not State.CLOSED and pos != c._max_abs:
            raise fail(f"{where}: records end at {pos}, snd_max at {c._max_abs}")
        if (sacked, lost, retrans) != (sb.sacked, sb.lost, sb.retrans):
            raise fail(
                f"{where}: scoreboard says sacked/lost/retrans {sb.sacked}/{sb.lost}/"
                f"{sb.retrans}, its records {sacked}/{lost}/{retrans}"
            )
        st = c.stats()
        for k in ("in_flight", "sacked_bytes", "lost_bytes", "retrans_in_flight"):
            if st[k] < 0:
                raise fail(f"{where}: stats {k} = {st[k]} < 0")
        if c.recovery.reno_sacked < 0:
            raise fail(f"{where}: reno_sacked < 0")
        # Receive side: out-of-order runs sorted, apart, beyond RCV.NXT, counted, bounded.
        q = c._rcvq
        total = 0
        prev_end = c._rcv_nxt_abs
        for s, d in zip(q.ooo_starts, q.ooo_data, strict=True):
            if not d or s <= prev_end:
                raise fail(f"{where}: out-of-order run at {s} empty, touching or overlapping")
            prev_end = s + len(d)
            total += len(d)
        if total != q.ooo_bytes:
            raise fail(f"{where}: ooo_bytes {q.ooo_bytes}, runs hold {total}")
        if len(q.ooo_starts) > q.max_runs:
            raise fail(f"{where}: {len(q.ooo_starts)} out-of-order runs > cap {q.max_runs}")
        buf = c.config.rcv_buf
        if q.ooo_bytes > buf:
            raise fail(f"{where}: ooo_bytes {q.ooo_bytes} > rcv_buf {buf}")
        shift = c.rcv_wscale if c._rcv_wscale_ok else 0
        chunks = q.chunks or []
        if (
            q.size != sum(map(len, chunks)) - q.head
            or (chunks and not 0 <= q.head < len(chunks[0]))
            or (q.chunks is not None and not q.size)
        ):
            raise fail(f"{where}: in-order size {q.size}, head {q.head}, chunks disagree")
        if q.size + q.ooo_bytes > buf + (1 << shift):
            raise fail(f"{where}: holds {q.size} + {q.ooo_bytes} > rcv_buf {buf}")

    def _check_app(self, app: App) -> None:
        c = app.conn
        t = self.taint_of(c)
        peer = self.peer_app(app)
        if peer is None:
            return
        pt = self.taint_of(peer.conn)
        if not t.data and app.rcvd + c.readable > peer.sent:
            raise fail(
                f"{SIDE_NAMES[app.side]} {c!r}: received {app.rcvd + c.readable} bytes, "
                f"the peer sent {peer.sent}"
            )
        clean = not (t.data or t.fin or t.garbage or pt.touched)
        # close() discards unread data (and resets: RFC 2525 §2.17, as Linux), after
        # which the buffer is empty and at_eof holds though nothing more was read.
        discarded = app.closed and app.rcvd + c.readable < peer.sent
        if c.at_eof and clean and not discarded and (app.rcvd != peer.sent or not peer.shut):
            raise fail(
                f"{SIDE_NAMES[app.side]} {c!r}: EOF after {app.rcvd} bytes; the peer "
                f"sent {peer.sent}{'' if peer.shut else ' and did not shut down'}"
            )

    def _check_amplification(self) -> None:
        """TEST-MATRIX "amplification": to an address never validated, at most 3x
        the bytes received from it (RSTs and SYN-ACK retransmissions included)."""
        for key, tx in self._tx.items():
            if key in self._validated:
                continue
            rx = self._rx.get(key, 0)
            if tx > 3 * rx:
                side, addr = key
                raise fail(f"{SIDE_NAMES[side]} sent {tx} bytes to {addr}, which sent {rx}")

    # ------------------------------------------------------------ starting points
    PREFIXES = (
        "listener",
        "syn-sent",
        "established",
        "data-in-flight",
        "half-closed",
        "closing",
    )

    def prefix(self, which: int) -> None:
        """Bring the pair to a starting point on a perfect network (``which`` indexes
        :data:`PREFIXES`, mod): a bare listener; the client's SYN queued; an
        established pair; with data queued both ways (undelivered); the client
        half-closed (FIN-WAIT-2 / CLOSE-WAIT); both FINs queued, undelivered."""
        name = self.PREFIXES[which % len(self.PREFIXES)]
        if name == "listener":
            return
        self.connect()
        if name == "syn-sent":
            return
        self.deliver_all()
        if name == "established":
            return
        self.send(CLIENT, 0, 20_000)
        self.send(SERVER, 0, 6_000)
        if name == "data-in-flight":
            return
        self.deliver_all()
        self.advance(1.0)
        self.deliver_all()
        self.shutdown(CLIENT, 0)
        if name == "half-closed":
            self.deliver_all()
            return
        self.shutdown(SERVER, 0)

    # ------------------------------------------------------------ the end
    def finish(self) -> None:
        """Liveness at the end of a run: on a perfect network, untainted pairs of
        connections deliver everything; once both applications close, every
        connection ends and the endpoints hold nothing."""
        self.auto_read = [True, True]
        for side in (CLIENT, SERVER):
            for app in self.apps[side]:
                self._read(app, -1)
        self.collect()
        self._quiet(120.0)
        self.check()
        for app in self.apps[CLIENT]:
            peer = self.peer_app(app)
            if peer is None:
                continue
            for a, b in ((app, peer), (peer, app)):
                ta, tb = self.taint_of(a.conn), self.taint_of(b.conn)
                if ta.touched or tb.touched or a.closed or b.closed:
                    continue
                if a.conn.error is not None or b.conn.error is not None:
                    continue
                if b.rcvd != a.sent:
                    raise fail(
                        f"{SIDE_NAMES[a.side]} sent {a.sent} bytes, the "
                        f"{SIDE_NAMES[b.side]} received {b.rcvd} after 120 s of a "
                        f"perfect network ({a.conn!r} -> {b.conn!r})"
                    )
        for side in (CLIENT, SERVER):
            for app in self.apps[side]:
                if not app.closed:
                    app.shut = app.closed = True
                    self._call(app.conn.close, self.now)
        self.eps[SERVER].stop_listening(ANY_PORT if self.setup.wildcard else SERVER_PORT)
        self._quiet(2000.0)
        self.check()
        for side in (CLIENT, SERVER):
            ep = self.eps[side]
            stuck = list(ep.connections.values())
            if stuck:
                held = ", ".join(f"{h!r} {h.state}" for h in stuck)
                raise fail(f"{SIDE_NAMES[side]} still holds {held} 2000 s after closing")
            for app in self.apps[side]:
                if app.terminated != 1:
                    raise fail(
                        f"{SIDE_NAMES[side]} {app.conn!r}: {app.terminated} "
                        "ConnectionTerminated events (1 expected)"
                    )

    def _quiet(self, duration: float) -> None:
        """A perfect network for ``duration`` seconds of virtual time."""
        end = self.now + duration
        for _ in range(100_000):
            self.deliver_all()
            nxt = [t for ep in self.eps if (t := ep.get_timer()) is not None]
            if not nxt or min(nxt) > end:
                break
            self._run_timers(min(nxt))
            self.deliver_all()
        else:
            raise fail(f"no quiet after {duration} s: timers and datagrams never stop")
        self.now = max(self.now, end)
