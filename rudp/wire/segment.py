"""Parse and build TCP segments (RFC 9293 §3.1) carried as UDP payloads.

A UDP payload is exactly one segment: the 20-byte fixed header, options, data.
:func:`parse_segment` accepts any bytes and either returns a :class:`Segment` or
raises :class:`ParseError` whose ``reason`` names the defect (the endpoint counts
drops by reason); it never raises anything else.

:func:`parse_segment`, :func:`build_segment`, :func:`build_segment_ts`,
:func:`build_burst` and :func:`coalesce` are bound to the C accelerator's versions when
:mod:`rudp.wire.checksum` uses it (``IMPLEMENTATION == "c"``), else to the
pure-Python ``py_*`` functions below; both give identical results
(tests/test_accel.py). The C parser returns this module's :class:`Segment`,
filling its slots directly, so ``Segment.__init__`` must stay
plain assignments of every slot.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Final

from .checksum import IMPLEMENTATION, checksum2, ones_complement_sum

FIN: Final = 0x01
SYN: Final = 0x02
RST: Final = 0x04
PSH: Final = 0x08
ACK: Final = 0x10
URG: Final = 0x20
ECE: Final = 0x40
CWR: Final = 0x80

_FLAG_NAMES = (
    (CWR, "C"),
    (ECE, "E"),
    (URG, "U"),
    (ACK, "A"),
    (PSH, "P"),
    (RST, "R"),
    (SYN, "S"),
    (FIN, "F"),
)

#: source port, destination port, seq, ack, data offset/reserved, flags, window,
#: checksum, urgent pointer (RFC 9293 §3.1).
HEADER = struct.Struct("!HHIIBBHHH")
HEADER_LEN: Final = 20

# Option kinds (IANA "TCP Option Kind Numbers").
OPT_EOL = 0
OPT_NOP = 1
OPT_MSS = 2
OPT_WSCALE = 3
OPT_SACK_PERM = 4
OPT_SACK = 5
OPT_TIMESTAMP = 8

_U16 = struct.Struct("!H")
_U32X2 = struct.Struct("!II")
_EMPTY = b""
#: NOP, NOP, kind 8, length 10: the timestamps layout every TCP sends after the SYN
#: (RFC 7323 Appendix A), recognised and built without the generic option loop.
_TS_WORD = 0x0101080A
_TS_PREFIX = _TS_WORD.to_bytes(4, "big")
_TS_OPTION = struct.Struct("!III")
_TS_FAST_HLEN = HEADER_LEN + 12


def flags_str(flags: int) -> str:
    """Render flags the way tcpdump does, e.g. ``"S"``, ``"A"``, ``"FA"``."""
    return "".join(name for bit, name in _FLAG_NAMES if flags & bit) or "."


class ParseError(Exception):
    """A datagram is not a well-formed segment; ``reason`` is a short counter key."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Segment:
    """A parsed TCP segment. ``payload`` is the data (possibly empty)."""

    __slots__ = (
        "ack",
        "dport",
        "flags",
        "mss",
        "payload",
        "sack",
        "sack_perm",
        "seq",
        "sport",
        "ts",
        "urp",
        "wnd",
        "wscale",
    )

    def __init__(
        self,
        sport: int,
        dport: int,
        seq: int,
        ack: int,
        flags: int,
        wnd: int,
        payload: bytes | bytearray | memoryview = _EMPTY,
        urp: int = 0,
    ) -> None:
        self.sport = sport
        self.dport = dport
        self.seq = seq
        self.ack = ack
        self.flags = flags
        self.wnd = wnd
        self.payload = payload
        self.urp = urp
        self.mss: int | None = None
        self.wscale: int | None = None
        self.sack_perm = False
        self.sack: tuple[tuple[int, int], ...] | None = None
        self.ts: tuple[int, int] | None = None

    @property
    def seg_len(self) -> int:
        """SEG.LEN: data length plus one for each of SYN and FIN (RFC 9293 §3.4)."""
        return len(self.payload) + (self.flags & SYN) // SYN + (self.flags & FIN)

    def __repr__(self) -> str:
        opts = []
        if self.mss is not None:
            opts.append(f"mss={self.mss}")
        if self.wscale is not None:
            opts.append(f"wscale={self.wscale}")
        if self.sack_perm:
            opts.append("sackOK")
        if self.sack:
            opts.append(f"sack={list(self.sack)}")
        if self.ts:
            opts.append(f"ts={self.ts}")
        return (
            f"<Segment {self.sport}>{self.dport} [{flags_str(self.flags)}] seq={self.seq} "
            f"ack={self.ack} win={self.wnd} len={len(self.payload)}"
            + (f" <{','.join(opts)}>" if opts else "")
            + ">"
        )


