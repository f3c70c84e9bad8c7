"""Initial sequence numbers per RFC 6528.

ISN = M + F(localip, localport, remoteip, remoteport, secretkey), where M is a
4-microsecond clock and F a keyed hash: SipHash-2-4 as in Linux (the C
accelerator's), else BLAKE2s. The key is random per process, so ISNs
are unpredictable to off-path attackers yet increase over time for one identity
(which also lets TIME-WAIT accept a new SYN, RFC 6191).
"""

from __future__ import annotations

import hashlib
import marshal
import os
from collections.abc import Callable

from ..wire.checksum import IMPLEMENTATION

_KEY = os.urandom(16)

#: SipHash-2-4 from the C accelerator (Linux's F), or None: BLAKE2s below.
_siphash: Callable[[bytes, bytes], int] | None = None
if IMPLEMENTATION == "c":
    from .._accel import siphash24 as _siphash


def isn_rfc6528(identity: tuple[object, ...], now: float, key: bytes = _KEY) -> int:
    """The ISN for ``identity`` (peer address and ports) at time ``now`` (seconds)."""
    # The identity's bytes: marshal format 2 has no back-references, so equal
    # identities always give equal bytes (format 3+ marks shared objects).
    try:
        data = marshal.dumps(identity, 2)  # type: ignore[arg-type]  # any tuple; else below
    except ValueError:  # an address object marshal does not know (a host's own type)
        data = repr(identity).encode()
    if _siphash is not None and len(key) == 16:
        f = _siphash(key, data)
    else:
        f = int.from_bytes(hashlib.blake2s(data, key=key, digest_size=4).digest(), "big")
    m = int(now * 250_000)  # RFC 6528 §3: M is a timer ticking every 4 µs
    return (m + f) & 0xFFFFFFFF
