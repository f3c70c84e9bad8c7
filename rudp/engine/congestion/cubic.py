"""CUBIC (RFC 9438) with HyStart++ slow start (RFC 9406), byte counted.

RFC 9438 states windows in segments; rudp keeps ``cwnd`` in bytes, so every
window here (``w_max``, ``w_est``, the target) is in bytes and the cubic function
is scaled by the MSS: ``W_cubic(t) = C * (t - K)**3 * MSS + W_max`` with ``C`` in
segments per second cubed, and ``segments_acked`` becomes ``acked / MSS``.
"""

from __future__ import annotations

import math
from typing import Any

from .base import INITIAL_SSTHRESH, AckSample, CongestionControl

#: RFC 9438 §5.1: C = 0.4 (segments / s**3).
C = 0.4
#: RFC 9438 §4.6: the multiplicative decrease factor.
BETA_CUBIC = 0.7
#: RFC 9438 §4.3: Reno's average window for AIMD(alpha, beta_cubic).
ALPHA_CUBIC = 3.0 * (1.0 - BETA_CUBIC) / (1.0 + BETA_CUBIC)

# RFC 9406 §4.3, the recommended HyStart++ constants (seconds where times).
MIN_RTT_THRESH = 0.004
MAX_RTT_THRESH = 0.016
MIN_RTT_DIVISOR = 8
N_RTT_SAMPLE = 8
CSS_GROWTH_DIVISOR = 4
CSS_ROUNDS = 5

#: HyStart++ phases: standard slow start, Conservative Slow Start, not running.
HS_SLOW_START, HS_CSS, HS_OFF = "ss", "css", "off"

_INF = float("inf")


def cubic_root(x: float) -> float:
    """The real cube root (negative for negative ``x``)."""
    return math.copysign(abs(x) ** (1.0 / 3.0), x)


