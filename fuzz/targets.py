"""Fuzz targets: one function per target, ``target(data: bytes) -> None``.

They need no fuzzer: atheris calls them (``python -m fuzz.run``), and so do the
regression tests, which replay saved inputs (``fuzz/regressions/<target>/``). A
target returns normally or raises; any exception is a finding.

``parser``
    The first byte picks a mode, the rest is one UDP payload: as is, with its
    checksum fixed (so mutations reach option parsing), or with checksum 0 ("not
    computed"). :func:`rudp.wire.parse_segment` must return a segment or raise
    ``ParseError``, agree with a straightforward reference parser field by field
    (and on the reason for rejecting), parse ``bytes``, ``bytearray`` and
    ``memoryview`` alike; the C and Python checksums must agree; and an endpoint
    with a listener and one established connection must take the datagram from the
    peer's address and from a stranger without an internal error, counting a drop
    for every malformed one.

``engine``
    A small program (:class:`Program`) for :class:`fuzz.harness.Pair`: a setup, a
    starting point, then up to :data:`MAX_OPS` operations (deliver, drop, reorder,
    duplicate, corrupt, replay, advance time, rebind the client's NAT mapping, send
    crafted segments or raw bytes, application calls), every invariant checked
    after each; the liveness checks at the end. :class:`ProgramWriter` builds such
    programs (the seed corpus, regression inputs).
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from rudp.engine import ANY_PORT, Endpoint
from rudp.wire.checksum import (
    checksum,
    ones_complement_sum,
    py_ones_complement_sum,
    py_verify,
    verify,
)
from rudp.wire.segment import ParseError, Segment, parse_segment

from . import harness
from .harness import SERVER, SERVER_ADDR, Craft, Pair, Setup

# ---------------------------------------------------------------------------
# The parser


def _fix_checksum(data: bytearray) -> None:
    if len(data) >= 20:
        data[16:18] = b"\0\0"
        data[16:18] = (checksum(data) or 0xFFFF).to_bytes(2, "big")


class RefError(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def ref_parse(data: bytes) -> tuple[object, ...]:
    """RFC 9293 §3.1 header and §3.2 options, the plain way (rudp's rules: no
    pseudo-header, checksum 0 = not computed, known options with a wrong length
    ignored, a later option of a kind overrides an earlier one)."""
    if len(data) < 20:
        raise RefError("short")
    sport, dport, seq, ack = struct.unpack("!HHII", data[:12])
    hlen = (data[12] >> 4) * 4
    flags = data[13]
    wnd, csum, urp = struct.unpack("!HHH", data[14:20])
    if hlen < 20 or hlen > len(data):
        raise RefError("data_offset")
    if csum != 0:
        words = data + (b"\0" if len(data) % 2 else b"")
        total = 0
        for i in range(0, len(words), 2):
            total += (words[i] << 8) | words[i + 1]
            total = (total & 0xFFFF) + (total >> 16)
        if total != 0xFFFF:
            raise RefError("checksum")
    mss = wscale = sack = ts = None
    sack_perm = False
    i = 20
    while i < hlen:
        kind = data[i]
        if kind == 0:
            break
        if kind == 1:
            i += 1
            continue
        if i + 1 >= hlen:
            raise RefError("option_truncated")
        length = data[i + 1]
        if length < 2:
            raise RefError("option_length")
        if i + length > hlen:
            raise RefError("option_overflow")
        body = data[i + 2 : i + length]
        if kind == 2 and length == 4:
            mss = struct.unpack("!H", body)[0]
        elif kind == 3 and length == 3:
            wscale = body[0]
        elif kind == 4 and length == 2:
            sack_perm = True
        elif kind == 5 and length >= 10 and (length - 2) % 8 == 0:
            sack = tuple(struct.unpack("!II", body[j : j + 8]) for j in range(0, len(body), 8))
        elif kind == 8 and length == 10:
            ts = struct.unpack("!II", body)
        i += length
    return (
        sport,
        dport,
        seq,
        ack,
        flags,
        wnd,
        urp,
        bytes(data[hlen:]),
        mss,
        wscale,
        sack_perm,
        sack,
        ts,
    )


def _fields(seg: Segment) -> tuple[object, ...]:
    return (
        seg.sport,
        seg.dport,
        seg.seq,
        seg.ack,
        seg.flags,
        seg.wnd,
        seg.urp,
        bytes(seg.payload),
        seg.mss,
        seg.wscale,
        seg.sack_perm,
        None if seg.sack is None else tuple(tuple(b) for b in seg.sack),
        None if seg.ts is None else tuple(seg.ts),
    )


_parser_ep: Endpoint | None = None


def _parser_endpoint() -> Endpoint:
    """An endpoint with a listener and an established connection to the peer."""
    global _parser_ep
    if _parser_ep is None or len(_parser_ep.connections) > 64:
        pair = Pair()
        pair.connect()
        pair.deliver_all()
        _parser_ep = pair.eps[SERVER]
        _parser_ep.listen(ANY_PORT)
    return _parser_ep


def parser(data: bytes) -> None:
    """The ``parser`` target (see the module docstring)."""
    if not data:
        return
    mode = data[0]
    buf = bytearray(data[1:])
    if mode & 3 == 1:
        _fix_checksum(buf)
    elif mode & 3 == 2 and len(buf) >= 20:
        buf[16:18] = b"\0\0"
    raw = bytes(buf)
    try:
        seg: Segment | None = parse_segment(raw)
        reason = ""
    except ParseError as exc:
        seg, reason = None, exc.reason
    try:
        ref: tuple[object, ...] | None = ref_parse(raw)
        ref_reason = ""
    except RefError as exc:
        ref, ref_reason = None, exc.reason
    if (seg is None) != (ref is None) or reason != ref_reason:
        raise AssertionError(
            f"parse_segment: {seg!r}/{reason!r}, reference: {ref!r}/{ref_reason!r}"
        )
    if seg is not None:
        got = _fields(seg)
        if got != ref:
            raise AssertionError(f"parse_segment {got!r} != reference {ref!r}")
        seg.seg_len  # noqa: B018 - must not raise
        repr(seg)
        for other in (bytearray(raw), memoryview(raw)):
            if _fields(parse_segment(other)) != got:
                raise AssertionError(f"{type(other).__name__} parses differently")
    # The two checksum implementations agree on every input.
    if py_ones_complement_sum(raw) != ones_complement_sum(raw):
        raise AssertionError("C and Python one's-complement sums differ")
    if py_verify(raw) != verify(raw):
        raise AssertionError("C and Python verify() differ")
    ep = _parser_endpoint()
    if not isinstance(ep.counters, harness.StrictCounters):
        raise AssertionError("the parser's endpoint must count strictly")
    for addr in (harness.CLIENT_ADDR, ("10.66.0.9", 1)):
        dropped = ep.counters["dropped"]
        ep.receive_datagram(raw, addr, 1.0)
        if seg is None and ep.counters["dropped"] != dropped + 1:
            raise AssertionError("a malformed datagram was not counted as dropped")
    ep.datagrams_to_send(1.0)


# ---------------------------------------------------------------------------
# The engine

#: Most operations one program runs.
MAX_OPS = 64

ADVANCES = (0.001, 0.01, 0.04, 0.2, 1.0, 3.0, 12.0, 61.0)
SEND_SIZES = (0, 1, 100, 536, 1400, 5000, 20_000, 70_000)
PAYLOADS = (0, 0, 1, 2, 100, 536, 1400, 3000)
DELTA_TABLE = (-65536, -65535, -1448, -1400, 536, 1400, 65535, 65536, 2**31, -(2**31), 1, -1)

(
    OP_DELIVER,
    OP_DROP,
    OP_BURST,
    OP_CORRUPT,
    OP_REPLAY,
    OP_ADVANCE,
    OP_REBIND,
    OP_CRAFT,
    OP_RAW,
    OP_SEND,
    OP_READ,
    OP_SHUTDOWN,
    OP_CLOSE,
    OP_ABORT,
    OP_CONNECT,
    OP_AUTOREAD,
    OP_DELIVER_ALL,
) = range(17)
N_OPS = 17


class Exhausted(Exception):
    """The program's bytes ran out."""


