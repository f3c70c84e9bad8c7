"""Initial sequence numbers per RFC 6528.

ISN = M + F(localip, localport, remoteip, remoteport, secretkey), where M is a
4-microsecond clock and F a keyed hash. The key is random per process, so ISNs
are unpredictable to off-path attackers yet increase over time for one identity
(which also lets TIME-WAIT accept a new SYN, RFC 6191).
"""

from __future__ import annotations

import hashlib
import os

_KEY = os.urandom(16)


def isn_rfc6528(identity: tuple[object, ...], now: float, key: bytes = _KEY) -> int:
    """The ISN for ``identity`` (peer address and ports) at time ``now`` (seconds)."""
    digest = hashlib.blake2s(repr(identity).encode(), key=key, digest_size=4).digest()
    m = int(now * 250_000)  # RFC 6528 §3: M is a timer ticking every 4 µs
    return (m + int.from_bytes(digest, "big")) & 0xFFFFFFFF
