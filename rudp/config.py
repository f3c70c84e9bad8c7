"""Connection configuration: one documented, validated dataclass."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, fields

from .errors import ConfigError

#: Largest payload one UDP datagram over IPv4 can carry (65535 - 20 IP - 8 UDP).
MAX_UDP_PAYLOAD = 65507
#: Largest TCP header: 20 bytes plus 40 bytes of options.
MAX_TCP_HEADER = 60
#: Largest MSS that still fits one UDP datagram with a maximal TCP header.
MAX_MSS = MAX_UDP_PAYLOAD - MAX_TCP_HEADER
#: Smallest MSS accepted from configuration or from a peer (RFC 9293 §3.7.1 and
#: Linux's ``TCP_MIN_MSS``): smaller values are clamped, never honoured.
MIN_MSS = 88
#: Values of :attr:`Config.syncookies`.
SYNCOOKIE_MODES = ("auto", "always", "never")

#: Normalises :attr:`Config.auth_keys` (``rudp.engine.auth.as_key_chain``, which
#: registers itself here when imported, as ``import rudp`` does): this module stays a
#: leaf that imports nothing of the engine (tests/test_architecture.py).
_auth_keys_normaliser: Callable[[object], object] | None = None


def register_auth_keys_normaliser(normalise: Callable[[object], object]) -> None:
    """Install the function that validates and normalises ``Config.auth_keys``."""
    global _auth_keys_normaliser
    _auth_keys_normaliser = normalise


@dataclass(frozen=True, slots=True)
class Config:
    """Tunables of a rudp connection (all times in seconds, sizes in bytes).

    Defaults follow Linux and the RFCs. Invalid values raise :class:`ConfigError`
    on construction.
    """

    #: Maximum segment size we announce and send. The default 1400 keeps a full
    #: segment (1400 + 20 TCP + 8 UDP + 40 IPv6 = 1468 bytes, 32 bytes left for
    #: options) inside a 1500-byte path over IPv4 and IPv6. Up to :data:`MAX_MSS`.
    mss: int = 1400
    #: Maximum segment lifetime; TIME-WAIT lasts ``2 * msl`` (RFC 9293 §3.4.2).
    msl: float = 30.0
    #: SYN retransmissions before an active open fails with ``TimeoutError``
    #: (Linux ``tcp_syn_retries``).
    syn_retries: int = 6
    #: SYN-ACK retransmissions before a half-open connection is dropped
    #: (Linux ``tcp_synack_retries``).
    synack_retries: int = 5
    #: Send keepalive probes on idle connections (off by default, RFC 1122 §4.2.3.6).
    keepalive: bool = False
    #: Idle time before the first keepalive probe.
    keepalive_idle: float = 7200.0
    #: Time between unanswered keepalive probes.
    keepalive_interval: float = 75.0
    #: Unanswered probes after which the connection aborts.
    keepalive_count: int = 10
    #: Abort a connection whose sent data stays unacknowledged this long
    #: (RFC 9293 §3.8.3 USER TIMEOUT; RFC 793 suggested five minutes).
    user_timeout: float = 300.0
    #: Receive buffer: the most unread plus out-of-order data held per connection;
    #: the advertised window never exceeds it. The starting size when autotuning.
    rcv_buf: int = 256 * 1024
    #: Receive-buffer autotuning ceiling (Linux's ``tcp_moderate_rcvbuf`` up to
    #: ``tcp_rmem[2]``; docs/flow-control.md): while the application reads more per
    #: round trip than the window lets in, the buffer (and so the window) grows
    #: towards this. At or below ``rcv_buf``: no autotuning, the buffer stays
    #: ``rcv_buf`` (as an explicit ``SO_RCVBUF`` locks Linux's). It also sets the
    #: window scale offered in the SYN (RFC 7323 §2.2).
    rcv_buf_max: int = 4 * 1024 * 1024
    #: Send buffer: unacknowledged plus unsent data the engine holds per connection
    #: before the writer is paused. The starting size when autotuning.
    snd_buf: int = 256 * 1024
    #: Send-buffer autotuning ceiling (Linux's ``tcp_sndbuf_expand`` up to
    #: ``tcp_wmem[2]``): the buffer grows to twice the congestion window, so a
    #: round trip of data waits behind the one in flight. At or below ``snd_buf``,
    #: or once the application sets write-buffer limits: no autotuning.
    snd_buf_max: int = 4 * 1024 * 1024
    #: Lower and upper bounds of the retransmission timeout (RFC 6298 §2.4, §2.5).
    #: As Linux (tcp_rto_min, 200 ms rather than the RFC's 1 s), the floor bounds
    #: the variance term: RTO = SRTT + max(4 x RTTVAR, rto_min), capped at rto_max.
    rto_min: float = 0.2
    rto_max: float = 60.0
    #: RTO before any RTT sample (RFC 6298 §2.1).
    rto_initial: float = 1.0
    #: Longest time a received segment may wait for its ACK (RFC 1122 §4.2.3.2
    #: requires less than 0.5 s; Linux uses 40 ms).
    delayed_ack: float = 0.04
    #: Congestion control algorithm, by registry name (see ``rudp.engine.congestion``);
    #: an unknown name raises :class:`ConfigError` when an endpoint or connection uses it.
    congestion_control: str = "cubic"
    #: Initial congestion window in segments (RFC 6928).
    initial_cwnd: int = 10
    #: Offer selective acknowledgments (RFC 2018, with D-SACK, RFC 2883). With SACK
    #: negotiated, losses are detected by RACK-TLP (RFC 8985).
    sack: bool = True
    #: Offer timestamps (RFC 7323): RTT measured on every ACK, PAWS, Eifel undo.
    timestamps: bool = True
    #: Pace window-based controllers (reno, cubic) as Linux does with the fq qdisc:
    #: 2 x cwnd/srtt in slow start, 1.2 x cwnd/srtt after. Controllers that set their
    #: own pacing rate (bbr) are always paced.
    pacing: bool = False
    #: Compute the segment checksum (docs/wire.md). False sends 0 ("not computed"),
    #: as FreeBSD's TCP-over-UDP encapsulation does, leaving integrity to the UDP
    #: checksum. Received segments with a 0 checksum are always accepted as such.
    checksum: bool = True
    #: Authenticate every segment with TCP-AO (RFC 5925; docs/authentication.md): a
    #: ``rudp.engine.auth.KeyChain``, one ``MasterKey``, an iterable of them, or None
    #: (off, the default). Normalised to a ``KeyChain`` on construction (shared by
    #: every endpoint and connection using this config, so key rollover reaches live
    #: connections). With keys, every connection requires TCP-AO: a peer without the
    #: key cannot connect, and segments without a valid MAC are dropped and counted.
    auth_keys: object = None
    #: Follow a peer whose UDP address changes (NAT rebinding), after the strict checks
    #: in docs/migration.md; the new address gets at most 3x the bytes it sent until it
    #: proves it receives. False: segments from another address are dropped.
    migration: bool = True
    #: Record every segment sent and received to this pcap file (docs/pcap.md), with
    #: the real UDP endpoints' addresses, for Wireshark/tshark. Endpoints of one
    #: process that name the same file share one writer; ``None`` (the default)
    #: records nothing and costs nothing.
    pcap: str | os.PathLike[str] | None = None
    #: SYN cookies (RFC 4987 §3.6, docs/security.md), as Linux's ``tcp_syncookies``:
    #: ``"auto"`` answers SYNs statelessly while a listener's queue is full (its
    #: backlog of half-open plus not yet accepted connections), ``"always"`` answers
    #: every SYN so, ``"never"`` keeps state for every SYN (when the queue is full, the
    #: oldest half-open connection is evicted instead).
    syncookies: str = "auto"

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> ConfigError:
            return ConfigError(f"Config.{name}={getattr(self, name)!r}: {why}")

        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "auth_keys":
                continue  # normalised below
            if f.name in ("keepalive", "sack", "timestamps", "pacing", "checksum", "migration"):
                if not isinstance(value, bool):
                    raise bad(f.name, "must be a bool")
            elif f.name == "pcap":
                if value is not None and (
                    not isinstance(value, (str, os.PathLike)) or not os.fspath(value)
                ):
                    raise bad(f.name, "must be None or a non-empty path")
            elif f.name == "syncookies":
                if value not in SYNCOOKIE_MODES:
                    raise bad(f.name, f"must be one of {', '.join(map(repr, SYNCOOKIE_MODES))}")
            elif f.name == "congestion_control":
                # The name is checked against the registry when a connection uses it
                # (rudp.engine.congestion), so controllers can be registered later.
                if not isinstance(value, str) or not value:
                    raise bad(f.name, "must be a non-empty str")
            elif isinstance(value, bool) or not isinstance(value, (int, float)):
                raise bad(f.name, "must be a number")
        if not isinstance(self.mss, int) or not MIN_MSS <= self.mss <= MAX_MSS:
            raise bad("mss", f"must be an int in [{MIN_MSS}, {MAX_MSS}]")
        for name in ("syn_retries", "synack_retries", "keepalive_count", "initial_cwnd"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise bad(name, "must be an int >= 1")
        for name in ("msl", "keepalive_idle", "keepalive_interval", "user_timeout"):
            if not getattr(self, name) > 0:
                raise bad(name, "must be > 0")
        for name in ("rto_min", "rto_initial"):
            if not getattr(self, name) > 0:
                raise bad(name, "must be > 0")
        if not self.rto_max >= self.rto_min:
            raise bad("rto_max", "must be >= rto_min")
        if not self.rto_min <= self.rto_initial <= self.rto_max:
            raise bad("rto_initial", "must lie within [rto_min, rto_max]")
        if not 0 <= self.delayed_ack < 0.5:
            raise bad("delayed_ack", "must be in [0, 0.5) (RFC 1122 §4.2.3.2)")
        for name in ("rcv_buf", "snd_buf", "rcv_buf_max", "snd_buf_max"):
            value = getattr(self, name)
            if not isinstance(value, int) or not self.mss <= value <= (1 << 30):
                raise bad(name, "must be an int in [mss, 2**30]")
        if self.auth_keys is not None:
            self._normalise_auth_keys()

    def _normalise_auth_keys(self) -> None:
        """``auth_keys`` as a ``KeyChain`` (ConfigError if it cannot be one; the
        message never shows the value, which may hold a secret)."""
        normalise = _auth_keys_normaliser
        if normalise is None:  # pragma: no cover - rudp.engine.auth is always imported
            raise ConfigError("Config.auth_keys: rudp.engine.auth is not loaded")
        try:
            chain = normalise(self.auth_keys)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"Config.auth_keys: {exc}") from None
        object.__setattr__(self, "auth_keys", chain)  # frozen: set once, here
