"""IP packets from a TUN device <-> rudp segments.

A kernel TCP segment and a rudp segment are the same bytes except the checksum:
RFC 9293 §3.1 sums the IP pseudo-header (source and destination address, zero,
protocol, TCP length; RFC 8200 §8.1 for IPv6) with the segment, rudp sums the
segment alone (docs/wire.md). :class:`PacketCodec` converts one into the other
with the RFC 1624 incremental update, without touching the rest of the segment,
so a segment damaged on one side stays damaged on the other:

* kernel -> rudp: ``C' = C + P`` (one's-complement addition of the pseudo-header
  sum ``P`` to the kernel's checksum ``C``);
* rudp -> kernel: ``C = ~(~C' + P)``, or, for a rudp checksum of 0 ("not
  computed", docs/wire.md), the full RFC 9293 checksum.

This is the same arithmetic as the pcap writer's (``rudp/pcap/writer.py``, which
writes rudp segments as IP packets); its pseudo-header and IPv4 header sums live
inside :meth:`rudp.pcap.PcapWriter.write`, so they are not importable from there.
``tests/test_linux_interop.py`` checks that both produce byte-identical IPv4 and
IPv6 packets for the same segment.

IPv4 (RFC 791) packets this module builds carry DF, TTL 64 and no options; IPv6
ones (RFC 8200) no extension headers. Received IPv4 fragments, IPv6 extension
headers and anything but TCP are refused with :class:`PacketError` (the kernel
sends whole segments on a TUN device: it has no offloads).
"""

from __future__ import annotations

import ipaddress
import struct

from rudp.wire.checksum import ones_complement_sum

__all__ = ["IPPROTO_TCP", "PacketCodec", "PacketError", "tcp_checksum_ok"]

IPPROTO_TCP = 6
TTL = 64
_IP4_DF = 0x4000
_IP4_LEN = 20
_IP6_LEN = 40
_U16 = struct.Struct("!H")
# IPv4 header (RFC 791 §3.1) followed by the TCP header's first 16 bytes and the
# rewritten TCP checksum: one pack per packet.
_IP4_TCP = struct.Struct("!BBHHHBBH4s4s16sH")
# IPv6 header (RFC 8200 §3), same idea.
_IP6_TCP = struct.Struct("!IHBB16s16s16sH")
_MAX_ROUTES = 1024