def _parse_options(seg: Segment, data: bytes | bytearray | memoryview, end: int) -> None:
    i = HEADER_LEN
    while i < end:
        kind = data[i]
        if kind == OPT_EOL:
            return
        if kind == OPT_NOP:
            i += 1
            continue
        if i + 1 >= end:
            raise ParseError("option_truncated")
        length = data[i + 1]
        if length < 2:
            raise ParseError("option_length")
        if i + length > end:
            raise ParseError("option_overflow")
        # A known option with the wrong length is ignored, as Linux does.
        if kind == OPT_MSS and length == 4:
            seg.mss = _U16.unpack_from(data, i + 2)[0]
        elif kind == OPT_WSCALE and length == 3:
            seg.wscale = data[i + 2]
        elif kind == OPT_SACK_PERM and length == 2:
            seg.sack_perm = True
        elif kind == OPT_SACK and length >= 10 and (length - 2) % 8 == 0:
            seg.sack = tuple(_U32X2.unpack_from(data, j) for j in range(i + 2, i + length, 8))
        elif kind == OPT_TIMESTAMP and length == 10:
            seg.ts = _U32X2.unpack_from(data, i + 2)
        i += length


def py_parse_segment(data: bytes | bytearray | memoryview, *, check: bool = True) -> Segment:
    """Parse one segment from a UDP payload; raise :class:`ParseError` if malformed.

    ``data`` may be a borrowed ``memoryview``: the payload is then a view of it too,
    valid only while the caller's buffer is (the engine copies what it keeps).
    """
    n = len(data)
    if n < HEADER_LEN:
        raise ParseError("short")
    sport, dport, seq, ack, off, flags, wnd, _csum, urp = HEADER.unpack_from(data)
    hlen = (off >> 4) * 4
    if hlen < HEADER_LEN:
        raise ParseError("data_offset")
    if hlen > n:
        raise ParseError("data_offset")
    # A checksum field of 0 means "not computed" (FreeBSD's TCP-over-UDP leaves it to
    # the UDP checksum, see docs/wire.md); rudp never sends 0 for a computed one.
    if check and _csum and ones_complement_sum(data) != 0xFFFF:
        raise ParseError("checksum")
    seg = Segment(sport, dport, seq, ack, flags, wnd, data[hlen:] if hlen < n else _EMPTY, urp)
    if hlen > HEADER_LEN:
        if hlen == _TS_FAST_HLEN and data[20:24] == _TS_PREFIX:
            seg.ts = _U32X2.unpack_from(data, 24)
        else:
            _parse_options(seg, data, hlen)
    return seg


def ts_option(tsval: int, tsecr: int) -> bytes:
    """The 12-byte timestamps option (NOP, NOP, TS) for non-SYN segments (RFC 7323)."""
    return _TS_OPTION.pack(_TS_WORD, tsval, tsecr)


def sack_option(blocks: list[tuple[int, int]] | tuple[tuple[int, int], ...]) -> bytes:
    """NOP, NOP, SACK with ``blocks`` (left, right edges) (RFC 2018 §3); 1 to 4 blocks."""
    out = bytearray((OPT_NOP, OPT_NOP, OPT_SACK, 2 + 8 * len(blocks)))
    for left, right in blocks:
        out += _U32X2.pack(left, right)
    return bytes(out)


