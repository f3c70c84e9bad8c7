"""The TCP Authentication Option (TCP-AO, RFC 5925) for rudp segments.

With pre-shared master keys, every segment of a connection carries a MAC in a TCP
option of kind 29 laid out as RFC 5925 §2.2 (KeyID, RNextKeyID, MAC). Traffic keys
are derived per connection from a master key and both initial sequence numbers with
the RFC 5926 KDF (§3.1); the MAC covers the segment as RFC 5925 §5.1 says, with the
IP addresses taken as zero (rudp carries no IP header, and a NAT rewrites the
addresses a UDP receiver sees; RFC 6978's NAT extension zeroes a NATed side's
address for TCP-AO over IP). What exactly is MACed and why: docs/authentication.md.

This module is self-contained (standard library and :mod:`rudp.wire` only). The
engine uses three things:

* :class:`MasterKey` (an RFC 5925 §3.1 Master Key Tuple) and :class:`KeyChain` (the
  set of MKTs an endpoint holds, with the preferred send key and the RNextKeyID to
  advertise; mutable, for key rollover on live connections);
* :meth:`AuthSession.for_connection` per connection;
* on the send path :meth:`AuthSession.placeholder` (the option to append, MAC
  zeroed) and :meth:`AuthSession.sign` (fills in the MAC, then the rudp checksum),
  on the receive path :meth:`AuthSession.check` (before any state change).

Algorithms (RFC 5926 names; the MAC is always 96 bits, so the option is 16 bytes):

* ``"hmac-sha256-96"`` (default): KDF = HMAC-SHA-256 in the RFC 5926 §3.1.1
  construction (Output_Length 256), MAC = HMAC-SHA-256 truncated to 96 bits. This is
  what Linux computes for ``hmac(sha256)`` with its default 12-byte MAC.
* ``"hmac-sha1-96"``: KDF_HMAC_SHA1 and HMAC-SHA-1-96 (RFC 5926 §3.1.1.1, §3.2.1),
  the algorithm RFC 5926 makes mandatory.
* ``"aes-128-cmac-96"``: KDF_AES_128_CMAC and AES-128-CMAC-96 (RFC 5926 §3.1.1.2,
  §3.2.2), available only when the optional ``cryptography`` package imports (the
  standard library has no AES).
"""

from __future__ import annotations

import hashlib
import hmac
import importlib
import struct
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from rudp.config import register_auth_keys_normaliser
from rudp.wire.checksum import checksum
from rudp.wire.segment import ACK, SYN, Segment

__all__ = [
    "AO_KIND",
    "DEFAULT_ALGORITHM",
    "DROP_REASONS",
    "MAC_LEN",
    "OPTION_LEN",
    "AuthConfigError",
    "AuthSession",
    "AuthStateError",
    "KeyChain",
    "MasterKey",
    "as_key_chain",
    "available_algorithms",
    "compute_mac",
    "find_option",
    "kdf",
    "kdf_context",
    "pseudo_header",
]

#: TCP option kind of TCP-AO (IANA; RFC 5925 §2.2).
AO_KIND = 29
#: Every algorithm here truncates its MAC to 96 bits (RFC 5926 §3.2).
MAC_LEN = 12
#: Kind, Length, KeyID, RNextKeyID, MAC: 16 bytes, a multiple of 4 (no padding).
OPTION_LEN = 4 + MAC_LEN
DEFAULT_ALGORITHM = "hmac-sha256-96"
#: Longest master key accepted (as Linux, TCP_AO_MAXKEYLEN).
MAX_KEY_LEN = 80

#: The reasons :meth:`AuthSession.check` gives for a drop (counter keys).
DROP_REASONS = (
    "auth_missing",  # no TCP-AO option (RFC 5925 §7.3: required once an MKT matches)
    "auth_malformed",  # option shorter than its 4-byte header or past the header
    "auth_unknown_key",  # KeyID matches no MKT's RecvID (RFC 5925 §7.5)
    "auth_bad_length",  # option length is not 4 + the MKT's MAC length
    "auth_bad_mac",  # MAC mismatch
)

_Buf = bytes | bytearray | memoryview
_MASK32 = 0xFFFFFFFF
_KDF_LABEL = b"TCP-AO"
#: NOP, NOP, kind 8, length 10: the timestamps layout (RFC 7323 Appendix A).
_TS_PREFIX = b"\x01\x01\x08\x0a"
_IPPROTO_TCP = 6
#: SNE, then RFC 5925 §5.1's IPv4 pseudo-header (source and destination
#: addresses, a zero byte, protocol 6, TCP length).
_PSEUDO4 = struct.Struct("!I8sxBH")
#: SNE, then the IPv6 pseudo-header (RFC 8200 §8.1: addresses, 32-bit upper-layer
#: length, three zero bytes, next header 6).
_PSEUDO6 = struct.Struct("!I32sI3xB")
#: Source address, destination address, source port, destination port, source
#: ISN, destination ISN (RFC 5925 §5.2), for 4- and 16-byte addresses.
_CONTEXT4 = struct.Struct("!4s4sHHII")
_CONTEXT6 = struct.Struct("!16s16sHHII")
_ZERO4 = bytes(4)
_ZERO_MAC = bytes(MAC_LEN)


