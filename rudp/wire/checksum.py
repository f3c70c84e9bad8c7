"""The rudp segment checksum.

Rule (see docs/wire.md): the 16-bit one's-complement of the one's-complement sum
(RFC 1071) of every 16-bit word of the TCP segment -- header, options and data,
with the checksum field taken as zero and an odd final byte padded with a zero
byte. Unlike RFC 9293 §3.1 there is *no* IP pseudo-header: a NAT rewrites the
addresses and ports a UDP receiver sees, so covering them would make every
segment through a NAT fail. The segment's own TCP ports are covered.

Two implementations return identical values for every input:

* ``rudp._accel`` (C, ``rudp/_accel.c``), used when it was built and imports;
* the pure-Python ``py_*`` functions below, used otherwise, or always when the
  environment variable ``RUDP_PURE_PYTHON`` is set to a non-empty value other
  than ``0`` (read once, at import).

:data:`IMPLEMENTATION` says which one the unprefixed names are bound to.

Pure-Python speed: the one's-complement sum of 16-bit words is congruent to the
big-endian integer value of the bytes modulo 0xFFFF (because 2**16 == 1 mod
0xFFFF), so the whole sum is one ``int.from_bytes`` and one ``%`` executed in C.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Literal

__all__ = [
    "IMPLEMENTATION",
    "checksum",
    "checksum2",
    "ones_complement_sum",
    "py_checksum",
    "py_checksum2",
    "py_ones_complement_sum",
    "py_verify",
    "verify",
]

_Bytes = bytes | bytearray | memoryview


def py_ones_complement_sum(data: _Bytes) -> int:
    """Return the RFC 1071 one's-complement sum of ``data`` (0..0xFFFF).

    0 for an all-zero (or empty) input, 1..0xFFFF for any other input.
    """
    value = int.from_bytes(data, "big")
    # (A memoryview's len() counts items, not bytes, e.g. after .cast("H").)
    if (data.nbytes if type(data) is memoryview else len(data)) & 1:
        value <<= 8  # pad the odd byte with a zero byte
    if value == 0:
        return 0
    # One's-complement arithmetic has two zeros; a non-zero input sums to 0xFFFF.
    return value % 0xFFFF or 0xFFFF


def py_checksum(data: _Bytes) -> int:
    """The checksum value to store for ``data`` (whose checksum field is zero)."""
    return ~py_ones_complement_sum(data) & 0xFFFF


def py_checksum2(head: _Bytes, payload: _Bytes) -> int:
    """``py_checksum(head + payload)`` without building the concatenation.

    Modulo 0xFFFF a byte's weight is 256 or 1 depending only on the parity of its
    distance from the (padded) end, so each part is shifted by 0 or 8 bits: the
    head when its length is odd, the payload when the total length is odd.
    """
    n_head = head.nbytes if type(head) is memoryview else len(head)
    n_total = n_head + (payload.nbytes if type(payload) is memoryview else len(payload))
    value = (int.from_bytes(head, "big") << (n_head & 1) * 8) + (
        int.from_bytes(payload, "big") << (n_total & 1) * 8
    )
    if value == 0:
        return 0xFFFF
    return ~(value % 0xFFFF or 0xFFFF) & 0xFFFF


def py_verify(data: _Bytes) -> bool:
    """True if ``data`` (checksum field included) carries a valid checksum."""
    return py_ones_complement_sum(data) == 0xFFFF


ones_complement_sum: Callable[[_Bytes], int]
checksum: Callable[[_Bytes], int]
checksum2: Callable[[_Bytes, _Bytes], int]
verify: Callable[[_Bytes], bool]
#: ``"c"`` when the functions above come from ``rudp._accel``, else ``"python"``.
IMPLEMENTATION: Literal["c", "python"]

try:
    if os.environ.get("RUDP_PURE_PYTHON", "") not in ("", "0"):
        raise ImportError("RUDP_PURE_PYTHON is set")
    from rudp._accel import checksum, checksum2, ones_complement_sum, verify
except ImportError:  # not built (no compiler at install time), or forced off
    IMPLEMENTATION = "python"
    ones_complement_sum = py_ones_complement_sum
    checksum = py_checksum
    checksum2 = py_checksum2
    verify = py_verify
else:
    IMPLEMENTATION = "c"
