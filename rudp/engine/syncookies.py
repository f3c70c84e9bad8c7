"""SYN cookies (RFC 4987 §3.6): answer a SYN without keeping any state.

When a listener's half-open queue is full (``Config.syncookies``), the endpoint
answers a SYN with a SYN,ACK whose initial sequence number *is* the state: a keyed
MAC of the connection's identity, the peer's ISN, a coarse clock and the options,
plus the few bits needed to recreate the connection. The ACK that completes the
handshake acknowledges ISN + 1; if the MAC in it checks out, the connection is
created there and then, already established.

The 32-bit cookie (our ISN), most significant bit first::

    | 31 ........................ 3 |   2    | 1  0 |
    |   MAC (29 bits)               | period | MSS  |
    |                               | parity | index|

* ``MSS index``: the largest entry of :data:`MSS_TABLE` not above the peer's MSS
  (as Linux's ``msstab``); the connection sends segments of that size.
* ``period parity``: the low bit of the 64-second counter the cookie was made in,
  so a check computes one MAC, not one per candidate period.
* ``MAC``: BLAKE2s, keyed with the period's key, over the identity (peer UDP
  address, both TCP ports), the peer's ISN, the full period counter, the MSS index
  and the option bits below. Each period's key is derived from a random secret and
  the counter, so the key changes every :data:`PERIOD` seconds; a cookie checks
  against the key of its own period and is accepted for at most
  :data:`MAX_AGE` periods (64 to 128 s), then expires.

Window scale and SACK-permitted do not fit the ISN. As Linux does, when the SYN
carries timestamps they ride in the low :data:`TS_BITS` bits of the SYN,ACK's TSval
(which the peer echoes in TSecr)::

    | 31 ........... 6 |  5  |  4   | 3 2 1 0 |
    |  our clock (ms)  | ECN | SACK | wscale  |

``wscale`` is the peer's shift, 15 when the SYN offered none; the ECN bit is never
set (rudp does not negotiate ECN). The option bits are also inside the MAC, so they
cannot be altered. Without timestamps a cookie connection has neither window
scaling nor SACK (the SYN,ACK does not offer them), as with Linux.
"""

from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass
from typing import Any

from ..seq import SEQ_MASK

#: MSS values a cookie can encode (2 bits): the RFC 9293 default; what fits IPv6's
#: 1280-byte minimum MTU under IPv6 + UDP + TCP headers (1280 - 40 - 8 - 20); rudp's
#: default; a 9000-byte jumbo frame's (9000 - 40 - 8 - 20 - 32 bytes of options).
MSS_TABLE = (536, 1212, 1400, 8900)
#: Length of one cookie period, seconds (Linux counts 60 s; a power of two here).
PERIOD = 64.0
#: A cookie is valid in the period it was made and the next one (Linux's
#: ``MAX_SYNCOOKIE_AGE``): 64 to 128 seconds.
MAX_AGE = 2
#: Low bits of the SYN,ACK's TSval that carry the options (Linux ``TSBITS``).
TS_BITS = 6
TS_MASK = (1 << TS_BITS) - 1
#: ``wscale`` field value: the SYN offered no window scale option.
TS_NO_WSCALE = 0x0F
TS_SACK = 0x10
TS_ECN = 0x20
#: Option byte inside the MAC: set when the options came from the timestamp.
_HAS_TS = 0x80
_MAC_SHIFT = 3
_MAC_MASK = SEQ_MASK >> _MAC_SHIFT
_PARITY = 0x04
_MSS_BITS = 0x03
_TAIL = struct.Struct("!IqBB")
_PORTS = struct.Struct("!HH")


@dataclass(frozen=True, slots=True)
class CookieOptions:
    """What a valid cookie says about the SYN it answered."""

    #: The peer's MSS as clamped to :data:`MSS_TABLE`.
    mss: int
    #: The peer's window scale shift, or None (not offered / not recoverable).
    wscale: int | None
    #: The peer offered SACK (RFC 2018).
    sack_perm: bool
    #: Timestamps are in use (the ACK carried them, echoing our cookie TSval).
    timestamps: bool


def mss_index(mss: int) -> int:
    """Index of the largest :data:`MSS_TABLE` entry not above ``mss`` (0 if none is)."""
    i = len(MSS_TABLE) - 1
    while i and MSS_TABLE[i] > mss:
        i -= 1
    return i