class AuthConfigError(ValueError):
    """A master key or key chain is invalid (API misuse)."""


class AuthStateError(RuntimeError):
    """The session cannot sign this segment yet (API misuse by the caller)."""


# ---------------------------------------------------------------------------
# Algorithms: KDF (RFC 5926 §3.1) and MAC (RFC 5926 §3.2)


class _Mac(Protocol):
    """A MAC keyed with one traffic key, ready for many messages."""

    def tag(self, prefix: bytes, head: _Buf, payload: _Buf) -> bytes:
        """The truncated MAC of ``prefix + head + payload``."""
        ...


_TRANS_5C = bytes(x ^ 0x5C for x in range(256))
_TRANS_36 = bytes(x ^ 0x36 for x in range(256))


class _HmacKey:
    """HMAC (RFC 2104) with the inner and outer hash states precomputed.

    Equal to ``hmac.new(key, msg, hash).digest()`` (tested); copying two ``hashlib``
    objects per message costs about 1.5 µs for a 1400-byte segment against 2.1 µs for
    ``hmac.HMAC.copy()``, whose copy is Python-level on every supported version.
    """

    __slots__ = ("_inner", "_n", "_outer")

    def __init__(self, new: Callable[..., Any], key: bytes, n: int) -> None:
        block = new().block_size
        if len(key) > block:
            key = new(key).digest()
        key = key.ljust(block, b"\0")
        self._inner = new(key.translate(_TRANS_36))
        self._outer = new(key.translate(_TRANS_5C))
        self._n = n

    def tag(self, prefix: bytes, head: _Buf, payload: _Buf) -> bytes:
        inner = self._inner.copy()
        inner.update(prefix)
        inner.update(head)
        if payload:
            inner.update(payload)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()[: self._n]  # type: ignore[no-any-return]


def _load_cmac() -> tuple[Any, Any]:
    """``(CMAC, AES)`` from the optional ``cryptography`` package, or ImportError."""
    cmac = importlib.import_module("cryptography.hazmat.primitives.cmac")
    ciphers = importlib.import_module("cryptography.hazmat.primitives.ciphers.algorithms")
    return cmac.CMAC, ciphers.AES


def _cmac_available() -> bool:
    try:
        _load_cmac()
    except ImportError:
        return False
    return True


def _aes_cmac(key: bytes, msg: bytes) -> bytes:
    """AES-CMAC (RFC 4493) of ``msg`` under a 16-byte ``key``."""
    cmac_cls, aes = _load_cmac()
    c = cmac_cls(aes(key))
    c.update(msg)
    return c.finalize()  # type: ignore[no-any-return]


class _CmacKey:
    __slots__ = ("_c", "_n")

    def __init__(self, key: bytes, n: int) -> None:
        cmac_cls, aes = _load_cmac()
        self._c = cmac_cls(aes(key))
        self._n = n

    def tag(self, prefix: bytes, head: _Buf, payload: _Buf) -> bytes:
        c = self._c.copy()
        c.update(prefix)
        c.update(head)
        if payload:
            c.update(payload)
        return c.finalize()[: self._n]  # type: ignore[no-any-return]


def _kdf_input(context: bytes, bits: int) -> bytes:
    """i || Label || Context || Output_Length with i = 1 (RFC 5926 §3.1.1): every
    traffic key here is exactly one PRF output long, so one iteration."""
    return b"\x01" + _KDF_LABEL + context + bits.to_bytes(2, "big")


def _kdf_hmac_sha1(master: bytes, context: bytes) -> bytes:
    # KDF_HMAC_SHA1, RFC 5926 §3.1.1.1: Output_Length 160.
    return hmac.digest(master, _kdf_input(context, 160), "sha1")


def _kdf_hmac_sha256(master: bytes, context: bytes) -> bytes:
    # The same construction with HMAC-SHA-256 as PRF and Output_Length 256 (as Linux
    # derives traffic keys for "hmac(sha256)": tcp_v4_ao_calc_key()).
    return hmac.digest(master, _kdf_input(context, 256), "sha256")


def _kdf_aes_128_cmac(master: bytes, context: bytes) -> bytes:
    # KDF_AES_128_CMAC, RFC 5926 §3.1.1.2: a master key that is not 128 bits long is
    # first reduced to one with AES-CMAC under the zero key (RFC 4615 §3), then
    # PRF = AES-CMAC with Output_Length 128.
    if len(master) != 16:
        master = _aes_cmac(bytes(16), master)
    return _aes_cmac(master, _kdf_input(context, 128))