def encode_options(
    mss: int | None = None,
    wscale: int | None = None,
    sack_perm: bool = False,
    sack: tuple[tuple[int, int], ...] | None = None,
    ts: tuple[int, int] | None = None,
) -> bytes:
    """Encode options, NOP-aligned as Linux does, padded to a multiple of 4 bytes.

    With both SACK-permitted and timestamps (a SYN), they share one 12-byte word group
    as Linux lays them out: ``04 02 08 0a TSval TSecr``.
    """
    out = bytearray()
    if mss is not None:
        out += struct.pack("!BBH", OPT_MSS, 4, mss)
    if sack_perm and ts is not None:
        out += struct.pack("!BBBBII", OPT_SACK_PERM, 2, OPT_TIMESTAMP, 10, ts[0], ts[1])
    elif sack_perm:
        out += bytes((OPT_NOP, OPT_NOP, OPT_SACK_PERM, 2))
    elif ts is not None:
        out += struct.pack("!BBBBII", OPT_NOP, OPT_NOP, OPT_TIMESTAMP, 10, ts[0], ts[1])
    if wscale is not None:
        out += bytes((OPT_NOP, OPT_WSCALE, 3, wscale))
    if sack:
        out += bytes((OPT_NOP, OPT_NOP, OPT_SACK, 2 + 8 * len(sack)))
        for left, right in sack:
            out += _U32X2.pack(left, right)
    if len(out) > 40:
        raise ValueError("TCP options exceed 40 bytes")
    if len(out) % 4:
        out += bytes(4 - len(out) % 4)  # EOL padding
    return bytes(out)


