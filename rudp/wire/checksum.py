"""The rudp segment checksum.

Rule (see docs/wire.md): the 16-bit one's-complement of the one's-complement sum
(RFC 1071) of every 16-bit word of the TCP segment -- header, options and data,
with the checksum field taken as zero and an odd final byte padded with a zero
byte. Unlike RFC 9293 §3.1 there is *no* IP pseudo-header: a NAT rewrites the
addresses and ports a UDP receiver sees, so covering them would make every
segment through a NAT fail. The segment's own TCP ports are covered.

Speed: the one's-complement sum of 16-bit words is congruent to the big-endian
integer value of the bytes modulo 0xFFFF (because 2**16 == 1 mod 0xFFFF), so the
whole sum is one ``int.from_bytes`` and one ``%`` executed in C.
"""

from __future__ import annotations


def ones_complement_sum(data: bytes | bytearray | memoryview) -> int:
    """Return the RFC 1071 one's-complement sum of ``data`` (0..0xFFFF)."""
    value = int.from_bytes(data, "big")
    if len(data) & 1:
        value <<= 8  # pad the odd byte with a zero byte
    if value == 0:
        return 0
    s = value % 0xFFFF
    # One's-complement arithmetic has two zeros; a non-zero input sums to 0xFFFF.
    return s or 0xFFFF


def checksum(data: bytes | bytearray | memoryview) -> int:
    """The checksum value to store for ``data`` (whose checksum field is zero)."""
    return ~ones_complement_sum(data) & 0xFFFF


def verify(data: bytes | bytearray | memoryview) -> bool:
    """True if ``data`` (checksum field included) carries a valid checksum."""
    return ones_complement_sum(data) == 0xFFFF