class _Algorithm:
    __slots__ = ("kdf", "mac_key", "name", "needs")

    def __init__(
        self,
        name: str,
        kdf: Callable[[bytes, bytes], bytes],
        mac_key: Callable[[bytes], _Mac],
        needs: str | None = None,
    ) -> None:
        self.name = name
        self.kdf = kdf
        self.mac_key = mac_key
        self.needs = needs


_ALGORITHMS: dict[str, _Algorithm] = {
    "hmac-sha256-96": _Algorithm(
        "hmac-sha256-96", _kdf_hmac_sha256, lambda k: _HmacKey(hashlib.sha256, k, MAC_LEN)
    ),
    "hmac-sha1-96": _Algorithm(
        "hmac-sha1-96", _kdf_hmac_sha1, lambda k: _HmacKey(hashlib.sha1, k, MAC_LEN)
    ),
    "aes-128-cmac-96": _Algorithm(
        "aes-128-cmac-96",
        _kdf_aes_128_cmac,
        lambda k: _CmacKey(k, MAC_LEN),
        needs="cryptography",
    ),
}


def available_algorithms() -> tuple[str, ...]:
    """Names of the algorithms usable here (``aes-128-cmac-96`` needs ``cryptography``)."""
    return tuple(
        name for name, alg in _ALGORITHMS.items() if alg.needs is None or _cmac_available()
    )


def _algorithm(name: str) -> _Algorithm:
    try:
        alg = _ALGORITHMS[name]
    except KeyError:
        raise AuthConfigError(
            f"unknown TCP-AO algorithm {name!r} (known: {', '.join(_ALGORITHMS)})"
        ) from None
    if alg.needs is not None and not _cmac_available():
        raise AuthConfigError(f"TCP-AO algorithm {name!r} needs the {alg.needs!r} package")
    return alg


# ---------------------------------------------------------------------------
# The RFC 5925 building blocks, address-explicit (used by the test vectors; the
# session below computes the same with zero addresses on its fast path).


def kdf_context(
    src_addr: bytes, dst_addr: bytes, sport: int, dport: int, src_isn: int, dst_isn: int
) -> bytes:
    """The KDF Context of RFC 5925 §5.2 for a segment from ``src`` to ``dst``.

    ``dst_isn`` is 0 for the SYN traffic keys. Addresses are 4 (IPv4) or 16 bytes
    (IPv6); rudp uses ``bytes(4)`` for both (docs/authentication.md).
    """
    if len(src_addr) != len(dst_addr) or len(src_addr) not in (4, 16):
        raise AuthConfigError("addresses must be both 4 or both 16 bytes")
    ctx = _CONTEXT4 if len(src_addr) == 4 else _CONTEXT6
    return ctx.pack(src_addr, dst_addr, sport, dport, src_isn & _MASK32, dst_isn & _MASK32)


def kdf(algorithm: str, master_key: bytes, context: bytes) -> bytes:
    """The traffic key for ``context`` (RFC 5926 §3.1)."""
    return _algorithm(algorithm).kdf(bytes(master_key), context)


def pseudo_header(src_addr: bytes, dst_addr: bytes, length: int) -> bytes:
    """The IP pseudo-header of RFC 5925 §5.1 item 2 (IPv4 or IPv6 by address size)."""
    if len(src_addr) != len(dst_addr) or len(src_addr) not in (4, 16):
        raise AuthConfigError("addresses must be both 4 or both 16 bytes")
    if len(src_addr) == 4:
        return _PSEUDO4.pack(0, src_addr + dst_addr, _IPPROTO_TCP, length)[4:]
    return _PSEUDO6.pack(0, src_addr + dst_addr, length, _IPPROTO_TCP)[4:]


def find_option(data: _Buf, hlen: int | None = None) -> int:
    """Offset of the first TCP-AO option in the segment ``data``, -1 if it has none,
    -2 if the options are malformed before one is found (or it runs past the header).

    Fast paths for the layouts rudp sends: TCP-AO first, or right after NOP NOP TS.
    """
    if hlen is None:
        hlen = (data[12] >> 4) * 4 if len(data) >= 20 else 0
    if hlen > 20 and data[20] == AO_KIND:
        i = 20
    elif hlen > 32 and data[32] == AO_KIND and data[20:24] == _TS_PREFIX:
        i = 32
    else:
        i = 20
        while i < hlen:
            kind = data[i]
            if kind == AO_KIND:
                break
            if kind == 0:  # EOL
                return -1
            if kind == 1:  # NOP
                i += 1
                continue
            if i + 1 >= hlen or data[i + 1] < 2:
                return -2
            i += data[i + 1]
        else:
            return -1 if i == hlen else -2
    if i + 1 >= hlen or data[i + 1] < 4 or i + data[i + 1] > hlen:
        return -2
    return i