def py_build_segment(
    sport: int,
    dport: int,
    seq: int,
    ack: int,
    flags: int,
    wnd: int,
    payload: bytes | bytearray | memoryview = _EMPTY,
    options: bytes = _EMPTY,
    urp: int = 0,
    compute_checksum: bool = True,
) -> bytes:
    """Serialize a segment with its checksum (see :mod:`rudp.wire.checksum`).

    The header length is always a multiple of 4, so the payload starts on a 16-bit
    boundary and the checksum of the whole is the sum of the two parts. With
    ``compute_checksum=False`` the field is 0 ("not computed", docs/wire.md).
    """
    off = ((HEADER_LEN + len(options)) // 4) << 4
    head = HEADER.pack(sport, dport, seq, ack, off, flags, wnd, 0, urp) + options
    if compute_checksum:
        # A computed 0 is sent as 0xFFFF, its one's-complement twin (as UDP does,
        # RFC 768), so that 0 on the wire always means "not computed".
        csum = checksum2(head, payload) or 0xFFFF
        head = HEADER.pack(sport, dport, seq, ack, off, flags, wnd, csum, urp) + options
    return head + payload if payload else head


#: The fixed header followed by NOP, NOP, TS (RFC 7323 Appendix A layout).
_HEADER_TS = struct.Struct("!HHIIBBHHHIII")
_TS_OFF = (_TS_FAST_HLEN // 4) << 4


def py_build_segment_ts(
    sport: int,
    dport: int,
    seq: int,
    ack: int,
    flags: int,
    wnd: int,
    payload: bytes | bytearray | memoryview,
    tsval: int,
    tsecr: int,
    more_options: bytes = _EMPTY,
    compute_checksum: bool = True,
) -> bytes:
    """:func:`py_build_segment` with the timestamps option first (one ``struct`` call for
    the header and timestamps: the per-segment path once timestamps are negotiated).
    ``more_options`` (e.g. SACK) follows it; its length is a multiple of 4."""
    off = ((_TS_FAST_HLEN + len(more_options)) // 4) << 4 if more_options else _TS_OFF
    pack = _HEADER_TS.pack
    head = pack(sport, dport, seq, ack, off, flags, wnd, 0, 0, _TS_WORD, tsval, tsecr)
    if more_options:
        head += more_options
    if compute_checksum:
        csum = checksum2(head, payload) or 0xFFFF
        head = pack(sport, dport, seq, ack, off, flags, wnd, csum, 0, _TS_WORD, tsval, tsecr)
        if more_options:
            head += more_options
    return head + payload if payload else head


def py_build_burst(
    sport: int,
    dport: int,
    seq: int,
    ack: int,
    flags: int,
    last_flags: int,
    wnd: int,
    data: bytes | bytearray | memoryview,
    offset: int,
    size: int,
    count: int,
    ts: tuple[int, int] | None,
    compute_checksum: bool,
    /,
) -> list[bytes]:
    """``count`` segments of ``size`` bytes each from ``data[offset:]`` (one send
    burst): sequence numbers from ``seq``, the same header otherwise, the last one
    with ``last_flags``; the timestamps option first when ``ts`` is ``(tsval,
    tsecr)``, no options when it is None."""
    if offset < 0 or size <= 0 or count < 0 or offset + count * size > len(data):
        raise ValueError("build_burst(): the segments do not fit the data")
    out = []
    view = memoryview(data)
    try:
        for j in range(count):
            piece = view[offset + j * size : offset + (j + 1) * size]
            pos = (seq + j * size) & 0xFFFFFFFF
            f = last_flags if j == count - 1 else flags
            if ts is None:
                seg = py_build_segment(
                    sport, dport, pos, ack, f, wnd, piece, compute_checksum=compute_checksum
                )
            else:
                seg = py_build_segment_ts(
                    sport, dport, pos, ack, f, wnd, piece, ts[0], ts[1], _EMPTY, compute_checksum
                )
            out.append(seg)
    finally:
        view.release()
    return out


#: The most datagrams :func:`coalesce` merges (as many as one UDP GRO receive holds).
COALESCE_MAX = 64
#: The most data one coalesced run holds (Linux's GRO limit, ``gro_max_size``): for
#: segments this large, merging would cost more in copying than it saves.
COALESCE_MAX_BYTES = 65536


def _coalescible(data: bytes | bytearray | memoryview) -> int:
    """The header length of a segment that may be merged (flags ACK, PSH allowed;
    data after a valid header), else 0."""
    n = len(data)
    if n < HEADER_LEN:
        return 0
    hlen = (data[12] >> 4) * 4
    if hlen < HEADER_LEN or hlen >= n or data[13] & ~PSH != ACK:
        return 0
    return hlen


def _checksum_ok(data: bytes | bytearray | memoryview) -> bool:
    # A checksum field of 0 means "not computed" (docs/wire.md).
    return not (data[16] | data[17]) or ones_complement_sum(data) == 0xFFFF


def py_coalesce(
    datagrams: Sequence[bytes | bytearray | memoryview], start: int, limit: int, /
) -> tuple[int, bytes | None]:
    """Receive coalescing (software GRO, docs/performance.md): ``(k, payload)``.

    ``k >= 1`` datagrams of ``datagrams`` from ``start`` (at most ``limit``, at most
    :data:`COALESCE_MAX`, with at most :data:`COALESCE_MAX_BYTES` of data) are data
    segments of one TCP send, as Linux's ``tcp_gro_receive`` merges them: the same
    ports, acknowledgment number, window, urgent field and option bytes (so the same
    timestamps), consecutive sequence numbers, flags ACK with PSH only on the last,
    valid checksums. ``payload`` is their data joined when ``k > 1``, else None
    (nothing was merged; the first datagram's checksum was then not looked at)."""
    if not 0 <= start < len(datagrams):
        raise IndexError("coalesce() start out of range")
    limit = min(limit, COALESCE_MAX, len(datagrams) - start)
    first = datagrams[start]
    hlen = _coalescible(first)
    if limit < 2 or not hlen or first[13] & PSH:
        return 1, None
    head = bytes(first[:hlen])
    next_seq = (int.from_bytes(head[4:8], "big") + len(first) - hlen) & 0xFFFFFFFF
    parts = [first[hlen:]]
    total = len(first) - hlen
    k = 1
    while k < limit:
        data = datagrams[start + k]
        if (
            _coalescible(data) != hlen
            or total + len(data) - hlen > COALESCE_MAX_BYTES
            or int.from_bytes(data[4:8], "big") != next_seq
            or data[0:4] != head[0:4]
            or data[8:12] != head[8:12]
            or data[14:16] != head[14:16]
            or data[18:hlen] != head[18:hlen]
            or not _checksum_ok(data)
            or (k == 1 and not _checksum_ok(first))
        ):
            break
        parts.append(data[hlen:])
        total += len(data) - hlen
        next_seq = (next_seq + len(data) - hlen) & 0xFFFFFFFF
        k += 1
        if data[13] & PSH:  # the end of what the sender wrote
            break
    if k == 1:
        return 1, None
    return k, b"".join(parts)


parse_segment = py_parse_segment
build_segment = py_build_segment
build_segment_ts = py_build_segment_ts
coalesce = py_coalesce
build_burst = py_build_burst
if IMPLEMENTATION == "c":
    from .. import _accel

    _accel.bind_segment(Segment, ParseError)
    parse_segment = _accel.parse_segment
    build_segment = _accel.build_segment
    build_segment_ts = _accel.build_segment_ts
    coalesce = _accel.coalesce
    build_burst = _accel.build_burst
