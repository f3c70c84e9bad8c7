"""One TCP connection: the RFC 9293 state machine, sans-IO.

The connection owns no socket and reads no clock. Its host (an
:class:`~rudp.engine.Endpoint`, through the narrow :class:`ConnectionHost`
interface) feeds it parsed segments (:meth:`Connection.receive`), timer expiries
(:meth:`Connection.handle_timer`) and asks it for output (:meth:`Connection.flush`),
each with ``now``.

Input paths never send. They update state and *record* what must go out: "ACK now",
ACKs that must be distinct segments (each out-of-order arrival, RFC 5681 §4.2), a
probe, a SYN, an RST; lost segments are marked in the loss-recovery scoreboard. Then
they wake the host. Segments leave in exactly one place, :meth:`Connection.flush`,
which consults the windows, the congestion controller, the pacer and the record of
sent segments (``rudp.engine.recovery``).

Options: SACK and D-SACK (RFC 2018, RFC 2883), timestamps (RFC 7323: RTTM, PAWS),
window scaling (RFC 7323 §2), MSS (RFC 9293 §3.7.1).

Sequence numbers on the wire wrap mod 2**32 (``rudp.seq``). Internally, positions are
also kept "unwrapped" (plain ints): receive positions from the peer's ISN
(``_rcv_nxt_abs``), send positions from ours (``_una_abs``, ``_max_abs``), so
queues and the scoreboard order with plain integers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, Protocol

from .. import log
from ..config import MIN_MSS, Config
from ..errors import (
    ConnectTimeoutError,
    InvalidStateError,
    KeepaliveTimeoutError,
    UserTimeoutError,
)
from ..seq import SEQ_MASK, seq_gt, seq_le, seq_lt, seq_sub
from ..wire.checksum import IMPLEMENTATION
from ..wire.segment import (
    ACK,
    FIN,
    HEADER_LEN,
    PSH,
    RST,
    SYN,
    Segment,
    build_burst,
    build_segment,
    build_segment_ts,
    encode_options,
    sack_option,
)
from .auth import OPTION_LEN, AuthSession, AuthStateError
from .buffers import ReceiveBuffer, SendBuffer
from .congestion import lookup
from .recovery import STATE_NAMES, LossRecovery, RttEstimator
from .recovery.scoreboard import END, FLAGS, SACKED, START, Record
from .states import (
    CLOSE_WAIT,
    CLOSED,
    CLOSING,
    ESTABLISHED,
    FIN_WAIT_1,
    FIN_WAIT_2,
    LAST_ACK,
    LISTEN,
    SYN_RECEIVED,
    SYN_SENT,
    SYNCHRONIZED,
    TIME_WAIT,
    TRANSITIONS,
    State,
)
from .timers import HANDLERS, INF, Timer

Address = tuple[Any, ...]

#: RFC 9293 §3.7.1: default send MSS when the peer sends no MSS option (IPv4 536).
DEFAULT_PEER_MSS: Final = 536
#: RFC 7323 §2.3: the largest shift count.
MAX_WSCALE: Final = 14
#: RFC 5961 §7: at most this many challenge ACKs per connection per second.
CHALLENGE_ACK_LIMIT: Final = 10
#: Least time between ACKs sent in reply to unacceptable segments, data-bearing ones
#: included (Linux's tcp_invalid_ratelimit; docs/security.md), per connection.
OOW_ACK_INTERVAL: Final = 0.5
#: Linux ``tcp_fin_timeout``: an orphaned FIN-WAIT-2 connection lives this long.
FIN_WAIT_2_TIMEOUT: Final = 60.0
#: Most out-of-order runs (holes) held at once (memory/CPU cap against 1-byte holes).
MAX_OOO_RUNS: Final = 512
#: RFC 7323 §5.5: TS.Recent is invalid after 24 days without a segment.
PAWS_IDLE_LIMIT: Final = 24 * 86400.0
#: Out-of-order positions remembered to order SACK blocks by recency (RFC 2018 §4).
SACK_RECENT: Final = 8
#: Most ACKs owed as distinct segments between two flushes (one receive batch; the
#: asyncio layer drains at most 256 datagrams per batch). Beyond it, further
#: out-of-order arrivals share the final ACK (counted in ``acks_merged``), so a flood
#: of tiny holes cannot grow memory.
MAX_ACKS_OWED: Final = 256
#: Until an address is validated (a passive open's handshake completes, or a migrated
#: path proves it receives), send it at most this many times the bytes received from
#: it (as QUIC, RFC 9000 §8; SYN-ACK retransmissions included).
AMPLIFICATION_FACTOR: Final = 3
_NO_LIMIT: Final = 1 << 62
#: The most full-sized segments one send burst builds at once (as many as one UDP
#: GSO send carries).
BURST_MAX: Final = 64
#: How old an echoed timestamp may be and still look like ours (a migration check).
MIGRATION_TS_WINDOW: Final = 120.0
#: The pacer is a token bucket filled at the pacing rate. Its depth is a send
#: quantum, about this much time at the rate (Linux sizes bursts to ~1 ms of data:
#: sk_pacing_shift 10), at least 2 segments ...
PACING_BURST: Final = 0.001
#: ... plus the host's timer slack: how late the pacing timer fires, smoothed as
#: RFC 6298 smooths RTT samples (mean + 4 mean deviations), at most this much. A
#: timer that fires late then finds the tokens of the time it lost, so the rate
#: holds on an event loop whose timers are late (asyncio's epoll wait rounds up to
#: whole milliseconds); in the simulator timers are exact and the depth is the
#: quantum alone. See docs/interop-linux.md (problem 4).
PACING_SLACK_MAX: Final = 0.010
#: Linux's pacing ratios for window-based controllers (tcp_pacing_ss_ratio 200,
#: tcp_pacing_ca_ratio 120).
PACING_SS_RATIO: Final = 2.0
PACING_CA_RATIO: Final = 1.2

# States the per-segment paths compare with, as module globals: reading a member
# as an attribute of the Enum class costs about ten times as much (CPython 3.11).
_ESTABLISHED: Final = ESTABLISHED
_SYN_SENT: Final = SYN_SENT

_RECV_DATA_STATES: Final = frozenset({ESTABLISHED, FIN_WAIT_1, FIN_WAIT_2})
#: States in which buffered data or a FIN may still be (re)transmitted.
_DATA_STATES: Final = frozenset({ESTABLISHED, CLOSE_WAIT, FIN_WAIT_1, LAST_ACK, CLOSING})
_KEEPALIVE_STATES: Final = frozenset({ESTABLISHED, CLOSE_WAIT, FIN_WAIT_2})
_HANDSHAKE_STATES: Final = frozenset({SYN_SENT, SYN_RECEIVED})

#: How many timers a connection has (``len(Timer)``: iterating the enum runs Python code).
_N_TIMERS: Final = len(Timer)
_T_TIME_WAIT: Final = Timer.TIME_WAIT.value
_T_FIN_WAIT_2: Final = Timer.FIN_WAIT_2.value
_T_USER_TIMEOUT: Final = Timer.USER_TIMEOUT.value
_T_RTO: Final = Timer.RTO.value
_T_REO: Final = Timer.REO.value
_T_TLP: Final = Timer.TLP.value
_T_DELACK: Final = Timer.DELACK.value
_T_PERSIST: Final = Timer.PERSIST.value
_T_KEEPALIVE: Final = Timer.KEEPALIVE.value
_T_PACING: Final = Timer.PACING.value

#: min() of the timer list: the C accelerator's (one pass over the floats, no
#: comparison calls; 20x faster) when the wire format uses it.
_earliest: Callable[[list[float]], float] = min
if IMPLEMENTATION == "c":
    from .._accel import earliest as _earliest


def wscale_for(buf: int) -> int:
    """Smallest shift that lets a window of ``buf`` bytes fit 16 bits (RFC 7323 §2.2)."""
    shift = 0
    while (buf >> shift) > 0xFFFF and shift < MAX_WSCALE:
        shift += 1
    return shift


def offered_wscale(config: Config) -> int:
    """The window scale a SYN offers: room for the largest buffer autotuning may
    reach (Linux sizes it from ``tcp_rmem[2]`` likewise)."""
    return wscale_for(max(config.rcv_buf, config.rcv_buf_max))


def default_write_low(high: int) -> int:
    """The resume mark that goes with ``high`` when none is given: 2/3 of it."""
    return high * 2 // 3


class ConnectionHost(Protocol):
    """What a :class:`Connection` needs from the endpoint that owns it.

    The connection calls nothing else on its host; :class:`~rudp.engine.Endpoint`
    implements it (and turns the notifications into application events).
    """

    #: Where :meth:`Connection.flush` appends ``(datagram, address)`` pairs. The list
    #: object is never replaced (the host drains it in place).
    output: list[tuple[bytes, Address]]

    def wake(self, conn: Connection) -> None:
        """``conn`` has something to send: call ``conn.flush(now)`` soon."""

    def schedule(self, conn: Connection, at: float) -> None:
        """``conn.deadline`` became earlier than ``conn.sched_at``: run its timers at ``at``
        (and record ``conn.sched_at = at``)."""

    def established(self, conn: Connection) -> None:
        """The handshake completed (active or passive open)."""

    def readable(self, conn: Connection) -> None:
        """In-order data became readable (the receive buffer was empty)."""

    def peer_closed(self, conn: Connection) -> None:
        """The peer's FIN arrived in order."""

    def writable(self, conn: Connection) -> None:
        """Buffered send data fell to the low-water mark after exceeding the high one."""

    def terminated(self, conn: Connection, error: BaseException | None) -> None:
        """The connection is finished for the application (``error`` None: orderly)."""

    def synack_retries(self, conn: Connection, now: float) -> int:
        """How many SYN,ACK retransmissions the half-open ``conn`` (a passive open) may
        make: fewer while its listener is under pressure (docs/security.md)."""

    def released(self, conn: Connection) -> None:
        """The connection reached CLOSED: forget its identity (it may still hold one
        last RST for the next :meth:`Connection.flush`)."""

    def entered_time_wait(self, conn: Connection) -> None:
        """The connection is in TIME-WAIT and its application has been told it is
        over: the host may replace it by a compact record after its next flush."""


class Handoff:
    """What a connection and the compact TIME-WAIT record that replaces it share:
    when TIME-WAIT ended (None while it lasts). Neither refers to the other, so the
    record never keeps the connection alive and the application's last reference
    frees it at once (no reference cycle left for the garbage collector)."""

    __slots__ = ("ended_at",)

    def __init__(self) -> None:
        self.ended_at: float | None = None