def _mac_head(data: _Buf, hlen: int, ao_off: int, ao_len: int, include_options: bool) -> bytearray:
    """RFC 5925 §5.1 item 3: the TCP header with the checksum and the MAC zeroed,
    with all options or (the TCP option flag clear) only the TCP-AO option. The data
    offset is left as sent in both cases (RFC 9235 §4.2's vectors)."""
    if include_options:
        head = bytearray(data[:hlen])
        head[ao_off + 4 : ao_off + ao_len] = bytes(ao_len - 4)
    else:
        head = bytearray(data[:20])
        head += data[ao_off : ao_off + 4]
        head += bytes(ao_len - 4)
    head[16] = head[17] = 0
    return head


def compute_mac(
    algorithm: str,
    traffic_key: bytes,
    segment: _Buf,
    *,
    pseudo: bytes,
    sne: int = 0,
    include_options: bool = True,
) -> bytes:
    """The TCP-AO MAC of ``segment`` (a TCP segment holding a TCP-AO option) under
    ``traffic_key``: RFC 5925 §5.1 with ``pseudo`` as the IP pseudo-header (see
    :func:`pseudo_header`). The option's own MAC field and the checksum are ignored.
    """
    hlen = (segment[12] >> 4) * 4
    off = find_option(segment, hlen)
    if off < 0:
        raise ValueError("segment has no well-formed TCP-AO option")
    head = _mac_head(segment, hlen, off, segment[off + 1], include_options)
    mac = _algorithm(algorithm).mac_key(bytes(traffic_key))
    return mac.tag(struct.pack("!I", sne & _MASK32) + pseudo, head, segment[hlen:])


# ---------------------------------------------------------------------------
# Configuration: Master Key Tuples and the key chain


class MasterKey:
    """A Master Key Tuple (RFC 5925 §3.1).

    * ``send_id``: the KeyID put in segments sent with this key (SendID, 0-255);
    * ``recv_id``: the KeyID that selects this key for received segments (RecvID);
    * ``secret``: the master key (1-80 bytes; use 16 or more random bytes);
    * ``algorithm``: one of :func:`available_algorithms`;
    * ``include_options``: RFC 5925's TCP option flag: the MAC covers all TCP options
      (True, the default: rudp's options cross NATs untouched) or only TCP-AO.

    The TCP connection identifier of an RFC MKT is a wildcard here: a key chain
    belongs to an endpoint, and every connection of that endpoint uses it. The IDs
    of the two ends mirror each other: one end's ``send_id`` is the other's
    ``recv_id``. They may be equal (``MasterKey(1, 1, secret)`` on both ends).
    """

    __slots__ = ("algorithm", "include_options", "recv_id", "secret", "send_id")

    def __init__(
        self,
        send_id: int,
        recv_id: int,
        secret: bytes | bytearray,
        algorithm: str = DEFAULT_ALGORITHM,
        include_options: bool = True,
    ) -> None:
        for name, value in (("send_id", send_id), ("recv_id", recv_id)):
            if type(value) is not int or not 0 <= value <= 255:
                raise AuthConfigError(f"{name} must be an int in 0..255, got {value!r}")
        if not isinstance(secret, bytes | bytearray):
            raise AuthConfigError("secret must be bytes (encode a text password first)")
        if not 1 <= len(secret) <= MAX_KEY_LEN:
            raise AuthConfigError(f"secret must be 1..{MAX_KEY_LEN} bytes long")
        if type(include_options) is not bool:
            raise AuthConfigError("include_options must be a bool")
        _algorithm(algorithm)
        self.send_id = send_id
        self.recv_id = recv_id
        self.secret = bytes(secret)
        self.algorithm = algorithm
        self.include_options = include_options

    def __repr__(self) -> str:  # never the secret
        return (
            f"MasterKey(send_id={self.send_id}, recv_id={self.recv_id}, "
            f"algorithm={self.algorithm!r}, include_options={self.include_options})"
        )


