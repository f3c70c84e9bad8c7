"""Write rudp segments as a classic pcap file that Wireshark dissects as TCP.

Each rudp UDP payload is one TCP segment (docs/wire.md). :class:`PcapWriter`
records it as one packet of link type ``LINKTYPE_RAW`` (101: the packet starts
with an IP header, version 4 or 6): a synthesized IP header carrying the real
UDP endpoints' IP addresses, then the segment exactly as on the wire except
for its checksum, which is rewritten to the RFC 9293 §3.1 value over the IP
pseudo-header (rudp's own checksum has none) so that Wireshark's optional
checksum validation passes -- and fails for exactly the segments that rudp's
checksum rejects.

File format (https://www.tcpdump.org/manpages/pcap-savefile.5.html): a 24-byte
global header, then per packet a 16-byte record header (timestamp, captured
length, original length) and the packet bytes. The file is written in network
byte order (the magic number tells readers which order; every pcap reader
handles both), so the record header and the IP header are one ``struct`` call.
"""

from __future__ import annotations

import ipaddress
import os
import struct
import time
from collections.abc import Callable, Sequence
from typing import IO, Any

from ..errors import RudpError

__all__ = ["LINKTYPE_RAW", "PcapWriter", "PcapWriterClosedError"]

#: pcap link type: raw IPv4 or IPv6 packet, no link-layer header.
LINKTYPE_RAW = 101

_MAGIC_USEC = 0xA1B2C3D4
_MAGIC_NSEC = 0xA1B23C4D
_MAX_SNAPLEN = 262144  # tcpdump's default and Wireshark's largest ordinary record
_DEFAULT_SNAPLEN = _MAX_SNAPLEN

_IPPROTO_TCP = 6
_TTL = 64
_IP4_FLAGS = 0x4000  # DF: rudp never relies on IP fragmentation
# magic, version 2.4, thiszone, sigfigs, snaplen, linktype
_GLOBAL = struct.Struct("!IHHiIII")
# Record header: ts_sec, ts_frac, captured length, original length.
_REC = struct.Struct("!IIII")
# IPv4 header (RFC 791 §3.1): version/IHL, TOS, total length, identification,
# flags/fragment offset, TTL, protocol, header checksum, source, destination.
_IP4 = struct.Struct("!BBHHHBBH4s4s")
# IPv6 header (RFC 8200 §3): version/traffic class/flow label, payload length,
# next header, hop limit, source, destination.
_IP6 = struct.Struct("!IHBB16s16s")
# The per-packet fast path packs record header + IP header + the TCP header's
# first 16 bytes + the rewritten checksum in one call.
_REC_IP4_TCP = struct.Struct("!IIII" + _IP4.format[1:] + "16sH")
_REC_IP6_TCP = struct.Struct("!IIII" + _IP6.format[1:] + "16sH")
_U16 = struct.Struct("!H")
_IP4_LEN = 20
_IP6_LEN = 40
_IP4_MAX_PAYLOAD = 0xFFFF - _IP4_LEN
# Synthetic IPv4 addresses for simulator names that are not IP literals:
# 198.18.0.0/15 is reserved for benchmarking (RFC 2544 / RFC 6890).
_SYNTHETIC_NET = int(ipaddress.IPv4Address("198.18.0.0"))
_SYNTHETIC_SIZE = 1 << 17
_MAX_PATHS = 4096  # cached address pairs
# ::ffff:0:0/96, IPv4-mapped IPv6 addresses (RFC 4291 §2.5.5.2).
_V4_MAPPED = bytes(10) + b"\xff\xff"


class PcapWriterClosedError(RudpError, ValueError):
    """:meth:`PcapWriter.write` was called after :meth:`PcapWriter.close`."""


def _word_sum(data: bytes) -> int:
    """Sum of the big-endian 16-bit words of ``data`` (even length), not folded."""
    return sum(struct.unpack(f"!{len(data) // 2}H", data))


def _unmap(packed: bytes) -> bytes | None:
    """The IPv4 address in ``packed`` (IPv4, or IPv4-mapped IPv6), else None."""
    if len(packed) == 4:
        return packed
    if packed[:12] == _V4_MAPPED:
        return packed[12:]
    return None


class _Path:
    """Everything about one (source IP, destination IP) pair that a packet reuses."""

    __slots__ = ("dst", "ip4_sum", "pseudo", "src", "v4")

    def __init__(self, v4: bool, src: bytes, dst: bytes) -> None:
        self.v4 = v4
        self.src = src
        self.dst = dst
        addr_sum = _word_sum(src) + _word_sum(dst)
        # Pseudo-header minus the TCP length: RFC 9293 §3.1 (IPv4: zero byte and
        # protocol) and RFC 8200 §8.1 (IPv6: zero bytes and next header).
        self.pseudo = addr_sum + _IPPROTO_TCP
        # Every IPv4 header word except total length, identification and the
        # checksum itself: those two are added per packet.
        self.ip4_sum = addr_sum + 0x4500 + _IP4_FLAGS + ((_TTL << 8) | _IPPROTO_TCP)


