"""One TCP connection: the RFC 9293 state machine, sans-IO.

The connection owns no socket and reads no clock. Its host (an
:class:`~rudp.engine.Endpoint`, through the narrow :class:`ConnectionHost`
interface) feeds it parsed segments (:meth:`Connection.receive`), timer expiries
(:meth:`Connection.handle_timer`) and asks it for output (:meth:`Connection.flush`),
each with ``now``.

Input paths never send. They update state and *record* what must go out: "ACK now",
"retransmit from SND.UNA", a probe, a SYN, an RST; then they wake the host. Segments
leave in exactly one place, :meth:`Connection.flush`, which is where windows, the
congestion controller and the segment record are consulted.

Sequence numbers on the wire wrap mod 2**32 (``rudp.seq``). Internally, receive
positions are also kept "unwrapped" (``_rcv_nxt_abs``) so the out-of-order queue
can be ordered with plain integers.
"""

from __future__ import annotations

from typing import Any, Protocol

from .. import log
from ..config import MIN_MSS, Config
from ..errors import (
    ConnectTimeoutError,
    InvalidStateError,
    KeepaliveTimeoutError,
    UserTimeoutError,
)
from ..seq import SEQ_MASK, seq_gt, seq_le, seq_lt, seq_sub
from ..wire.segment import (
    ACK,
    FIN,
    PSH,
    RST,
    SYN,
    Segment,
    build_segment,
    encode_options,
)
from .buffers import ReceiveBuffer, SendBuffer
from .congestion import AckSample, lookup
from .recovery import NewReno, RttEstimator
from .recovery.newreno import ACK_PARTIAL, ACK_RECOVERY_END
from .states import SYNCHRONIZED, TRANSITIONS, State
from .timers import HANDLERS, INF, Timer

Address = tuple[Any, ...]
S = State

#: RFC 9293 §3.7.1: default send MSS when the peer sends no MSS option (IPv4 536).
DEFAULT_PEER_MSS = 536
#: RFC 7323 §2.3: the largest shift count.
MAX_WSCALE = 14
#: RFC 5961 §7: at most this many challenge ACKs per connection per second.
CHALLENGE_ACK_LIMIT = 10
#: Least time between ACKs sent in reply to out-of-window data-less segments.
OOW_ACK_INTERVAL = 0.5
#: Linux ``tcp_fin_timeout``: an orphaned FIN-WAIT-2 connection lives this long.
FIN_WAIT_2_TIMEOUT = 60.0
#: Most out-of-order runs held at once (memory/CPU cap against 1-byte holes).
MAX_OOO_RUNS = 512

_RECV_DATA_STATES = frozenset({S.ESTABLISHED, S.FIN_WAIT_1, S.FIN_WAIT_2})
#: States in which buffered data or a FIN may still be (re)transmitted.
_DATA_STATES = frozenset({S.ESTABLISHED, S.CLOSE_WAIT, S.FIN_WAIT_1, S.LAST_ACK, S.CLOSING})
_KEEPALIVE_STATES = frozenset({S.ESTABLISHED, S.CLOSE_WAIT, S.FIN_WAIT_2})
_HANDSHAKE_STATES = frozenset({S.SYN_SENT, S.SYN_RECEIVED})

_T_TIME_WAIT = Timer.TIME_WAIT.value
_T_FIN_WAIT_2 = Timer.FIN_WAIT_2.value
_T_USER_TIMEOUT = Timer.USER_TIMEOUT.value
_T_RTO = Timer.RTO.value
_T_DELACK = Timer.DELACK.value
_T_PERSIST = Timer.PERSIST.value
_T_KEEPALIVE = Timer.KEEPALIVE.value


def _wscale_for(buf: int) -> int:
    """Smallest shift that lets a window of ``buf`` bytes fit 16 bits (RFC 7323 §2.2)."""
    shift = 0
    while (buf >> shift) > 0xFFFF and shift < MAX_WSCALE:
        shift += 1
    return shift


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

    def released(self, conn: Connection) -> None:
        """The connection reached CLOSED: forget its identity (it may still hold one
        last RST for the next :meth:`Connection.flush`)."""