def ts_options(wscale: int | None, sack_perm: bool) -> int:
    """The option bits carried in the cookie TSval."""
    bits = TS_NO_WSCALE if wscale is None else min(wscale, 14)
    return bits | (TS_SACK if sack_perm else 0)


def cookie_tsval(tsval: int, options: int) -> int:
    """Our clock ``tsval`` with its low bits replaced by ``options``, never ahead of
    the clock (RFC 7323 §5.4: our timestamps stay monotonic), as Linux's
    ``cookie_init_timestamp`` does."""
    ts = (tsval & ~TS_MASK & SEQ_MASK) | options
    if (ts - tsval) & SEQ_MASK and ((ts - tsval) & SEQ_MASK) < 0x80000000:
        ts = (ts - (1 << TS_BITS)) & SEQ_MASK
    return ts


def identity(addr: tuple[Any, ...], local_port: int, remote_port: int) -> bytes:
    """The bytes that name a connection for the MAC: the peer's UDP host and port
    (not an IPv6 flow label or scope) and both TCP ports."""
    return f"{addr[0]}|{addr[1]}|".encode() + _PORTS.pack(local_port, remote_port)


class SynCookies:
    """The secret and the arithmetic of SYN cookies for one endpoint.

    ``secret``: 32 bytes (random per endpoint by default; tests pass a fixed one).
    """

    __slots__ = ("_keys", "_secret")

    def __init__(self, secret: bytes | None = None) -> None:
        self._secret = secret if secret is not None else os.urandom(32)
        if not 16 <= len(self._secret) <= 32:
            raise ValueError("the SYN cookie secret must be 16 to 32 bytes")
        #: Period counter -> a keyed BLAKE2s ready to copy (the last two periods).
        self._keys: dict[int, Any] = {}

    @staticmethod
    def period(now: float) -> int:
        """The coarse clock: which :data:`PERIOD` ``now`` falls in."""
        return int(now // PERIOD)

    def _mac(self, count: int, ident: bytes, peer_isn: int, mss_i: int, opts: int) -> int:
        base = self._keys.get(count)
        if base is None:
            # The period's own key, derived from the secret and the counter: the
            # key in use changes every period; older ones are forgotten.
            key = hashlib.blake2s(count.to_bytes(8, "big", signed=True), key=self._secret).digest()
            base = hashlib.blake2s(key=key, digest_size=4)
            if len(self._keys) >= 4:
                for old in sorted(self._keys)[:-2]:
                    del self._keys[old]
            self._keys[count] = base
        h = base.copy()
        h.update(ident)
        h.update(_TAIL.pack(peer_isn, count, mss_i, opts))
        return int.from_bytes(h.digest(), "big") & _MAC_MASK

    def make(self, ident: bytes, peer_isn: int, mss: int, opts: int | None, now: float) -> int:
        """The cookie (our ISN) answering a SYN from ``ident`` with ISN ``peer_isn``
        and MSS ``mss``; ``opts`` the option bits put in the TSval, None when the
        SYN had no timestamps."""
        count = self.period(now)
        mss_i = mss_index(mss)
        obits = 0 if opts is None else (opts & TS_MASK) | _HAS_TS
        mac = self._mac(count, ident, peer_isn, mss_i, obits)
        return (mac << _MAC_SHIFT) | (_PARITY if count & 1 else 0) | mss_i

    def check(
        self, ident: bytes, peer_isn: int, cookie: int, tsecr: int | None, now: float
    ) -> CookieOptions | None:
        """Validate ``cookie`` (the ACK's SEG.ACK - 1) for ``ident`` and the peer's ISN
        (SEG.SEQ - 1); ``tsecr`` the ACK's TSecr if it carries timestamps. Returns the
        options to recreate the connection with, or None (forged, altered or expired)."""
        count = self.period(now)
        if bool(cookie & _PARITY) != bool(count & 1):
            count -= 1  # made in the previous period (older ones never match)
        mss_i = cookie & _MSS_BITS
        obits = 0 if tsecr is None else (tsecr & TS_MASK) | _HAS_TS
        if self._mac(count, ident, peer_isn, mss_i, obits) != cookie >> _MAC_SHIFT:
            return None
        if tsecr is None:
            return CookieOptions(MSS_TABLE[mss_i], None, False, False)
        ws = tsecr & TS_NO_WSCALE
        return CookieOptions(
            MSS_TABLE[mss_i], None if ws == TS_NO_WSCALE else ws, bool(tsecr & TS_SACK), True
        )