class KeyChain:
    """The MKTs of an endpoint, plus which to use (RFC 5925 §6.1, §7.5).

    ``current`` is the SendID new connections start sending with; ``rnext`` is the
    RecvID advertised in every segment's RNextKeyID, asking the peer to send with
    the key of that RecvID (defaults: the first key's). The chain is shared by the
    endpoint's live connections: :meth:`add`, :meth:`remove` and :meth:`set_rnext`
    take effect on them at their next segment (rollover: docs/authentication.md).
    SendIDs are unique within a chain, and so are RecvIDs (RFC 5925 §3.1: "the IDs
    of MKTs MUST NOT overlap where their TCP connection identifiers overlap").
    """

    __slots__ = ("_by_recv", "_by_send", "_current", "_keys", "_rnext", "generation")

    def __init__(
        self,
        keys: Iterable[MasterKey],
        *,
        current: int | None = None,
        rnext: int | None = None,
    ) -> None:
        self._keys: list[MasterKey] = []
        self._by_send: dict[int, MasterKey] = {}
        self._by_recv: dict[int, MasterKey] = {}
        for key in keys:
            self._insert(key)
        if not self._keys:
            raise AuthConfigError("a key chain needs at least one MasterKey")
        self._current = self._keys[0]
        self._rnext = self._keys[0].recv_id
        #: Bumped by every change; sessions compare it to notice changes cheaply.
        self.generation = 0
        if current is not None:
            self.set_current(current)
        if rnext is not None:
            self.set_rnext(rnext)

    def _insert(self, key: MasterKey) -> None:
        if not isinstance(key, MasterKey):
            # (the type only: a misplaced secret must not end up in a log)
            raise AuthConfigError(f"not a MasterKey: {type(key).__name__}")
        if key.send_id in self._by_send:
            raise AuthConfigError(f"two keys with send_id {key.send_id}")
        if key.recv_id in self._by_recv:
            raise AuthConfigError(f"two keys with recv_id {key.recv_id}")
        self._keys.append(key)
        self._by_send[key.send_id] = key
        self._by_recv[key.recv_id] = key

    @property
    def keys(self) -> tuple[MasterKey, ...]:
        return tuple(self._keys)

    @property
    def current(self) -> MasterKey:
        """The key new connections send with."""
        return self._current

    @property
    def rnext(self) -> int:
        """The RecvID advertised as RNextKeyID."""
        return self._rnext

    def by_send_id(self, send_id: int) -> MasterKey | None:
        return self._by_send.get(send_id)

    def by_recv_id(self, recv_id: int) -> MasterKey | None:
        return self._by_recv.get(recv_id)

    def add(self, key: MasterKey) -> None:
        """Add an MKT (both ends add it before either asks for it with set_rnext)."""
        self._insert(key)
        self.generation += 1

    def remove(self, send_id: int, recv_id: int) -> MasterKey:
        """Remove the MKT with these IDs; live connections using it to send move to
        the key the peer asked for last, else to :attr:`current`. Segments still
        arriving with its KeyID are then dropped (``auth_unknown_key``)."""
        key = self._by_send.get(send_id)
        if key is None or key.recv_id != recv_id:
            raise AuthConfigError(f"no key with send_id {send_id} and recv_id {recv_id}")
        if len(self._keys) == 1:
            raise AuthConfigError("cannot remove the last key of a key chain")
        self._keys.remove(key)
        del self._by_send[send_id], self._by_recv[recv_id]
        if self._current is key:
            self._current = self._keys[0]
        if self._rnext == recv_id:
            self._rnext = self._keys[0].recv_id
        self.generation += 1
        return key

    def set_current(self, send_id: int) -> None:
        """Send with this key on new connections (live ones follow their peer's
        RNextKeyID, RFC 5925 §7.5.2 e)."""
        key = self._by_send.get(send_id)
        if key is None:
            raise AuthConfigError(f"no key with send_id {send_id}")
        self._current = key
        self.generation += 1

    def set_rnext(self, recv_id: int) -> None:
        """Ask peers (new and live connections) to send with the key of this RecvID."""
        if recv_id not in self._by_recv:
            raise AuthConfigError(f"no key with recv_id {recv_id}")
        self._rnext = recv_id
        self.generation += 1

    def __repr__(self) -> str:
        return f"KeyChain({self._keys!r}, current={self._current.send_id}, rnext={self._rnext})"


def as_key_chain(value: object) -> KeyChain | None:
    """Normalise a ``Config(auth_keys=...)`` value: a KeyChain (used as is, shared),
    one MasterKey, an iterable of them, or None (authentication off)."""
    if value is None or isinstance(value, KeyChain):
        return value
    if isinstance(value, MasterKey):
        return KeyChain([value])
    if isinstance(value, bytes | bytearray | str) or not isinstance(value, Iterable):
        raise AuthConfigError(
            "auth_keys takes a KeyChain or MasterKey objects, "
            f"not {type(value).__name__} (wrap a secret in MasterKey)"
        )
    return KeyChain(value)


# Config(auth_keys=...) is validated and normalised with as_key_chain (rudp.config
# imports nothing of the engine, so the engine hands it the function).
register_auth_keys_normaliser(as_key_chain)


# ---------------------------------------------------------------------------
# The per-connection session


def _ext(ref: int, seq: int) -> int:
    """``seq`` as a 64-bit (SNE, SEQ) number: the one within 2**31 of ``ref``
    (RFC 5925 §6.2; Linux tcp_ao_compute_sne() uses the same window)."""
    d = (seq - ref) & _MASK32
    if d & 0x80000000:
        d -= 0x100000000
    return ref + d