class PcapWriter:
    """Record rudp segments as IPv4/IPv6 + TCP packets in a classic pcap file.

    ``file`` is a path (created or truncated; closed by :meth:`close`) or a binary
    file object opened for writing (flushed, but left open, by :meth:`close`).

    ``epoch`` is the Unix time, in seconds, that ``t == 0`` stands for: files show
    ``epoch + t`` as the packets' wall-clock times. ``None`` (the default) maps the
    first ``t`` written to the current wall clock, so a monotonic clock such as
    ``loop.time()`` or the simulator's virtual time reads naturally in Wireshark;
    pass ``0.0`` to store ``t`` itself (deterministic files from the simulator).

    ``nanosecond`` selects nanosecond timestamps (magic ``0xa1b23c4d``) instead of
    microseconds. ``snaplen`` truncates packets longer than that many bytes (IP
    header included) in the file; the record keeps the original length, as
    ``tcpdump -s`` does.
    """

    __slots__ = (
        "_close_file",
        "_epoch",
        "_epoch_pending",
        "_file",
        "_ident",
        "_names",
        "_paths",
        "_scale",
        "_write",
        "packets",
        "snaplen",
    )

    def __init__(
        self,
        file: str | os.PathLike[str] | IO[bytes],
        *,
        epoch: float | None = None,
        nanosecond: bool = False,
        snaplen: int = _DEFAULT_SNAPLEN,
    ) -> None:
        if (
            isinstance(snaplen, bool)
            or not isinstance(snaplen, int)
            or not 1 <= snaplen <= _MAX_SNAPLEN
        ):
            raise ValueError(f"snaplen must be an integer in [1, {_MAX_SNAPLEN}], got {snaplen!r}")
        if epoch is not None and not isinstance(epoch, (int, float)):
            raise TypeError(f"epoch must be a number of seconds or None, got {epoch!r}")
        self._scale = 1_000_000_000 if nanosecond else 1_000_000
        # Integer units, so nanoseconds survive even at today's Unix times (a float
        # holds ~2**53 ns, about 104 days).
        self._epoch = 0 if epoch is None else round(epoch * self._scale)
        self._epoch_pending = epoch is None  # fixed at the first write
        self.snaplen = snaplen
        self.packets = 0  #: packets written so far
        self._ident = 0
        self._paths: dict[tuple[Any, Any], _Path] = {}
        self._names: dict[str, bytes] = {}
        if isinstance(file, (str, os.PathLike)):
            self._file: IO[bytes] = open(file, "wb", buffering=1 << 16)  # noqa: SIM115
            self._close_file = True
        else:
            self._file = file
            self._close_file = False
        self._write: Callable[[Any], object] | None = self._file.write
        magic = _MAGIC_NSEC if nanosecond else _MAGIC_USEC
        self._write(_GLOBAL.pack(magic, 2, 4, 0, 0, snaplen, LINKTYPE_RAW))

    # -- addresses -----------------------------------------------------------

    def _packed(self, host: Any) -> bytes:
        """The 4- or 16-byte address for ``host`` (an IP literal, or any other
        name, mapped to a stable synthetic address from 198.18.0.0/15)."""
        try:
            return ipaddress.ip_address(host).packed
        except ValueError:
            pass
        key = str(host)
        packed = self._names.get(key)
        if packed is None:
            index = len(self._names) % (_SYNTHETIC_SIZE - 2) + 1  # skip .0.0
            packed = (_SYNTHETIC_NET + index).to_bytes(4, "big")
            self._names[key] = packed
        return packed

    def _new_path(self, src_host: Any, dst_host: Any, t: float) -> _Path:
        """Slow path of :meth:`write`: a new address pair (and the first packet)."""
        if self._epoch_pending:
            self._epoch_pending = False
            now = time.time_ns() * self._scale // 1_000_000_000
            self._epoch = now - round(t * self._scale)
        src = self._packed(src_host)
        dst = self._packed(dst_host)
        src4 = _unmap(src)
        dst4 = _unmap(dst)
        if src4 is not None and dst4 is not None:
            src, dst = src4, dst4  # both IPv4 (or IPv4-mapped): an IPv4 packet
        else:
            # At least one real IPv6 address (a dual-stack socket talking to an
            # IPv4 peer shows the peer IPv4-mapped): an IPv6 packet.
            src = _V4_MAPPED + src if len(src) == 4 else src
            dst = _V4_MAPPED + dst if len(dst) == 4 else dst
        path = _Path(len(src) == 4, src, dst)
        if len(self._paths) >= _MAX_PATHS:
            self._paths.clear()  # bounded memory whatever the peers' addresses
        self._paths[src_host, dst_host] = path
        return path

    # -- packets -------------------------------------------------------------

    def write(
        self,
        t: float,
        src: Sequence[Any],
        dst: Sequence[Any],
        segment: bytes | bytearray | memoryview,
    ) -> None:
        """Record one datagram sent from UDP address ``src`` to ``dst`` at time ``t``.

        ``segment`` is the UDP payload exactly as sent or received. Payloads too
        short to be a TCP header are still recorded, as an IP packet carrying what
        there was (Wireshark reports them as malformed TCP, which they are).
        """
        try:
            path = self._paths[src[0], dst[0]]
        except KeyError:
            path = self._new_path(src[0], dst[0], t)
        write = self._write
        if write is None:
            raise PcapWriterClosedError("write() on a closed PcapWriter")
        if type(segment) is not bytes:
            segment = bytes(segment)
        scale = self._scale
        sec, frac = divmod(self._epoch + round(t * scale), scale)
        if sec < 0:
            sec = frac = 0
        n = len(segment)
        self.packets += 1
        if n < 18 or n > _IP4_MAX_PAYLOAD or n + _IP6_LEN > self.snaplen:
            # Too short to hold a checksum, too long for IPv4's length field, or
            # truncated by snaplen.
            self._write_other(write, path, sec, frac, segment)
            return
        # RFC 1624 incremental update: rudp's checksum C covers the segment alone,
        # so the RFC 9293 checksum, which adds the pseudo-header, is ~(~C + pseudo).
        # It is valid exactly when C was: damaged segments stay damaged.
        s = ((segment[16] << 8 | segment[17]) ^ 0xFFFF) + path.pseudo + n
        s = (s & 0xFFFF) + (s >> 16)
        s = (s & 0xFFFF) + (s >> 16)
        if path.v4:
            size = n + _IP4_LEN
            ident = self._ident = (self._ident + 1) & 0xFFFF
            c = path.ip4_sum + size + ident
            c = (c & 0xFFFF) + (c >> 16)
            c = (c & 0xFFFF) + (c >> 16)
            head = _REC_IP4_TCP.pack(
                sec,
                frac,
                size,
                size,
                0x45,
                0,
                size,
                ident,
                _IP4_FLAGS,
                _TTL,
                _IPPROTO_TCP,
                ~c & 0xFFFF,
                path.src,
                path.dst,
                segment[:16],
                ~s & 0xFFFF,
            )
        else:
            size = n + _IP6_LEN
            head = _REC_IP6_TCP.pack(
                sec,
                frac,
                size,
                size,
                0x60000000,
                n,
                _IPPROTO_TCP,
                _TTL,
                path.src,
                path.dst,
                segment[:16],
                ~s & 0xFFFF,
            )
        write(head)
        write(segment[18:])

    def _write_other(
        self, write: Callable[[Any], object], path: _Path, sec: int, frac: int, segment: bytes
    ) -> None:
        """:meth:`write` for the rare packets, one step at a time."""
        n = len(segment)
        if n >= 18:
            s = ((segment[16] << 8 | segment[17]) ^ 0xFFFF) + path.pseudo + n
            s = (s & 0xFFFF) + (s >> 16)
            s = (s & 0xFFFF) + (s >> 16)
            segment = segment[:16] + _U16.pack(~s & 0xFFFF) + segment[18:]
        if path.v4:
            size = n + _IP4_LEN
            ip_len = min(size, 0xFFFF)  # an impossible IPv4 datagram: the field saturates
            ident = self._ident = (self._ident + 1) & 0xFFFF
            c = path.ip4_sum + ip_len + ident
            c = (c & 0xFFFF) + (c >> 16)
            c = (c & 0xFFFF) + (c >> 16)
            ip = _IP4.pack(
                0x45,
                0,
                ip_len,
                ident,
                _IP4_FLAGS,
                _TTL,
                _IPPROTO_TCP,
                ~c & 0xFFFF,
                path.src,
                path.dst,
            )
        else:
            size = n + _IP6_LEN
            ip_len = min(n, 0xFFFF)  # no jumbogram option (RFC 2675): saturate
            ip = _IP6.pack(0x60000000, ip_len, _IPPROTO_TCP, _TTL, path.src, path.dst)
        caplen = min(size, self.snaplen)
        write(_REC.pack(sec, frac, caplen, size) + (ip + segment)[:caplen])

    def flush(self) -> None:
        """Push buffered packets to the file (a no-op once closed)."""
        if self._write is not None:
            self._file.flush()

    def close(self) -> None:
        """Flush and, if this writer opened the file, close it. Idempotent."""
        if self._write is None:
            return
        self._write = None
        try:
            self._file.flush()
        finally:
            if self._close_file:
                self._file.close()

    @property
    def closed(self) -> bool:
        return self._write is None

    def __enter__(self) -> PcapWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