class Connection:
    """A TCP connection (RFC 9293) inside an :class:`~rudp.engine.Endpoint`.

    Application API: :meth:`send`, :meth:`read`, :meth:`shutdown` (half-close),
    :meth:`close`, :meth:`abort`, :attr:`state`, :meth:`stats`. Host API (called by
    the endpoint): :meth:`open_active`, :meth:`open_passive`, :meth:`receive`,
    :meth:`handle_timer`, :meth:`flush`, :meth:`discard`, :attr:`deadline`.
    """

    __slots__ = (
        "_ack_now",
        "_ack_sample",
        "_acks_owed",
        "_chack_count",
        "_chack_window",
        "_fin_queued",
        "_fin_rcvd_abs",
        "_fin_sent",
        "_ka_probes",
        "_last_rx",
        "_last_send",
        "_oow_ack_at",
        "_out",
        "_peer_fin",
        "_persist_backoff",
        "_probe_pending",
        "_probe_sent_at",
        "_rcv_adv_abs",
        "_rcv_mss",
        "_rcv_nxt_abs",
        "_rcv_wscale_ok",
        "_rcvq",
        "_read_closed",
        "_retries",
        "_rst",
        "_rtt_seq",
        "_rtt_time",
        "_rtx_first",
        "_sndq",
        "_syn_pending",
        "_terminated_sent",
        "_timer_at",
        "_unacked_bytes",
        "_unacked_since",
        "_write_closed",
        "_writing_paused",
        "addr",
        "bytes_acked",
        "bytes_received",
        "bytes_sent",
        "cc",
        "challenge_acks",
        "config",
        "deadline",
        "dropped_segments",
        "dup_acks_received",
        "duplicate_segments",
        "error",
        "fast_retransmits",
        "host",
        "irs",
        "iss",
        "keepalive_probes",
        "key",
        "listener_port",
        "local_port",
        "max_snd_wnd",
        "name",
        "ooo_segments",
        "pure_acks_sent",
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
        "state",
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
    ) -> None:
        self.host = host
        self._out = host.output
        self.config = config
        self.addr = addr
        self.local_port = local_port
        self.remote_port = remote_port
        self.key = (addr, local_port, remote_port)
        self.listener_port = listener_port  # set for passive opens
        self.name = f"{addr[0]}:{addr[1]}/{local_port}>{remote_port}"
        self.state = S.CLOSED
        self.error: BaseException | None = None

        # --- send sequence variables (RFC 9293 §3.3.1) ---
        self.iss = iss
        self.snd_una = iss
        self.snd_nxt = iss
        self.snd_max = iss  # highest sequence sent + 1 (snd_nxt rolls back on RTO)
        self.snd_wnd = 0
        self.snd_wl1 = 0
        self.snd_wl2 = 0
        self.max_snd_wnd = 0
        self.snd_wscale = 0  # shift applied to the peer's window field
        self.snd_mss = DEFAULT_PEER_MSS  # effective send MSS
        self._sndq = SendBuffer((iss + 1) & SEQ_MASK)
        self._fin_queued = False  # shutdown requested: FIN follows the buffered data
        self._fin_sent = False
        # --- receive sequence variables ---
        self.irs = 0
        self.rcv_nxt = 0
        self._rcv_nxt_abs = 0  # unwrapped rcv_nxt
        self._rcv_adv_abs = 0  # unwrapped right edge of the window we advertised
        self.rcv_wscale = _wscale_for(config.rcv_buf)
        self._rcv_wscale_ok = False  # both sides sent WS (RFC 7323 §2.2)
        self._rcvq = ReceiveBuffer(MAX_OOO_RUNS)
        self._fin_rcvd_abs: int | None = None  # position of the peer's FIN, once seen
        self._rcv_mss = config.mss  # largest segment seen from the peer
        self._peer_fin = False
        self._read_closed = False  # application will not read any more (close())
        self._write_closed = False  # application will not write any more

        # --- output the next flush() owes (recorded by the input paths) ---
        self._ack_now = False  # an ACK is owed now (RFC 1122 §4.2.3.2, RFC 5681 §4.2)
        self._acks_owed = 0  # ACKs owed as distinct segments (challenge ACKs)
        self._rtx_first = False  # retransmit the segment at SND.UNA
        self._probe_pending = False  # keepalive / zero-window probe (SEQ = SND.UNA - 1)
        self._syn_pending = False  # (re)send our SYN or SYN,ACK
        self._rst: tuple[int, int, int] | None = None  # (seq, ack, flags) of an RST
        self._unacked_bytes = 0

        # --- timers (rudp.engine.timers): one deadline each, inf when idle ---
        self._timer_at = [INF] * len(Timer)
        #: The earliest timer (inf: none); read by the host.
        self.deadline = INF
        #: Owned by the host: the deadline it has scheduled for this connection.
        self.sched_at = INF

        # --- RTT, RTO, loss recovery, congestion control ---
        self.rtt = RttEstimator(config.rto_initial, config.rto_min, config.rto_max)
        self.cc = lookup(config.congestion_control)(config.mss, config.initial_cwnd)
        self.recovery = NewReno(iss)
        self._ack_sample = AckSample()
        self._rtt_seq: int | None = None  # sequence being timed (Karn: one at a time)
        self._rtt_time = 0.0
        self._retries = 0  # consecutive RTO expiries for the current snd_una
        self._unacked_since: float | None = None
        self._last_send = now
        # --- persist (zero window) and keepalive state ---
        self._persist_backoff = 0
        self._probe_sent_at = float("-inf")  # last zero-window probe
        self._last_rx = now
        self._ka_probes = 0
        # --- challenge ACK rate limit (RFC 5961 §7), per connection ---
        self._chack_window = -1.0
        self._oow_ack_at = -1.0
        self._chack_count = 0

        # --- flow control towards the application ---
        self.write_high = config.snd_buf
        self.write_low = config.snd_buf // 4
        self._writing_paused = False
        self._terminated_sent = False

        # --- counters ---
        self.segments_sent = 0
        self.segments_received = 0
        self.bytes_sent = 0  # payload bytes put on the wire, retransmissions included
        self.bytes_acked = 0
        self.bytes_received = 0  # in-order payload bytes accepted
        self.pure_acks_sent = 0
        self.retransmissions = 0
        self.fast_retransmits = 0
        self.rto_expiries = 0
        self.dup_acks_received = 0
        self.window_probes = 0
        self.keepalive_probes = 0
        self.challenge_acks = 0
        self.ooo_segments = 0
        self.duplicate_segments = 0
        self.dropped_segments = 0

    # ------------------------------------------------------------------ state
    def set_state(self, new: State, now: float) -> None:
        """The only place a connection changes state (logged as ``old => new``)."""
        old = self.state
        if old is new:
            return
        if (old, new) not in TRANSITIONS:
            raise AssertionError(f"illegal transition {old} => {new}")
        self.state = new
        if log.debug_enabled:
            log.logger.debug("state", conn=self.name, old=str(old), new=str(new), t=now)

    def __repr__(self) -> str:
        return f"<Connection {self.name} {self.state}>"

    # ------------------------------------------------------------ public API
    @property
    def readable(self) -> int:
        """Bytes of in-order data ready for :meth:`read`."""
        return len(self._rcvq.data)

    @property
    def at_eof(self) -> bool:
        """The peer's FIN arrived and every byte before it has been read."""
        return self._peer_fin and not self._rcvq.data

    @property
    def send_buffered(self) -> int:
        """Bytes accepted by :meth:`send` and not yet acknowledged by the peer."""
        return len(self._sndq.data)

    @property
    def writing_paused(self) -> bool:
        """True while :attr:`send_buffered` is above the high-water mark."""
        return self._writing_paused

    def set_write_buffer_limits(self, high: int, low: int) -> bool:
        """Set the high/low water marks behind :attr:`writing_paused`.

        Re-evaluates the pause state against the new marks and returns it (asyncio's
        rule: paused above ``high``, resumed at or below ``low``, unchanged between).
        """
        if not 0 <= low <= high:
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        self.write_high = high
        self.write_low = low
        size = len(self._sndq.data)
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
        if self.state in (S.CLOSED, S.TIME_WAIT, S.LAST_ACK, S.CLOSING, S.FIN_WAIT_1):
            raise BrokenPipeError(f"cannot send in state {self.state}")
        if data:
            buf = self._sndq.data
            buf += data
            self.host.wake(self)
            if len(buf) > self.write_high:
                self._writing_paused = True
        return self._writing_paused

    def read(self, max_bytes: int = -1) -> bytes:
        """Take up to ``max_bytes`` (all if negative) of in-order received data.

        Reading frees receive buffer; when the window can open by a useful amount
        (receiver silly-window avoidance, RFC 9293 §3.8.6.2.2) a window update is sent.
        """
        rcvq = self._rcvq
        if not rcvq.data:
            return b""
        data = rcvq.read(max_bytes)
        if self.state in SYNCHRONIZED and not self._peer_fin:
            # Window update when the right edge can move by >= min(MSS, buf/2) and
            # the currently advertised window has fallen below half the largest.
            max_wnd = self._max_rcv_wnd()
            right = self._rcv_nxt_abs + min(self.config.rcv_buf - len(rcvq.data), max_wnd)
            threshold = min(self._rcv_mss, self.config.rcv_buf // 2)
            adv_left = self._rcv_adv_abs - self._rcv_nxt_abs
            if right - self._rcv_adv_abs >= threshold and adv_left < max_wnd // 2:
                self._ack_now = True
                self.host.wake(self)
        return data

    def shutdown(self, now: float) -> None:
        """Half-close: send FIN after the buffered data; keep receiving (RFC 9293 §3.10.4)."""
        if self.error is not None:
            raise self.error
        if self._write_closed:
            return
        if self.state in (S.CLOSED, S.LISTEN):
            raise InvalidStateError(f"shutdown() in state {self.state}")
        self._write_closed = True
        if self.state is S.SYN_SENT:
            # Nothing sent yet: RFC 9293 §3.10.4 says delete the TCB.
            self._terminate(now, None)
            return
        self._fin_queued = True
        if self.state in (S.ESTABLISHED, S.SYN_RECEIVED):
            self.set_state(S.FIN_WAIT_1, now)
        elif self.state is S.CLOSE_WAIT:
            self.set_state(S.LAST_ACK, now)
        self.host.wake(self)

    def close(self, now: float) -> None:
        """Close both directions: FIN after buffered data; later data is answered by RST.

        Unread received data is discarded and the connection reset, as Linux does
        (RFC 2525 §2.17), because the peer's data would otherwise be lost silently.
        """
        if self.state is S.CLOSED or self._read_closed:
            return
        self._read_closed = True
        if self._rcvq.data and self.state in SYNCHRONIZED:
            self._rcvq.data.clear()
            self.abort(now)
            return
        if not self._write_closed:
            self.shutdown(now)
        if self.state is S.FIN_WAIT_2:
            self._timer_at[_T_FIN_WAIT_2] = now + FIN_WAIT_2_TIMEOUT
            self._report_done()
        self._update_deadline()

    def abort(self, now: float) -> None:
        """Reset the connection: send RST (in synchronized states) and drop everything."""
        if self.state is S.CLOSED:
            return
        if self.state is not S.TIME_WAIT and (
            self.state in SYNCHRONIZED or self.state is S.SYN_RECEIVED
        ):
            self._rst = (self.snd_max, self.rcv_nxt, RST | ACK)
            self.host.wake(self)
        self._read_closed = self._write_closed = True
        self._terminate(now, ConnectionAbortedError("connection aborted locally"))

    def stats(self) -> dict[str, Any]:
        """Live statistics (the asyncio layer exposes them as ``rudp_stats``)."""
        return {
            "state": self.state.value,
            "srtt": self.rtt.srtt,
            "rttvar": self.rtt.rttvar,
            "rto": self.rtt.rto,
            "cwnd": self.cc.cwnd,
            "ssthresh": self.cc.ssthresh,
            "congestion_control": self.cc.name,
            "snd_wnd": self.snd_wnd,
            "rcv_wnd": max(0, self._rcv_adv_abs - self._rcv_nxt_abs),
            "snd_mss": self.snd_mss,
            "send_buffered": len(self._sndq.data),
            "recv_buffered": len(self._rcvq.data),
            "segments_sent": self.segments_sent,
            "segments_received": self.segments_received,
            "bytes_sent": self.bytes_sent,
            "bytes_acked": self.bytes_acked,
            "bytes_received": self.bytes_received,
            "pure_acks_sent": self.pure_acks_sent,
            "retransmissions": self.retransmissions,
            "fast_retransmits": self.fast_retransmits,
            "rto_expiries": self.rto_expiries,
            "dup_acks_received": self.dup_acks_received,
            "window_probes": self.window_probes,
            "keepalive_probes": self.keepalive_probes,
            "challenge_acks": self.challenge_acks,
            "ooo_segments": self.ooo_segments,
            "duplicate_segments": self.duplicate_segments,
            "dropped_segments": self.dropped_segments,
            **self.cc.stats(),
        }

    # -------------------------------------------------------------- opening
    def open_active(self, now: float) -> None:
        """Host API: start an active open (CLOSED -> SYN-SENT, SYN owed)."""
        self.set_state(S.SYN_SENT, now)
        self._start_syn(now)

    def open_passive(self, seg: Segment, now: float) -> None:
        """Host API: a listener accepted ``seg`` (a SYN): RFC 9293 §3.10.7.2 LISTEN, third check."""
        self.irs = seg.seq
        self.rcv_nxt = (seg.seq + 1) & SEQ_MASK
        self._rcv_nxt_abs = 0
        self._take_syn_options(seg)
        self.state = S.LISTEN  # born from the listener's LISTEN
        self.set_state(S.SYN_RECEIVED, now)
        self._update_window(seg, initial=True)
        self._start_syn(now)

    def _take_syn_options(self, seg: Segment) -> None:
        mss = seg.mss if seg.mss is not None else DEFAULT_PEER_MSS
        # Clamp absurd peer MSS values (RFC 9293 §3.7.1; Linux TCP_MIN_MSS).
        self.snd_mss = max(MIN_MSS, min(mss, self.config.mss))
        self.cc.set_mss(self.snd_mss)
        if seg.wscale is not None:
            self._rcv_wscale_ok = True
            # RFC 7323 §2.3: a shift above 14 is treated as 14.
            self.snd_wscale = min(seg.wscale, MAX_WSCALE)
        else:
            self.rcv_wscale = 0
            self.snd_wscale = 0

    def _start_syn(self, now: float, *, keep_timer: bool = False) -> None:
        """Owe our SYN (or SYN,ACK) and set the handshake's sequence state and timer.

        ``keep_timer``: resend without touching the retry timer and, by Karn's rule,
        stop timing the handshake (a resend the peer asked for).
        """
        self.snd_nxt = (self.iss + 1) & SEQ_MASK
        if seq_gt(self.snd_nxt, self.snd_max) or self.snd_max == self.iss:
            self.snd_max = self.snd_nxt
        self._last_send = now
        if keep_timer:
            self._rtt_seq = None
        else:
            if self._rtt_seq is None and self._retries == 0:
                self._rtt_seq = self.iss
                self._rtt_time = now
            self._timer_at[_T_RTO] = now + self.rtt.rto
        self._syn_pending = True
        self.host.wake(self)
        self._update_deadline()

    # -------------------------------------------------------------- receive
    def receive(self, seg: Segment, now: float) -> None:
        """Host API: process one segment addressed to this connection (RFC 9293 §3.10.7)."""
        self.segments_received += 1
        try:
            if self.state is S.SYN_SENT:
                self._on_segment_syn_sent(seg, now)
            else:
                self._on_segment_synchronized(seg, now)
        except _Drop:
            pass
        self._update_deadline()

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
        self._take_syn_options(seg)
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
            self.set_state(S.SYN_RECEIVED, now)
            self._retries = 0
            self._rtt_seq = None
            self._start_syn(now)

    def _ack_syn(self, seg: Segment, now: float) -> None:
        self.snd_una = seg.ack
        if seq_gt(seg.ack, self.snd_nxt):
            self.snd_nxt = seg.ack
        if self._rtt_seq is not None and self._retries == 0:
            self.rtt.sample(now - self._rtt_time)
        elif self.rtt.srtt is None:
            # RFC 6298 §5.7: after SYN retransmissions, RTO restarts from 3 s if
            # no measurement is possible; we use the initial RTO.
            self.rtt.rto = max(self.config.rto_initial, self.rtt.rto_min)
        self._rtt_seq = None
        self._retries = 0
        self._timer_at[_T_RTO] = INF
        self._set_unacked_since(None)

    def _establish(self, now: float) -> None:
        """Enter ESTABLISHED; start the keepalive timer (re-armed lazily from then on)."""
        self.set_state(S.ESTABLISHED, now)
        if self.config.keepalive:
            self._timer_at[_T_KEEPALIVE] = self._last_rx + self.config.keepalive_idle

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
            return
        self._chack_count += 1
        self.challenge_acks += 1
        # Each challenge is answered by its own segment, never merged with others.
        self._acks_owed += 1
        self.host.wake(self)

    def _owe_ack(self) -> None:
        """An ACK must go out at the next flush."""
        self._ack_now = True
        self.host.wake(self)

    def _on_segment_synchronized(self, seg: Segment, now: float) -> None:
        """RFC 9293 §3.10.7.4: SYN-RECEIVED and every synchronized state."""
        flags = seg.flags
        state = self.state

        # Header prediction (a fast path in the spirit of RFC 9293 §3.10.7.4 and
        # Van Jacobson's): ESTABLISHED, pure ACK or in-order data, no control bits.
        if (
            state is S.ESTABLISHED
            and not flags & (SYN | FIN | RST)
            and flags & ACK
            and seg.seq == self.rcv_nxt
            and not self._rcvq.ooo_starts
            and self._fin_rcvd_abs is None  # an early FIN waits for this data
        ):
            n = len(seg.payload)
            if n <= self._rcv_adv_abs - self._rcv_nxt_abs:
                self._last_rx = now
                self._ka_probes = 0
                self._process_ack(seg, now)
                if self.state is not S.ESTABLISHED:
                    return
                if n:
                    self._accept_in_order(seg.payload, now)
                return

        synack_window = False
        if state is S.SYN_RECEIVED and flags & SYN and not flags & RST and seg.seq == self.irs:
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
            seg = Segment(
                seg.sport, seg.dport, self.rcv_nxt, seg.ack, flags & ~SYN, seg.wnd, seg.payload
            )
            flags = seg.flags
            synack_window = True

        # First: sequence number check.
        if not self._segment_acceptable(seg):
            self.dropped_segments += 1
            if state is S.TIME_WAIT and flags & FIN and not flags & RST:
                # RFC 9293 §3.10.7.4 TIME-WAIT: a retransmitted FIN is ACKed and the
                # 2 MSL timeout restarted.
                self._timer_at[_T_TIME_WAIT] = now + 2 * self.config.msl
                self._owe_ack()
                return
            if not flags & RST:
                # Unacceptable: <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK> (also answers
                # keepalive and zero-window probes with seq = rcv_nxt - 1). Replies
                # to data-less segments are rate limited, as Linux's
                # tcp_invalid_ratelimit, so two confused ends cannot ping-pong ACKs.
                self.duplicate_segments += 1
                if seg.payload or now - self._oow_ack_at >= OOW_ACK_INTERVAL:
                    self._oow_ack_at = now
                    self._owe_ack()
            return
        self._last_rx = now
        self._ka_probes = 0

        # Second: RST (RFC 5961 §3.2: only an exact match resets).
        if flags & RST:
            if seg.seq != self.rcv_nxt:
                self._challenge_ack(now)
                return
            if state is S.TIME_WAIT:
                # RFC 1337: ignore RST in TIME-WAIT to avoid TIME-WAIT assassination.
                self.dropped_segments += 1
                return
            if state is S.SYN_RECEIVED and self.listener_port is not None:
                # Passive open: return to LISTEN, i.e. forget the half-open connection.
                self._terminate(now, None, report=False)
                return
            if state is S.SYN_RECEIVED:
                err: BaseException = ConnectionRefusedError("connection refused by peer (RST)")
            elif state in (S.CLOSING, S.LAST_ACK):
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
        if state is S.SYN_RECEIVED:
            if seq_lt(self.snd_una, seg.ack) and seq_le(seg.ack, self.snd_max):
                self._ack_syn(seg, now)
                self._update_window(seg, initial=synack_window, force=True)
                self._establish(now)
                self.host.established(self)
                if self._fin_queued:
                    # close() arrived in SYN-RECEIVED: now FIN-WAIT-1 (§3.10.4).
                    self.set_state(S.FIN_WAIT_1, now)
                    self.host.wake(self)
                state = self.state
            else:
                # <SEQ=SEG.ACK><CTL=RST>
                self._send_rst(seg.ack, 0, RST)
                return
        else:
            self._process_ack(seg, now)
            if self.state is S.CLOSED:
                return
            state = self.state
        if state is S.TIME_WAIT:
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
        """Fifth check for synchronized states: SND.UNA, windows, RTT, congestion control."""
        ack = seg.ack
        una = self.snd_una
        if seq_gt(ack, self.snd_max):
            # RFC 9293 §3.10.7.4 / RFC 5961 §5.2: ACK of unsent data -> ACK, drop.
            self.dropped_segments += 1
            self._owe_ack()
            raise _Drop
        if seq_lt(ack, (una - max(self.max_snd_wnd, 1)) & SEQ_MASK):
            # RFC 5961 §5.2: too old to be a real ACK -> challenge ACK, drop.
            self.dropped_segments += 1
            self._challenge_ack(now)
            raise _Drop
        if ack == una:
            # RFC 5681 §2 duplicate ACK: outstanding data, no payload, no SYN/FIN,
            # same window.
            if (
                una != self.snd_max
                and not seg.payload
                and not seg.flags & (SYN | FIN)
                and (seg.wnd << self.snd_wscale) == self.snd_wnd
            ):
                self.dup_acks_received += 1
                self._on_dup_ack(now)
            else:
                self._update_window(seg)
            return
        if seq_lt(ack, una):
            self._update_window(seg)
            return
        # New data acknowledged.
        acked = (ack - una) & SEQ_MASK
        self.snd_una = ack
        if seq_gt(ack, self.snd_nxt):
            self.snd_nxt = ack
        sndq = self._sndq
        buffered = len(sndq.data)
        data_acked = acked
        if self._fin_sent and seq_gt(ack, (sndq.seq + buffered) & SEQ_MASK):
            data_acked -= 1  # the FIN's sequence number
        if data_acked > buffered:
            data_acked = buffered
        if data_acked > 0:
            sndq.acknowledge(data_acked)
            self.bytes_acked += data_acked
        # RTT sample (RFC 6298 §3 via Karn: only for never-retransmitted data).
        if self._rtt_seq is not None and seq_gt(ack, self._rtt_seq):
            self.rtt.sample(now - self._rtt_time)
            self._rtt_seq = None
        self._retries = 0
        cc = self.cc
        result = self.recovery.on_new_ack(ack, acked, cc.cwnd, self.snd_mss)
        if result == ACK_RECOVERY_END:
            cc.on_recovery_end(now)
        elif result == ACK_PARTIAL:
            # RFC 6582 §3.2 step 5: partial ACK -> retransmit the next hole.
            self._retransmit_first(now)
        else:
            rs = self._ack_sample
            rs.acked = acked
            rs.in_flight = (self.snd_max - ack) & SEQ_MASK
            cc.on_ack(rs, now)
        # RFC 6298 §5.2/§5.3: stop the timer if all is acked, else restart it.
        if ack == self.snd_max:
            self._timer_at[_T_RTO] = INF
            self._set_unacked_since(None)
        else:
            self._timer_at[_T_RTO] = now + self.rtt.rto
            self._set_unacked_since(now)
        self._update_window(seg)
        if self._writing_paused and len(sndq.data) <= self.write_low:
            self._writing_paused = False
            self.host.writable(self)
        if sndq.data or self._fin_queued:
            self.host.wake(self)
        # Our FIN acknowledged?
        if self._fin_sent and ack == self.snd_max and not sndq.data:
            state = self.state
            if state is S.FIN_WAIT_1:
                self.set_state(S.FIN_WAIT_2, now)
                if self._read_closed:
                    self._timer_at[_T_FIN_WAIT_2] = now + FIN_WAIT_2_TIMEOUT
                    self._report_done()
            elif state is S.CLOSING:
                self._enter_time_wait(now)
            elif state is S.LAST_ACK:
                self._terminate(now, None)

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
        if self.snd_wnd and (self._sndq.data or self._fin_queued):
            self.host.wake(self)

    def _on_dup_ack(self, now: float) -> None:
        """RFC 5681 §3.2 fast retransmit / fast recovery, RFC 6582 NewReno."""
        recovery = self.recovery
        if recovery.in_recovery:
            recovery.on_dup_ack(self.snd_una, self.snd_max, self.snd_mss)
            self.host.wake(self)
            return
        if recovery.on_dup_ack(self.snd_una, self.snd_max, self.snd_mss):
            self.fast_retransmits += 1
            self.cc.on_congestion_event(now, (self.snd_max - self.snd_una) & SEQ_MASK)
            self._retransmit_first(now)

    # ------------------------------------------------------ receive data path
    def _accept_in_order(self, data: bytes, now: float) -> None:
        """Fast path: ``data`` starts exactly at RCV.NXT and fits the window."""
        n = len(data)
        buf = self._rcvq.data
        was_empty = not buf
        if not self._read_closed:
            buf += data
        self._rcv_nxt_abs += n
        self.rcv_nxt = (self.rcv_nxt + n) & SEQ_MASK
        self.bytes_received += n
        if n > self._rcv_mss:
            self._rcv_mss = n
        if self._read_closed:
            # Data for a socket the application closed: Linux answers RST.
            self.abort(now)
            return
        # RFC 1122 §4.2.3.2 / RFC 5681 §4.2: ACK at least every second full-sized
        # segment; otherwise within the delayed-ACK time.
        self._unacked_bytes += n
        if self._unacked_bytes >= 2 * self._rcv_mss or self.config.delayed_ack == 0:
            self._ack_now = True
            self.host.wake(self)
        elif self._timer_at[_T_DELACK] == INF:
            self._timer_at[_T_DELACK] = now + self.config.delayed_ack
        if was_empty:
            self.host.readable(self)

    def _process_text_and_fin(self, seg: Segment, now: float) -> None:
        """RFC 9293 §3.10.7.4 seventh (segment text) and eighth (FIN) checks."""
        state = self.state
        payload = seg.payload
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
            if fin_abs > self._rcv_nxt_abs:
                # An out-of-order FIN: duplicate ACK at once (RFC 5681 §4.2).
                self._owe_ack()
        if self._fin_rcvd_abs is not None and self._fin_rcvd_abs == self._rcv_nxt_abs:
            self._on_fin(now)

    def _insert(self, start: int, data: bytes, now: float) -> None:
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
                self.duplicate_segments += 1
                self._owe_ack()
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
                    self._accept_in_order(piece, now)
                # RFC 5681 §4.2: ACK immediately when a segment fills a hole.
                self._owe_ack()
            return
        # Out of order: keep only the bytes not already held, in sorted runs.
        self.ooo_segments += 1
        self._owe_ack()  # RFC 5681 §4.2: immediate duplicate ACK
        if not rcvq.store(start, data):
            self.dropped_segments += 1

    def _on_fin(self, now: float) -> None:
        """RFC 9293 §3.10.7.4 eighth check: the peer's FIN, now in order."""
        self._fin_rcvd_abs = None
        self._rcv_nxt_abs += 1
        self.rcv_nxt = (self.rcv_nxt + 1) & SEQ_MASK
        self._peer_fin = True
        self._owe_ack()
        state = self.state
        if state in (S.ESTABLISHED, S.SYN_RECEIVED):
            self.set_state(S.CLOSE_WAIT, now)
            self.host.peer_closed(self)
        elif state is S.FIN_WAIT_1:
            if self._fin_sent and self.snd_una == self.snd_max:
                self._enter_time_wait(now)
            else:
                self.set_state(S.CLOSING, now)
                self.host.peer_closed(self)
        elif state is S.FIN_WAIT_2:
            self._enter_time_wait(now)

    def _enter_time_wait(self, now: float) -> None:
        if self.state in (S.FIN_WAIT_1, S.FIN_WAIT_2) and not self._read_closed:
            self.host.peer_closed(self)
        self.set_state(S.TIME_WAIT, now)
        timers = self._timer_at
        for t in Timer:
            timers[t] = INF
        timers[_T_TIME_WAIT] = now + 2 * self.config.msl
        self._report_done()

    # ---------------------------------------------------------------- timers
    def _update_deadline(self) -> None:
        d = min(self._timer_at)
        self.deadline = d
        if d < self.sched_at:
            self.host.schedule(self, d)

    def _set_unacked_since(self, t: float | None) -> None:
        """Record the last forward progress while data is outstanding (None: all
        acknowledged); the user timeout counts from it (RFC 9293 §3.8.3)."""
        self._unacked_since = t
        self._timer_at[_T_USER_TIMEOUT] = INF if t is None else t + self.config.user_timeout

    def handle_timer(self, now: float) -> None:
        """Host API: run every timer due at ``now``, in :class:`Timer` order."""
        timers = self._timer_at
        for t, handler in enumerate(HANDLERS):
            if timers[t] <= now:
                timers[t] = INF
                getattr(self, handler)(now)
                if self.state is S.CLOSED:
                    return
        self._update_deadline()

    def _on_time_wait_timer(self, now: float) -> None:
        self._terminate(now, None)

    def _on_fin_wait_2_timer(self, now: float) -> None:
        if self.state is S.FIN_WAIT_2:
            self._terminate(now, None)

    def _on_user_timeout_timer(self, now: float) -> None:
        # RFC 9293 §3.8.3: the user timeout fires on time, not at the next RTO; it
        # concerns retransmitted data, not the opening handshake.
        since = self._unacked_since
        if since is None or self._timer_at[_T_RTO] == INF or self.state in _HANDSHAKE_STATES:
            return
        ut = self.config.user_timeout
        if now - since >= ut:
            self._terminate(
                now, UserTimeoutError(f"data unacknowledged for {ut:g} s (user timeout)")
            )
        else:
            self._timer_at[_T_USER_TIMEOUT] = since + ut

    def _on_rto_timer(self, now: float) -> None:
        """The retransmission timer expired (RFC 6298 §5.4-5.7)."""
        state = self.state
        self.rto_expiries += 1
        self._retries += 1
        self._rtt_seq = None  # Karn
        if log.info_enabled:
            log.logger.info(
                "rto", conn=self.name, state=str(state), retries=self._retries, rto=self.rtt.rto
            )
        if state is S.SYN_SENT or state is S.SYN_RECEIVED:
            # The opening handshake: resend SYN (or SYN,ACK) until the retry limit.
            active = state is S.SYN_SENT or self.listener_port is None
            limit = self.config.syn_retries if state is S.SYN_SENT else self.config.synack_retries
            if self._retries > limit:
                # A listener's half-open connection just goes back to LISTEN, unseen.
                what = "SYN" if state is S.SYN_SENT else "SYN,ACK"
                err = ConnectTimeoutError(f"no answer to {what} after {limit} retransmissions")
                self._terminate(now, err if active else None, report=active)
                return
            self.rtt.on_timeout()
            self.retransmissions += 1
            self._start_syn(now)
            return
        if self.snd_una == self.snd_max:
            return
        self.rtt.on_timeout()
        in_flight = (self.snd_max - self.snd_una) & SEQ_MASK
        self.cc.on_rto(now, in_flight)
        self.recovery.on_rto(self.snd_max)
        # Go back N: resend from SND.UNA as the (now 1-SMSS) window allows.
        self.snd_nxt = self.snd_una
        self._retransmit_first(now)

    def _on_delack_timer(self, now: float) -> None:
        if self._unacked_bytes:
            self._owe_ack()

    def _on_persist_timer(self, now: float) -> None:
        """Zero-window probe (RFC 9293 §3.8.6.1): seq = SND.UNA - 1 forces an ACK
        carrying the current window, as Linux's tcp_probe0 does."""
        if self._sndq.data or self._fin_queued:
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
        state = self.state
        if not cfg.keepalive or state is S.TIME_WAIT:
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

    def _schedule_persist(self, now: float) -> None:
        if self._timer_at[_T_PERSIST] == INF:
            delay = min(self.rtt.rto * (1 << min(self._persist_backoff, 16)), self.config.rto_max)
            self._timer_at[_T_PERSIST] = now + delay

    def _retransmit_first(self, now: float) -> None:
        """Owe a retransmission of the segment at SND.UNA (RTO, fast retransmit,
        partial ACK) and restart the retransmission timer."""
        if self.snd_una == self.snd_max:
            return
        self.retransmissions += 1
        self._rtt_seq = None
        self._rtx_first = True
        self.host.wake(self)
        self._timer_at[_T_RTO] = now + self.rtt.rto
        if self._unacked_since is None:
            self._set_unacked_since(now)

    def _arm_rto(self, now: float) -> None:
        # RFC 6298 §5.1: start the timer when sending data if it is not running.
        if self._timer_at[_T_RTO] == INF:
            self._timer_at[_T_RTO] = now + self.rtt.rto
        if self._unacked_since is None:
            self._set_unacked_since(now)

    # ---------------------------------------------------------------- output
    def flush(self, now: float) -> None:
        """Host API: the one place where segments leave this connection.

        Emits, in order: a pending RST; our SYN or SYN,ACK; a probe; a retransmission
        at SND.UNA; what the windows allow of new data and the FIN; an ACK if one is
        still owed.
        """
        rst = self._rst
        if rst is not None:
            self._rst = None
            self._emit(rst[0], rst[1], rst[2])
        state = self.state
        if state is S.CLOSED:
            return
        if self._syn_pending:
            self._syn_pending = False
            self._emit_syn()
        if self._probe_pending:
            self._probe_pending = False
            self._emit((self.snd_una - 1) & SEQ_MASK, self.rcv_nxt, ACK)
        while self._acks_owed:
            self._acks_owed -= 1
            self._emit(self.snd_max, self.rcv_nxt, ACK)
        if self._rtx_first:
            self._rtx_first = False
            if self.snd_una != self.snd_max:
                n = self._segment_for(self.snd_una, now)
                if log.info_enabled:
                    log.logger.info("retransmit", conn=self.name, seq=self.snd_una, len=n)
        if state in _DATA_STATES and (
            self._sndq.data
            or (self._fin_queued and not self._fin_sent)
            or (self._fin_queued and seq_lt(self.snd_nxt, self.snd_max))
        ):
            self._send_data(now)
        if self._ack_now and state is not S.SYN_SENT:
            self.pure_acks_sent += 1
            # <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK> (SND.MAX after a go-back-N rollback).
            self._emit(self.snd_max, self.rcv_nxt, ACK)
        self._update_deadline()

    def _emit(
        self,
        seq: int,
        ack: int,
        flags: int,
        payload: bytes | memoryview = b"",
        options: bytes = b"",
        wnd_override: int | None = None,
    ) -> None:
        """Build one segment and append it to the host's output (only from flush)."""
        if wnd_override is not None:
            wnd = wnd_override
        elif flags & ACK:
            wnd = self._advertise()
        else:
            wnd = 0
        data = build_segment(
            self.local_port, self.remote_port, seq, ack, flags, wnd, payload, options
        )
        self._out.append((data, self.addr))
        self.segments_sent += 1
        if flags & ACK:
            # Any ACK we send acknowledges everything so far.
            self._ack_now = False
            if self._unacked_bytes:
                self._unacked_bytes = 0
                self._timer_at[_T_DELACK] = INF

    def _emit_syn(self) -> None:
        """Our SYN or SYN,ACK, carrying MSS and window scale."""
        flags = SYN
        ack = 0
        if self.state is S.SYN_RECEIVED:
            flags |= ACK
            ack = self.rcv_nxt
            ws = self.rcv_wscale if self._rcv_wscale_ok else None
        else:
            ws = self.rcv_wscale
        opts = encode_options(mss=self.config.mss, wscale=ws)
        # RFC 7323 §2.2: the window field of a SYN is never scaled.
        wnd = min(self.config.rcv_buf, 0xFFFF)
        self._rcv_adv_abs = self._rcv_nxt_abs + wnd
        self._emit(self.iss, ack, flags, options=opts, wnd_override=wnd)

    def _advertise(self) -> int:
        """The window field to send (RFC 9293 §3.8.6.2.2 receiver SWS avoidance).

        The right edge moves only by at least min(MSS, buffer/2) and never moves
        left (RFC 9293 §3.8.6: shrinking the window is strongly discouraged).
        """
        nxt = self._rcv_nxt_abs
        buf = self.config.rcv_buf
        free = buf - len(self._rcvq.data)
        if self._read_closed:
            free = buf
        # RCV.WND is what the peer is told: no more than the field can carry.
        right = nxt + min(free, self._max_rcv_wnd())
        if right - self._rcv_adv_abs >= min(self._rcv_mss, buf // 2) or free == buf:
            self._rcv_adv_abs = max(right, self._rcv_adv_abs)
        elif self._rcv_adv_abs < nxt:
            self._rcv_adv_abs = nxt
        shift = self.rcv_wscale if self._rcv_wscale_ok else 0
        # Round a scaled window up, so the edge the peer sees never moves left
        # (RFC 9293 §3.8.6), and keep RCV.WND equal to the advertised window.
        field = -(-(self._rcv_adv_abs - nxt) >> shift)
        self._rcv_adv_abs = nxt + (field << shift)
        return field

    def _max_rcv_wnd(self) -> int:
        """The largest window the 16-bit field can advertise (RFC 7323 §2.2)."""
        return 0xFFFF << (self.rcv_wscale if self._rcv_wscale_ok else 0)

    def _segment_for(self, seq: int, now: float, limit: int = 1 << 30) -> int:
        """Send the data (and the FIN, if it is next) starting at ``seq``.

        Returns the sequence space consumed (data bytes plus one for a FIN) and
        keeps SND.NXT/SND.MAX/_fin_sent consistent with what went out.
        """
        sndq = self._sndq
        off = (seq - sndq.seq) & SEQ_MASK
        avail = len(sndq.data) - off
        n = min(avail, self.snd_mss, limit)
        flags = ACK
        if n > 0 and n == avail:
            flags |= PSH
        if self._fin_queued and n == avail:
            flags |= FIN
            self._fin_sent = True
        if n > 0:
            mv = memoryview(sndq.data)
            try:
                self._emit(seq, self.rcv_nxt, flags, mv[off : off + n])
            finally:
                mv.release()
            self.bytes_sent += n
        else:
            self._emit(seq, self.rcv_nxt, flags)
        self._last_send = now  # data, FIN or SYN: RFC 5681 §4.1 idle detection
        used = n + (flags & FIN)
        end = (seq + used) & SEQ_MASK
        if seq_gt(end, self.snd_nxt):
            self.snd_nxt = end
        if seq_gt(end, self.snd_max):
            self.snd_max = end
        return used

    def _send_data(self, now: float) -> None:
        """RFC 5681 window check and RFC 9293 §3.8.6.2.1 sender SWS avoidance."""
        if now - self._last_send > self.rtt.rto and self.snd_una == self.snd_max:
            # RFC 5681 §4.1: restart window after an idle period.
            self.cc.on_idle_restart(now)
        mss = self.snd_mss
        sndq = self._sndq
        buf_end = (sndq.seq + len(sndq.data)) & SEQ_MASK
        sent_any = False
        timers = self._timer_at
        # The send window (RFC 5681 §3.1: min(cwnd, rwnd)) does not change while
        # this loop runs; only what is in flight does.
        wnd = min(self.cc.cwnd + self.recovery.inflation, self.snd_wnd)
        while True:
            nxt = self.snd_nxt
            flight = (nxt - self.snd_una) & SEQ_MASK
            unsent = (buf_end - nxt) & SEQ_MASK if seq_lt(nxt, buf_end) else 0
            if unsent == 0:
                if (
                    self._fin_queued
                    and nxt == buf_end
                    and (not self._fin_sent or seq_lt(nxt, self.snd_max))
                ):
                    self._segment_for(nxt, now)  # the FIN alone
                    self._arm_rto(now)
                    sent_any = True
                break
            n = min(unsent, wnd - flight, mss)
            if n <= 0:
                break
            # Sender SWS avoidance: full segment, or all remaining data (push,
            # TCP_NODELAY semantics), or half the largest window the peer offered,
            # or nothing at all is in flight.
            if n < mss and n < unsent and n < self.max_snd_wnd // 2 and flight > 0:
                break
            is_new = not seq_lt(nxt, self.snd_max)
            if is_new and self._rtt_seq is None:
                self._rtt_seq = nxt
                self._rtt_time = now
            if not is_new:
                self.retransmissions += 1
            self._segment_for(nxt, now, n)
            if timers[_T_RTO] == INF or self._unacked_since is None:
                self._arm_rto(now)
            sent_any = True
        # Persist timer: data waits and nothing is in flight to elicit an ACK.
        if (
            not sent_any
            and self.snd_una == self.snd_max
            and seq_lt(self.snd_nxt, buf_end)
            and self.snd_wnd < min(mss, (buf_end - self.snd_nxt) & SEQ_MASK)
        ):
            self._schedule_persist(now)
        elif self.snd_wnd > 0:
            self._timer_at[_T_PERSIST] = INF
            self._persist_backoff = 0

    # ------------------------------------------------------------- teardown
    def _report_done(self) -> None:
        """Tell the application the connection is over (once)."""
        if not self._terminated_sent:
            self._terminated_sent = True
            self.host.terminated(self, self.error)

    def discard(self, now: float) -> None:
        """Host API: end a TIME-WAIT connection whose identity a new SYN reuses
        (RFC 6191), silently."""
        self._terminate(now, None, report=False)

    def _terminate(self, now: float, error: BaseException | None, report: bool = True) -> None:
        """Move to CLOSED, release everything, and report ``error`` (None = orderly)."""
        if self.state is S.CLOSED:
            return
        if error is not None and self.error is None:
            self.error = error
            if log.info_enabled:
                log.logger.info("abort", conn=self.name, state=str(self.state), error=repr(error))
        self.set_state(S.CLOSED, now)
        timers = self._timer_at
        for t in Timer:
            timers[t] = INF
        self.deadline = INF
        self._ack_now = self._rtx_first = self._probe_pending = self._syn_pending = False
        self._acks_owed = 0
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