class AuthSession:
    """TCP-AO state of one connection: traffic keys, SNEs, current keys, counters.

    Create it with :meth:`for_connection` as soon as the local ISN is chosen (the
    peer's ISN may still be unknown: SYN-SENT). Sending: append :meth:`placeholder`
    to the options, build the segment with ``compute_checksum=False``, and send what
    :meth:`sign` returns. Receiving: after parsing (the rudp checksum already
    checked), call :meth:`check` before anything else looks at the segment; a
    non-None result is the drop reason.
    """

    __slots__ = (
        "_candidates",
        "_current",
        "_gen",
        "_keys",
        "_local_port",
        "_peer_rnext",
        "_placeholder",
        "_recv_other",
        "_recv_syn",
        "_remote_port",
        "_rnext",
        "_rx_addrs",
        "_send_other",
        "_send_syn",
        "_tx_addrs",
        "_v6",
        "accepted",
        "counters",
        "last_keyid",
        "local_isn",
        "peer_isn",
        "rcv_ref",
        "snd_ref",
    )

    def __init__(
        self,
        keys: KeyChain,
        local_isn: int,
        peer_isn: int | None,
        local_port: int,
        remote_port: int,
        addresses: tuple[bytes, bytes] | None = None,
    ) -> None:
        if not isinstance(keys, KeyChain):
            raise AuthConfigError("keys must be a KeyChain (see as_key_chain)")
        local_addr, remote_addr = addresses if addresses is not None else (_ZERO4, _ZERO4)
        if len(local_addr) != len(remote_addr) or len(local_addr) not in (4, 16):
            raise AuthConfigError("addresses must be both 4 or both 16 bytes")
        self._keys = keys
        self._gen = keys.generation
        self._current = keys.current
        self._rnext = keys.rnext
        self._peer_rnext: int | None = None
        self._local_port = local_port
        self._remote_port = remote_port
        self._tx_addrs = bytes(local_addr) + bytes(remote_addr)
        self._rx_addrs = bytes(remote_addr) + bytes(local_addr)
        self._v6 = len(local_addr) == 16
        self.local_isn = local_isn & _MASK32
        self.peer_isn = None if peer_isn is None else peer_isn & _MASK32
        #: The highest 64-bit (SND.SNE, SEQ) sent and (RCV.SNE, SEQ) verified.
        self.snd_ref = self.local_isn
        self.rcv_ref = self.peer_isn
        # Traffic MAC states by MKT, derived lazily (RFC 5925 §5.2): the SYN keys
        # depend on one ISN, the "other" keys on both.
        # (Keyed by the MasterKey objects themselves, which the dicts keep alive.)
        self._send_syn: dict[MasterKey, _Mac] = {}
        self._send_other: dict[MasterKey, _Mac] = {}
        self._recv_other: dict[MasterKey, _Mac] = {}
        self._recv_syn: dict[tuple[MasterKey, int], _Mac] = {}
        self._candidates: dict[tuple[MasterKey, int], _Mac] = {}
        self._placeholder = self._make_placeholder()
        #: Segments that passed :meth:`check`.
        self.accepted = 0
        #: Drops by reason (keys of :data:`DROP_REASONS`).
        self.counters: dict[str, int] = dict.fromkeys(DROP_REASONS, 0)
        #: KeyID of the last verified segment (which of our RecvIDs the peer uses).
        self.last_keyid: int | None = None

    @classmethod
    def for_connection(
        cls,
        keys: KeyChain,
        local_isn: int,
        peer_isn: int | None,
        local_port: int,
        remote_port: int,
        *,
        addresses: tuple[bytes, bytes] | None = None,
    ) -> AuthSession:
        """A session for the connection (local TCP port, remote TCP port) whose ISNs
        are ``local_isn`` and ``peer_isn`` (None while unknown, in SYN-SENT).

        ``addresses`` (local, remote; 4 or 16 bytes each) exists for the RFC 9235
        test vectors and TCP-AO over IP; rudp leaves it None: zero addresses, so the
        MAC survives NAT (docs/authentication.md).
        """
        return cls(keys, local_isn, peer_isn, local_port, remote_port, addresses)

    # -- keys ---------------------------------------------------------------

    @property
    def current_key(self) -> MasterKey:
        """The MKT this session sends with (RFC 5925 current_key)."""
        self._sync()
        return self._current

    @property
    def rnext_id(self) -> int:
        """The RNextKeyID this session sends (RFC 5925 rnext_key's RecvID)."""
        self._sync()
        return self._rnext

    @property
    def option_length(self) -> int:
        """Bytes of TCP option space the TCP-AO option takes (16)."""
        return OPTION_LEN

    def _make_placeholder(self) -> bytes:
        return bytes((AO_KIND, OPTION_LEN, self._current.send_id, self._rnext)) + _ZERO_MAC

    def _sync(self) -> None:
        """Follow changes of the key chain (add, remove, set_rnext)."""
        chain = self._keys
        if self._gen == chain.generation:
            return
        self._gen = chain.generation
        live = chain.keys
        for cache in (self._send_syn, self._send_other, self._recv_other):
            for gone in [k for k in cache if k not in live]:
                del cache[gone]
        self._recv_syn.clear()
        self._candidates.clear()
        if self._current not in live:
            asked = None if self._peer_rnext is None else chain.by_send_id(self._peer_rnext)
            self._current = asked if asked is not None else chain.current
        self._rnext = chain.rnext
        self._placeholder = self._make_placeholder()

    def placeholder(self) -> bytes:
        """The TCP-AO option to append to the options of the next segment: KeyID
        and RNextKeyID of this moment, MAC zero (16 bytes, 4-aligned)."""
        if self._gen != self._keys.generation:
            self._sync()
        return self._placeholder

    def _derive(self, key: MasterKey, tx: bool, src_isn: int, dst_isn: int) -> _Mac:
        """The MAC state of ``key``'s traffic key for one direction and ISN pair."""
        alg = _ALGORITHMS[key.algorithm]
        return alg.mac_key(alg.kdf(key.secret, self._context(tx, src_isn, dst_isn)))

    def _context(self, tx: bool, src_isn: int, dst_isn: int) -> bytes:
        addrs = self._tx_addrs if tx else self._rx_addrs
        half = len(addrs) // 2
        sport, dport = (
            (self._local_port, self._remote_port) if tx else (self._remote_port, self._local_port)
        )
        return kdf_context(addrs[:half], addrs[half:], sport, dport, src_isn, dst_isn)

    def _prefix(self, tx: bool, sne: int, length: int) -> bytes:
        addrs = self._tx_addrs if tx else self._rx_addrs
        if self._v6:
            return _PSEUDO6.pack(sne & _MASK32, addrs, length, _IPPROTO_TCP)
        return _PSEUDO4.pack(sne & _MASK32, addrs, _IPPROTO_TCP, length)

    # -- send ---------------------------------------------------------------

    def sign(
        self,
        segment: _Buf,
        ao_offset: int | None = None,
        *,
        compute_checksum: bool = True,
    ) -> bytes:
        """Fill in the TCP-AO option of ``segment`` and return the segment to send.

        ``segment`` is a whole segment (header, options including the option from
        :meth:`placeholder`, payload) built with its checksum field 0; ``ao_offset``
        is where that option starts (found by scanning the options when None). The
        option's KeyID and RNextKeyID are rewritten to this moment's, the MAC is
        computed (RFC 5925 §5.1, SNE of the segment's sequence number, Send_SYN key
        for a SYN without ACK, Send_Other for the rest, §5.2), then the rudp
        checksum over the result (0xFFFF for a computed 0, as build_segment).

        Raises :class:`AuthStateError` for a segment that has no TCP-AO option, or
        one other than a SYN while the peer's ISN is unknown.
        """
        if self._gen != self._keys.generation:
            self._sync()
        buf = bytearray(segment)
        hlen = (buf[12] >> 4) * 4 if len(buf) >= 20 else 0
        off = ao_offset if ao_offset is not None else find_option(buf, hlen)
        if (
            hlen > len(buf)
            or off < 20
            or off + OPTION_LEN > hlen
            or buf[off] != AO_KIND
            or buf[off + 1] != OPTION_LEN
        ):
            raise AuthStateError("the segment has no TCP-AO option slot (see placeholder())")
        key = self._current
        seq = int.from_bytes(buf[4:8], "big")
        flags = buf[13]
        if flags & SYN and not flags & ACK:
            # Send_SYN_traffic_key: local ISN, remote ISN 0.
            mac = self._send_syn.get(key)
            if mac is None:
                mac = self._send_syn[key] = self._derive(key, True, self.local_isn, 0)
        else:
            mac = self._send_other.get(key)
            if mac is None:
                if self.peer_isn is None:
                    raise AuthStateError(
                        "cannot sign a non-SYN segment before the peer's ISN is known"
                    )
                mac = self._send_other[key] = self._derive(key, True, self.local_isn, self.peer_isn)
        ext = _ext(self.snd_ref, seq)
        if ext > self.snd_ref:
            self.snd_ref = ext
        buf[off + 2] = key.send_id
        buf[off + 3] = self._rnext
        buf[16] = buf[17] = 0
        mac_at = off + 4
        buf[mac_at : mac_at + MAC_LEN] = _ZERO_MAC
        prefix = self._prefix(True, ext >> 32, len(buf))
        if key.include_options:
            tag = mac.tag(prefix, buf, b"")
        else:
            tag = mac.tag(prefix, _mac_head(buf, hlen, off, OPTION_LEN, False), buf[hlen:])
        buf[mac_at : mac_at + MAC_LEN] = tag
        if compute_checksum:
            csum = checksum(buf) or 0xFFFF
            buf[16] = csum >> 8
            buf[17] = csum & 0xFF
        return bytes(buf)

    # -- receive ------------------------------------------------------------

    def verify(self, data: _Buf, seg: Segment) -> bool:
        """``check(data, seg) is None``."""
        return self.check(data, seg) is None

    def check(self, data: _Buf, seg: Segment) -> str | None:
        """Authenticate a received segment; None if it passes, else the drop reason
        (one of :data:`DROP_REASONS`, also counted in :attr:`counters`).

        ``data`` is the segment as received, ``seg`` its parse. Call it before any
        other processing (RFC 5925 §7.5; RST and SYN included). On success, and
        only then, the session learns from the segment: the peer's ISN (a SYN or
        SYN-ACK in SYN-SENT), the receive SNE, and its RNextKeyID (which may switch
        the key this session sends with, §7.5.2 e). Never raises on any bytes.
        """
        if self._gen != self._keys.generation:
            self._sync()
        n = len(data)
        hlen = (data[12] >> 4) * 4 if n >= 20 else 0
        if hlen < 20 or hlen > n:
            return self._drop("auth_malformed")
        off = find_option(data, hlen)
        if off < 0:
            return self._drop("auth_missing" if off == -1 else "auth_malformed")
        keyid = data[off + 2]
        key = self._keys.by_recv_id(keyid)
        if key is None:
            return self._drop("auth_unknown_key")
        if data[off + 1] != OPTION_LEN:
            return self._drop("auth_bad_length")
        seq = seg.seq
        flags = seg.flags
        learn: int | None = None
        ext = 0
        if flags & SYN and not flags & ACK:
            # Receive_SYN_traffic_key: the SYN's own ISN, ours unknown to it (0).
            ck = (key, seq)
            mac = self._recv_syn.get(ck)
            if mac is None:
                if len(self._recv_syn) >= 16:
                    self._recv_syn.clear()
                mac = self._recv_syn[ck] = self._derive(key, False, seq, 0)
            ext = seq  # SNE 0: the SYN is the first byte of its sequence space
            if self.peer_isn is None:
                learn = seq  # simultaneous open
        elif self.peer_isn is None or (flags & SYN and seq != self.peer_isn):
            # SYN-SENT: the peer's ISN is the SYN-ACK's own sequence number (or, for
            # an RST answering our SYN, its SEQ, 0: see docs/authentication.md).
            ck = (key, seq)
            mac = self._candidates.get(ck)
            if mac is None:
                if len(self._candidates) >= 16:
                    self._candidates.clear()
                mac = self._candidates[ck] = self._derive(key, False, seq, self.local_isn)
            ext = seq
            if flags & SYN and self.peer_isn is None:
                learn = seq
        else:
            mac = self._recv_other.get(key)
            if mac is None:
                mac = self._recv_other[key] = self._derive(
                    key, False, self.peer_isn, self.local_isn
                )
            ext = _ext(self.rcv_ref if self.rcv_ref is not None else self.peer_isn, seq)
        head = _mac_head(data, hlen, off, OPTION_LEN, key.include_options)
        # The payload as parsed: what is verified is what the engine will use.
        tag = mac.tag(self._prefix(False, ext >> 32, n), head, seg.payload)
        if not hmac.compare_digest(tag, data[off + 4 : off + OPTION_LEN]):
            return self._drop("auth_bad_mac")
        # Authentic: learn from it.
        self.accepted += 1
        self.last_keyid = keyid
        if learn is not None:
            self.peer_isn = learn
            self.rcv_ref = learn
            cand = self._candidates.pop((key, learn), None)
            self._recv_other.clear()
            if cand is not None:
                self._recv_other[key] = cand
            self._candidates.clear()
        elif self.rcv_ref is not None and ext > self.rcv_ref and not flags & SYN:
            self.rcv_ref = ext
        rnext = data[off + 3]
        self._peer_rnext = rnext
        if rnext != self._current.send_id:
            asked = self._keys.by_send_id(rnext)
            if asked is not None:  # else no action (§7.5.2 e ii 1)
                self._current = asked
                self._placeholder = self._make_placeholder()
        return None

    def _drop(self, reason: str) -> str:
        self.counters[reason] += 1
        return reason

    # -- introspection ------------------------------------------------------

    @property
    def snd_sne(self) -> int:
        """SND.SNE: the high 32 bits of the highest sequence number sent."""
        return self.snd_ref >> 32

    @property
    def rcv_sne(self) -> int | None:
        """RCV.SNE: the high 32 bits of the highest sequence number verified."""
        return None if self.rcv_ref is None else self.rcv_ref >> 32

    def stats(self) -> dict[str, int | None]:
        """Counters and key state, for ``Connection.stats()``."""
        self._sync()
        out: dict[str, int | None] = {
            "auth_accepted": self.accepted,
            "auth_send_id": self._current.send_id,
            "auth_rnext_id": self._rnext,
            "auth_last_keyid": self.last_keyid,
        }
        out.update(self.counters)
        return out
