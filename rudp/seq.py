"""Sequence-number arithmetic modulo 2**32 (RFC 9293 §3.4).

Sequence numbers wrap, so "less than" means "less than within half the sequence
space" (RFC 1982 serial-number arithmetic). Every comparison of sequence numbers
in rudp goes through these helpers.
"""

from __future__ import annotations

from typing import Final

SEQ_MOD: Final = 0x1_0000_0000  # 2**32
SEQ_MASK: Final = 0xFFFF_FFFF
_HALF: Final = 0x8000_0000  # 2**31


def seq_add(a: int, n: int) -> int:
    """Return ``a + n`` modulo 2**32."""
    return (a + n) & SEQ_MASK


def seq_sub(a: int, b: int) -> int:
    """Signed distance ``a - b`` in (-2**31, 2**31]."""
    d = (a - b) & SEQ_MASK
    return d - SEQ_MOD if d > _HALF else d


def seq_lt(a: int, b: int) -> bool:
    """``a < b`` in sequence space."""
    return 0 < ((b - a) & SEQ_MASK) < _HALF


def seq_le(a: int, b: int) -> bool:
    """``a <= b`` in sequence space."""
    return ((b - a) & SEQ_MASK) < _HALF


def seq_gt(a: int, b: int) -> bool:
    """``a > b`` in sequence space."""
    return 0 < ((a - b) & SEQ_MASK) < _HALF


def seq_ge(a: int, b: int) -> bool:
    """``a >= b`` in sequence space."""
    return ((a - b) & SEQ_MASK) < _HALF


def seq_in(x: int, lo: int, hi: int) -> bool:
    """``lo <= x < hi`` in sequence space (a half-open window)."""
    return ((x - lo) & SEQ_MASK) < ((hi - lo) & SEQ_MASK)