class Program:
    """Reads a program from fuzz bytes; every byte string is a valid program."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.i = 0

    def byte(self) -> int:
        if self.i >= len(self.data):
            raise Exhausted
        b = self.data[self.i]
        self.i += 1
        return b

    def u16(self) -> int:
        return (self.byte() << 8) | self.byte()

    def u32(self) -> int:
        return (self.u16() << 16) | self.u16()

    def delta(self) -> int:
        mode = self.byte() % 5
        if mode == 0:
            return 0
        if mode == 1:
            return self.byte() % 7 - 3
        if mode == 2:
            return DELTA_TABLE[self.byte() % len(DELTA_TABLE)]
        if mode == 3:
            return self.u32() % 140_001 - 70_000
        return int.from_bytes(self.u32().to_bytes(4, "big"), "big", signed=True)

    def craft(self) -> Craft:
        victim = self.byte()
        flags = self.byte()
        bases = self.byte()
        seq_delta = self.delta()
        ack_delta = self.delta()
        wnd = self.u16()
        urp = self.u16() if flags & 0x20 else 0
        opts = []
        for _ in range(self.byte() % 5):
            kind = self.byte()
            opts.append((kind, self.delta(), self.delta(), self.delta(), self.delta()))
        misc = self.byte()
        return Craft(
            victim=victim,
            flags=flags,
            seq_base=bases & 7,
            seq_delta=seq_delta,
            ack_base=bases >> 4,
            ack_delta=ack_delta,
            wnd=wnd,
            urp=urp,
            options=tuple(opts),
            payload=PAYLOADS[misc & 7],
            src=(misc >> 3) & 3 if misc & 0x80 else 0,
            ports=(misc >> 5) & 3 if misc & 0x80 else 0,
            zero_checksum=bool(misc & 0x40) and not misc & 0x80,
        )

    def run(self, pair_factory: Callable[[Setup], Pair] = Pair) -> Pair:
        """Run the program: setup, starting point, operations, final checks."""
        try:
            setup = Setup.from_bits(self.u16())
            start = self.byte()
        except Exhausted:
            return Pair()
        pair = pair_factory(setup)
        pair.prefix(start)
        pair.check()
        try:
            for _ in range(MAX_OPS):
                self.step(pair)
                pair.settle()
                pair.check()
        except Exhausted:
            pass
        pair.settle()
        pair.check()
        pair.finish()
        return pair

    def step(self, p: Pair) -> None:
        op = self.byte() % N_OPS
        if op == OP_DELIVER:
            b = self.byte()
            p.deliver(b & 1, (b >> 1) & 7, duplicate=bool(b & 0x10))
        elif op == OP_DROP:
            b = self.byte()
            p.drop(b & 1, b >> 1)
        elif op == OP_BURST:
            b = self.byte()
            for k in range(b & 15):
                p.deliver(k & 1 if b & 0x10 else (b >> 5) & 1, 0)
        elif op == OP_CORRUPT:
            b = self.byte()
            p.corrupt(b & 1, (b >> 1) & 7, self.u16(), self.byte(), bool(b & 0x10))
        elif op == OP_REPLAY:
            b = self.byte()
            p.replay(b & 1, b >> 1)
        elif op == OP_ADVANCE:
            b = self.byte()
            p.advance(ADVANCES[b & 7] if b < 128 else (b - 128) * 0.37)
        elif op == OP_REBIND:
            p.rebind()
        elif op == OP_CRAFT:
            side = self.byte() & 1
            p.inject_crafted(side, self.craft())
        elif op == OP_RAW:
            b = self.byte()
            n = self.byte() % 96
            raw = bytearray(self.data[self.i : self.i + n])
            self.i += n
            if b & 2:
                _fix_checksum(raw)
            src = (
                (p.client_addr if b & 1 == SERVER else SERVER_ADDR)
                if not b & 4
                else harness.ATTACKER_ADDRS[0]
            )
            p.inject(b & 1, bytes(raw), src)
        elif op == OP_SEND:
            b = self.byte()
            p.send(b & 1, (b >> 1) & 3, SEND_SIZES[b >> 5])
        elif op == OP_READ:
            b = self.byte()
            p.read(b & 1, (b >> 1) & 3, -1 if b & 8 else (b >> 4) * 300)
        elif op == OP_SHUTDOWN:
            b = self.byte()
            p.shutdown(b & 1, b >> 1)
        elif op == OP_CLOSE:
            b = self.byte()
            p.close(b & 1, b >> 1)
        elif op == OP_ABORT:
            b = self.byte()
            p.abort(b & 1, b >> 1)
        elif op == OP_CONNECT:
            p.connect()
        elif op == OP_AUTOREAD:
            b = self.byte()
            p.auto_read[b & 1] = bool(b & 2)
        else:
            p.deliver_all()


class ProgramWriter:
    """Builds the bytes of a :class:`Program` (seed corpus, regression inputs)."""

    def __init__(self, setup_bits: int = 0, start: int = 0) -> None:
        self.out = bytearray(struct.pack("!HB", setup_bits & 0xFFFF, start & 0xFF))

    def build(self) -> bytes:
        return bytes(self.out)

    def _op(self, op: int, *payload: int) -> ProgramWriter:
        self.out.append(op)
        self.out += bytes(b & 0xFF for b in payload)
        return self

    def _delta(self, v: int) -> None:
        if v == 0:
            self.out.append(0)
        elif -3 <= v <= 3:
            self.out += bytes((1, v + 3))
        else:
            self.out.append(4)
            self.out += struct.pack("!I", v & 0xFFFFFFFF)

    def deliver(self, side: int, index: int = 0, duplicate: bool = False) -> ProgramWriter:
        return self._op(OP_DELIVER, side | (index & 7) << 1 | (0x10 if duplicate else 0))

    def drop(self, side: int, index: int = 0) -> ProgramWriter:
        return self._op(OP_DROP, side | index << 1)

    def burst(self, n: int, alternate: bool = True, side: int = 0) -> ProgramWriter:
        return self._op(OP_BURST, (n & 15) | (0x10 if alternate else 0) | side << 5)

    def corrupt(
        self, side: int, index: int, pos: int, xor: int, fix: bool = False
    ) -> ProgramWriter:
        self._op(OP_CORRUPT, side | (index & 7) << 1 | (0x10 if fix else 0))
        self.out += struct.pack("!HB", pos & 0xFFFF, xor & 0xFF)
        return self

    def replay(self, side: int, index: int) -> ProgramWriter:
        return self._op(OP_REPLAY, side | index << 1)

    def advance(self, which: int) -> ProgramWriter:
        """``which`` indexes :data:`ADVANCES` (0..7), or 128+k for k * 0.37 s."""
        return self._op(OP_ADVANCE, which)

    def rebind(self) -> ProgramWriter:
        return self._op(OP_REBIND)

    def craft(self, side: int, c: Craft) -> ProgramWriter:
        """``c`` as :meth:`Program.craft` reads it back: payload must be one of
        :data:`PAYLOADS`; src/ports other than 0 need ``zero_checksum`` False."""
        self._op(OP_CRAFT, side, c.victim, c.flags, (c.seq_base & 7) | (c.ack_base & 15) << 4)
        self._delta(c.seq_delta)
        self._delta(c.ack_delta)
        self.out += struct.pack("!H", c.wnd & 0xFFFF)
        if c.flags & 0x20:
            self.out += struct.pack("!H", c.urp & 0xFFFF)
        self.out.append(len(c.options))
        for o in c.options:
            self.out.append(o[0])
            for k in range(1, 5):
                self._delta(o[k] if k < len(o) else 0)
        misc = PAYLOADS.index(c.payload)
        if c.src or c.ports:
            misc |= 0x80 | (c.src & 3) << 3 | (c.ports & 3) << 5
        elif c.zero_checksum:
            misc |= 0x40
        self.out.append(misc)
        return self

    def raw(
        self, side: int, data: bytes, fix: bool = False, stranger: bool = False
    ) -> ProgramWriter:
        self._op(OP_RAW, side | (2 if fix else 0) | (4 if stranger else 0), len(data))
        self.out += data
        return self

    def send(self, side: int, which: int, size_index: int) -> ProgramWriter:
        return self._op(OP_SEND, side | (which & 3) << 1 | size_index << 5)

    def read(self, side: int, which: int = 0) -> ProgramWriter:
        return self._op(OP_READ, side | (which & 3) << 1 | 8)

    def shutdown(self, side: int, which: int = 0) -> ProgramWriter:
        return self._op(OP_SHUTDOWN, side | which << 1)

    def close(self, side: int, which: int = 0) -> ProgramWriter:
        return self._op(OP_CLOSE, side | which << 1)

    def abort(self, side: int, which: int = 0) -> ProgramWriter:
        return self._op(OP_ABORT, side | which << 1)

    def connect(self) -> ProgramWriter:
        return self._op(OP_CONNECT)

    def auto_read(self, side: int, on: bool) -> ProgramWriter:
        return self._op(OP_AUTOREAD, side | (2 if on else 0))

    def deliver_all(self) -> ProgramWriter:
        return self._op(OP_DELIVER_ALL)


def engine(data: bytes) -> None:
    """The ``engine`` target (see the module docstring)."""
    Program(data).run()


TARGETS: dict[str, Callable[[bytes], None]] = {"parser": parser, "engine": engine}