class PacketError(Exception):
    """A packet that is not a whole TCP segment over IPv4/IPv6; ``reason`` is a
    short counter key."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _fold(s: int) -> int:
    s = (s & 0xFFFF) + (s >> 16)
    return (s & 0xFFFF) + (s >> 16)


class _Route:
    """Sums that depend only on the address pair, computed once per pair."""

    __slots__ = ("dst", "ip4_sum", "pseudo", "src", "src_addr")

    def __init__(self, src: bytes, dst: bytes) -> None:
        self.src = src
        self.dst = dst
        self.src_addr = ipaddress.ip_address(src).compressed
        addr_sum = ones_complement_sum(src + dst)
        # Pseudo-header without the TCP length (added per packet): addresses,
        # zero, protocol (RFC 9293 §3.1; IPv6: RFC 8200 §8.1, same sum).
        self.pseudo = addr_sum + IPPROTO_TCP
        # IPv4 header words but total length, identification and checksum.
        self.ip4_sum = addr_sum + 0x4500 + _IP4_DF + ((TTL << 8) | IPPROTO_TCP)


def tcp_checksum_ok(packet: bytes) -> bool:
    """True if ``packet`` (IPv4 or IPv6 carrying TCP) has a valid RFC 9293 checksum."""
    if packet[0] >> 4 == 4:
        ihl = (packet[0] & 15) * 4
        total = _U16.unpack_from(packet, 2)[0]
        src, dst, seg = packet[12:16], packet[16:20], packet[ihl:total]
    else:
        plen = _U16.unpack_from(packet, 4)[0]
        src, dst, seg = packet[8:24], packet[24:40], packet[40 : 40 + plen]
    s = ones_complement_sum(src + dst) + IPPROTO_TCP + len(seg) + ones_complement_sum(seg)
    return _fold(s) == 0xFFFF


class PacketCodec:
    """Decode IP packets into rudp segments and encode rudp segments as IP packets."""

    __slots__ = ("_ident", "_routes")

    def __init__(self) -> None:
        self._routes: dict[tuple[bytes, bytes], _Route] = {}
        self._ident = 0

    def _route(self, src: bytes, dst: bytes) -> _Route:
        route = self._routes.get((src, dst))
        if route is None:
            if len(self._routes) >= _MAX_ROUTES:
                self._routes.clear()
            route = self._routes[src, dst] = _Route(src, dst)
        return route

    def decode(self, packet: bytes) -> tuple[str, bytes, bytes, bytes]:
        """``(source address text, source, destination, segment)`` of an IP packet;
        the addresses packed (4 or 16 bytes), the segment with rudp's checksum.
        Raises :class:`PacketError` for anything else."""
        n = len(packet)
        if n < _IP4_LEN:
            raise PacketError("short")
        version = packet[0] >> 4
        if version == 4:
            ihl = (packet[0] & 15) * 4
            if ihl < _IP4_LEN or ihl > n:
                raise PacketError("ip_header")
            total = _U16.unpack_from(packet, 2)[0]
            if total < ihl or total > n:
                raise PacketError("ip_length")
            if _U16.unpack_from(packet, 6)[0] & 0x3FFF:  # MF or a fragment offset
                raise PacketError("fragment")
            if packet[9] != IPPROTO_TCP:
                raise PacketError("not_tcp")
            src = packet[12:16]
            dst = packet[16:20]
            start, end = ihl, total
        elif version == 6:
            if n < _IP6_LEN:
                raise PacketError("short")
            if packet[6] != IPPROTO_TCP:
                raise PacketError("not_tcp")  # ICMPv6, or an extension header
            end = _IP6_LEN + _U16.unpack_from(packet, 4)[0]
            if end > n:
                raise PacketError("ip_length")
            src = packet[8:24]
            dst = packet[24:40]
            start = _IP6_LEN
        else:
            raise PacketError("ip_version")
        size = end - start
        if size < 20:
            raise PacketError("tcp_short")
        route = self._route(src, dst)
        csum = _fold((packet[start + 16] << 8 | packet[start + 17]) + route.pseudo + size)
        seg = packet[start : start + 16] + _U16.pack(csum) + packet[start + 18 : end]
        return route.src_addr, src, dst, seg

    def encode(self, segment: bytes, src: bytes, dst: bytes) -> bytes:
        """The IP packet (IPv4 for 4-byte addresses, else IPv6) carrying ``segment``
        (a rudp segment) from ``src`` to ``dst`` with its RFC 9293 checksum."""
        n = len(segment)
        if n < 20:
            raise PacketError("tcp_short")
        route = self._route(src, dst)
        c = segment[16] << 8 | segment[17]
        if c:
            s = _fold((c ^ 0xFFFF) + route.pseudo + n)
        else:  # rudp's "not computed": compute it (the field is zero)
            s = _fold(ones_complement_sum(segment) + route.pseudo + n)
        tcp_csum = ~s & 0xFFFF
        if len(src) == 4:
            size = n + _IP4_LEN
            if size > 0xFFFF:
                raise PacketError("too_long")
            ident = self._ident = (self._ident + 1) & 0xFFFF
            h = ~_fold(route.ip4_sum + size + ident) & 0xFFFF
            head = _IP4_TCP.pack(
                0x45,
                0,
                size,
                ident,
                _IP4_DF,
                TTL,
                IPPROTO_TCP,
                h,
                src,
                dst,
                segment[:16],
                tcp_csum,
            )
        else:
            if n > 0xFFFF:
                raise PacketError("too_long")
            head = _IP6_TCP.pack(0x60000000, n, IPPROTO_TCP, TTL, src, dst, segment[:16], tcp_csum)
        return head + segment[18:]