class Cubic(CongestionControl):
    """RFC 9438 CUBIC: cubic window growth after a congestion event, a Reno-friendly
    floor, beta 0.7, fast convergence, undo of spurious events; HyStart++ (RFC 9406)
    ends the first slow start on a delay increase.

    Loss recovery itself is the connection's: during it the connection sizes sending
    with PRR (RFC 6937) toward the ``ssthresh`` set here, and :meth:`on_ack` is not
    called.
    """

    name = "cubic"
    __slots__ = (
        "_after_rto",
        "_css_baseline",
        "_css_rounds",
        "_frac",
        "_in_reduction",
        "_last_round_min_rtt",
        "_limited_since",
        "_round_min_rtt",
        "_rtt_samples",
        "_undo",
        "cwnd_epoch",
        "cwnd_prior",
        "hystart",
        "k",
        "t_epoch",
        "w_est",
        "w_max",
    )
    uses_prr = True
    #: RFC 9438 §4.7: SHOULD be on (the RFC would have a lone flow turn it off,
    #: which a sender cannot know; Linux keeps it on). A subclass may set False.
    fast_convergence = True

    def __init__(self, mss: int, initial_cwnd: int) -> None:
        super().__init__(mss, initial_cwnd)
        # RFC 9438 §4.1.2 variables, in bytes and seconds. w_max == 0: undefined
        # (no congestion event yet, or the first CA stage after an RTO / HyStart++).
        self.w_max = 0.0
        self.k = 0.0
        self.t_epoch: float | None = None  # None: no congestion avoidance stage yet
        self.cwnd_epoch = 0
        self.cwnd_prior = 0
        self.w_est = 0.0
        self._frac = 0.0  # fractional bytes of cwnd growth not yet applied
        # RFC 9438 §4.2 / §5.8: time spent application limited is not part of t.
        self._limited_since: float | None = None
        self._in_reduction = False  # congestion event until recovery end or undo
        self._after_rto = False  # an RTO and no ACK of new data since
        # HyStart++ (RFC 9406 §4.2).
        self.hystart = HS_SLOW_START
        self._last_round_min_rtt = _INF
        self._round_min_rtt = _INF
        self._rtt_samples = 0
        self._css_baseline = _INF
        self._css_rounds = 0
        self._undo: tuple[Any, ...] = ()

    # ------------------------------------------------------------ growth
    def on_ack(self, rs: AckSample, now: float) -> None:
        self._after_rto = False
        limited = rs.is_cwnd_limited
        if not limited:
            # RFC 9438 §5.8 (and RFC 7661): an application-limited flow does not
            # grow cwnd, and §4.2: that time MUST NOT count in t.
            if self._limited_since is None:
                self._limited_since = now
        elif self._limited_since is not None:
            if self.t_epoch is not None:
                # Shift the epoch past the pause, as Linux does after idle.
                self.t_epoch = min(now, self.t_epoch + (now - self._limited_since))
            self._limited_since = None
        acked = rs.acked
        if self.cwnd < self.ssthresh:
            acked = self._slow_start(rs, acked, limited)
            if acked <= 0 or self.cwnd < self.ssthresh:
                return
        if limited:
            self._congestion_avoidance(rs, acked, now)

    def _slow_start(self, rs: AckSample, acked: int, limited: bool) -> int:
        """RFC 5681 slow start with HyStart++; returns bytes left for CA."""
        hs = self.hystart
        if hs != HS_OFF and self.ssthresh != INITIAL_SSTHRESH:
            # RFC 9406 §4.3: HyStart++ only in the initial slow start.
            hs = self.hystart = HS_OFF
        if hs != HS_OFF and rs.round_start:
            if hs == HS_CSS:
                if self._css_rounds >= CSS_ROUNDS:
                    # RFC 9406 §4.2: CSS_ROUNDS rounds done: enter congestion
                    # avoidance with ssthresh = cwnd; RFC 9438 §4.10: W_max is
                    # then undefined (K = 0 and W_max = cwnd at CA start).
                    self._exit_slow_start()
                    return acked
                self._css_rounds += 1
            self._last_round_min_rtt = self._round_min_rtt
            self._round_min_rtt = _INF
            self._rtt_samples = 0
        left = 0
        if limited:
            if hs == HS_CSS:
                # RFC 9406 §4.2: cwnd += min(N, L*SMSS) / CSS_GROWTH_DIVISOR.
                self._grow(acked / CSS_GROWTH_DIVISOR)
            else:
                # RFC 5681 §3.1, counting every delivered byte (no L or ABC cap:
                # receivers coalesce ACKs, and Linux counts every delivered
                # segment too); past ssthresh the rest goes to CA, as in Linux.
                room = self.ssthresh - self.cwnd
                if acked > room:
                    self.cwnd = self.ssthresh
                    left = acked - room
                else:
                    self.cwnd += acked
        rtt = rs.rtt
        if hs != HS_OFF and rtt > 0.0:
            if rtt < self._round_min_rtt:
                self._round_min_rtt = rtt
            self._rtt_samples += 1
            if self._rtt_samples >= N_RTT_SAMPLE:
                cur, last = self._round_min_rtt, self._last_round_min_rtt
                if hs == HS_SLOW_START:
                    if last != _INF:
                        thresh = max(MIN_RTT_THRESH, min(last / MIN_RTT_DIVISOR, MAX_RTT_THRESH))
                        if cur >= last + thresh:
                            # Delay increase: leave slow start for CSS; the
                            # partial round counts toward CSS_ROUNDS.
                            self._css_baseline = cur
                            self._css_rounds = 1
                            self.hystart = HS_CSS
                elif cur < self._css_baseline:
                    # The exit was spurious: resume slow start.
                    self._css_baseline = _INF
                    self.hystart = HS_SLOW_START
        return left

    def _exit_slow_start(self) -> None:
        self.ssthresh = self.cwnd
        self.cwnd_prior = self.cwnd
        self.w_max = 0.0
        self.t_epoch = None
        self.hystart = HS_OFF

    def _congestion_avoidance(self, rs: AckSample, acked: int, now: float) -> None:
        mss = self.mss
        cwnd = self.cwnd
        if self.t_epoch is None:
            # A congestion avoidance stage begins (RFC 9438 §4.2, eq. 2).
            self.t_epoch = now
            self.cwnd_epoch = cwnd
            self.w_est = float(cwnd)
            self._frac = 0.0
            if self.w_max <= cwnd:
                # §4.8 / §4.10 (after an RTO, after HyStart++) and Linux: the
                # curve starts at its plateau, K = 0, W_max = cwnd_epoch.
                self.w_max = float(cwnd)
                self.k = 0.0
            else:
                self.k = cubic_root((self.w_max - cwnd) / mss / C)
        t = now - self.t_epoch
        # §4.3 eq. 4, alpha_cubic until W_est reaches cwnd_prior, 1 after.
        alpha = 1.0 if self.w_est >= self.cwnd_prior else ALPHA_CUBIC
        self.w_est += alpha * mss * acked / cwnd
        if self._w_cubic(t) < self.w_est:
            # §4.3: the Reno-friendly region: cwnd = W_est (never lowered).
            if self.w_est > cwnd:
                self.cwnd = int(self.w_est)
                self._frac = 0.0
            return
        # §4.2: target = W_cubic(t + RTT) clamped to [cwnd, 1.5 cwnd]; §4.4 /
        # §4.5: cwnd += (target - cwnd) / cwnd per segment acknowledged.
        rtt = rs.srtt if rs.srtt > 0.0 else max(rs.rtt, 0.0)
        target = self._w_cubic(t + rtt)
        if target <= cwnd:
            return
        if target > 1.5 * cwnd:
            target = 1.5 * cwnd
        self._grow((target - cwnd) / cwnd * acked)

    def _w_cubic(self, t: float) -> float:
        """RFC 9438 eq. 1, in bytes."""
        d = t - self.k
        return C * d * d * d * self.mss + self.w_max

    def _grow(self, inc: float) -> None:
        frac = self._frac + inc
        whole = int(frac)
        self._frac = frac - whole
        self.cwnd += whole

    # ---------------------------------------------------- congestion events
    def _reduce(self, basis: int) -> None:
        """RFC 9438 §4.6 multiplicative decrease with §4.7 fast convergence."""
        cwnd = self.cwnd
        if self.fast_convergence and cwnd < self.w_max:
            self.w_max = cwnd * (1.0 + BETA_CUBIC) / 2.0
        else:
            self.w_max = float(cwnd)
        self.cwnd_prior = cwnd
        # ssthresh = flight_size * beta (the connection caps FlightSize at cwnd:
        # LossRecovery.reduction_basis).
        self.ssthresh = max(int(basis * BETA_CUBIC), 2 * self.mss)
        self.t_epoch = None
        self._limited_since = None
        self._frac = 0.0
        self.hystart = HS_OFF

    def on_congestion_event(self, now: float, basis: int) -> None:
        self._reduce(basis)
        # §4.6: cwnd = max(ssthresh, 2) at once; PRR paces the way down.
        self.cwnd = self.ssthresh
        self._in_reduction = True

    def on_recovery_end(self, now: float) -> None:
        if self._in_reduction:
            # RFC 6937 §3.1 / RFC 6675: on exiting recovery, cwnd = ssthresh.
            self.cwnd = self.ssthresh
            self._in_reduction = False

    def on_rto(self, now: float, basis: int) -> None:
        # §4.8: ssthresh from beta_cubic as in §4.6, cwnd as Reno (RFC 5681:
        # the loss window, 1 SMSS). A repeated RTO, or one inside a recovery
        # episode that already reduced, keeps ssthresh (RFC 5681 §3.1; Linux
        # tcp_enter_loss).
        if not (self._after_rto or self._in_reduction):
            self._reduce(basis)
        self.t_epoch = None
        self.hystart = HS_OFF
        # §4.8: the first CA stage after a timeout uses K = 0 and W_max = cwnd
        # at its start (W_est likewise; see _congestion_avoidance).
        self.w_max = 0.0
        self.cwnd = self.mss
        self._frac = 0.0
        self._in_reduction = False
        self._after_rto = True

    def on_idle_restart(self, now: float) -> None:
        # RFC 5681 §4.1: restart from min(cwnd, initial window); ssthresh keeps
        # 3/4 of the old cwnd (Linux tcp_cwnd_restart, after RFC 2861) so slow
        # start climbs back. The next CA stage gets a fresh epoch: the idle time
        # is no part of t (RFC 9438 §4.2, §5.8).
        restart = self.initial_cwnd * self.mss
        if self.cwnd > restart:
            self.ssthresh = max(self.ssthresh, 3 * self.cwnd // 4)
            self.cwnd = restart
        self.t_epoch = None
        self._limited_since = None
        self._frac = 0.0

    # ----------------------------------------------------------------- undo
    def save_undo_state(self) -> None:
        # RFC 9438 §4.9.2: undo_cwnd, undo_cwnd_prior, undo_ssthresh, undo_W_max,
        # undo_K, undo_t_epoch, undo_W_est (and HyStart++'s phase, so a spurious
        # event in the first slow start resumes it). An RTO after an RTO, or
        # inside a recovery episode, keeps the state saved before the first.
        if self._after_rto or self._in_reduction:
            return
        self._undo = (
            self.cwnd,
            self.cwnd_prior,
            self.ssthresh,
            self.w_max,
            self.k,
            self.t_epoch,
            self.cwnd_epoch,
            self.w_est,
            self.hystart,
            self._css_baseline,
            self._css_rounds,
        )

    def undo(self, now: float) -> None:
        self._in_reduction = False
        self._after_rto = False
        if not self._undo:
            return
        # §4.9.2: restore only if cwnd is still below cwnd_prior; otherwise keep
        # the current, more recent values.
        if self.cwnd < self.cwnd_prior:
            (
                self.cwnd,
                self.cwnd_prior,
                self.ssthresh,
                self.w_max,
                self.k,
                self.t_epoch,
                self.cwnd_epoch,
                self.w_est,
                self.hystart,
                self._css_baseline,
                self._css_rounds,
            ) = self._undo
            self._frac = 0.0
            self._limited_since = None
        self._undo = ()

    def stats(self) -> dict[str, Any]:
        return {
            "cc_w_max": int(self.w_max),
            "cc_k": self.k,
            "cc_epoch": self.t_epoch,
            "cc_cwnd_prior": self.cwnd_prior,
            "cc_w_est": int(self.w_est),
            "cc_hystart": self.hystart,
        }