class Connection:
    """A TCP connection (RFC 9293) inside an :class:`~rudp.engine.Endpoint`.

    Application API: :meth:`send`, :meth:`read`, :meth:`shutdown` (half-close),
    :meth:`close`, :meth:`abort`, :attr:`state`, :meth:`stats`. Host API (called by
    the endpoint): :meth:`open_active`, :meth:`open_passive`, :meth:`receive`,
    :meth:`handle_timer`, :meth:`flush`, :meth:`discard`, :attr:`deadline`.
    """

    __slots__ = (
        "_ack_now",
        "_acks_owed",
        "_adv_field",
        "_adv_held",
        "_adv_nxt",
        "_amp_rx",
        "_amp_tx",
        "_chack_count",
        "_chack_window",
        "_dsack",
        "_fin_abs",
        "_fin_queued",
        "_fin_rcvd_abs",
        "_fin_sent",
        "_handoff",
        "_ka_probes",
        "_last_ack_sent",
        "_last_rx",
        "_last_send",
        "_max_abs",
        "_migrate_mark",
        "_oow_ack_at",
        "_out",
        "_pace_late",
        "_pace_late_dev",
        "_pace_next",
        "_pace_wake",
        "_path_probe",
        "_peer_fin",
        "_persist_backoff",
        "_probe_pending",
        "_probe_sent_at",
        "_rcv_adv_abs",
        "_rcv_buf_max",
        "_rcv_mss",
        "_rcv_nxt_abs",
        "_rcv_rtt",
        "_rcv_rtt_at",
        "_rcv_rtt_seq",
        "_rcv_wscale_ok",
        "_rcvq",
        "_rcvq_seq",
        "_rcvq_space",
        "_rcvq_time",
        "_read_closed",
        "_retries",
        "_rst",
        "_sack_ok",
        "_sack_recent",
        "_snd_buf_max",
        "_sndq",
        "_state",
        "_syn_pending",
        "_syn_time",
        "_syn_timed",
        "_terminated_sent",
        "_timer_at",
        "_tlp_pending",
        "_ts_offset",
        "_ts_ok",
        "_ts_recent",
        "_ts_recent_at",
        "_una_abs",
        "_unacked_bytes",
        "_unacked_since",
        "_validated",
        "_write_closed",
        "_writing_paused",
        "acks_merged",
        "acks_rate_limited",
        "addr",
        "amplification_limited",
        "auth",
        "bytes_acked",
        "bytes_received",
        "bytes_retransmitted",
        "bytes_sent",
        "cc",
        "challenge_acks",
        "config",
        "deadline",
        "dropped_segments",
        "dsacks_sent",
        "dup_acks_received",
        "dup_data_segments",
        "duplicate_segments",
        "error",
        "host",
        "irs",
        "iss",
        "keepalive_probes",
        "key",
        "listener_port",
        "local_port",
        "max_snd_wnd",
        "migrations",
        "ooo_segments",
        "pacing_slack",
        "paws_drops",
        "pure_acks_sent",
        "rcv_buf",
        "rcv_nxt",
        "rcv_wscale",
        "recovery",
        "remote_port",
        "retransmissions",
        "rto_expiries",
        "rtt",
        "sched_at",
        "segments_received",
        "segments_sent",
        "snd_max",
        "snd_mss",
        "snd_nxt",
        "snd_una",
        "snd_wl1",
        "snd_wl2",
        "snd_wnd",
        "snd_wscale",
        "ts_missing_drops",
        "window_probes",
        "write_high",
        "write_low",
    )

    def __init__(
        self,
        host: ConnectionHost,
        config: Config,
        addr: Address,
        local_port: int,
        remote_port: int,
        iss: int,
        now: float,
        *,
        listener_port: int | None = None,
        ts_offset: int = 0,
        auth: AuthSession | None = None,
    ) -> None:
        self.host = host
        #: TCP-AO (RFC 5925): every segment sent is signed, and the host checks every
        #: segment received before giving it to :meth:`receive` (docs/authentication.md).
        self.auth = auth
        self._out = host.output
        self.config = config
        self.addr = addr
        self.local_port = local_port
        self.remote_port = remote_port
        self.key = (addr, local_port, remote_port)
        self.listener_port = listener_port  # set for passive opens
        self._state = CLOSED
        self.error: BaseException | None = None

        # --- send sequence variables (RFC 9293 §3.3.1) ---
        self.iss = iss
        self.snd_una = iss
        # SND.NXT: the next new sequence number. Retransmissions are driven by the
        # scoreboard and never roll it back, so it always equals SND.MAX.
        self.snd_nxt = iss
        self.snd_max = iss
        self._una_abs = 0  # SND.UNA unwrapped (ISS is position 0)
        self._max_abs = 0  # SND.MAX unwrapped
        self.snd_wnd = 0
        self.snd_wl1 = 0
        self.snd_wl2 = 0
        self.max_snd_wnd = 0
        self.snd_wscale = 0  # shift applied to the peer's window field
        self.snd_mss = DEFAULT_PEER_MSS  # effective send MSS
        self._sndq = SendBuffer((iss + 1) & SEQ_MASK)
        self._fin_queued = False  # shutdown requested: FIN follows the buffered data
        self._fin_sent = False
        self._fin_abs = -1  # unwrapped position of our FIN once sent
        # --- receive sequence variables ---
        self.irs = 0
        self.rcv_nxt = 0
        self._rcv_nxt_abs = 0  # unwrapped rcv_nxt
        self._rcv_adv_abs = 0  # unwrapped right edge of the window we advertised
        # _advertise()'s last answer and its inputs (a burst of sends reuses it).
        self._adv_nxt = -1
        self._adv_held = -1
        self._adv_field = 0
        self.rcv_wscale = offered_wscale(config)
        # --- receive-buffer autotuning (Linux's tcp_rcv_space_adjust, "dynamic
        # right-sizing"): the buffer, and so the window, grows to twice what the
        # application read in the last receiver round trip ---
        #: The receive buffer now (``Config.rcv_buf`` until autotuning grows it).
        self.rcv_buf = config.rcv_buf
        self._rcv_buf_max = config.rcv_buf_max  # <= rcv_buf: autotuning off
        self._rcvq_space = 0  # bytes read in the last measured round trip
        self._rcvq_seq = 0  # unwrapped position read up to when that measure began
        self._rcvq_time = 0.0  # and when
        self._rcv_rtt = 0.0  # receiver's round-trip estimate (0: none yet)
        self._rcv_rtt_seq = -1  # the window edge whose filling times a round trip
        self._rcv_rtt_at = 0.0
        self._rcv_wscale_ok = False  # both sides sent WS (RFC 7323 §2.2)
        self._rcvq = ReceiveBuffer(MAX_OOO_RUNS)
        self._fin_rcvd_abs: int | None = None  # position of the peer's FIN, once seen
        # "Full-sized" for ACK-every-second-segment (RFC 1122 §4.2.3.2): as Linux's
        # tcp_measure_rcv_mss, the largest segment received so far, at most what we
        # advertised (a peer with timestamps sends MSS - 12 bytes), starting from
        # the RFC 9293 default of 536. Data the reassembly queue releases at once
        # is not one segment and is not measured.
        self._rcv_mss = min(config.mss, DEFAULT_PEER_MSS)
        self._peer_fin = False
        self._read_closed = False  # application will not read any more (close())
        self._write_closed = False  # application will not write any more

        # --- options negotiated in the handshake ---
        self._sack_ok = False  # RFC 2018 §2: both SYNs carried SACK-permitted
        self._ts_ok = False  # RFC 7323 §3.2: both SYNs carried timestamps
        self._ts_offset = ts_offset  # added to our clock (Linux's per-connection tsoffset)
        self._ts_recent = 0  # RFC 7323 §4.3 TS.Recent
        self._ts_recent_at = now
        self._last_ack_sent = 0  # RFC 7323 §4.3 Last.ACK.sent
        self._sack_recent: list[int] = []  # recent out-of-order positions, newest first
        self._dsack: tuple[int, int] | None = None  # a duplicate to report (RFC 2883)

        # --- output the next flush() owes (recorded by the input paths) ---
        self._ack_now = False  # an ACK is owed now (RFC 1122 §4.2.3.2, RFC 5681 §4.2)
        #: ACKs owed as distinct segments: (ACK number, SACK option as of then).
        self._acks_owed: list[tuple[int, bytes]] = []
        self._probe_pending = False  # keepalive / zero-window probe (SEQ = SND.UNA - 1)
        self._path_probe = False  # the same, after a migration, behind an ACK
        self._tlp_pending = False  # a tail loss probe (RFC 8985 §7.3)
        self._syn_pending = False  # (re)send our SYN or SYN,ACK
        self._rst: tuple[int, int, int] | None = None  # (seq, ack, flags) of an RST
        self._unacked_bytes = 0

        # --- timers (rudp.engine.timers): one deadline each, inf when idle ---
        self._timer_at = [INF] * _N_TIMERS
        #: The earliest timer (inf: none); read by the host.
        self.deadline = INF
        #: Owned by the host: the deadline it has scheduled for this connection.
        self.sched_at = INF
        #: Shared with the compact TIME-WAIT record that replaces this connection
        #: (set by :meth:`detach`).
        self._handoff: Handoff | None = None

        # --- RTT, RTO, loss recovery, congestion control ---
        self.rtt = RttEstimator(config.rto_initial, config.rto_min, config.rto_max)
        self.cc = lookup(config.congestion_control)(config.mss, config.initial_cwnd)
        self.recovery = LossRecovery(self.cc, self.rtt, config.mss)
        self._syn_timed = False  # the handshake is being timed (Karn: not after a resend)
        self._syn_time = 0.0
        self._retries = 0  # consecutive RTO expiries for the current snd_una
        self._unacked_since: float | None = None
        self._last_send = now
        self._pace_next = 0.0  # earliest time the pacer lets the next segment go
        self._pace_wake = INF  # when the pacing timer was armed for
        self._pace_late = -1.0  # smoothed pacing-timer lateness (-1: no sample yet)
        self._pace_late_dev = 0.0  # its mean deviation
        self.pacing_slack = 0.0  # seconds of lateness the pacer's bucket absorbs
        # --- persist (zero window) and keepalive state ---
        self._persist_backoff = 0
        self._probe_sent_at = float("-inf")  # last zero-window probe
        self._last_rx = now
        self._ka_probes = 0
        # --- challenge ACK rate limit (RFC 5961 §7), per connection ---
        self._chack_window = -1.0
        self._oow_ack_at = -1.0
        self._chack_count = 0

        # --- path validation and the amplification limit (docs/migration.md) ---
        #: We chose this address (active open) or it proved it receives.
        self._validated = listener_port is None
        self._amp_rx = 0  # bytes received from the unvalidated address
        self._amp_tx = 0  # bytes sent to it
        self._migrate_mark = 0  # TSval / position the new address must acknowledge

        # --- flow control towards the application ---
        # The send buffer holds unacknowledged data too (a kernel socket buffer,
        # not asyncio's user-space one), so the writer is resumed as Linux wakes
        # one (sk_stream_min_wspace): once free space is half the used space, i.e.
        # at 2/3 full. A lower mark starves a bulk sender whose unacknowledged
        # data is held behind a hole during recovery.
        self.write_high = config.snd_buf
        self.write_low = default_write_low(config.snd_buf)
        # Send-buffer autotuning ceiling (Linux's tcp_sndbuf_expand); 0 once the
        # application sets its own limits (as SO_SNDBUF locks Linux's buffer).
        self._snd_buf_max = config.snd_buf_max if config.snd_buf_max > config.snd_buf else 0
        self._writing_paused = False
        self._terminated_sent = False

        # --- counters ---
        self.segments_sent = 0
        self.segments_received = 0
        self.bytes_sent = 0  # payload bytes put on the wire, retransmissions included
        self.bytes_retransmitted = 0
        self.bytes_acked = 0
        self.bytes_received = 0  # in-order payload bytes accepted
        self.pure_acks_sent = 0
        self.retransmissions = 0  # segments retransmitted (loss recovery, RTO, TLP)
        self.rto_expiries = 0
        self.dup_acks_received = 0
        self.window_probes = 0
        self.keepalive_probes = 0
        self.challenge_acks = 0
        self.ooo_segments = 0
        self.duplicate_segments = 0
        #: Data segments whose bytes had all been received already (what a D-SACK
        #: reports; Linux's DelayedACKLost/TCPDSACKOldSent): unneeded retransmissions.
        self.dup_data_segments = 0
        self.dropped_segments = 0
        self.dsacks_sent = 0
        self.acks_merged = 0
        self.acks_rate_limited = 0  # replies to unacceptable segments not sent (limits)
        self.amplification_limited = 0
        self.migrations = 0
        self.paws_drops = 0
        self.ts_missing_drops = 0

    # ------------------------------------------------------------------ state
    def set_state(self, new: State, now: float) -> None:
        """The only place a connection changes state (logged as ``old => new``)."""
        old = self._state
        if old is new:
            return
        if (old, new) not in TRANSITIONS:
            raise AssertionError(f"illegal transition {old} => {new}")
        self._state = new
        if log.debug_enabled:
            log.logger.debug("state", conn=self.name, old=str(old), new=str(new), t=now)

    def __repr__(self) -> str:
        return f"<Connection {self.name} {self.state}>"

    # ------------------------------------------------------------ public API
    @property
    def readable(self) -> int:
        """Bytes of in-order data ready for :meth:`read`."""
        return self._rcvq.size

    @property
    def at_eof(self) -> bool:
        """The peer's FIN arrived and every byte before it has been read."""
        return self._peer_fin and not self._rcvq.size

    @property
    def send_buffered(self) -> int:
        """Bytes accepted by :meth:`send` and not yet acknowledged by the peer."""
        return len(self._sndq)

    @property
    def writing_paused(self) -> bool:
        """True while :attr:`send_buffered` is above the high-water mark."""
        return self._writing_paused

    @property
    def in_flight(self) -> int:
        """Bytes in the network (RFC 6675 pipe): sent, not acknowledged, SACKed or lost."""
        return self.recovery.in_flight(self._max_abs - self._una_abs)

    @property
    def timestamps_ok(self) -> bool:
        """Timestamps were negotiated (RFC 7323 §3.2)."""
        return self._ts_ok

    @property
    def ts_recent(self) -> int:
        """TS.Recent: the peer's timestamp to echo (RFC 7323 §4.3)."""
        return self._ts_recent

    @property
    def ts_offset(self) -> int:
        """The offset of our timestamp clock (RFC 7323 §5.4)."""
        return self._ts_offset

    @property
    def last_window_field(self) -> int:
        """The window field of the last ACK sent."""
        return self._adv_field

    @property
    def name(self) -> str:
        """``peer-host:peer-port/local-tcp-port>peer-tcp-port``, for logs."""
        addr = self.addr
        return f"{addr[0]}:{addr[1]}/{self.local_port}>{self.remote_port}"

    @property
    def time_wait_until(self) -> float:
        """When TIME-WAIT ends (inf unless in TIME-WAIT)."""
        return self._timer_at[_T_TIME_WAIT]

    def detach(self) -> Handoff:
        """Host API: the host replaces this connection by a compact TIME-WAIT record
        (:class:`~rudp.engine.timewait.TimeWait`). This object stops running timers;
        its state stays TIME-WAIT until the record marks the returned
        :class:`Handoff` ended, then reads CLOSED."""
        timers = self._timer_at
        for i in range(_N_TIMERS):
            timers[i] = INF
        self.deadline = INF
        handoff = self._handoff = Handoff()
        return handoff

    @property
    def state(self) -> State:
        """The RFC 9293 state (CLOSED once a compact TIME-WAIT record that replaced
        this connection has ended)."""
        state = self._state
        if state is TIME_WAIT:
            handoff = self._handoff
            if handoff is not None and handoff.ended_at is not None:
                self._handoff = None
                self.set_state(CLOSED, handoff.ended_at)
                return CLOSED
        return state

    @property
    def fast_retransmits(self) -> int:
        """Fast-recovery episodes entered (loss detected without an RTO)."""
        return self.recovery.fast_recoveries

    def set_write_buffer_limits(self, high: int, low: int) -> bool:
        """Set the high/low water marks behind :attr:`writing_paused`.

        Re-evaluates the pause state against the new marks and returns it (asyncio's
        rule: paused above ``high``, resumed at or below ``low``, unchanged between).
        """
        if not 0 <= low <= high:
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        self.write_high = high
        self.write_low = low
        self._snd_buf_max = 0  # the application's limits: no send-buffer autotuning
        size = len(self._sndq)
        if size > high:
            self._writing_paused = True
        elif size <= low:
            self._writing_paused = False
        return self._writing_paused

    def send(self, data: bytes | bytearray | memoryview, now: float) -> bool:
        """Queue ``data`` for sending; never blocks. Returns :attr:`writing_paused`.

        Raises ``BrokenPipeError`` after :meth:`shutdown`/:meth:`close`, and the
        connection's error (e.g. ``ConnectionResetError``) once it has failed.
        """
        if self.error is not None:
            raise self.error
        if self._write_closed:
            raise BrokenPipeError("cannot send after shutdown()/close()")
        if self._state in (CLOSED, TIME_WAIT, LAST_ACK, CLOSING, FIN_WAIT_1):
            raise BrokenPipeError(f"cannot send in state {self.state}")
        if data:
            sndq = self._sndq
            sndq.append(data)
            self.host.wake(self)
            if len(sndq) > self.write_high:
                self._writing_paused = True
        return self._writing_paused

    def read(self, max_bytes: int = -1) -> bytes:
        """Take up to ``max_bytes`` (all if negative) of in-order received data.

        Reading frees receive buffer; when the window can open by a useful amount
        (receiver silly-window avoidance, RFC 9293 §3.8.6.2.2) a window update is sent.
        """
        rcvq = self._rcvq
        if not rcvq.size:
            return b""
        free_before = self.rcv_buf - rcvq.size
        data = rcvq.read(max_bytes)
        self._after_read(free_before)
        return data

    def read_into(self, buffer: memoryview) -> int:
        """Copy up to ``len(buffer)`` bytes of in-order received data into
        ``buffer`` (a writable byte-format memoryview, such as the one a
        ``BufferedProtocol.get_buffer()`` hands out); returns how many. As
        :meth:`read`, with one copy fewer."""
        rcvq = self._rcvq
        if not rcvq.size:
            return 0
        free_before = self.rcv_buf - rcvq.size
        n = rcvq.read_into(buffer)
        self._after_read(free_before)
        return n

    def _after_read(self, free_before: int) -> None:
        """The application took data: autotune the buffer, reopen the window."""
        rcvq = self._rcvq
        if self._rcv_buf_max > self.rcv_buf and self._state in SYNCHRONIZED:
            self._rcv_space_adjust()
        if self._state in SYNCHRONIZED and not self._peer_fin:
            # Window update when the right edge can move by >= min(MSS, buf/2), the
            # currently advertised window has fallen below half the largest we can
            # offer (the buffer, or what the window field can carry), and it was
            # the data held in the buffer that kept it small, so reading is what
            # opens it (Linux's tcp_cleanup_rbuf). A window held small by something
            # else -- the unscaled window of the handshake -- grows with the next
            # segment sent: a pure ACK for it when the application reads the first
            # request would precede the response the application is about to
            # write, which carries the same window (Linux: its receive window
            # grows with rcv_ssthresh as data arrives, not on the first read).
            # But a window with less than one full segment left is always
            # reopened at once, whatever held it small: the sender is stopped,
            # and with one segment outstanding nothing else would ACK before the
            # delayed-ACK timer (a 64 KB MSS fills the handshake's 65,535 bytes
            # with one segment; Linux: the new window is >= twice the old).
            buf = self.rcv_buf
            max_wnd = min(self._max_rcv_wnd(), buf)
            right = self._rcv_nxt_abs + min(buf - rcvq.size, max_wnd)
            threshold = min(self._rcv_mss, buf // 2)
            adv_left = self._rcv_adv_abs - self._rcv_nxt_abs
            if (
                right - self._rcv_adv_abs >= threshold
                and adv_left < max_wnd // 2
                and (adv_left < self._rcv_mss or adv_left + threshold > min(free_before, max_wnd))
            ):
                self._ack_now = True
                self.host.wake(self)

    def _rcv_space_adjust(self) -> None:
        """Receive-buffer autotuning, when the application has read (Linux's
        tcp_rcv_space_adjust, "dynamic right-sizing"): once per receiver round trip,
        if the application read more than in the last one, the buffer grows to
        twice that plus 16 segments, and more while the rate is still rising (a
        sender in slow start doubles it every round trip), up to ``rcv_buf_max``.
        The clock is the last segment's arrival (Linux uses its cached tcp_mstamp).
        """
        now = self._last_rx
        nxt = self._rcv_nxt_abs
        if self._rcv_rtt_seq < 0:
            return  # not established yet
        # The receiver's round trip by the sequence method (Linux's
        # tcp_rcv_rtt_measure): how long the sender took to fill the window that
        # was open at the last mark. That is at least one round trip, more when the
        # sender was not held by the window, so the smallest sample is kept.
        if nxt >= self._rcv_rtt_seq:
            sample = now - self._rcv_rtt_at
            if sample > 0 and (self._rcv_rtt == 0 or sample < self._rcv_rtt):
                self._rcv_rtt = sample
            self._rcv_rtt_seq = max(self._rcv_adv_abs, nxt + 1)
            self._rcv_rtt_at = now
        rtt = self._rcv_rtt
        if rtt == 0 or now - self._rcvq_time < rtt:
            return
        read_to = nxt - self._rcvq.size
        copied = read_to - self._rcvq_seq
        space = self._rcvq_space
        if copied > space:
            rcvwin = 2 * copied + 16 * self.config.mss
            if space > 0:
                rcvwin += 2 * (rcvwin * (copied - space) // space)
            new = min(rcvwin, self._rcv_buf_max)
            if new > self.rcv_buf:
                self.rcv_buf = new
                self._adv_nxt = -1  # _advertise() recomputes with the larger buffer
            self._rcvq_space = copied
        self._rcvq_seq = read_to
        self._rcvq_time = now

    def _snd_buf_expand(self) -> None:
        """Send-buffer autotuning (Linux's tcp_sndbuf_expand, on ACKs that free
        space): hold twice the congestion window (at least the initial window), so
        that a round trip of data is queued behind the one in flight, up to
        ``snd_buf_max``; not while the congestion window is full (then the window,
        not the buffer, holds the sender back: Linux's tcp_should_expand_sndbuf)."""
        cc = self.cc
        want = 2 * max(cc.cwnd, self.config.initial_cwnd * self.config.mss)
        if want > self._snd_buf_max:
            want = self._snd_buf_max
        if want > self.write_high and self.in_flight < cc.cwnd:
            self.write_high = want
            self.write_low = default_write_low(want)

    def shutdown(self, now: float) -> None:
        """Half-close: send FIN after the buffered data; keep receiving (RFC 9293 §3.10.4)."""
        if self.error is not None:
            raise self.error
        if self._write_closed:
            return
        if self._state in (CLOSED, LISTEN):
            raise InvalidStateError(f"shutdown() in state {self._state}")
        self._write_closed = True
        if self._state is SYN_SENT:
            # Nothing sent yet: RFC 9293 §3.10.4 says delete the TCB.
            self._terminate(now, None)
            return
        self._fin_queued = True
        # In SYN-RECEIVED the FIN waits for ESTABLISHED (RFC 9293 §3.10.4 CLOSE:
        # "queue for processing after entering ESTABLISHED"), so the ACK of our SYN
        # is taken as such (the fifth check, SYN-RECEIVED) and never as data.
        if self._state is ESTABLISHED:
            self.set_state(FIN_WAIT_1, now)
        elif self._state is CLOSE_WAIT:
            self.set_state(LAST_ACK, now)
        self.host.wake(self)

    def close(self, now: float) -> None:
        """Close both directions: FIN after buffered data; later data is answered by RST.

        Unread received data is discarded and the connection reset, as Linux does
        (RFC 2525 §2.17), because the peer's data would otherwise be lost silently.
        """
        if self.state is CLOSED or self._read_closed:
            return
        self._read_closed = True
        self._adv_nxt = -1  # the advertised window no longer depends on reading
        if self._rcvq.size and self._state in SYNCHRONIZED:
            self._rcvq.discard()
            self.abort(now)
            return
        if not self._write_closed:
            self.shutdown(now)
        if self._state is FIN_WAIT_2:
            self._timer_at[_T_FIN_WAIT_2] = now + FIN_WAIT_2_TIMEOUT
            self._report_done()
        self._update_deadline()

    def abort(self, now: float) -> None:
        """Reset the connection: send RST (in synchronized states) and drop everything."""
        if self.state is CLOSED:
            return
        if self._state is not TIME_WAIT and (
            self._state in SYNCHRONIZED or self._state is SYN_RECEIVED
        ):
            self._rst = (self.snd_max, self.rcv_nxt, RST | ACK)
            self.host.wake(self)
        self._read_closed = self._write_closed = True
        self._terminate(now, ConnectionAbortedError("connection aborted locally"))

    def stats(self, now: float | None = None) -> dict[str, Any]:
        """Live statistics (the asyncio layer exposes them as ``rudp_stats``).

        What Linux reports in ``TCP_INFO`` (``ss -ti``), under RFC 9293/Linux names;
        docs/stats.md maps every field. Sizes in bytes, times in seconds, rates in
        bytes per second. With ``now`` (the engine's clock) the ages are included:
        ``last_send_age`` (since data last left), ``last_receive_age`` (since the
        last acceptable segment arrived), ``unacked_age`` (since the last forward
        progress while data is outstanding: the user timeout's clock, None when all
        is acknowledged) and ``time_wait_left``.
        """
        from .recovery.scoreboard import FLAGS, LOST, RETRANS, SACKED, segments

        rec = self.recovery
        sb = rec.sb
        rtt = self.rtt
        sacked_segs = lost_segs = retrans_segs = 0
        records = sb.outstanding_records()
        if sb.sacked or sb.lost:
            for r in records:
                flags = r[FLAGS]
                if flags & SACKED:
                    sacked_segs += segments(r)
                elif flags & LOST:
                    lost_segs += segments(r)
                    if flags & RETRANS:
                        retrans_segs += segments(r)
        outstanding = self._max_abs - self._una_abs
        ages: dict[str, Any] = {}
        if now is not None:
            since = self._unacked_since
            tw_end = self._timer_at[_T_TIME_WAIT]
            ages = {
                "last_send_age": max(0.0, now - self._last_send),
                "last_receive_age": max(0.0, now - self._last_rx),
                "unacked_age": None if since is None else max(0.0, now - since),
                "time_wait_left": None if tw_end == INF else max(0.0, tw_end - now),
            }
        return {
            "state": self.state.value,
            "unacked_segments": sum(map(segments, records)),
            "sacked_segments": sacked_segs,
            "lost_segments": lost_segs,
            "retrans_segments": retrans_segs,
            "outstanding_bytes": outstanding,
            "notsent_bytes": max(0, len(self._sndq) - outstanding),
            "rto_backoff": rtt.backoff,
            "keepalive_probes_unanswered": self._ka_probes,
            "delivery_rate_app_limited": rec.rs.app_limited,
            "rcv_mss": self._rcv_mss,
            "advmss": self.config.mss,
            "snd_wscale": self.snd_wscale,
            "rcv_wscale": self.rcv_wscale if self._rcv_wscale_ok else 0,
            "max_snd_wnd": self.max_snd_wnd,
            "rcv_buf": self.rcv_buf,
            "snd_buf": self.write_high,
            "ato": self.config.delayed_ack,
            **ages,
            "srtt": rtt.srtt,
            "rttvar": rtt.rttvar,
            "rto": rtt.rto,
            "min_rtt": rtt.min_rtt if rtt.min_rtt != INF else None,
            "cwnd": self.cc.cwnd,
            "ssthresh": self.cc.ssthresh,
            "congestion_control": self.cc.name,
            "pacing_rate": self._pacing_rate(),
            "pacing_slack": self.pacing_slack,
            "delivery_rate": rec.rs.delivery_rate if rec.rs.delivery_rate >= 0 else None,
            "delivered": sb.delivered,
            "in_flight": self.in_flight,
            "sacked_bytes": sb.sacked,
            "lost_bytes": sb.lost,
            "retrans_in_flight": sb.retrans,
            "recovery_state": STATE_NAMES[rec.state],
            "sack": self._sack_ok,
            "timestamps": self._ts_ok,
            "auth": self.auth is not None,
            **(self.auth.stats() if self.auth is not None else {}),
            "snd_wnd": self.snd_wnd,
            "rcv_wnd": self._advertised_window(),
            "snd_mss": self.snd_mss,
            "send_buffered": len(self._sndq),
            "recv_buffered": self._rcvq.size,
            "ooo_bytes": self._rcvq.ooo_bytes,
            "segments_sent": self.segments_sent,
            "segments_received": self.segments_received,
            "bytes_sent": self.bytes_sent,
            "bytes_retransmitted": self.bytes_retransmitted,
            "bytes_acked": self.bytes_acked,
            "bytes_received": self.bytes_received,
            "pure_acks_sent": self.pure_acks_sent,
            "retransmissions": self.retransmissions,
            "fast_retransmits": rec.fast_recoveries,
            "rto_expiries": self.rto_expiries,
            "tlp_probes": rec.tlp_probes,
            "tlp_recoveries": rec.tlp_recoveries,
            "spurious_undos": rec.spurious_undos,
            "reordering_seen": rec.rack.reordering_seen,
            "dsacks_received": rec.dsacks_received,
            "dsacks_sent": self.dsacks_sent,
            "dup_acks_received": self.dup_acks_received,
            "window_probes": self.window_probes,
            "keepalive_probes": self.keepalive_probes,
            "challenge_acks": self.challenge_acks,
            "ooo_segments": self.ooo_segments,
            "duplicate_segments": self.duplicate_segments,
            "dup_data_segments": self.dup_data_segments,
            "dropped_segments": self.dropped_segments,
            "paws_drops": self.paws_drops,
            "migrations": self.migrations,
            "path_validated": self._validated,
            "amplification_limited": self.amplification_limited,
            "acks_rate_limited": self.acks_rate_limited,
            **self.cc.stats(),
        }

    # -------------------------------------------------------------- opening
    def open_active(self, now: float) -> None:
        """Host API: start an active open (CLOSED -> SYN-SENT, SYN owed)."""
        self.set_state(SYN_SENT, now)
        self._start_syn(now)

    def open_passive(self, seg: Segment, now: float, size: int = 0) -> None:
        """Host API: a listener accepted ``seg`` (a SYN): RFC 9293 §3.10.7.2 LISTEN, third check.
        ``size`` is the SYN datagram's length: the address is not validated yet."""
        self._amp_rx += size
        self.irs = seg.seq
        self.rcv_nxt = (seg.seq + 1) & SEQ_MASK
        self._rcv_nxt_abs = 0
        self._take_syn_options(seg, now)
        self._state = LISTEN  # born from the listener's LISTEN
        self.set_state(SYN_RECEIVED, now)
        self._update_window(seg, initial=True)
        self._start_syn(now)

    def open_cookie(self, syn: Segment, now: float) -> None:
        """Host API: a listener validated a SYN cookie (:mod:`rudp.engine.syncookies`)
        in an ACK; ``syn`` is the SYN rebuilt from it (ISN, MSS, window scale,
        SACK-permitted, timestamps). The connection is in SYN-RECEIVED as if it had
        sent the SYN,ACK itself (it left statelessly, with ``iss`` as its ISN): the ACK,
        given next to :meth:`receive`, completes the handshake (RFC 4987 §3.6)."""
        self.irs = syn.seq
        self.rcv_nxt = (syn.seq + 1) & SEQ_MASK
        self._rcv_nxt_abs = 0
        self._take_syn_options(syn, now)
        self._state = LISTEN  # born from the listener's LISTEN
        self.set_state(SYN_RECEIVED, now)
        self._update_window(syn, initial=True)
        self.snd_nxt = self.snd_max = (self.iss + 1) & SEQ_MASK
        self._max_abs = 1
        # What the cookie SYN,ACK advertised (its window field is never scaled).
        self._rcv_adv_abs = min(self.config.rcv_buf, 0xFFFF)
        self._last_ack_sent = self.rcv_nxt

    def _take_syn_options(self, seg: Segment, now: float) -> None:
        """The peer's SYN options: MSS (RFC 9293 §3.7.1), window scale and timestamps
        (RFC 7323 §2.2, §3.2), SACK-permitted (RFC 2018 §2). An option is in use only
        if we offered it too (active open) / offer it back (passive open)."""
        cfg = self.config
        mss = seg.mss if seg.mss is not None else DEFAULT_PEER_MSS
        # Clamp absurd peer MSS values (RFC 9293 §3.7.1; Linux TCP_MIN_MSS).
        self.snd_mss = max(MIN_MSS, min(mss, cfg.mss))
        if self.auth is not None:
            # RFC 9293 §3.7.1: the effective send MSS excludes TCP options. TCP-AO's
            # 16 bytes ride on every segment; taking them from the payload keeps each
            # datagram the size of the same segment without authentication.
            self.snd_mss -= OPTION_LEN
        self.cc.set_mss(self.snd_mss)
        self.recovery.mss = self.snd_mss
        if seg.wscale is not None:
            self._rcv_wscale_ok = True
            # RFC 7323 §2.3: a shift above 14 is treated as 14.
            self.snd_wscale = min(seg.wscale, MAX_WSCALE)
        else:
            self.rcv_wscale = 0
            self.snd_wscale = 0
        self._sack_ok = cfg.sack and seg.sack_perm
        self.recovery.sack_ok = self._sack_ok
        if cfg.timestamps and seg.ts is not None:
            self._ts_ok = True
            self._ts_recent = seg.ts[0]
            self._ts_recent_at = now

    def _start_syn(self, now: float, *, keep_timer: bool = False) -> None:
        """Owe our SYN (or SYN,ACK) and set the handshake's sequence state and timer.

        ``keep_timer``: resend without touching the retry timer and, by Karn's rule,
        stop timing the handshake (a resend the peer asked for).
        """
        self.snd_nxt = self.snd_max = (self.iss + 1) & SEQ_MASK
        self._max_abs = 1
        self._last_send = now
        if keep_timer:
            self._syn_timed = False
        else:
            if not self._syn_timed and self._retries == 0:
                self._syn_timed = True
                self._syn_time = now
            self._timer_at[_T_RTO] = now + self.rtt.rto
        self._syn_pending = True
        self.host.wake(self)
        self._update_deadline()

    # ------------------------------------------------------------ migration
    def migration_acceptable(self, seg: Segment, addr: Address, now: float) -> bool:
        """Host API: may ``seg``, from unknown UDP address ``addr``, move this
        connection there (NAT rebinding)? Only with the strictest checks the
        connection can make (docs/migration.md): synchronized; a plain ACK-bearing
        segment (no SYN/RST); its sequence number exactly RCV.NXT and its ACK within
        [SND.UNA, SND.MAX]; with timestamps, a TSval passing PAWS and a TSecr that is
        one of ours from the last two minutes."""
        if not self.config.migration or self._state not in SYNCHRONIZED:
            return False
        if self._state is TIME_WAIT:
            return False
        flags = seg.flags
        if flags & (SYN | RST) or not flags & ACK:
            return False
        if self.auth is not None and self._authentic_move(seg):
            return True
        if seg.seq != self.rcv_nxt:
            return False
        if not (seq_le(self.snd_una, seg.ack) and seq_le(seg.ack, self.snd_max)):
            return False
        if self._ts_ok:
            ts = seg.ts
            if ts is None or ((ts[0] - self._ts_recent) & SEQ_MASK) >= 0x80000000:
                return False
            age = (self._tsval(now) - ts[1]) & SEQ_MASK
            if age > MIGRATION_TS_WINDOW * 1000:
                return False
        return True

    def _authentic_move(self, seg: Segment) -> bool:
        """With TCP-AO (the host verified the MAC, so only a holder of the key made
        the segment): any acceptable segment that brings something new — data
        reaching beyond RCV.NXT, or an ACK of new data — may move the connection at
        once; a replayed copy of what was already processed may not. The new address
        stays amplification-limited until validated (docs/authentication.md)."""
        if not self._segment_acceptable(seg):
            return False
        if not (seq_le(self.snd_una, seg.ack) and seq_le(seg.ack, self.snd_max)):
            return False
        ts = seg.ts
        if self._ts_ok and (ts is None or ((ts[0] - self._ts_recent) & SEQ_MASK) >= 0x80000000):
            return False  # RFC 7323 §5.3 PAWS
        return seq_gt((seg.seq + seg.seg_len) & SEQ_MASK, self.rcv_nxt) or seq_gt(
            seg.ack, self.snd_una
        )

    def migrate(self, addr: Address, now: float) -> None:
        """Host API: the peer now sends from ``addr``. Until it proves it receives
        there (it acknowledges something sent only to it), it is amplification
        limited; a probe is sent at once to elicit that proof."""
        self.addr = tuple(addr)
        self.key = (self.addr, self.local_port, self.remote_port)
        self.migrations += 1
        self._validated = False
        self._amp_rx = 0
        self._amp_tx = 0
        # Proof: an echo of a timestamp sent from now on, or an ACK beyond what was
        # sent before the move. Our timestamp clock steps 1 ms ahead (it stays
        # monotonic, RFC 7323 §5.4), so every TSval from here on is newer than all
        # sent to the old address, even within the same millisecond.
        if self._ts_ok:
            self._ts_offset = (self._ts_offset + 1) & SEQ_MASK
            self._migrate_mark = self._tsval(now)
        else:
            self._migrate_mark = self._max_abs
        # An ACK (acceptable: the peer records its timestamp, RFC 7323 §4.3), then a
        # probe the peer must answer at once, echoing that timestamp.
        self._ack_now = True
        self._path_probe = True
        self.host.wake(self)

    def _check_path(self, seg: Segment) -> bool:
        """Validate a migrated path: True once the peer acknowledged something sent
        only to the new address."""
        ts = seg.ts
        if self._ts_ok:
            if ts is not None and ((ts[1] - self._migrate_mark) & SEQ_MASK) < 0x80000000:
                self._validated = True
        elif self._una_abs > self._migrate_mark:
            self._validated = True
        return self._validated

    # -------------------------------------------------------------- receive
    def receive(self, seg: Segment, now: float, size: int = 0) -> None:
        """Host API: process one segment addressed to this connection (RFC 9293 §3.10.7);
        ``size`` is its datagram's length (for the amplification limit)."""
        self.segments_received += 1
        if not self._validated:
            self._amp_rx += size
        try:
            if self._state is _SYN_SENT:
                self._on_segment_syn_sent(seg, now)
            else:
                self._on_segment_synchronized(seg, now)
        except _Drop:
            pass
        if not self._validated and self.migrations:
            # Validated, or at least a larger budget: sending was held back by it.
            self._check_path(seg)
            self.host.wake(self)
        self._update_deadline()

    def _predicted(self, seg: Segment) -> bool:
        """Header prediction (a fast path in the spirit of RFC 9293 §3.10.7.4 and Van
        Jacobson's), for an ESTABLISHED connection: a pure ACK or in-order data, no
        control bits, no out-of-order data queued or early FIN waiting for it, no
        SACK blocks, and, with timestamps, a TSval that passes PAWS."""
        flags = seg.flags
        ts = seg.ts
        return (
            not flags & (SYN | FIN | RST)
            and flags & ACK != 0
            and seg.seq == self.rcv_nxt
            and not self._rcvq.ooo_starts
            and self._fin_rcvd_abs is None  # an early FIN waits for this data
            and not seg.sack
            and (
                not self._ts_ok
                or (ts is not None and ((ts[0] - self._ts_recent) & SEQ_MASK) < 0x80000000)
            )
        )

    def _predicted_arrived(self, seg: Segment, now: float) -> None:
        """A segment on the header-prediction path is acceptable: the peer is alive,
        and RFC 7323 §4.3 (R3): remember its TSval, to echo, if it is at or before
        the last ACK sent."""
        self._last_rx = now
        self._ka_probes = 0
        ts = seg.ts
        if (
            ts is not None
            and self._ts_ok
            and ((self._last_ack_sent - seg.seq) & SEQ_MASK) < 0x80000000  # seq_le
        ):
            self._ts_recent = ts[0]
            self._ts_recent_at = now

    def receive_run(
        self, seg: Segment, count: int, seg_size: int, last_seq: int, now: float
    ) -> bool:
        """Host API: ``count`` in-order data segments merged into ``seg`` by receive
        coalescing (:func:`rudp.wire.segment.coalesce`; Linux's GRO): ``seg`` has the
        first one's header and all their data; ``seg_size`` is the first one's data
        length, ``last_seq`` the last one's sequence number.

        Processed as one segment only where that gives what processing them one by
        one would -- the header-prediction path of :meth:`receive`: ESTABLISHED, the
        data at RCV.NXT and inside the window, no SACK blocks, PAWS passed -- and
        then True; otherwise nothing is done and False returned (the host hands the
        segments to :meth:`receive` one at a time)."""
        if not (
            self._state is _ESTABLISHED
            and self._validated
            and not self._read_closed
            and len(seg.payload) <= self._rcv_adv_abs - self._rcv_nxt_abs
            and self._predicted(seg)
        ):
            return False
        self.segments_received += count
        self._predicted_arrived(seg, now)  # TS.Recent: the first one's TSval
        # Every segment carries the same ACK and window: the first one's ACK does all
        # there is to do (with data they are no duplicate ACKs, RFC 5681 §2); the
        # window's update time is the last one's (RFC 9293 §3.10.7.4: SND.WL1).
        self._process_ack(seg, now)
        if self.snd_wl1 == seg.seq and self.snd_wl2 == seg.ack:
            self.snd_wl1 = last_seq
        if self._state is _ESTABLISHED:
            if seg_size > self._rcv_mss:
                # tcp_measure_rcv_mss: Linux measures a GRO packet by its gso_size.
                self._rcv_mss = min(seg_size, self.config.mss)
            self._accept_in_order(seg.payload, now, segment=False)
        self._update_deadline()
        return True

    def _on_segment_syn_sent(self, seg: Segment, now: float) -> None:
        """RFC 9293 §3.10.7.3, SYN-SENT."""
        flags = seg.flags
        # First: check the ACK bit.
        if flags & ACK and (seq_le(seg.ack, self.iss) or seq_gt(seg.ack, self.snd_max)):
            if not flags & RST:
                # Not for this SYN (e.g. a stale SYN-ACK): <SEQ=SEG.ACK><CTL=RST>.
                self._send_rst(seg.ack, 0, RST)
            self.dropped_segments += 1
            return
        # Second: RST. Acceptable only with an acceptable ACK (RFC 5961 §3.2).
        if flags & RST:
            if flags & ACK:
                self._terminate(now, ConnectionRefusedError("connection refused by peer (RST)"))
            else:
                self.dropped_segments += 1
            return
        # Fourth: SYN.
        if not flags & SYN:
            self.dropped_segments += 1
            return
        self.irs = seg.seq
        self.rcv_nxt = (seg.seq + 1) & SEQ_MASK
        self._rcv_nxt_abs = 0
        self._take_syn_options(seg, now)
        self._last_rx = now
        if flags & ACK:
            # SYN,ACK: our SYN is acknowledged.
            self._ack_syn(seg, now)
            self._update_window(seg, initial=True)
            self._establish(now)
            self._ack_now = True
            self.host.wake(self)
            self.host.established(self)
            if seg.payload or flags & FIN:
                self._process_text_and_fin(seg, now)
        else:
            # Simultaneous open (RFC 9293 §3.5 figure 7): SYN-RECEIVED, send SYN,ACK.
            self._update_window(seg, initial=True)
            self.set_state(SYN_RECEIVED, now)
            self._retries = 0
            self._syn_timed = False
            self._start_syn(now)

    def _ack_syn(self, seg: Segment, now: float) -> None:
        self.snd_una = seg.ack
        self._una_abs = 1
        if seq_gt(seg.ack, self.snd_nxt):
            self.snd_nxt = self.snd_max = seg.ack
        if self._syn_timed and self._retries == 0:
            self.rtt.sample(now - self._syn_time, now)
        elif self.rtt.srtt is None:
            # RFC 6298 §5.7: after SYN retransmissions, RTO restarts from 3 s if
            # no measurement is possible; we use the initial RTO.
            self.rtt.rto = max(self.config.rto_initial, self.rtt.rto_min)
        self._syn_timed = False
        self._retries = 0
        self._timer_at[_T_RTO] = INF
        self._set_unacked_since(None)

    def _establish(self, now: float) -> None:
        """Enter ESTABLISHED; start the keepalive timer (re-armed lazily from then on)."""
        self.set_state(ESTABLISHED, now)
        # Receive-buffer autotuning starts measuring (Linux's tcp_init_buffer_space:
        # the first round trip is expected to bring at most an initial window).
        self._rcvq_space = min(self.rcv_buf, 10 * self.config.mss)
        self._rcvq_seq = self._rcv_nxt_abs
        self._rcvq_time = self._rcv_rtt_at = now
        self._rcv_rtt_seq = self._rcv_adv_abs
        if self.config.keepalive:
            self._timer_at[_T_KEEPALIVE] = self._last_rx + self.config.keepalive_idle

    def _note_duplicate(self, seg: Segment) -> None:
        """RFC 2883 §4: remember the part of ``seg`` below RCV.NXT (data already
        received) to report it in the next ACK's first SACK block (D-SACK)."""
        if seq_lt(seg.seq, self.rcv_nxt):
            self.dup_data_segments += 1
            if self._sack_ok:
                start = self._rcv_nxt_abs + seq_sub(seg.seq, self.rcv_nxt)
                end = min(start + len(seg.payload), self._rcv_nxt_abs)
                if end > start:
                    self._dsack = (start, end)

    def _segment_acceptable(self, seg: Segment) -> bool:
        """RFC 9293 §3.10.7.4, first check: the four cases of segment acceptability."""
        seg_len = seg.seg_len
        rcv_wnd = self._rcv_adv_abs - self._rcv_nxt_abs
        if rcv_wnd < 0:
            rcv_wnd = 0
        off = seq_sub(seg.seq, self.rcv_nxt)
        if seg_len == 0:
            if rcv_wnd == 0:
                return off == 0
            return 0 <= off < rcv_wnd
        if rcv_wnd == 0:
            return False
        end = off + seg_len - 1
        return 0 <= off < rcv_wnd or 0 <= end < rcv_wnd or (off < 0 and end >= rcv_wnd)

    def _challenge_ack(self, now: float) -> None:
        """RFC 5961 §3.2/§4.2/§5.2 challenge ACK, rate limited per connection (§7)."""
        if now - self._chack_window >= 1.0:
            self._chack_window = now
            self._chack_count = 0
        if self._chack_count >= CHALLENGE_ACK_LIMIT:
            self.acks_rate_limited += 1
            return
        self._chack_count += 1
        self.challenge_acks += 1
        # Each challenge is answered by its own segment, never merged with others.
        self._acks_owed.append((self.rcv_nxt, b""))
        self.host.wake(self)

    def _owe_ack(self) -> None:
        """An ACK must go out at the next flush."""
        self._ack_now = True
        self.host.wake(self)

    def _owe_oow_ack(self, now: float) -> None:
        """Answer an unacceptable segment (RFC 9293 §3.10.7.4) with an ACK, at most one
        per :data:`OOW_ACK_INTERVAL` per connection, whether or not it carried data
        (Linux's tcp_invalid_ratelimit, which spares data-bearing segments: here
        injected data cannot draw a stream of duplicate ACKs towards the real peer,
        whose loss detection would count them; docs/security.md)."""
        if now - self._oow_ack_at >= OOW_ACK_INTERVAL:
            self._oow_ack_at = now
            self._owe_ack()
        else:
            self.acks_rate_limited += 1

    def _answer_unacceptable(self, seg: Segment, now: float) -> None:
        """The ACK answering an unacceptable segment (sequence check or PAWS), rate
        limited (:meth:`_owe_oow_ack`) so two confused ends cannot ping-pong ACKs and
        injected segments cannot draw a stream of them. The exception: a plausible
        duplicate, data ending at most one receive buffer below RCV.NXT (a spurious
        retransmission such as a tail loss probe, or a reordered original arriving
        after its retransmission), is reported at once with a D-SACK (RFC 2883 §4),
        from which its sender learns; a blind attacker lands there with odds of
        rcv_buf / 2**32."""
        n = len(seg.payload)
        back = seq_sub(self.rcv_nxt, seg.seq)
        if n and n <= back <= self.rcv_buf:
            self._note_duplicate(seg)
            self._owe_ack()
        else:
            self._owe_oow_ack(now)

    def _owe_distinct_ack(self) -> None:
        """An ACK must go out as its own segment, carrying the SACK information as it
        is now (RFC 5681 §4.2: one immediate ACK per out-of-order segment; RFC 2018
        §4: its first block is the one that segment went into)."""
        if len(self._acks_owed) >= MAX_ACKS_OWED:
            self.acks_merged += 1
            self._owe_ack()
            return
        opt = b""
        if self._sack_ok and (self._rcvq.ooo_starts or self._dsack):
            opt = self._sack_option()
        self._acks_owed.append((self.rcv_nxt, opt))
        self.host.wake(self)

    def _on_segment_synchronized(self, seg: Segment, now: float) -> None:
        """RFC 9293 §3.10.7.4: SYN-RECEIVED and every synchronized state."""
        flags = seg.flags
        state = self._state
        ts = seg.ts

        if state is _ESTABLISHED and self._predicted(seg):
            n = len(seg.payload)
            if n <= self._rcv_adv_abs - self._rcv_nxt_abs:
                self._predicted_arrived(seg, now)
                self._process_ack(seg, now)
                if self._state is not _ESTABLISHED:
                    return
                if n:
                    self._accept_in_order(seg.payload, now)
                return

        synack_window = False
        if state is SYN_RECEIVED and flags & SYN and not flags & RST and seg.seq == self.irs:
            if not flags & ACK:
                # The peer retransmitted its SYN: our SYN,ACK was lost. Resend it now,
                # as Linux does, rather than the bare ACK of the sequence check, which
                # a peer in SYN-SENT drops (RFC 9293 §3.10.7.3, fifth). The timer keeps
                # its schedule and, by Karn's rule, the handshake is no longer timed.
                self._start_syn(now, keep_timer=True)
                return
            # Simultaneous open (RFC 9293 §3.5 figure 7, line 6): the peer's SYN,ACK
            # in SYN-RECEIVED. Its SYN is the one already received, so the sequence
            # check would reject the segment; as Linux does, process the rest of it,
            # which starts at RCV.NXT. Its window is a SYN's: never scaled.
            new = Segment(
                seg.sport, seg.dport, self.rcv_nxt, seg.ack, flags & ~SYN, seg.wnd, seg.payload
            )
            new.ts = seg.ts
            new.sack = seg.sack
            seg = new
            flags = seg.flags
            synack_window = True

        if self._ts_ok and not flags & RST:
            if ts is None:
                # RFC 7323 §3.2: after negotiation every non-RST segment carries
                # timestamps; one without is dropped (so PAWS cannot be sidestepped).
                self.ts_missing_drops += 1
                self.dropped_segments += 1
                return
            if (
                (ts[0] - self._ts_recent) & SEQ_MASK
            ) >= 0x80000000 and now - self._ts_recent_at <= PAWS_IDLE_LIMIT:
                # RFC 7323 §5.3 R1 (PAWS): an old duplicate. Not acceptable: ACK
                # (rate limited like every reply to an unacceptable segment), drop.
                self.paws_drops += 1
                self.dropped_segments += 1
                self._answer_unacceptable(seg, now)
                return

        # First: sequence number check.
        if not self._segment_acceptable(seg):
            self.dropped_segments += 1
            if state is TIME_WAIT and flags & FIN and not flags & RST:
                # RFC 9293 §3.10.7.4 TIME-WAIT: a retransmitted FIN is ACKed and the
                # 2 MSL timeout restarted.
                self._timer_at[_T_TIME_WAIT] = now + 2 * self.config.msl
                self._owe_ack()
                return
            if not flags & RST:
                # Unacceptable: <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK> (also answers
                # keepalive and zero-window probes with seq = rcv_nxt - 1).
                self.duplicate_segments += 1
                self._answer_unacceptable(seg, now)
            return
        self._last_rx = now
        self._ka_probes = 0
        if (
            ts is not None
            and self._ts_ok
            and seq_le(seg.seq, self._last_ack_sent)
            and ((ts[0] - self._ts_recent) & SEQ_MASK) < 0x80000000
        ):
            # RFC 7323 §4.3 (R3): remember the newest timestamp of a segment at or
            # before the last ACK sent, to echo it.
            self._ts_recent = ts[0]
            self._ts_recent_at = now

        # Second: RST (RFC 5961 §3.2: only an exact match resets).
        if flags & RST:
            if seg.seq != self.rcv_nxt:
                self._challenge_ack(now)
                return
            if state is TIME_WAIT:
                # RFC 1337: ignore RST in TIME-WAIT to avoid TIME-WAIT assassination.
                self.dropped_segments += 1
                return
            if state is SYN_RECEIVED and self.listener_port is not None:
                # Passive open: return to LISTEN, i.e. forget the half-open connection.
                self._terminate(now, None, report=False)
                return
            if state is SYN_RECEIVED:
                err: BaseException = ConnectionRefusedError("connection refused by peer (RST)")
            elif state in (CLOSING, LAST_ACK):
                err = ConnectionResetError("connection reset by peer while closing")
                if self._read_closed:
                    self._terminate(now, None)
                    return
            else:
                err = ConnectionResetError("connection reset by peer")
            self._terminate(now, err)
            return

        # Fourth: SYN in a synchronized state -> challenge ACK (RFC 5961 §4.2).
        # (A SYN at IRS in SYN-RECEIVED was handled before the sequence check.)
        if flags & SYN:
            self._challenge_ack(now)
            return

        # Fifth: the ACK field.
        if not flags & ACK:
            self.dropped_segments += 1
            return
        if state is SYN_RECEIVED:
            if seq_lt(self.snd_una, seg.ack) and seq_le(seg.ack, self.snd_max):
                self._validated = True  # it acknowledged our SYN,ACK: it receives
                self._ack_syn(seg, now)
                self._update_window(seg, initial=synack_window, force=True)
                self._establish(now)
                self.host.established(self)
                if self._fin_queued:
                    # close() arrived in SYN-RECEIVED: now FIN-WAIT-1 (§3.10.4).
                    self.set_state(FIN_WAIT_1, now)
                    self.host.wake(self)
                state = self._state
            else:
                # <SEQ=SEG.ACK><CTL=RST>
                self._send_rst(seg.ack, 0, RST)
                return
        else:
            self._process_ack(seg, now)
            if self._state is CLOSED:
                return
            state = self._state
        if state is TIME_WAIT:
            if flags & FIN:
                self._timer_at[_T_TIME_WAIT] = now + 2 * self.config.msl
                self._owe_ack()
            return
        if seg.payload or flags & FIN:
            self._process_text_and_fin(seg, now)

    def _send_rst(self, seq: int, ack: int, flags: int) -> None:
        """Owe an RST in reply to the segment being processed."""
        self._rst = (seq, ack, flags)
        self.host.wake(self)

    def _process_ack(self, seg: Segment, now: float) -> None:
        """Fifth check for synchronized states: SND.UNA, windows, RTT, loss recovery."""
        ack = seg.ack
        una = self.snd_una
        if seq_gt(ack, self.snd_max):
            # RFC 9293 §3.10.7.4 / RFC 5961 §5.2: ACK of unsent data -> ACK (rate
            # limited as every reply to an unacceptable segment), drop.
            self.dropped_segments += 1
            self._owe_oow_ack(now)
            raise _Drop
        if seq_lt(ack, (una - max(self.max_snd_wnd, 1)) & SEQ_MASK):
            # RFC 5961 §5.2: too old to be a real ACK -> challenge ACK, drop.
            self.dropped_segments += 1
            self._challenge_ack(now)
            raise _Drop
        if ack == una:
            # RFC 5681 §2 duplicate ACK: outstanding data, no payload, no SYN/FIN,
            # same window.
            dup = (
                una != self.snd_max
                and not seg.payload
                and not seg.flags & (SYN | FIN)
                and (seg.wnd << self.snd_wscale) == self.snd_wnd
            )
            if dup:
                self.dup_acks_received += 1
            if una != self.snd_max and (
                (dup and not self._sack_ok) or (seg.sack and self._sack_ok)
            ):
                self._ack_recovery(seg, now, 0, dup)
            if not dup:
                self._update_window(seg)
            return
        if seq_lt(ack, una):
            self._update_window(seg)
            return
        # New data acknowledged.
        acked = (ack - una) & SEQ_MASK
        self.snd_una = ack
        self._una_abs += acked
        if seq_gt(ack, self.snd_nxt):
            self.snd_nxt = ack
        sndq = self._sndq
        buffered = len(sndq)
        data_acked = acked
        if self._fin_sent and seq_gt(ack, (sndq.seq + buffered) & SEQ_MASK):
            data_acked -= 1  # the FIN's sequence number
        if data_acked > buffered:
            data_acked = buffered
        if data_acked > 0:
            sndq.acknowledge(data_acked)
            self.bytes_acked += data_acked
            if self._snd_buf_max and self.write_high < self._snd_buf_max:
                self._snd_buf_expand()
        self._retries = 0
        self._ack_recovery(seg, now, acked, False)
        # RFC 6298 §5.2/§5.3: stop the timer if all is acked, else restart it.
        timers = self._timer_at
        if ack == self.snd_max:
            timers[_T_RTO] = INF
            timers[_T_TLP] = INF
            self._set_unacked_since(None)
        else:
            timers[_T_RTO] = now + self.rtt.rto
            self._set_unacked_since(now)
            self._arm_tlp(now)
        self._update_window(seg)
        if self._writing_paused and len(sndq) <= self.write_low:
            self._writing_paused = False
            self.host.writable(self)
        if len(sndq) or self._fin_queued:
            self.host.wake(self)
        # Our FIN acknowledged?
        if self._fin_sent and ack == self.snd_max and not len(sndq):
            state = self._state
            if state is FIN_WAIT_1:
                self.set_state(FIN_WAIT_2, now)
                if self._read_closed:
                    timers[_T_FIN_WAIT_2] = now + FIN_WAIT_2_TIMEOUT
                    self._report_done()
            elif state is CLOSING:
                self._enter_time_wait(now)
            elif state is LAST_ACK:
                self._terminate(now, None)

    def _ack_recovery(self, seg: Segment, now: float, acked: int, dup: bool) -> None:
        """Hand one ACK to loss recovery: SACK blocks (validated, D-SACK split off,
        RFC 2883 §4), timestamps (RFC 7323 §4: RTTM, echo for Eifel)."""
        una = self._una_abs
        top = self._max_abs
        sack: list[tuple[int, int]] = []
        dsack: tuple[int, int] | None = None
        blocks = seg.sack
        if blocks and self._sack_ok:
            base_seq = self.snd_una
            for i, (left, right) in enumerate(blocks):
                lo = una + seq_sub(left, base_seq)
                hi = una + seq_sub(right, base_seq)
                if not lo < hi <= top or hi - lo > self.max_snd_wnd + self.snd_mss:
                    continue  # invalid or wrapping (Linux tcp_is_sackblock_valid)
                if i == 0 and (
                    hi <= una
                    or (
                        len(blocks) > 1
                        and seq_le(blocks[1][0], left)
                        and seq_le(right, blocks[1][1])
                    )
                ):
                    dsack = (lo, hi)  # RFC 2883 §4: a duplicate report
                    continue
                if hi <= una:
                    continue
                sack.append((max(lo, una), hi))
        echo_ms = -1
        ts_rtt = -1.0
        ts = seg.ts
        if ts is not None and self._ts_ok and ts[1]:
            echo = ts[1]
            echo_ms = (echo - self._ts_offset) & SEQ_MASK
            if acked:
                elapsed = (self._tsval(now) - echo) & SEQ_MASK
                if elapsed < 0x80000000:
                    ts_rtt = elapsed / 1000.0
        rec = self.recovery
        sb = rec.sb
        rec.on_ack(now, una, top, acked, sack, dsack, dup, echo_ms, ts_rtt)
        self._timer_at[_T_REO] = now + rec.reo_timeout if rec.reo_timeout > 0 else INF
        if sb.lost > sb.retrans or (rec.rs.acked and seq_lt(self.snd_max, self._sndq.end)):
            self.host.wake(self)  # retransmissions owed, or delivery opened the window

    def _update_window(self, seg: Segment, initial: bool = False, force: bool = False) -> None:
        """RFC 9293 §3.10.7.4: update SND.WND if the segment is newer (SND.WL1/WL2)."""
        if initial:
            # RFC 7323 §2.2: the window in a SYN is not scaled.
            self.snd_wnd = seg.wnd
            self.snd_wl1 = seg.seq
            self.snd_wl2 = seg.ack
        elif (
            force
            or seq_lt(self.snd_wl1, seg.seq)
            or (self.snd_wl1 == seg.seq and seq_le(self.snd_wl2, seg.ack))
        ):
            wnd = seg.wnd << self.snd_wscale
            if wnd > self.snd_wnd and self._timer_at[_T_PERSIST] != INF:
                self.host.wake(self)
            self.snd_wnd = wnd
            self.snd_wl1 = seg.seq
            self.snd_wl2 = seg.ack
        else:
            return
        if self.snd_wnd > self.max_snd_wnd:
            self.max_snd_wnd = self.snd_wnd
        if self.snd_wnd and (len(self._sndq) or self._fin_queued):
            self.host.wake(self)

    # ------------------------------------------------------ receive data path
    def _accept_in_order(
        self, data: bytes | bytearray | memoryview, now: float, segment: bool = True
    ) -> None:
        """Fast path: ``data`` starts exactly at RCV.NXT and fits the window
        (``segment``: it is one received segment's payload)."""
        n = len(data)
        if n > self._rcv_mss and segment:
            self._rcv_mss = min(n, self.config.mss)
        rcvq = self._rcvq
        was_empty = not rcvq.size
        if not self._read_closed and n:
            rcvq.append(data)
        self._rcv_nxt_abs += n
        self.rcv_nxt = (self.rcv_nxt + n) & SEQ_MASK
        self.bytes_received += n
        if self._read_closed:
            # Data for a socket the application closed: Linux answers RST.
            self.abort(now)
            return
        self._delay_ack(n, now)
        if was_empty:
            self.host.readable(self)

    def _delay_ack(self, n: int, now: float) -> None:
        """``n`` octets arrived in order: ACK them now or within the delayed-ACK time.

        RFC 1122 §4.2.3.2 / RFC 5681 §4.2: ACK at least every second full-sized
        segment; otherwise within the delayed-ACK time.
        """
        self._unacked_bytes += n
        if self._unacked_bytes >= 2 * self._rcv_mss or self.config.delayed_ack == 0:
            self._ack_now = True
            self.host.wake(self)
        elif self._timer_at[_T_DELACK] == INF:
            self._timer_at[_T_DELACK] = now + self.config.delayed_ack

    def _process_text_and_fin(self, seg: Segment, now: float) -> None:
        """RFC 9293 §3.10.7.4 seventh (segment text) and eighth (FIN) checks."""
        state = self._state
        payload = seg.payload
        fin_waited = self._fin_rcvd_abs is not None  # a FIN that came out of order
        # The text of a SYN,ACK follows the SYN's sequence number (RFC 9293 §3.4).
        start = self._rcv_nxt_abs + seq_sub(seg.seq, self.rcv_nxt) + (seg.flags & SYN) // SYN
        if payload and state in _RECV_DATA_STATES:
            if self._read_closed:
                self.abort(now)
                return
            self._insert(start, payload, now)
        elif payload:
            self.dropped_segments += 1
        if seg.flags & FIN:
            fin_abs = start + len(payload)
            if fin_abs >= self._rcv_nxt_abs and self._fin_rcvd_abs is None:
                self._fin_rcvd_abs = fin_abs
            if fin_abs > self._rcv_nxt_abs and not payload:
                # A bare out-of-order FIN: duplicate ACK at once (RFC 5681 §4.2);
                # with data, the data's out-of-order ACK is that ACK.
                self._owe_distinct_ack()
        if self._fin_rcvd_abs is not None and self._fin_rcvd_abs == self._rcv_nxt_abs:
            self._on_fin(now)
            if fin_waited:
                # RFC 5681 §4.2: this segment filled the hole before the FIN: ACK now.
                self._owe_ack()

    def _insert(self, start: int, data: bytes | bytearray | memoryview, now: float) -> None:
        """Reassembly: place ``data`` at unwrapped position ``start`` (§3.10.7.4, seventh)."""
        nxt = self._rcv_nxt_abs
        end = start + len(data)
        right = max(self._rcv_adv_abs, nxt)
        # Trim to the window: left of RCV.NXT is duplicate, right of the window is
        # not ours to keep.
        if end > right:
            data = data[: right - start] if right > start else b""
            end = right
        if start < nxt:
            if end <= nxt:
                # All of it arrived before: RFC 2883 D-SACK, immediate ACK.
                self.duplicate_segments += 1
                self.dup_data_segments += 1
                if self._sack_ok:
                    self._dsack = (start, end)
                self._owe_distinct_ack()
                return
            data = data[nxt - start :]
            start = nxt
        if not data:
            return
        rcvq = self._rcvq
        if start == nxt:
            had_ooo = bool(rcvq.ooo_starts)
            self._accept_in_order(data, now)
            if had_ooo:
                for piece in rcvq.take_in_order(self._rcv_nxt_abs):
                    self._accept_in_order(piece, now, False)
                # RFC 5681 §4.2: ACK immediately when a segment fills a hole.
                self._owe_ack()
            return
        # Out of order: keep only the bytes not already held, in sorted runs.
        self.ooo_segments += 1
        kept = rcvq.store(start, data)
        if kept < 0:
            self.dropped_segments += 1
        elif kept == 0:
            self.duplicate_segments += 1
            self.dup_data_segments += 1
            if self._sack_ok:
                self._dsack = (start, end)  # RFC 2883 §4.1.2: a duplicate of held data
        recent = self._sack_recent
        recent.insert(0, start)
        if len(recent) > SACK_RECENT:
            recent.pop()
        # RFC 5681 §4.2: an immediate duplicate ACK for every out-of-order segment,
        # never merged with others (the peer's loss detection counts them).
        self._owe_distinct_ack()

    def _sack_option(self) -> bytes:
        """The SACK option for an ACK now (RFC 2018 §4, RFC 2883 §4): a D-SACK block
        first if one is owed (then the block containing it), then the block holding
        the most recent out-of-order arrival, then the most recently reported
        others, then the rest, as many as fit next to the timestamps option."""
        rcvq = self._rcvq
        starts = rcvq.ooo_starts
        datas = rcvq.ooo_data
        room = 3 if self._ts_ok else 4
        if self.auth is not None:
            room -= 2  # TCP-AO's 16 bytes: one block next to timestamps, else two
        blocks: list[tuple[int, int]] = []
        used: set[int] = set()
        dsack = self._dsack
        if dsack is not None:
            self._dsack = None
            self.dsacks_sent += 1
            blocks.append(dsack)
            i = rcvq.run_containing(dsack[0])
            if i >= 0 and len(blocks) < room:
                used.add(i)
                blocks.append((starts[i], starts[i] + len(datas[i])))
        nxt = self._rcv_nxt_abs
        recent = self._sack_recent
        keep: list[int] = []
        for pos in recent:
            if pos < nxt:
                continue
            keep.append(pos)
            i = rcvq.run_containing(pos)
            if i >= 0 and i not in used and len(blocks) < room:
                used.add(i)
                blocks.append((starts[i], starts[i] + len(datas[i])))
        self._sack_recent = keep
        i = len(starts) - 1
        while len(blocks) < room and i >= 0:
            if i not in used:
                blocks.append((starts[i], starts[i] + len(datas[i])))
            i -= 1
        base = (self.irs + 1) & SEQ_MASK  # position 0 of the peer's data
        return sack_option([((base + lo) & SEQ_MASK, (base + hi) & SEQ_MASK) for lo, hi in blocks])

    def _on_fin(self, now: float) -> None:
        """RFC 9293 §3.10.7.4 eighth check: the peer's FIN, now in order."""
        self._fin_rcvd_abs = None
        self._rcv_nxt_abs += 1
        self.rcv_nxt = (self.rcv_nxt + 1) & SEQ_MASK
        self._peer_fin = True
        state = self._state
        if state in (ESTABLISHED, SYN_RECEIVED):
            # The passive close: the application usually answers the end of the
            # stream by closing, and our FIN then carries this ACK. So, as Linux
            # does (tcp_fin enters "pingpong" mode for CLOSE-WAIT), the ACK of the
            # FIN is delayed (RFC 1122 §4.2.3.2; a FIN counts as one octet) and
            # the close takes three segments, not four.
            self._delay_ack(1, now)
            self.set_state(CLOSE_WAIT, now)
            self.host.peer_closed(self)
            return
        self._owe_ack()  # FIN-WAIT-1/2: ACK at once (tcp_fin's tcp_send_ack)
        if state is FIN_WAIT_1:
            if self._fin_sent and self.snd_una == self.snd_max:
                self._enter_time_wait(now)
            else:
                self.set_state(CLOSING, now)
                self.host.peer_closed(self)
        elif state is FIN_WAIT_2:
            self._enter_time_wait(now)

    def _enter_time_wait(self, now: float) -> None:
        if self._state in (FIN_WAIT_1, FIN_WAIT_2) and not self._read_closed:
            self.host.peer_closed(self)
        self.set_state(TIME_WAIT, now)
        timers = self._timer_at
        for i in range(_N_TIMERS):  # not ``for t in Timer``: that runs enum code
            timers[i] = INF
        timers[_T_TIME_WAIT] = now + 2 * self.config.msl
        self._report_done()
        self.host.entered_time_wait(self)

    # ---------------------------------------------------------------- timers
    def _update_deadline(self) -> None:
        d = _earliest(self._timer_at)
        self.deadline = d
        if d < self.sched_at:
            self.host.schedule(self, d)

    def _set_unacked_since(self, t: float | None) -> None:
        """Record the last forward progress while data is outstanding (None: all
        acknowledged); the user timeout counts from it (RFC 9293 §3.8.3)."""
        self._unacked_since = t
        self._timer_at[_T_USER_TIMEOUT] = INF if t is None else t + self.config.user_timeout

    def _arm_tlp(self, now: float) -> None:
        """RFC 8985 §7.2: schedule a tail loss probe while data is outstanding, SACK
        is on, no loss episode or probe is under way, and an RTT is known; never
        later than the RTO."""
        rec = self.recovery
        srtt = self.rtt.srtt
        timers = self._timer_at
        if srtt is None or not rec.may_probe() or self.snd_una == self.snd_max:
            timers[_T_TLP] = INF
            return
        # §7.2: if the RTO would fire first, probe at the RTO's time instead.
        timers[_T_TLP] = min(now + rec.tlp_timeout(self.in_flight, srtt), timers[_T_RTO])

    def handle_timer(self, now: float) -> None:
        """Host API: run every timer due at ``now``, in :class:`Timer` order."""
        timers = self._timer_at
        for t, handler in enumerate(HANDLERS):
            if timers[t] <= now:
                timers[t] = INF
                getattr(self, handler)(now)
                if self._state is CLOSED:
                    return
        self._update_deadline()

    def _on_time_wait_timer(self, now: float) -> None:
        self._terminate(now, None)

    def _on_fin_wait_2_timer(self, now: float) -> None:
        if self._state is FIN_WAIT_2:
            self._terminate(now, None)

    def _on_user_timeout_timer(self, now: float) -> None:
        # RFC 9293 §3.8.3: the user timeout fires on time, not at the next RTO; it
        # concerns retransmitted data, not the opening handshake.
        since = self._unacked_since
        if since is None or self._timer_at[_T_RTO] == INF or self._state in _HANDSHAKE_STATES:
            return
        ut = self.config.user_timeout
        due = since + ut  # the deadline itself: (since + ut) - since may be < ut
        if now >= due:
            self._terminate(
                now, UserTimeoutError(f"data unacknowledged for {ut:g} s (user timeout)")
            )
        else:
            self._timer_at[_T_USER_TIMEOUT] = due

    def _on_rto_timer(self, now: float) -> None:
        """The retransmission timer expired (RFC 6298 §5.4-5.7)."""
        state = self._state
        self.rto_expiries += 1
        self._retries += 1
        self._syn_timed = False  # Karn
        if log.info_enabled:
            log.logger.info(
                "rto", conn=self.name, state=str(state), retries=self._retries, rto=self.rtt.rto
            )
        if state is SYN_SENT or state is SYN_RECEIVED:
            # The opening handshake: resend SYN (or SYN,ACK) until the retry limit.
            active = state is SYN_SENT or self.listener_port is None
            if state is SYN_SENT:
                limit = self.config.syn_retries
            elif active:
                limit = self.config.synack_retries
            else:
                limit = self.host.synack_retries(self, now)
            if self._retries > limit:
                # A listener's half-open connection just goes back to LISTEN, unseen.
                what = "SYN" if state is SYN_SENT else "SYN,ACK"
                err = ConnectTimeoutError(f"no answer to {what} after {limit} retransmissions")
                self._terminate(now, err if active else None, report=active)
                return
            self.rtt.on_timeout()
            self.retransmissions += 1
            self._start_syn(now)
            return
        if self.snd_una == self.snd_max:
            return
        # §5.5 back off, §5.4 retransmit the earliest unacknowledged segment (every
        # unSACKed one is marked lost; the window is one segment), §5.6 restart.
        self.rtt.on_timeout()
        self.recovery.on_rto(now, self._una_abs, self._max_abs)
        timers = self._timer_at
        timers[_T_REO] = timers[_T_TLP] = INF
        timers[_T_RTO] = now + self.rtt.rto
        self.host.wake(self)

    def _on_reo_timer(self, now: float) -> None:
        """RACK's reordering window ran out for a segment (RFC 8985 §6.2)."""
        if self.snd_una == self.snd_max:
            return
        rec = self.recovery
        if rec.on_reo_timer(now, self._una_abs, self._max_abs):
            self.host.wake(self)
        if rec.reo_timeout > 0:
            self._timer_at[_T_REO] = now + rec.reo_timeout

    def _on_tlp_timer(self, now: float) -> None:
        """The probe timeout (RFC 8985 §7.3): the ACK clock stopped; probe. The RTO
        restarts from the probe (so a PTO clamped to the RTO replaces it)."""
        if self.recovery.may_probe() and self.snd_una != self.snd_max:
            self._tlp_pending = True
            self._timer_at[_T_RTO] = now + self.rtt.rto
            self.host.wake(self)

    def _on_delack_timer(self, now: float) -> None:
        if self._unacked_bytes:
            self._owe_ack()

    def _on_persist_timer(self, now: float) -> None:
        """Zero-window probe (RFC 9293 §3.8.6.1): seq = SND.UNA - 1 forces an ACK
        carrying the current window, as Linux's tcp_probe0 does."""
        if len(self._sndq) or self._fin_queued:
            # RFC 1122 §4.2.2.17: stay open as long as the peer answers the probes;
            # give up only if nothing came back since the previous probe.
            if (
                self._last_rx < self._probe_sent_at
                and now - self._last_rx >= self.config.user_timeout
            ):
                self._terminate(now, UserTimeoutError("peer stopped answering zero-window probes"))
                return
            self._probe_sent_at = now
            self.window_probes += 1
            self._probe_pending = True
            self._persist_backoff += 1
        self.host.wake(self)

    def _on_keepalive_timer(self, now: float) -> None:
        """RFC 1122 §4.2.3.6 keepalive, re-armed lazily: the probe is due
        ``keepalive_idle`` after the last segment received (plus one interval per
        unanswered probe), and only while nothing is outstanding."""
        cfg = self.config
        state = self._state
        if not cfg.keepalive or state is TIME_WAIT:
            return
        if state not in _KEEPALIVE_STATES or self.snd_una != self.snd_max:
            self._timer_at[_T_KEEPALIVE] = now + cfg.keepalive_idle  # look again later
            return
        due = self._last_rx + cfg.keepalive_idle + self._ka_probes * cfg.keepalive_interval
        if now < due:
            self._timer_at[_T_KEEPALIVE] = due
            return
        if self._ka_probes >= cfg.keepalive_count:
            self._terminate(
                now,
                KeepaliveTimeoutError(f"peer did not answer {self._ka_probes} keepalive probes"),
            )
            return
        self._ka_probes += 1
        self.keepalive_probes += 1
        # RFC 1122 §4.2.3.6: seq = SND.UNA - 1 so any TCP must answer.
        self._probe_pending = True
        self.host.wake(self)
        self._timer_at[_T_KEEPALIVE] = due + cfg.keepalive_interval

    def _on_pacing_timer(self, now: float) -> None:
        # The host ran this timer ``late`` after its deadline: smooth that into the
        # pacer's slack (the bucket depth beyond a quantum, see _send_data).
        late = now - self._pace_wake
        if late >= 0.0:
            mean = self._pace_late
            if mean < 0.0:
                mean = late
                dev = late / 2
            else:
                dev = self._pace_late_dev
                dev += (abs(late - mean) - dev) / 4
                mean += (late - mean) / 8
            self._pace_late = mean
            self._pace_late_dev = dev
            slack = mean + 4 * dev
            self.pacing_slack = slack if slack < PACING_SLACK_MAX else PACING_SLACK_MAX
        self.host.wake(self)

    def _schedule_persist(self, now: float) -> None:
        if self._timer_at[_T_PERSIST] == INF:
            delay = min(self.rtt.rto * (1 << min(self._persist_backoff, 16)), self.config.rto_max)
            self._timer_at[_T_PERSIST] = now + delay

    # ---------------------------------------------------------------- output
    def flush(self, now: float) -> None:
        """Host API: the one place where segments leave this connection.

        Emits, in order: a pending RST; our SYN or SYN,ACK; ACKs owed as distinct
        segments; a probe; a tail loss probe; retransmissions and new data as the
        windows and the pacer allow (and the FIN); an ACK if one is still owed.
        """
        rst = self._rst
        if rst is not None:
            self._rst = None
            self._emit(now, rst[0], rst[1], rst[2])
        state = self._state
        if state is CLOSED:
            return
        if self._syn_pending:
            self._syn_pending = False
            self._emit_syn(now)
        if self._acks_owed:
            owed = self._acks_owed
            self._acks_owed = []
            for ack, opt in owed:
                self._emit(now, self.snd_max, ack, ACK, sack_opt=opt)
        if self._probe_pending:
            self._probe_pending = False
            self._emit(now, (self.snd_una - 1) & SEQ_MASK, self.rcv_nxt, ACK)
        if state in _DATA_STATES:
            if self._tlp_pending:
                self._tlp_pending = False
                self._send_loss_probe(now)
            sb = self.recovery.sb
            if (
                (len(self._sndq) and seq_lt(self.snd_max, self._sndq.end))
                or sb.lost > sb.retrans
                or (self._fin_queued and not self._fin_sent)
            ):
                self._send_data(now)
        if self._ack_now and state is not SYN_SENT:
            self.pure_acks_sent += 1
            # <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>
            self._emit(now, self.snd_max, self.rcv_nxt, ACK)
        if self._path_probe:
            # After a migration: SEQ = SND.UNA - 1 draws an immediate ACK from the
            # new address (docs/migration.md, path validation).
            self._path_probe = False
            self._emit(now, (self.snd_una - 1) & SEQ_MASK, self.rcv_nxt, ACK)
        self._update_deadline()

    def _tsval(self, now: float) -> int:
        """Our timestamp clock (RFC 7323 §5.4: 1 ms ticks, per-connection offset)."""
        return (int(now * 1000) + self._ts_offset) & SEQ_MASK

    def _emit(
        self,
        now: float,
        seq: int,
        ack: int,
        flags: int,
        payload: bytes | memoryview = b"",
        *,
        sack_opt: bytes | None = None,
        syn_opts: bytes = b"",
        wnd_override: int | None = None,
    ) -> None:
        """Build one segment and append it to the host's output (only from flush)."""
        if wnd_override is not None:
            wnd = wnd_override
        elif flags & ACK:
            wnd = self._advertise()
        else:
            wnd = 0
        auth = self.auth
        # With TCP-AO the checksum is computed by auth.sign(), after the MAC.
        csum = self.config.checksum and auth is None
        if flags & SYN:
            data = build_segment(
                self.local_port,
                self.remote_port,
                seq,
                ack,
                flags,
                wnd,
                payload,
                syn_opts,
                compute_checksum=csum,
            )
            ao_off = HEADER_LEN + len(syn_opts) - OPTION_LEN  # _emit_syn put it last
        else:
            sack = b""
            if flags & ACK:
                if sack_opt is None:
                    if self._sack_ok and (self._rcvq.ooo_starts or self._dsack):
                        sack = self._sack_option()
                else:
                    sack = sack_opt
            if auth is not None:
                sack = auth.placeholder() + sack  # right after the timestamps, if any
            ao_off = HEADER_LEN + 12 if self._ts_ok else HEADER_LEN
            if self._ts_ok:
                data = build_segment_ts(
                    self.local_port,
                    self.remote_port,
                    seq,
                    ack,
                    flags,
                    wnd,
                    payload,
                    (int(now * 1000) + self._ts_offset) & SEQ_MASK,
                    self._ts_recent,
                    sack,
                    csum,
                )
            else:
                data = build_segment(
                    self.local_port,
                    self.remote_port,
                    seq,
                    ack,
                    flags,
                    wnd,
                    payload,
                    sack,
                    compute_checksum=csum,
                )
        if auth is not None:
            signed = self._sign(auth, data, ao_off)
            if signed is None:
                return
            data = signed
        if not self._validated:
            if self._amp_tx + len(data) > AMPLIFICATION_FACTOR * self._amp_rx:
                self.amplification_limited += 1
                return
            self._amp_tx += len(data)
        self._out.append((data, self.addr))
        self.segments_sent += 1
        if flags & ACK:
            self._ack_sent(ack)

    def _ack_sent(self, ack: int) -> None:
        """A segment carrying ACK = ``ack`` left. An ACK of everything received so
        far settles what is owed. The duplicate ACKs queued for out-of-order
        segments carry an older RCV.NXT when a later segment of the same batch
        filled the hole: they settle nothing, and the ACK of the filled hole must
        still go out."""
        if ack == self.rcv_nxt:
            self._last_ack_sent = ack
            self._ack_now = False
            if self._unacked_bytes:
                self._unacked_bytes = 0
                self._timer_at[_T_DELACK] = INF

    def _sign(self, auth: AuthSession, data: bytes, ao_off: int) -> bytes | None:
        """TCP-AO: the MAC of ``data`` (RFC 5925 §5.1), then its checksum; None (and
        nothing sent) for a segment the session cannot sign yet — a non-SYN before
        the peer's ISN is known, which the state machine never sends."""
        try:
            return auth.sign(data, ao_off, compute_checksum=self.config.checksum)
        except AuthStateError:  # pragma: no cover - defensive
            self.dropped_segments += 1
            return None

    def _emit_syn(self, now: float) -> None:
        """Our SYN or SYN,ACK: MSS, window scale, SACK-permitted and timestamps (a
        SYN,ACK carries only what the SYN offered, RFC 7323 §2.2/§3.2, RFC 2018 §2)."""
        cfg = self.config
        flags = SYN
        ack = 0
        if self._state is SYN_RECEIVED:
            flags |= ACK
            ack = self.rcv_nxt
            ws = self.rcv_wscale if self._rcv_wscale_ok else None
            sack_perm = self._sack_ok
            ts = (self._tsval(now), self._ts_recent) if self._ts_ok else None
        else:
            ws = self.rcv_wscale
            sack_perm = cfg.sack
            ts = (self._tsval(now), 0) if cfg.timestamps else None
        opts = encode_options(mss=cfg.mss, wscale=ws, sack_perm=sack_perm, ts=ts)
        if self.auth is not None:
            opts += self.auth.placeholder()  # 36 bytes of options at most (RFC 5925 §7.6)
        # RFC 7323 §2.2: the window field of a SYN is never scaled.
        wnd = min(cfg.rcv_buf, 0xFFFF)
        self._rcv_adv_abs = self._rcv_nxt_abs + wnd
        self._adv_nxt = -1  # _advertise() must recompute from this edge
        if flags & ACK:
            self._last_ack_sent = ack
        self._emit(now, self.iss, ack, flags, syn_opts=opts, wnd_override=wnd)

    def _advertise(self) -> int:
        """The window field to send (RFC 9293 §3.8.6.2.2 receiver SWS avoidance).

        The right edge moves only by at least min(MSS, buffer/2) and never moves
        left (RFC 9293 §3.8.6: shrinking the window is strongly discouraged) --
        except by less than one unit of the window scale: see below.
        """
        nxt = self._rcv_nxt_abs
        held = self._rcvq.size
        if nxt == self._adv_nxt and held == self._adv_held:
            return self._adv_field  # nothing received or read since the last one
        buf = self.rcv_buf
        free = buf - held
        if self._read_closed:
            free = buf
        # RCV.WND is what the peer is told: no more than the field can carry.
        right = nxt + min(free, self._max_rcv_wnd())
        if right - self._rcv_adv_abs >= min(self._rcv_mss, buf // 2) or free == buf:
            self._rcv_adv_abs = max(right, self._rcv_adv_abs)
        elif self._rcv_adv_abs < nxt:
            self._rcv_adv_abs = nxt
        shift = self.rcv_wscale if self._rcv_wscale_ok else 0
        # A scaled window is rounded down (RFC 7323 §2.4 and appendix F): the edge
        # the peer sees may fall back by less than 2**shift bytes when RCV.NXT moved
        # by other than a multiple of it. Rounding up instead, so that it never
        # falls back, lets the edge creep past the buffer by up to 2**shift - 1
        # bytes with every ACK while the application does not read (Linux's
        # tcp_shrink_window=1 rounds down for the same reason). Data up to the
        # edge already advertised is still accepted (RCV.WND keeps it), so a
        # segment the peer sent into it is never dropped.
        field = (self._rcv_adv_abs - nxt) >> shift
        self._adv_nxt = nxt
        self._adv_held = held
        self._adv_field = field
        return field

    def _advertised_window(self) -> int:
        """RCV.WND as the peer was told it: the scaled field rounded down (the edge
        we accept data up to may lie up to 2**shift - 1 bytes further)."""
        shift = self.rcv_wscale if self._rcv_wscale_ok else 0
        return max(0, self._rcv_adv_abs - self._rcv_nxt_abs) >> shift << shift

    def _max_rcv_wnd(self) -> int:
        """The largest window the 16-bit field can advertise (RFC 7323 §2.2)."""
        return 0xFFFF << (self.rcv_wscale if self._rcv_wscale_ok else 0)

    def _emit_data(self, now: float, seq: int, n: int, fin: bool) -> None:
        """One segment with ``n`` bytes of buffered data from ``seq`` (and the FIN)."""
        sndq = self._sndq
        off = (seq - sndq.seq) & SEQ_MASK
        flags = ACK
        if n and off + n == len(sndq):
            flags |= PSH
        if fin:
            flags |= FIN
        if n:
            start = sndq.head + off
            mv = memoryview(sndq.data)
            try:
                self._emit(now, seq, self.rcv_nxt, flags, mv[start : start + n])
            finally:
                mv.release()
            self.bytes_sent += n
        else:
            self._emit(now, seq, self.rcv_nxt, flags)
        self._last_send = now  # RFC 5681 §4.1 idle detection

    def _send_new(self, now: float, n: int, fin: bool, in_flight: int) -> None:
        """Send ``n`` new bytes (and the FIN) at SND.MAX and record the segment."""
        start = self._max_abs
        end = start + n + fin
        self._emit_data(now, self.snd_max, n, fin)
        if fin:
            self._fin_sent = True
            self._fin_abs = end - 1
        self._max_abs = end
        self.snd_max = self.snd_nxt = (self.snd_max + n + fin) & SEQ_MASK
        self.recovery.on_sent(start, end, now, in_flight)

    def _send_burst(self, now: float, count: int, in_flight: int) -> None:
        """``count`` full-sized segments of new data from SND.MAX, built in one call:
        the segments ``count`` :meth:`_send_new` calls would send (the caller
        checked there is no FIN among them, no SACK option to add, no TCP-AO, and
        no amplification limit), with one pass of bookkeeping."""
        mss = self.snd_mss
        sndq = self._sndq
        seq = self.snd_max
        off = (seq - sndq.seq) & SEQ_MASK
        n = count * mss
        ack = self.rcv_nxt
        data = build_burst(
            self.local_port,
            self.remote_port,
            seq,
            ack,
            ACK,
            ACK | PSH if off + n == len(sndq) else ACK,
            self._advertise(),
            sndq.data,
            sndq.head + off,
            mss,
            count,
            ((int(now * 1000) + self._ts_offset) & SEQ_MASK, self._ts_recent)
            if self._ts_ok
            else None,
            self.config.checksum,
        )
        addr = self.addr
        self._out.extend([(d, addr) for d in data])
        self.segments_sent += count
        self.bytes_sent += n
        self._last_send = now  # RFC 5681 §4.1 idle detection
        self._ack_sent(ack)
        start = self._max_abs
        self._max_abs = start + n
        self.snd_max = self.snd_nxt = (seq + n) & SEQ_MASK
        self.recovery.on_sent_many(start, count, mss, now, in_flight)

    def _resend(self, now: float, rec: Record, in_flight: int) -> None:
        """Retransmit the segment ``rec`` (whole, as first sent)."""
        start = rec[START]
        fin = start <= self._fin_abs < rec[END]
        n = rec[END] - start - fin
        self._emit_data(now, (self.snd_una + start - self._una_abs) & SEQ_MASK, n, fin)
        self.retransmissions += 1
        self.bytes_retransmitted += n
        self.recovery.on_resent(rec, now, in_flight)
        if log.debug_enabled:
            log.logger.debug("retransmit", conn=self.name, pos=start, len=n)

    def _pacing_rate(self) -> float:
        """Bytes per second the pacer allows (0: not paced)."""
        cc = self.cc
        rate = cc.pacing_rate
        if rate <= 0 and self.config.pacing:
            srtt = self.rtt.srtt
            if srtt:
                ratio = PACING_SS_RATIO if cc.cwnd < cc.ssthresh // 2 else PACING_CA_RATIO
                rate = ratio * max(cc.cwnd, self.in_flight) / srtt
        return rate

    def _send_loss_probe(self, now: float) -> None:
        """RFC 8985 §7.3: one new segment if the receive window allows, else a
        retransmission of the last one; then restart the RTO."""
        rec = self.recovery
        outstanding = self._max_abs - self._una_abs
        in_flight = rec.in_flight(outstanding)
        sndq = self._sndq
        unsent = (sndq.end - self.snd_max) & SEQ_MASK if seq_lt(self.snd_max, sndq.end) else 0
        room = seq_sub((self.snd_una + self.snd_wnd) & SEQ_MASK, self.snd_max)
        # An unvalidated address: only what the amplification budget allows (the
        # segment would not leave, yet count as sent).
        amp = _NO_LIMIT if self._validated else self._amp_room()
        if unsent and room > 0:
            n = min(unsent, self.snd_mss, room, amp)
            if n <= 0:
                return
            fin = self._fin_queued and n == unsent
            self._send_new(now, n, fin, in_flight)
            rec.on_probe_sent(self._max_abs, False)
        else:
            last = rec.sb.last_segment()
            if last is None or last[FLAGS] & SACKED or last[END] - last[START] > amp:
                return
            self._resend(now, last, in_flight)
            rec.on_probe_sent(last[END], True)
        self._timer_at[_T_RTO] = now + self.rtt.rto

    def _send_data(self, now: float) -> None:
        """Send what the windows allow: retransmissions of lost segments first (RFC
        6675 NextSeg rule 1), then new data (RFC 5681 window check, RFC 9293
        §3.8.6.2.1 sender SWS avoidance), then the FIN; paced if a rate is set."""
        una = self.snd_una
        if now - self._last_send > self.rtt.rto and una == self.snd_max:
            # RFC 5681 §4.1: restart window after an idle period.
            self.cc.on_idle_restart(now)
        rec = self.recovery
        sb = rec.sb
        mss = self.snd_mss
        sndq = self._sndq
        buf_end = (sndq.seq + len(sndq)) & SEQ_MASK
        timers = self._timer_at
        cwnd = rec.send_window()
        in_flight = rec.in_flight(self._max_abs - self._una_abs)
        right = (una + self.snd_wnd) & SEQ_MASK  # the receive window's right edge
        rate = self._pacing_rate()
        if rate <= 0 and una == self.snd_max and in_flight == 0 and self._validated:
            # Fast path, nothing in flight: what the application wrote fits in one
            # segment the windows allow (a request or a response). Send it as the
            # loop below would -- whole, FIN included, then application limited --
            # without its per-pass bookkeeping.
            unsent = (buf_end - una) & SEQ_MASK if seq_lt(una, buf_end) else 0
            n = min(unsent, cwnd, seq_sub(right, una), mss)
            if n > 0 and n == unsent:
                fin = self._fin_queued
                self._send_new(now, n, fin, 0)
                self._arm_rto(now)
                size = n + fin
                if cwnd > size:
                    sb.mark_app_limited(size)
                self._arm_tlp(now)
                if self.snd_wnd > 0:
                    timers[_T_PERSIST] = INF
                    self._persist_backoff = 0
                return
        # The pacer's token bucket, kept as a time: (now - _pace_next) * rate
        # tokens, at most ``depth`` seconds' worth (a quantum plus the host's timer
        # slack), so a late wake-up sends what the elapsed time allows.
        depth = max(2 * mss, rate * PACING_BURST) / rate + self.pacing_slack if rate > 0 else 0.0
        sent_any = False
        app_limited = False
        amp = _NO_LIMIT  # payload the amplification budget allows in one segment
        amp_blocked = False
        # Full-sized new segments may leave in bursts built at once (_send_burst)
        # when each would be a plain one: no TCP-AO, no SACK option, a validated path.
        burst = (
            self.auth is None
            and self._validated
            and not (self._sack_ok and (self._rcvq.ooo_starts or self._dsack))
        )
        while True:
            if rate > 0 and self._pace_next > now:
                timers[_T_PACING] = self._pace_wake = self._pace_next
                break
            room = cwnd - in_flight
            if not self._validated:
                # An unvalidated address: no more than 3x what it sent us, headers
                # included (docs/migration.md; RFC 9000 §8), but segments shrink to
                # fit what is left, so the data whose ACK validates the path can go.
                amp = self._amp_room()
                if amp < 0:
                    amp_blocked = True
                    break
            lost = sb.next_lost() if sb.lost > sb.retrans else None
            if lost is not None:
                size = lost[END] - lost[START]
                if room <= 0 or (room < size and in_flight > 0):
                    break
                if size > amp:
                    amp_blocked = True
                    break
                self._resend(now, lost, in_flight)
                if lost[START] == self._una_abs:
                    # As Linux (tcp_xmit_retransmit_queue): resending the first
                    # unacknowledged segment restarts the RTO, so a recovery whose
                    # repair takes longer than one RTO from the last cumulative ACK
                    # (a long queue ahead of the retransmission) does not time out.
                    timers[_T_RTO] = now + self.rtt.rto
            else:
                nxt = self.snd_max
                unsent = (buf_end - nxt) & SEQ_MASK if seq_lt(nxt, buf_end) else 0
                if unsent == 0:
                    if self._fin_queued and not self._fin_sent and (room > 0 or in_flight == 0):
                        self._send_new(now, 0, True, in_flight)  # the FIN alone
                        size = 1
                    else:
                        app_limited = room > 0
                        break
                else:
                    n = min(unsent, room, seq_sub(right, nxt), mss, amp)
                    if n <= 0:
                        amp_blocked = amp <= 0
                        break
                    # Sender SWS avoidance: full segment, or all remaining data (push,
                    # TCP_NODELAY semantics), or half the largest window the peer
                    # offered, or nothing at all is in flight.
                    if n < mss and n < unsent and n < self.max_snd_wnd // 2 and nxt != una:
                        break
                    fin = self._fin_queued and n == unsent
                    count = 0
                    if burst and n == mss:
                        # As many full segments as the windows allow (the FIN, and
                        # the segment it rides on, go alone), and the pacer.
                        count = (
                            min(
                                (unsent - 1 if self._fin_queued else unsent),
                                room,
                                seq_sub(right, nxt),
                            )
                            // mss
                        )
                        if rate > 0:
                            start = max(self._pace_next, now - depth)
                            count = min(count, 1 + int((now - start) * rate / mss))
                        count = min(count, BURST_MAX)
                    if count > 1:
                        self._send_burst(now, count, in_flight)
                        size = count * mss
                    else:
                        self._send_new(now, n, fin, in_flight)
                        size = n + fin
            in_flight += size
            sent_any = True
            if timers[_T_RTO] == INF or self._unacked_since is None:
                self._arm_rto(now)
            if rate > 0:
                if self._pace_next < now - depth:
                    self._pace_next = now - depth
                self._pace_next += size / rate
        if app_limited:
            sb.mark_app_limited(in_flight)
        if sent_any:
            self._arm_tlp(now)
        # Persist timer: data waits and nothing is in flight to elicit an ACK (a
        # zero window, or the amplification budget: the probe's answer adds to it).
        if (
            not sent_any
            and self.snd_una == self.snd_max
            and (
                amp_blocked
                or (
                    seq_lt(self.snd_max, buf_end)
                    and self.snd_wnd < min(mss, (buf_end - self.snd_max) & SEQ_MASK)
                )
            )
        ):
            self._schedule_persist(now)
        elif self.snd_wnd > 0:
            timers[_T_PERSIST] = INF
            self._persist_backoff = 0

    def _amp_room(self) -> int:
        """Payload bytes the next segment to an unvalidated address may carry within
        the amplification budget (negative: not even its header fits)."""
        hdr = HEADER_LEN + 12 if self._ts_ok else HEADER_LEN
        if self.auth is not None or (self._sack_ok and (self._rcvq.ooo_starts or self._dsack)):
            hdr = HEADER_LEN + 40  # options of any length
        return AMPLIFICATION_FACTOR * self._amp_rx - self._amp_tx - hdr

    def _arm_rto(self, now: float) -> None:
        # RFC 6298 §5.1: start the timer when sending data if it is not running.
        if self._timer_at[_T_RTO] == INF:
            self._timer_at[_T_RTO] = now + self.rtt.rto
        if self._unacked_since is None:
            self._set_unacked_since(now)

    # ------------------------------------------------------------- teardown
    def _report_done(self) -> None:
        """Tell the application the connection is over (once)."""
        if not self._terminated_sent:
            self._terminated_sent = True
            self.host.terminated(self, self.error)

    def discard(self, now: float) -> None:
        """Host API: end the connection silently: a TIME-WAIT one whose identity a new
        SYN reuses (RFC 6191), or a half-open one its listener evicts."""
        self._terminate(now, None, report=False)

    def _terminate(self, now: float, error: BaseException | None, report: bool = True) -> None:
        """Move to CLOSED, release everything, and report ``error`` (None = orderly)."""
        if self._state is CLOSED:
            return
        if error is not None and self.error is None:
            self.error = error
            if log.info_enabled:
                log.logger.info("abort", conn=self.name, state=str(self._state), error=repr(error))
        self.set_state(CLOSED, now)
        timers = self._timer_at
        for i in range(_N_TIMERS):  # not ``for t in Timer``: that runs enum code
            timers[i] = INF
        self.deadline = INF
        self._ack_now = self._probe_pending = self._syn_pending = self._tlp_pending = False
        self._path_probe = False
        self._acks_owed = []
        self._sndq.clear()
        self._rcvq.ooo_starts.clear()
        self._rcvq.ooo_data.clear()
        if report and not self._terminated_sent:
            self._report_done()
        self._terminated_sent = True
        self.host.released(self)


class _Drop(Exception):
    """Internal: stop processing the current segment (it has been answered)."""


# Every timer has its handler (checked once, at import).
for _name in HANDLERS:
    assert callable(getattr(Connection, _name, None)), f"Connection lacks {_name}"
